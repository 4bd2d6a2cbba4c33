"""Supernets: mixed edges, single paths, weight copies into the discrete networks, derivation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from nasflow.errors import ConfigError
from nasflow.oneshot.darts_supernet import DartsSupernet
from nasflow.oneshot.nb201_supernet import NB201Supernet
from nasflow.oneshot.supernet import (
    MixedOp,
    build_supernet,
    preserved_bn_statistics,
    recalibrate_bn,
    weight_sharing_accuracy,
)
from nasflow.ops.nb201 import NB201_OPS
from nasflow.space.architecture import Architecture
from nasflow.space.base import DecisionSpace
from nasflow.space.darts import DartsSpace
from nasflow.space.nb201 import EDGE_NAMES, NB201Space

ARCH = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|nor_conv_3x3~2|"


def _supernet(space: NB201Space, seed: int = 0) -> NB201Supernet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return NB201Supernet(space, (1, 8, 8), 10)


def _x(n: int = 6, shape: tuple[int, ...] = (1, 8, 8), seed: int = 0) -> torch.Tensor:
    return torch.randn((n, *shape), generator=torch.Generator().manual_seed(seed))


def _randomise_bn(module: nn.Module, seed: int) -> None:
    """Running statistics and affine parameters away from their defaults, so copies must be right."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in module.modules():
            if isinstance(bn, nn.BatchNorm2d):
                bn.running_mean.copy_(torch.randn(bn.num_features, generator=generator) * 0.1)
                bn.running_var.copy_(torch.rand(bn.num_features, generator=generator) + 0.5)
                if bn.affine:
                    bn.weight.copy_(torch.rand(bn.num_features, generator=generator) + 0.5)
                    bn.bias.copy_(torch.randn(bn.num_features, generator=generator) * 0.1)


def test_mixed_op_with_one_hot_weights_is_exactly_the_chosen_op() -> None:
    conv = nn.Conv2d(2, 2, 3, padding=1, bias=False)
    pool = nn.AvgPool2d(3, stride=1, padding=1)
    mixed = MixedOp([nn.Identity(), conv, pool])
    x = _x(3, (2, 5, 5))
    for k, op in enumerate(mixed.ops):
        one_hot = torch.zeros(3)
        one_hot[k] = 1.0
        assert torch.equal(mixed(x, weights=one_hot), op(x))
        assert torch.equal(mixed(x, index=k), op(x))
    # both: only the picked op runs, scaled by its weight, plus the other weights as scalars (GDAS)
    assert torch.allclose(mixed(x, weights=torch.tensor([0.2, 0.5, 0.3]), index=1), 0.5 * conv(x) + 0.5)
    assert torch.equal(mixed(x, weights=torch.tensor([0.0, 1.0, 0.0]), index=1), conv(x))


def test_mixed_op_computes_the_weighted_sum() -> None:
    conv = nn.Conv2d(2, 2, 1, bias=False)
    with torch.no_grad():
        conv.weight.fill_(2.0)  # each output channel: 2 * (sum of the input channels)
    mixed = MixedOp([nn.Identity(), conv])
    x = torch.ones(1, 2, 2, 2)
    out = mixed(x, weights=torch.tensor([0.25, 0.75]))
    assert torch.allclose(out, torch.full((1, 2, 2, 2), 0.25 * 1 + 0.75 * 4))
    with pytest.raises(ValueError, match="mixing weights or an operation index"):
        mixed(x)


def test_nb201_fixed_path_equals_the_discrete_network_with_copied_weights() -> None:
    space = NB201Space(channels=4, cells_per_stage=2)
    supernet = _supernet(space)
    _randomise_bn(supernet, seed=1)
    arch = space.parse(ARCH)
    network = supernet.extract(arch)
    assert type(network).__name__ == "NB201Network"
    x = _x(8)
    path = supernet.path_of(arch)
    assert path == [NB201_OPS.index(op) for op in ("nor_conv_3x3", "none", "skip_connect")] + [4, 2, 3]
    supernet.eval()
    network.eval()
    with torch.no_grad():
        assert torch.allclose(supernet(x, path=path), network(x), atol=1e-6)
    # train mode (batch statistics) too, and the copy leaves the supernet's weights alone
    supernet.train()
    network.train()
    with torch.no_grad():
        assert torch.allclose(supernet(x, path=path), network(x), atol=1e-5)
    assert network.stem[0].weight.data_ptr() != supernet.stem[0].weight.data_ptr()


def test_nb201_one_hot_weights_equal_the_path() -> None:
    supernet = _supernet(NB201Space(channels=4, cells_per_stage=1))
    path = [3, 0, 1, 4, 2, 3]
    weights = torch.zeros(6, 5)
    weights[torch.arange(6), torch.tensor(path)] = 1.0
    supernet.eval()
    x = _x(4)
    with torch.no_grad():
        assert torch.allclose(supernet(x, weights=weights), supernet(x, path=path), atol=1e-6)


def test_nb201_derive_takes_the_argmax_of_each_edge() -> None:
    supernet = _supernet(NB201Space(channels=4, cells_per_stage=1))
    weights = np.full((6, 5), 0.1)
    choice = ["nor_conv_3x3", "none", "skip_connect", "avg_pool_3x3", "nor_conv_1x1", "nor_conv_3x3"]
    for row, op in enumerate(choice):
        weights[row, NB201_OPS.index(op)] = 0.6
    arch = supernet.derive(weights)
    assert [arch[name] for name in EDGE_NAMES] == choice
    assert supernet.count_skips(arch) == 1
    with pytest.raises(ConfigError, match=r"shape \(6, 5\)"):
        supernet.derive(np.zeros((5, 5)))


def test_recalibration_matches_the_statistics_of_the_path() -> None:
    space = NB201Space(channels=4, cells_per_stage=1)
    supernet = _supernet(space)
    x = _x(64)
    path = [3, 3, 3, 3, 3, 3]
    recalibrate_bn(supernet, path, x)
    assert not supernet.training
    stem_bn = supernet.stem[1]
    features = supernet.stem[0](x).detach()
    assert torch.allclose(stem_bn.running_mean, features.mean(dim=(0, 2, 3)), atol=1e-5)
    assert stem_bn.momentum == 0.1  # restored after the cumulative average
    # scores do not depend on what was scored before
    y = torch.arange(64) % 10
    first = weight_sharing_accuracy(supernet, path, x, x, y)
    weight_sharing_accuracy(supernet, [1, 1, 1, 1, 1, 1], x, x, y)
    assert weight_sharing_accuracy(supernet, path, x, x, y) == first


def test_preserved_bn_statistics_restores_running_stats() -> None:
    supernet = _supernet(NB201Space(channels=4, cells_per_stage=1))
    before = supernet.stem[1].running_mean.clone()
    with preserved_bn_statistics(supernet):
        supernet.train()
        supernet(_x(16) + 3.0, path=[1] * 6)
        assert not torch.equal(supernet.stem[1].running_mean, before)
    assert torch.equal(supernet.stem[1].running_mean, before)


def test_build_supernet_rejects_spaces_without_one() -> None:
    class Shape:
        input_shape = (1, 8, 8)
        num_classes = 10

    with pytest.raises(ConfigError, match="supported spaces: nb201, darts"):
        build_supernet(DecisionSpace({"a": [1, 2]}), Shape())


# -- DARTS ---------------------------------------------------------------------------------------


def _darts(seed: int = 0) -> DartsSupernet:
    space = DartsSpace(channels=4, layers=3, stem_multiplier=1, nodes=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DartsSupernet(space, (1, 8, 8), 10)


def test_darts_supernet_has_a_row_per_edge_of_both_cells() -> None:
    supernet = _darts()
    # nodes 2 and 3: 2 + 3 edges per cell type
    assert supernet.edge_names == (
        "normal:2<-0", "normal:2<-1", "normal:3<-0", "normal:3<-1", "normal:3<-2",
        "reduce:2<-0", "reduce:2<-1", "reduce:3<-0", "reduce:3<-1", "reduce:3<-2",
    )  # fmt: skip
    assert supernet.op_names[0] == "none" and len(supernet.op_names) == 8
    weights = torch.softmax(torch.zeros(10, 8), dim=-1)
    assert supernet(_x(2), weights=weights).shape == (2, 10)


def test_darts_derive_keeps_the_two_strongest_edges_without_none() -> None:
    supernet = _darts()
    ops = supernet.op_names
    weights = np.full((10, 8), 0.05)
    weights[:, 0] = 0.9  # "none" is the largest everywhere and must be ignored
    normal = {"normal:3<-2": ("sep_conv_3x3", 0.5), "normal:3<-0": ("skip_connect", 0.4)}
    normal["normal:3<-1"] = ("max_pool_3x3", 0.3)  # third strongest: dropped
    for row, name in enumerate(supernet.edge_names):
        if name in normal:
            op, value = normal[name]
            weights[row, ops.index(op)] = value
    arch = supernet.derive(weights)
    genotype = supernet.space.genotype(arch)
    assert genotype["normal"][2:] == [("sep_conv_3x3", 2), ("skip_connect", 0)]
    # node 2 has exactly two inputs (0 and 1), both kept, ties broken towards the first operation
    assert sorted(source for _, source in genotype["normal"][:2]) == [0, 1]
    assert supernet.count_skips(arch) == 1


def test_darts_fixed_path_equals_the_discrete_network_without_pools() -> None:
    supernet = _darts()
    space = supernet.space
    arch = space.from_genotype(
        [("sep_conv_3x3", 0), ("skip_connect", 1), ("dil_conv_3x3", 2), ("sep_conv_5x5", 0)],
        [("skip_connect", 0), ("dil_conv_5x5", 1), ("sep_conv_3x3", 2), ("skip_connect", 1)],
    )
    _randomise_bn(supernet, seed=2)
    network = supernet.extract(arch)
    path = supernet.path_of(arch)
    assert sum(p is not None for p in path) == 8  # two edges per node, two nodes, two cell types
    x = _x(4)
    supernet.eval()
    network.eval()
    with torch.no_grad():
        assert torch.allclose(supernet(x, path=path), network(x), atol=1e-5)


def test_darts_path_of_round_trips_through_derive() -> None:
    supernet = _darts()
    rng = np.random.default_rng(0)
    for _ in range(5):
        arch = supernet.space.sample(rng)
        weights = np.zeros((supernet.num_edges, supernet.num_ops))
        for row, op in enumerate(supernet.path_of(arch)):
            if op is not None:
                weights[row, op] = 1.0
        derived = supernet.derive(weights)
        assert supernet.space.canonical(derived) == supernet.space.canonical(arch)


def test_supernet_output_is_finite_for_every_mode() -> None:
    supernet = _supernet(NB201Space(channels=4, cells_per_stage=1))
    weights = torch.softmax(torch.randn(6, 5, generator=torch.Generator().manual_seed(0)), dim=-1)
    out = supernet(_x(4), weights=weights)
    assert out.shape == (4, 10) and bool(torch.isfinite(out).all())
    loss = out.logsumexp(dim=1).mean()
    loss.backward()
    grads = [p.grad for p in supernet.parameters() if p.grad is not None]
    assert grads and all(math.isfinite(float(g.abs().sum())) for g in grads)
    assert Architecture({name: "none" for name in EDGE_NAMES}) == supernet.derive(
        np.eye(6, 5) * 0 + [1, 0, 0, 0, 0]
    )
