"""Function-preserving morphisms: the child computes what the parent computed, with hand-checked weights."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch import nn

import nasflow as nf
from nasflow.morphism import ops
from nasflow.space.macro import BN_EPS, MacroNetwork, MacroSpace

SPACE = MacroSpace()


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    # these networks are tiny: more threads only add contention on a busy machine
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def trained_like(space: MacroSpace, arch: nf.Architecture, seed: int) -> MacroNetwork:
    """A network with random weights and non-trivial batch-norm parameters and statistics."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = space.build_network(arch, in_channels=1, num_classes=10)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                size = module.num_features
                module.weight.copy_(0.5 + torch.rand(size, generator=generator))
                module.bias.copy_(0.2 * torch.randn(size, generator=generator))
                module.running_mean.copy_(0.2 * torch.randn(size, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(size, generator=generator))
    return net.eval()


def inputs(seed: int = 0, n: int = 6) -> torch.Tensor:
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def assert_same_function(parent: MacroNetwork, child: ops.Morphed, space: MacroSpace = SPACE) -> None:
    assert space.is_valid(child.arch)
    fresh = space.build_network(child.arch, 1, 10)
    assert [(k, v.shape) for k, v in fresh.state_dict().items()] == [
        (k, v.shape) for k, v in child.network.state_dict().items()
    ]
    fresh.load_state_dict(child.network.state_dict(), strict=True)
    x = inputs()
    parent.eval(), child.network.eval(), fresh.eval()
    with torch.no_grad():
        expected = parent(x)
        assert expected.abs().max() > 0.1  # a non-trivial function
        torch.testing.assert_close(child.network(x), expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(fresh(x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ops.MORPHISMS)
def test_every_morphism_preserves_the_function_on_random_parents(name: str) -> None:
    rng = np.random.default_rng(7)
    applied = 0
    for seed in range(12):
        arch = SPACE.sample(rng)
        if name not in ops.applicable(SPACE, arch):
            continue
        parent = trained_like(SPACE, arch, seed)
        child = ops.apply_morphism(name, SPACE, arch, parent, rng, noise=0.3)
        assert SPACE.canonical(child.arch) != SPACE.canonical(arch)
        assert_same_function(parent, child)
        applied += 1
    assert applied >= 6


def test_chains_of_random_morphisms_preserve_the_function() -> None:
    rng = np.random.default_rng(1)
    arch = SPACE.parse("conv3x3-16|none/sepconv3x3-16|none|none/conv3x3-32+skip|none|none")
    parent = trained_like(SPACE, arch, 0)
    current_arch, current = arch, parent
    for _ in range(6):
        morphed = ops.random_morphism(SPACE, current_arch, current, rng, noise=0.2)
        current_arch, current = morphed.arch, morphed.network
    assert_same_function(parent, ops.Morphed(current_arch, current, "chain"))


def test_deepen_writes_an_identity_layer() -> None:
    arch = SPACE.parse("conv3x3-16|none/conv3x3-32|none|none/none|none|none")
    parent = trained_like(SPACE, arch, 1)
    child = ops.deepen(SPACE, arch, parent, np.random.default_rng(0), slot=3, op="conv5x5")
    assert SPACE.format(child.arch) == "conv3x3-16|none/conv3x3-32|conv5x5-32|none/none|none|none"
    conv, bn = child.network.slots[3].op
    centre = conv.weight[:, :, 2, 2]
    assert torch.equal(centre, torch.eye(32))
    assert conv.weight.abs().sum() == 32  # nothing off the centre
    assert torch.allclose(bn.weight, torch.full((32,), math.sqrt(1 + BN_EPS)))
    assert torch.equal(bn.running_mean, torch.zeros(32)) and torch.equal(bn.running_var, torch.ones(32))
    assert_same_function(parent, child)


def test_deepen_with_a_separable_conv() -> None:
    arch = SPACE.parse("none|conv3x3-16/none|none|none/none|none|none")
    parent = trained_like(SPACE, arch, 2)
    child = ops.deepen(SPACE, arch, parent, np.random.default_rng(0), slot=0, op="sepconv3x3")
    depthwise, pointwise, _ = child.network.slots[0].op
    assert torch.equal(depthwise.weight[:, 0, 1, 1], torch.ones(16))
    assert torch.equal(pointwise.weight[:, :, 0, 0], torch.eye(16))
    assert_same_function(parent, child)


def test_widen_copies_units_and_splits_outgoing_weights() -> None:
    arch = SPACE.parse("conv3x3-16|none/none|none|none/none|none|none")
    parent = trained_like(SPACE, arch, 3)
    child = ops.widen(SPACE, arch, parent, np.random.default_rng(0), slot=0, width=32)
    assert child.arch["width_0"] == 32
    old_conv, new_conv = parent.slots[0].op[0].weight, child.network.slots[0].op[0].weight
    assert torch.equal(new_conv[:16], old_conv)
    old_head, new_head = parent.head.weight, child.network.head.weight
    sources = []
    for unit in range(16, 32):
        source = next(s for s in range(16) if torch.equal(new_conv[unit], old_conv[s]))
        sources.append(source)
        assert torch.equal(
            child.network.slots[0].op[1].running_var[unit], parent.slots[0].op[1].running_var[source]
        )
    # noise 0: each source's outgoing column is split equally among its copies (Net2WiderNet)
    for source in range(16):
        copies = 1 + sources.count(source)
        torch.testing.assert_close(new_head[:, source], old_head[:, source] / copies)
    torch.testing.assert_close(child.network.head.bias, parent.head.bias)
    assert_same_function(parent, child)


def test_widen_noise_keeps_the_function_but_breaks_symmetry_in_training() -> None:
    arch = SPACE.parse("conv3x3-16|none/none|none|none/none|none|none")
    x, y = inputs(1, 16), torch.arange(16) % 10
    spread = {}
    for noise in (0.0, 0.5):
        parent = trained_like(SPACE, arch, 4)
        child = ops.widen(SPACE, arch, parent, np.random.default_rng(5), slot=0, width=32, noise=noise)
        assert_same_function(parent, child)
        conv = child.network.slots[0].op[0].weight
        sources = [next(s for s in range(16) if torch.equal(conv[c], conv[s])) for c in range(16, 32)]
        before = conv.detach().clone()
        net = child.network.train()
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
        nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()
        after = conv.detach()
        step = (after - before)[:16].abs().max()
        assert step > 0
        spread[noise] = float((after[16:] - after[sources]).abs().max() / step)
    assert spread[0.0] == 0.0  # equal shares: the copies get equal gradients forever
    assert spread[0.5] > 0.01  # unequal shares give them different gradients


def test_widen_turns_an_identity_shortcut_into_a_copying_projection() -> None:
    arch = SPACE.parse("conv3x3-16|conv3x3-16+skip/none|none|none/none|none|none")
    parent = trained_like(SPACE, arch, 5)
    assert isinstance(parent.slots[1].shortcut, nn.Identity)
    # widening slot 1 changes its own shortcut; widening slot 0 changes the shortcut slot 1 reads
    for slot in (0, 1):
        child = ops.widen(SPACE, arch, parent, np.random.default_rng(slot), slot=slot, width=32, noise=0.2)
        projection = child.network.slots[1].shortcut
        assert isinstance(projection, nn.Conv2d)
        assert_same_function(parent, child)


def test_widen_never_turns_a_learned_projection_into_an_identity() -> None:
    arch = SPACE.parse("conv3x3-16|conv3x3-32+skip/none|none|none/none|none|none")
    parent = trained_like(SPACE, arch, 6)
    with pytest.raises(nf.SpaceError, match="cannot widen slot 0 .* to width 32"):
        ops.widen(SPACE, arch, parent, np.random.default_rng(0), slot=0, width=32)
    child = ops.widen(SPACE, arch, parent, np.random.default_rng(0), slot=0)
    assert child.arch["width_0"] == 64
    assert_same_function(parent, child)


def test_add_skip_zero_projection() -> None:
    arch = SPACE.parse("conv3x3-16|conv5x5-32/none|none|none/none|none|none")
    parent = trained_like(SPACE, arch, 7)
    child = ops.add_skip(SPACE, arch, parent, np.random.default_rng(0), slot=1)
    assert child.arch["skip_1"] is True
    assert torch.equal(child.network.slots[1].shortcut.weight, torch.zeros(32, 16, 1, 1))
    assert_same_function(parent, child)


def test_add_skip_residual_layer_is_exact_in_training_mode_too() -> None:
    arch = SPACE.parse("conv3x3-16|none/none|none|none/none|none|none")
    parent = trained_like(SPACE, arch, 8)
    child = ops.add_skip(SPACE, arch, parent, np.random.default_rng(0), slot=1)
    assert child.arch["skip_1"] is True and child.arch["width_1"] == 16
    bn = child.network.slots[1].op[-1]
    assert torch.equal(bn.weight, torch.zeros(16)) and torch.equal(bn.bias, torch.zeros(16))
    assert child.network.slots[1].op[0].weight.abs().sum() > 0  # a random branch, ready to learn
    assert_same_function(parent, child)
    parent.train(), child.network.train()
    with torch.no_grad():
        torch.testing.assert_close(child.network(inputs()), parent(inputs()), atol=1e-5, rtol=1e-5)


def test_widen_kernel_zero_pads() -> None:
    arch = SPACE.parse("conv3x3-16|none/none|none|none/none|none|none")
    parent = trained_like(SPACE, arch, 9)
    child = ops.widen_kernel(SPACE, arch, parent, np.random.default_rng(0))
    assert child.arch["op_0"] == "conv5x5"
    weight = child.network.slots[0].op[0].weight
    assert weight.shape == (16, 16, 5, 5)
    assert torch.equal(weight[:, :, 1:4, 1:4], parent.slots[0].op[0].weight)
    assert float(weight.detach().abs().sum()) == pytest.approx(
        float(parent.slots[0].op[0].weight.detach().abs().sum())
    )
    assert_same_function(parent, child)


def test_applicable_and_errors_when_nothing_fits() -> None:
    full = SPACE.parse(
        "|".join(["sepconv3x3-64+skip"] * 2)
        + "/"
        + "|".join(["conv5x5-64"] * 3)
        + "/"
        + "|".join(["conv5x5-64+skip"] * 3)
    )
    assert ops.applicable(SPACE, full) == []
    parent = trained_like(SPACE, full, 0)
    with pytest.raises(nf.SpaceError, match="none of the morphisms"):
        ops.random_morphism(SPACE, full, parent, np.random.default_rng(0))
    with pytest.raises(nf.SpaceError, match="no deepen"):
        ops.deepen(SPACE, full, parent, np.random.default_rng(0))
    with pytest.raises(nf.ConfigError, match="unknown morphism"):
        ops.apply_morphism("shrink", SPACE, full, parent, np.random.default_rng(0))
    small = SPACE.parse("conv3x3-16|none/none|none|none/none|none|none")
    assert ops.applicable(SPACE, small) == ["deepen", "widen", "add_skip", "widen_kernel"]
    with pytest.raises(nf.ConfigError, match="noise"):
        ops.widen(SPACE, small, trained_like(SPACE, small, 0), np.random.default_rng(0), noise=1.0)


def test_inherit_weights_copies_matching_tensors_only() -> None:
    parent_arch = SPACE.parse("conv3x3-16|none/conv3x3-32|none|none/none|none|none")
    child_arch = SPACE.parse("conv3x3-16|none/conv5x5-32|none|none/none|none|none")
    parent = trained_like(SPACE, parent_arch, 0)
    child = SPACE.build_network(child_arch, 1, 10)
    copied = ops.inherit_weights(parent, child)
    # a BN holds 5 tensors: stem conv + BN (6) + slot 0 conv + BN (6) + slot 2 BN (5; its 5x5 conv
    # does not fit the 3x3 one) + head weight and bias (2)
    assert copied == 19
    assert torch.equal(child.slots[0].op[0].weight, parent.slots[0].op[0].weight)
    assert not torch.equal(child.slots[2].op[0].weight[:, :, 1:4, 1:4], parent.slots[2].op[0].weight)
