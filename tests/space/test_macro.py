"""The macro chain-CNN space: decisions, validity, canonical keys, text form and built networks."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

import nasflow as nf
from nasflow.space.macro import MacroNetwork, MacroSlot, MacroSpace
from nasflow.testing.spaces import check_space

SMALL = "conv3x3-16|none/conv5x5-32+skip|none|none/sepconv3x3-64|none|none"


def test_passes_space_contract_with_default_and_custom_settings() -> None:
    check_space(MacroSpace())
    check_space(MacroSpace(max_layers=3, widths=(4, 8), ops=("none", "conv3x3"), reduce_at=(0, 3)))
    check_space(MacroSpace(max_layers=1, widths=[8], ops=["conv3x3"]))  # only the skip flag varies


def test_registered_and_rebuilt_from_its_description() -> None:
    space = nf.get_space("macro", max_layers=4, widths=[8, 16], stem_channels=8)
    assert isinstance(space, MacroSpace)
    assert space.describe() == {
        "name": "macro",
        "max_layers": 4,
        "widths": [8, 16],
        "ops": ["none", "conv3x3", "conv5x5", "sepconv3x3"],
        "reduce_at": [1, 2],
        "stem_channels": 8,
    }
    again = nf.get_space(**space.describe())
    assert again.describe() == space.describe()


def test_decisions_and_size() -> None:
    space = MacroSpace()
    decisions = space.decisions()
    assert len(decisions) == 3 * 8
    assert decisions["op_0"] == ("none", "conv3x3", "conv5x5", "sepconv3x3")
    assert decisions["width_7"] == (8, 16, 32, 64)
    assert decisions["skip_3"] == (False, True)
    assert space.size() == (4 * 4 * 2) ** 8
    assert space.reduce_at == (2, 5)


def test_needs_one_layer() -> None:
    space = MacroSpace(max_layers=2, widths=[8], reduce_at=[1])
    valid = list(space.enumerate())
    # 2 slots x (4 ops x 2 skips) = 64 combinations, minus the 2 x 2 with both slots empty
    assert len(valid) == 64 - 4
    with pytest.raises(nf.InvalidArchitectureError, match="rejected"):
        space.parse("none/none")


def test_canonical_ignores_empty_slots_and_their_positions_within_a_stage() -> None:
    space = MacroSpace()
    a = space.parse(SMALL)
    same = space.parse("none-64+skip|conv3x3-16/none|none|conv5x5-32+skip/none|none|sepconv3x3-64")
    other_stage = space.parse("conv3x3-16|conv5x5-32+skip/none|none|none/sepconv3x3-64|none|none")
    assert space.canonical(a) == space.canonical(same) == "conv3x3-16/conv5x5-32+skip/sepconv3x3-64"
    assert space.canonical(other_stage) == "conv3x3-16|conv5x5-32+skip//sepconv3x3-64"
    assert sum(p.numel() for p in space.build(a).parameters()) == sum(
        p.numel() for p in space.build(same).parameters()
    )


def test_format_round_trips_and_shows_non_default_empty_slots() -> None:
    space = MacroSpace()
    arch = space.parse(SMALL)
    assert space.format(arch) == SMALL
    assert arch["op_0"] == "conv3x3" and arch["width_0"] == 16 and arch["skip_0"] is False
    assert arch["op_2"] == "conv5x5" and arch["skip_2"] is True
    assert arch["op_1"] == "none" and arch["width_1"] == 8
    odd = arch.replace(width_1=32, skip_1=True)
    assert space.format(odd).startswith("conv3x3-16|none-32+skip/")
    assert space.parse(space.format(odd)) == odd
    assert space.parse(" conv3x3-16 | none / conv5x5-32+skip|none|none/sepconv3x3-64|none|none") == arch
    assert space.parse(arch.to_json()) == arch


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("conv3x3-16|none|none", "found 1 stage"),
        ("conv3x3-16/none|none|none/none|none|none", "stage 0 has 1 slot"),
        ("conv7x7-16|none/none|none|none/none|none|none", "operations are"),
        ("conv3x3|none/none|none|none/none|none|none", "needs a width"),
        ("conv3x3-12|none/none|none|none/none|none|none", "width 12 is not one of"),
    ],
)
def test_parse_errors_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(nf.InvalidArchitectureError, match=message):
        MacroSpace().parse(text)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_layers": 0}, "max_layers must be an integer >= 1"),
        ({"widths": []}, "widths must be a non-empty list"),
        ({"ops": ["conv7x7"]}, r"ops \['conv7x7'\] are unknown"),
        ({"ops": ["none"]}, "at least one operation besides 'none'"),
        ({"reduce_at": [9]}, "reduce_at entries must be in 0..8"),
    ],
)
def test_bad_settings_are_config_errors(options: dict, message: str) -> None:
    with pytest.raises(nf.ConfigError, match=message):
        MacroSpace(**options)


def test_mutate_always_changes_the_network_and_normalises_empty_slots() -> None:
    space = MacroSpace()
    rng = np.random.default_rng(3)
    for _ in range(30):
        arch = space.sample(rng)
        child = space.mutate(arch, rng)
        assert space.canonical(child) != space.canonical(arch)
        for slot in range(space.max_layers):
            if child[f"op_{slot}"] == "none":
                assert (child[f"width_{slot}"], child[f"skip_{slot}"]) == (8, False)


def test_layers_report_input_widths() -> None:
    space = MacroSpace()
    layers = space.layers(space.parse(SMALL))
    assert [(la.slot, la.op, la.in_width, la.width, la.skip, la.projects) for la in layers] == [
        (0, "conv3x3", 16, 16, False, False),
        (2, "conv5x5", 16, 32, True, True),
        (5, "sepconv3x3", 32, 64, False, False),
    ]


def test_built_network_structure_and_parameter_count() -> None:
    space = MacroSpace()
    net = space.build_network(space.parse(SMALL), in_channels=1, num_classes=10)
    assert isinstance(net, MacroNetwork) and len(net.slots) == 8
    assert isinstance(net.slots[0], MacroSlot) and isinstance(net.slots[1], torch.nn.Identity)
    assert net.slots[0].shortcut is None
    assert isinstance(net.slots[2].shortcut, torch.nn.Conv2d)  # 16 -> 32 needs a projection
    # stem 1*16*9 + BN 32; conv3x3 16*16*9 + 32; conv5x5 16*32*25 + 64 + projection 16*32;
    # sepconv 32*9 + 32*64 + 128; head 64*10 + 10
    expected = (144 + 32) + (2304 + 32) + (12800 + 64 + 512) + (288 + 2048 + 128) + 650
    assert sum(p.numel() for p in net.parameters()) == expected
    out = net(torch.zeros(2, 1, 8, 8))
    assert out.shape == (2, 10)


def test_identity_shortcut_when_widths_agree_and_any_input_size_builds() -> None:
    space = MacroSpace(max_layers=3, reduce_at=[0, 1, 2, 3], stem_channels=8)
    arch = space.parse("/conv3x3-8+skip/conv3x3-8/sepconv3x3-16+skip/")
    net = space.build_network(arch, in_channels=3, num_classes=4).eval()
    assert isinstance(net.slots[0].shortcut, torch.nn.Identity)
    # four pools take 5x5 down to 1x1 (ceil mode) and 1x1 stays 1x1
    assert net(torch.zeros(1, 3, 5, 5)).shape == (1, 4)
    assert net(torch.zeros(1, 3, 1, 1)).shape == (1, 4)


def test_build_uses_task_shape_and_state_dict_loads_into_a_fresh_build() -> None:
    task = SimpleNamespace(input_shape=(1, 8, 8), num_classes=10)  # what build reads of a Task
    space = MacroSpace()
    arch = space.parse(SMALL)
    net = space.build(arch, task)
    assert net.stem[0].in_channels == 1 and net.head.out_features == 10
    fresh = space.build(arch, task)
    fresh.load_state_dict(net.state_dict(), strict=True)
    net.eval(), fresh.eval()
    x = torch.rand(3, 1, 8, 8)
    assert torch.equal(net(x), fresh(x))
