"""The hierarchical space: macro stages over one shared NB201-style cell, searched jointly."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

import nasflow as nf
from nasflow.ops.nb201 import NB201Cell, ReLUConvBN, ResidualReduction
from nasflow.space.hierarchical import CELL_KEYS, HierarchicalNetwork, HierarchicalSpace, Stage
from nasflow.testing.spaces import check_space

CONV_CELL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
ONE_CONV_CELL = "|none~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|none~2|"
IDENTITY_CELL = "|skip_connect~0|+|none~0|none~1|+|none~0|skip_connect~1|none~2|"
EXAMPLE = f"macro:d0-16x1,d1-32x2,d0-24x1|cell:{CONV_CELL}"


def params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_passes_space_contract_with_default_and_custom_settings() -> None:
    check_space(HierarchicalSpace())
    check_space(
        HierarchicalSpace(min_stages=1, max_stages=2, widths=(4, 8), cells=(1,), ops=("none", "skip_connect"))
    )


def test_registered_and_rebuilt_from_its_description() -> None:
    space = nf.get_space("hierarchical", max_stages=3, widths=[8, 4], ops=["nor_conv_1x1", "none"])
    assert isinstance(space, HierarchicalSpace) and isinstance(space, nf.HierarchicalSpace)
    assert space.describe() == {
        "name": "hierarchical",
        "min_stages": 2,
        "max_stages": 3,
        "widths": [4, 8],
        "cells": [1, 2],
        "ops": ["none", "nor_conv_1x1"],
    }
    assert nf.get_space(**json.loads(json.dumps(space.describe()))).describe() == space.describe()


def test_decisions_and_sizes() -> None:
    space = HierarchicalSpace()
    decisions = space.decisions()
    assert len(decisions) == 1 + 4 * 3 + 6
    assert decisions["num_stages"] == (2, 3, 4)
    assert decisions["stage3_reduce"] == (0, 1)
    assert decisions["stage0_width"] == (16, 24, 32, 48)
    assert decisions["stage2_cells"] == (1, 2)
    assert (
        list(decisions)[-6:]
        == list(CELL_KEYS)
        == ["cell_1<-0", "cell_2<-0", "cell_2<-1", "cell_3<-0", "cell_3<-1", "cell_3<-2"]
    )
    assert space.size() == 3 * (2 * 4 * 2) ** 4 * 5**6
    # cells with no non-none path from input to output: 225 with edge 1<-0 none, 116 with it present
    per_stage = 2 * 4 * 2
    assert space.distinct_size() == (per_stage**2 + per_stage**3 + per_stage**4) * (5**6 - 341)


def test_cells_that_ignore_their_input_are_invalid() -> None:
    space = HierarchicalSpace()
    dead = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|none~0|none~1|none~2|"
    with pytest.raises(nf.InvalidArchitectureError, match="rejected by is_valid"):
        space.parse(f"macro:d0-16x1,d0-16x1|cell:{dead}")
    for cell in (ONE_CONV_CELL, IDENTITY_CELL):  # one live path is enough
        assert space.is_valid(space.parse(f"macro:d0-16x1,d0-16x1|cell:{cell}"))
    rng = np.random.default_rng(0)
    arch = space.parse(f"macro:d0-16x1,d0-16x1|cell:{ONE_CONV_CELL}")
    # the single live edge can change its operation but never become none
    assert all(n["cell_3<-0"] != "none" for n in space.neighbors(arch))
    assert all(space.is_valid(space.mutate(arch, rng)) for _ in range(20))


def test_format_round_trips_and_omits_inactive_stages() -> None:
    space = HierarchicalSpace()
    arch = space.parse(EXAMPLE)
    assert space.format(arch) == EXAMPLE
    assert arch["num_stages"] == 3
    assert (arch["stage1_reduce"], arch["stage1_width"], arch["stage1_cells"]) == (1, 32, 2)
    assert (arch["stage3_reduce"], arch["stage3_width"], arch["stage3_cells"]) == (0, 16, 1)
    assert all(arch[key] == "nor_conv_3x3" for key in CELL_KEYS)
    odd = arch.replace(stage3_width=48)
    assert space.format(odd) == f"macro:d0-16x1,d1-32x2,d0-24x1,~d0-48x1|cell:{CONV_CELL}"
    assert space.parse(space.format(odd)) == odd
    assert space.parse(f" macro: d0-16x1, d1-32x2,d0-24x1 |cell:{CONV_CELL}") == arch
    assert space.parse(arch.to_json()) == arch


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"d0-16x1,d0-16x1|cell:{CONV_CELL}", "expected 'macro:"),
        ("macro:d0-16x1,d0-16x1", "expected 'macro:"),
        (f"macro:d0-16x1|cell:{CONV_CELL}", "found 1 active of 1"),
        (f"macro:d0-16,d0-16x1|cell:{CONV_CELL}", "cannot parse stage 'd0-16'"),
        (f"macro:~d0-16x1,d0-16x1,d0-16x1|cell:{CONV_CELL}", "inactive '~' stages must come last"),
        (
            f"macro:d0-12x1,d0-16x1|cell:{CONV_CELL}",
            r"'stage0_width' cannot be 12; allowed: \[16, 24, 32, 48\]",
        ),
        ("macro:d0-16x1,d0-16x1|cell:|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown operation"),
        ("macro:d0-16x1,d0-16x1|cell:|none~0|", "node group"),
    ],
)
def test_parse_errors_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(nf.InvalidArchitectureError, match=message):
        HierarchicalSpace().parse(text)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_stages": 0}, "max_stages must be an integer >= 1"),
        ({"min_stages": 5}, r"min_stages \(5\) must not exceed max_stages \(4\)"),
        ({"widths": []}, "widths must be a non-empty list"),
        ({"cells": (1, 1)}, "lists a value twice"),
        ({"ops": ["sep_conv_3x3"]}, r"ops \['sep_conv_3x3'\] are unknown"),
        ({"ops": ["none"]}, "at least one operation besides 'none'"),
    ],
)
def test_bad_settings_are_config_errors(options: dict, message: str) -> None:
    with pytest.raises(nf.ConfigError, match=message):
        HierarchicalSpace(**options)


def test_canonical_ignores_inactive_stages_and_folds_identity_cells() -> None:
    space = HierarchicalSpace()
    arch = space.parse(EXAMPLE)
    assert space.canonical(arch) == space.canonical(arch.replace(stage3_width=48, stage3_reduce=1))
    assert space.canonical(arch).startswith("d0-16x1,d1-32x2,d0-24x1|")
    assert space.canonical(arch.replace(num_stages=4)) != space.canonical(arch)
    identity = space.parse(f"macro:d0-16x1,d1-32x2|cell:{IDENTITY_CELL}")
    # a cell that returns its input: stacking one or two of them is the same network
    assert space.canonical(identity) == space.canonical(identity.replace(stage1_cells=1))
    assert space.canonical(identity).startswith("d0-16x*,d1-32x*|")
    assert params(space.build(identity)) == params(space.build(identity.replace(stage1_cells=1)))
    assert space.canonical(identity) != space.canonical(identity.replace(stage1_width=24))


def test_neighbors_and_mutate_always_change_the_network() -> None:
    space = HierarchicalSpace()
    arch = space.parse(f"macro:d0-16x1,d1-32x2|cell:{CONV_CELL}")
    neighbours = space.neighbors(arch)
    # num_stages 2 + two active stages x (reduce 1 + width 3 + cells 1) + six edges x 4 other ops
    assert len(neighbours) == 2 + 2 * 5 + 6 * 4
    keys = {space.canonical(n) for n in neighbours}
    assert len(keys) == len(neighbours) and space.canonical(arch) not in keys
    rng = np.random.default_rng(1)
    for _ in range(30):
        parent = space.sample(rng)
        child = space.mutate(parent, rng)
        assert space.canonical(child) != space.canonical(parent)
        assert child == space.normalize(child)


def test_encodings_zero_inactive_stages() -> None:
    space = HierarchicalSpace()
    arch = space.parse(EXAMPLE)
    onehot = space.encode(arch, "onehot")
    assert onehot.shape == (3 + 4 * (2 + 4 + 2) + 6 * 5,)
    assert onehot.sum() == 1 + 3 * 3 + 6
    assert np.array_equal(onehot, space.encode(arch.replace(stage3_width=48), "onehot"))
    assert np.array_equal(space.encode(arch, "index"), space.encode(arch.replace(stage3_cells=2), "index"))
    path = space.encode(arch, "path")
    assert path.shape == (3 + 4 * 8 + 180,)
    # every route of the all-conv cell exists, each through a single sequence of operations
    assert path[35:].sum() == 4


def test_build_gives_logits_for_any_input_shape_and_class_count() -> None:
    space = HierarchicalSpace()
    rng = np.random.default_rng(2)
    for shape, classes in (((1, 8, 8), 10), ((3, 32, 32), 7)):
        for _ in range(2):
            net = space.build(space.sample(rng), SimpleNamespace(input_shape=shape, num_classes=classes))
            assert isinstance(net, HierarchicalNetwork)
            assert net(torch.randn(2, *shape)).shape == (2, classes)


def test_reductions_are_clamped_on_tiny_inputs() -> None:
    space = HierarchicalSpace()
    arch = space.parse(f"macro:d1-16x1,d1-16x1,d1-24x1,d1-32x1|cell:{ONE_CONV_CELL}")
    assert [s.reduce for s in space.layout(arch, (1, 8, 8))] == [True, True, True, False]  # 8 -> 4 -> 2 -> 1
    assert [s.reduce for s in space.layout(arch, (3, 32, 32))] == [True] * 4
    assert [s.reduce for s in space.layout(arch, (1, 1, 1))] == [False] * 4
    net = space.build_network(arch, (1, 8, 8), 10)
    # the last stage changes width without reducing: a 1x1 projection takes the reduction's place
    assert [type(m) for m in net.body] == [ResidualReduction, NB201Cell] * 3 + [ReLUConvBN, NB201Cell]
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    assert space.build_network(arch, (1, 1, 1), 3)(torch.randn(2, 1, 1, 1)).shape == (2, 3)


def test_parameter_count_matches_a_hand_computation() -> None:
    space = HierarchicalSpace(widths=(8, 16))
    arch = space.parse(f"macro:d0-8x1,d1-16x1|cell:{ONE_CONV_CELL}")
    assert space.layout(arch, (1, 8, 8)) == [Stage(False, 8, 1), Stage(True, 16, 1)]
    stem = 1 * 8 * 9 + 2 * 8
    cell_8 = 8 * 8 * 9 + 2 * 8  # the single nor_conv_3x3 edge; none edges have no weights
    reduction = (8 * 16 * 9 + 2 * 16) + (16 * 16 * 9 + 2 * 16) + 8 * 16  # conv_a, conv_b, 1x1 shortcut
    cell_16 = 16 * 16 * 9 + 2 * 16
    head = 2 * 16 + 16 * 10 + 10
    assert stem + cell_8 + reduction + cell_16 + head == 6866
    assert params(space.build_network(arch, (1, 8, 8), 10)) == 6866


def test_every_cell_of_the_network_uses_the_shared_cell() -> None:
    space = HierarchicalSpace()
    arch = space.parse(f"macro:d0-16x2,d1-24x2,d0-24x1|cell:{ONE_CONV_CELL}")
    net = space.build_network(arch, (1, 8, 8), 10)
    cells = [m for m in net.body if isinstance(m, NB201Cell)]
    assert len(cells) == 5
    for cell in cells:
        kinds = [type(op).__name__ for op in cell.ops]
        assert kinds == ["Zero", "Zero", "Zero", "ReLUConvBN", "Zero", "Zero"]
    assert cells[0].ops[3][1].weight is not cells[1].ops[3][1].weight  # same design, separate weights
