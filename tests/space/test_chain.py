"""The MobileNet-like chain space and its blocks: decisions, text form, block specs and built networks."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

import nasflow as nf
from nasflow.objectives.metrics import count_macs, count_parameters
from nasflow.ops.mobile import BlockSpec, ChainNetwork, MBConv, build_block, make_divisible
from nasflow.space.chain import ChainSpace
from nasflow.testing.spaces import check_space

SMALLEST = "w0.5-relu|k3e3s0|k3e3s0|k3e3s0|k3e3s0"
LARGEST = "w1-hswish|" + "|".join(["k7e6s1,k7e6s1,k7e6s1"] * 4)
EXAMPLE = "w0.75-hswish|k3e4s0,k5e6s1|k7e3s0|k3e6s1,k3e3s0,k5e4s1|k5e3s0"


def tiny_space(**options: object) -> ChainSpace:
    settings: dict = dict(
        stage_channels=(8, 16),
        stage_strides=(1, 2),
        max_depth=2,
        kernels=(3, 5),
        expansions=(1,),
        widths=(1.0,),
        acts=("relu",),
        se=(0,),
        stem_channels=8,
        head_channels=16,
    )
    settings.update(options)
    return ChainSpace(**settings)


def params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_passes_space_contract_with_default_and_custom_settings() -> None:
    check_space(ChainSpace())
    check_space(tiny_space())
    check_space(tiny_space(kernels=(3,)))  # only the depths vary


def test_registered_and_rebuilt_from_its_description() -> None:
    space = nf.get_space("chain", stage_channels=[8, 16], stage_strides=[2, 2], widths=[1, 0.5])
    assert isinstance(space, ChainSpace) and isinstance(space, nf.ChainSpace)
    description = space.describe()
    assert description["widths"] == [0.5, 1.0] and description["stage_strides"] == [2, 2]
    assert nf.get_space(**json.loads(json.dumps(description))).describe() == description


def test_decisions_and_sizes() -> None:
    space = ChainSpace()
    decisions = space.decisions()
    assert len(decisions) == 2 + 4 * (1 + 3 * 3)
    assert decisions["width"] == (0.5, 0.75, 1.0)
    assert decisions["act"] == ("relu", "hswish")
    assert decisions["depth_3"] == (1, 2, 3)
    assert decisions["s2_b1_kernel"] == (3, 5, 7)
    assert decisions["s0_b2_expand"] == (3, 4, 6)
    assert decisions["s1_b0_se"] == (0, 1)
    per_block = 3 * 3 * 2
    assert space.size() == 3 * 2 * 3**4 * per_block ** (4 * 3)
    # a stage of depth d has per_block**d settings of its active blocks
    assert space.distinct_size() == 3 * 2 * (18 + 18**2 + 18**3) ** 4
    assert space.channels(0.5) == (8, 8, 12, 16, 24)
    assert space.channels(0.75) == (12, 12, 20, 24, 36)  # 24 * 0.75 = 18 rounds up to 20
    assert space.channels(1.0) == (16, 16, 24, 32, 48)


def test_make_divisible_rounds_to_nearest_but_keeps_ninety_percent() -> None:
    assert make_divisible(18, 4) == 20
    assert make_divisible(12, 8) == 16
    assert make_divisible(10, 8) == 16  # 8 would drop 20% of the channels
    assert make_divisible(3, 8) == 8
    assert make_divisible(24, 8) == 24


def test_format_round_trips_and_omits_inactive_blocks() -> None:
    space = ChainSpace()
    arch = space.parse(EXAMPLE)
    assert space.format(arch) == EXAMPLE
    assert arch["width"] == 0.75 and arch["act"] == "hswish"
    assert [arch[f"depth_{s}"] for s in range(4)] == [2, 1, 3, 1]
    assert (arch["s0_b1_kernel"], arch["s0_b1_expand"], arch["s0_b1_se"]) == (5, 6, 1)
    # inactive blocks hold the first choices and are not printed
    assert (arch["s1_b1_kernel"], arch["s1_b2_expand"], arch["s3_b2_se"]) == (3, 3, 0)
    odd = arch.replace(s1_b2_kernel=7)  # same network, non-default inactive block
    assert (
        space.format(odd) == "w0.75-hswish|k3e4s0,k5e6s1|k7e3s0,~k3e3s0,~k7e3s0|k3e6s1,k3e3s0,k5e4s1|k5e3s0"
    )
    assert space.parse(space.format(odd)) == odd
    assert space.parse(" w0.75-hswish | k3e4s0 , k5e6s1|k7e3s0|k3e6s1,k3e3s0,k5e4s1|k5e3s0") == arch
    assert space.parse(arch.to_json()) == arch


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("w0.75-hswish|k3e4s0|k3e4s0|k3e4s0", "found 3 stage"),
        ("w0.6-relu|k3e4s0|k3e4s0|k3e4s0|k3e4s0", r"width in \['0.5', '0.75', '1'\]"),
        ("w1-gelu|k3e4s0|k3e4s0|k3e4s0|k3e4s0", "activation 'gelu' is not one of"),
        ("w1-relu|k3e4|k3e4s0|k3e4s0|k3e4s0", "cannot parse block 'k3e4'"),
        ("w1-relu|~k3e4s0,k3e3s0|k3e4s0|k3e4s0|k3e4s0", "inactive '~' blocks must come last"),
        ("w1-relu||k3e4s0|k3e4s0|k3e4s0", "found 0 active of 0"),
        ("w1-relu|k3e4s0,k3e4s0,k3e4s0,k3e4s0|k3e4s0|k3e4s0|k3e4s0", "found 4 active of 4"),
        ("w1-relu|k9e4s0|k3e4s0|k3e4s0|k3e4s0", r"'s0_b0_kernel' cannot be 9; allowed: \[3, 5, 7\]"),
    ],
)
def test_parse_errors_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(nf.InvalidArchitectureError, match=message):
        ChainSpace().parse(text)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"stage_channels": []}, "stage_channels must be a non-empty list"),
        ({"stage_strides": (1, 2)}, "one entry per stage"),
        ({"stage_strides": (1, 3, 1, 1)}, r"stage_strides entries must be in \[1, 2\]"),
        ({"kernels": (3, 4)}, "kernels must be odd"),
        ({"min_depth": 4}, "min_depth .4. must not exceed max_depth .3."),
        ({"max_depth": 0}, "max_depth must be an integer >= 1"),
        ({"widths": (0.5, 0)}, "widths must be positive numbers"),
        ({"acts": ("relu", "gelu")}, r"acts \['gelu'\] are unknown; allowed: \['relu', 'hswish'\]"),
        ({"se": (0, 2)}, r"se entries must be in \[0, 1\]"),
        ({"expansions": (3, 3)}, "lists a value twice"),
        ({"stem_stride": 3}, "stem_stride must be 1 or 2"),
    ],
)
def test_bad_settings_are_config_errors(options: dict, message: str) -> None:
    with pytest.raises(nf.ConfigError, match=message):
        ChainSpace(**options)


def test_canonical_ignores_inactive_blocks() -> None:
    space = ChainSpace()
    arch = space.parse(SMALLEST)
    other_inactive = arch.replace(s0_b1_kernel=7, s0_b2_expand=6, s3_b1_se=1)
    assert (
        space.canonical(arch)
        == space.canonical(other_inactive)
        == "8.8.12.16.24-relu|k3e3s0|k3e3s0|k3e3s0|k3e3s0"
    )
    assert params(space.build(arch)) == params(space.build(other_inactive))
    assert space.canonical(arch.replace(s0_b0_kernel=5)) != space.canonical(arch)
    assert space.canonical(arch.replace(depth_0=2)) != space.canonical(arch)


def test_canonical_merges_widths_that_round_to_the_same_channels() -> None:
    space = ChainSpace(widths=(0.5, 0.55), divisor=8)  # 16 * 0.5 and 16 * 0.55 both round to 8 ...
    assert space.channels(0.5) == space.channels(0.55) == (8, 8, 16, 16, 24)  # ... and so does the rest
    arch = space.parse("w0.5-relu|k3e3s0|k3e3s0|k3e3s0|k3e3s0")
    assert space.canonical(arch) == space.canonical(arch.replace(width=0.55))
    assert all(n["width"] == 0.5 for n in space.neighbors(arch))
    assert space.distinct_size() == 1 * 2 * (18 + 18**2 + 18**3) ** 4  # one channel set, two acts


def test_neighbors_and_mutate_always_change_the_network() -> None:
    space = ChainSpace()
    arch = space.parse(SMALLEST)
    neighbours = space.neighbors(arch)
    # width 2 + act 1 + four depths x 2 + four active blocks x (2 kernels + 2 expansions + 1 SE)
    assert len(neighbours) == 2 + 1 + 4 * 2 + 4 * 5
    keys = {space.canonical(n) for n in neighbours}
    assert len(keys) == len(neighbours) and space.canonical(arch) not in keys
    rng = np.random.default_rng(0)
    for _ in range(30):
        parent = space.sample(rng)
        child = space.mutate(parent, rng)
        assert space.canonical(child) != space.canonical(parent)
        assert child == space.normalize(child)


def test_onehot_encoding_zeroes_inactive_blocks() -> None:
    space = ChainSpace()
    arch = space.parse(EXAMPLE)
    vector = space.encode(arch, "onehot")
    assert vector.shape == (3 + 2 + 4 * (3 + 3 * (3 + 3 + 2)),)
    active_blocks = 2 + 1 + 3 + 1
    assert vector.sum() == 2 + 4 + 3 * active_blocks
    assert np.array_equal(vector, space.encode(arch.replace(s1_b1_kernel=7), "onehot"))
    index = space.encode(arch.replace(s1_b1_kernel=7), "index")
    assert np.array_equal(index, space.encode(arch, "index"))


def test_build_gives_logits_for_any_input_shape_and_class_count() -> None:
    space = ChainSpace()
    rng = np.random.default_rng(1)
    for shape, classes in (((1, 8, 8), 10), ((3, 32, 32), 7), ((2, 5, 9), 3)):
        arch = space.sample(rng)
        net = space.build(arch, SimpleNamespace(input_shape=shape, num_classes=classes))
        assert isinstance(net, ChainNetwork)
        assert net(torch.randn(2, *shape)).shape == (2, classes)
    default = space.build(space.parse(SMALLEST))
    assert default.specs[0].input_shape() == (3, 32, 32) and default.specs[-1].num_classes == 10


def test_strides_are_dropped_on_a_one_pixel_map() -> None:
    space = ChainSpace(stem_stride=2, stage_strides=(2, 2, 2, 2))
    arch = space.parse(SMALLEST)
    strides = [s.stride for s in space.blocks(arch, (1, 8, 8), 10)]
    # stem 8 -> 4, stage 0 4 -> 2, stage 1 2 -> 1; stage 2, stage 3 and the head get 1x1 maps
    assert strides == [2, 2, 2, 1, 1, 1]
    assert [s.in_hw for s in space.blocks(arch, (1, 8, 8), 10)][-3:] == [(1, 1)] * 3
    assert all(s.stride == 1 for s in space.blocks(arch, (1, 1, 1), 10))
    net = space.build_network(arch, (1, 1, 1), 4).eval()
    assert net(torch.randn(2, 1, 1, 1)).shape == (2, 4)


def shapes_seen_by_blocks(net: ChainNetwork, x: torch.Tensor) -> list[tuple[tuple[int, ...], ...]]:
    """(input shape, output shape) of every block during one forward pass, recorded by hooks."""
    seen: list[tuple[tuple[int, ...], ...]] = []

    def record(_module: nn.Module, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        seen.append((tuple(inputs[0].shape[1:]), tuple(output.shape[1:])))

    handles = [block.register_forward_hook(record) for block in net.blocks]
    net(x)
    for handle in handles:
        handle.remove()
    return seen


def test_blocks_receive_the_shapes_their_specs_state() -> None:
    space = ChainSpace()
    rng = np.random.default_rng(2)
    for shape in ((1, 8, 8), (3, 32, 32)):
        arch = space.sample(rng)
        specs = space.blocks(arch, shape, 7)
        net = space.build_network(arch, shape, 7)
        assert len(net.blocks) == len(specs) == 2 + sum(space.depths(arch))
        seen = shapes_seen_by_blocks(net, torch.randn(2, *shape))
        assert seen == [(s.input_shape(), s.output_shape()) for s in specs]
        assert [s.kind for s in specs] == ["stem"] + ["mbconv"] * (len(specs) - 2) + ["head"]
        assert all(a.output_shape()[0] == b.in_channels for a, b in zip(specs, specs[1:]))


def test_network_is_exactly_the_sum_of_its_blocks() -> None:
    space = ChainSpace()
    rng = np.random.default_rng(3)
    for _ in range(3):
        arch = space.sample(rng)
        specs = space.blocks(arch, (1, 8, 8), 10)
        net = space.build_network(arch, (1, 8, 8), 10)
        assert params(net) == sum(params(space.build_block(s)) for s in specs)
        assert [type(m) for m in net.blocks] == [type(build_block(s)) for s in specs]
    # MACs add up too (checked once: the counter is slow)
    assert count_macs(net, (1, 8, 8)) == sum(count_macs(build_block(s), s.input_shape()) for s in specs)


def test_mbconv_parameters_follow_the_formula() -> None:
    def expected(cin: int, cout: int, k: int, e: int, se: bool) -> int:
        inner = cin * e
        total = (
            (cin * inner + 2 * inner if e != 1 else 0) + inner * k * k + 2 * inner + inner * cout + 2 * cout
        )
        if se:
            squeezed = inner // 4
            total += inner * squeezed + squeezed + squeezed * inner + inner
        return total

    def spec(e: int, se: bool) -> BlockSpec:
        return BlockSpec("mbconv", 8, 16, 1, 3, e, se, "relu", (8, 8))

    # expand 1: depthwise 8*9 + BN 16, projection 8*16 + BN 32
    assert params(build_block(spec(1, False))) == expected(8, 16, 3, 1, False) == 248
    # expand 6 (inner 48): 8*48 + 96, 48*9 + 96, 48*16 + 32
    assert params(build_block(spec(6, False))) == expected(8, 16, 3, 6, False) == 1808
    # SE through 12 channels: two biased 1x1 convolutions, 48*12 + 12 + 12*48 + 48 = 1212 more
    assert params(build_block(spec(6, True))) - params(build_block(spec(6, False))) == 1212
    assert params(build_block(spec(6, True))) == expected(8, 16, 3, 6, True)
    stem = BlockSpec("stem", 3, 16, 1, 3, 1, False, "hswish", (8, 8))
    head = BlockSpec("head", 48, 128, 1, 0, 1, False, "relu", (2, 2), num_classes=10)
    assert params(build_block(stem)) == 3 * 16 * 9 + 32
    assert params(build_block(head)) == 48 * 128 + 256 + 128 * 10 + 10


def test_residual_only_with_stride_one_and_equal_channels() -> None:
    cases = {(16, 16, 1): True, (16, 24, 1): False, (16, 16, 2): False}
    for (cin, cout, stride), residual in cases.items():
        spec = BlockSpec("mbconv", cin, cout, stride, 3, 4, False, "relu", (8, 8))
        block = build_block(spec).eval()
        assert isinstance(block, MBConv) and block.residual == spec.residual == residual
        nn.init.zeros_(block.project[1].weight)  # the projection now outputs exactly zero
        x = torch.randn(2, cin, 8, 8)
        y = block(x)
        if residual:
            assert torch.equal(y, x)
        else:
            assert torch.count_nonzero(y) == 0
    space = ChainSpace()
    specs = space.blocks(space.parse(EXAMPLE), (1, 8, 8), 10)
    assert [s.residual for s in specs] == [False, True, True, False, False, True, True, False, False]


def test_activation_choice_reaches_every_block() -> None:
    space = ChainSpace()
    arch = space.parse(SMALLEST)
    relu_net, hswish_net = space.build(arch), space.build(arch.replace(act="hswish"))
    assert not any(isinstance(m, nn.Hardswish) for m in relu_net.modules())
    # stem 1 + four blocks x 2 (expand, depthwise) + head 1; SE gates keep their own ReLU
    assert sum(isinstance(m, nn.Hardswish) for m in hswish_net.modules()) == 10
    assert not any(isinstance(m, nn.ReLU) for m in hswish_net.modules())


def test_block_choices_cover_every_architecture() -> None:
    space = ChainSpace()
    choices = space.block_choices((1, 8, 8), 10)
    assert len(choices) == len(set(choices)) == 732
    assert len(space.block_choices((3, 32, 32), 7)) == 732
    members = set(choices)
    rng = np.random.default_rng(4)
    for _ in range(40):
        assert set(space.blocks(space.sample(rng), (1, 8, 8), 10)) <= members
    assert set(space.blocks(space.parse(LARGEST), (1, 8, 8), 10)) <= members
    # stem 1 + stage 0 (8->8 at every position: 2 kernels) + stage 1 (8->16 s2 and 16->16: 2 x 2) + head 1
    assert len(tiny_space().block_choices((1, 8, 8), 10)) == 1 + 2 + 4 + 1


def test_block_spec_round_trips_through_json_and_rejects_bad_fields() -> None:
    spec = BlockSpec("mbconv", 16, 24, 2, 5, 6, True, "hswish", (8, 8))
    data = json.loads(json.dumps(spec.to_dict()))
    assert data["in_hw"] == [8, 8] and data["num_classes"] == 0
    assert BlockSpec.from_dict(data) == spec and hash(BlockSpec.from_dict(data)) == hash(spec)
    assert spec.key() == "mbconv-16-24-s2-k5-e6-se1-hswish-8x8"
    assert spec.input_shape() == (16, 8, 8) and spec.output_shape() == (24, 4, 4)
    with pytest.raises(ValueError, match=r"missing \['stride'\], unknown \['strides'\]"):
        BlockSpec.from_dict({**{k: v for k, v in data.items() if k != "stride"}, "strides": 2})
    with pytest.raises(ValueError, match="kernel must be a positive odd integer"):
        BlockSpec("mbconv", 16, 24, 2, 4, 6, True, "hswish", (8, 8))
    with pytest.raises(ValueError, match="act must be one of"):
        BlockSpec("stem", 3, 16, 1, 3, 1, False, "gelu", (8, 8))
    with pytest.raises(ValueError, match="num_classes >= 1"):
        BlockSpec("head", 16, 32, 1, 0, 1, False, "relu", (2, 2))


def test_bad_build_inputs_are_config_errors() -> None:
    space = ChainSpace()
    arch = space.parse(SMALLEST)
    with pytest.raises(nf.ConfigError, match="input_shape must be"):
        space.blocks(arch, (8, 8), 10)
    with pytest.raises(nf.ConfigError, match="num_classes must be an integer >= 1"):
        space.build_network(arch, (1, 8, 8), 0)


def test_cheapest_and_largest_networks_differ_a_lot_in_cost() -> None:
    space = ChainSpace()
    small = space.build_network(space.parse(SMALLEST), (1, 8, 8), 10)
    large = space.build_network(space.parse(LARGEST), (1, 8, 8), 10)
    small_macs, large_macs = count_macs(small, (1, 8, 8)), count_macs(large, (1, 8, 8))
    assert small_macs == 96_848 and large_macs == 3_081_920
    assert large_macs / small_macs > 30
    assert count_parameters(large) / count_parameters(small) > 30
