"""Latency look-up tables: profiling, the overhead fit, prediction, held-out checks, table files.

A tiny block-wise space defined here stands in for ``chain``; fake measurers make the fit and the
check statistics exactly computable, and one test profiles with real measurements.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from torch import nn

from nasflow.errors import ConfigError
from nasflow.objectives.latency import DEFAULT_REPEATS
from nasflow.objectives.latency_predictor import (
    BlockwiseSpace,
    LatencyPredictor,
    LatencyTable,
    block_key,
    check,
    compare,
    fit_overhead,
    profile_blocks,
    require_blockwise,
    robust_fit_overhead,
)
from nasflow.space.architecture import Architecture
from nasflow.space.base import DecisionSpace

INPUT = (1, 4, 4)
CLASSES = 3


@dataclass(frozen=True)
class TinySpec:
    """A block of the tiny space: a ``kernel`` x ``kernel`` conv + ReLU, or a pooling + linear head."""

    kind: str
    in_channels: int
    out_channels: int
    kernel: int
    in_hw: tuple[int, int]
    num_classes: int = 0

    def input_shape(self) -> tuple[int, int, int]:
        return (self.in_channels, *self.in_hw)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "in_hw": list(self.in_hw)}


class TinyNet(nn.Sequential):
    """The chain of blocks, remembering its architecture (so fake measurers can tell networks apart)."""

    def __init__(self, blocks: list[nn.Module], arch: Architecture) -> None:
        super().__init__(*blocks)
        self.arch = arch


class TinyBlockSpace(DecisionSpace):
    """12 distinct networks: width 2/4, one or two convs (kernel 1 or 3), a head."""

    name = "tiny-blocks"

    def __init__(self) -> None:
        super().__init__({"width": [2, 4], "depth": [1, 2], "k0": [1, 3], "k1": [1, 3]})

    def canonical(self, arch: Architecture) -> str:
        active = dict(arch) if arch["depth"] == 2 else {**arch, "k1": None}
        return json.dumps(active, sort_keys=True)

    def blocks(self, arch: Architecture, input_shape: Any, num_classes: int) -> list[TinySpec]:
        channels, height, width = input_shape
        hw = (height, width)
        specs = [TinySpec("conv", channels, int(arch["width"]), int(arch["k0"]), hw)]  # type: ignore[call-overload]
        if arch["depth"] == 2:
            specs.append(TinySpec("conv", int(arch["width"]), int(arch["width"]), int(arch["k1"]), hw))  # type: ignore[call-overload]
        specs.append(TinySpec("head", int(arch["width"]), int(arch["width"]), 0, hw, num_classes))  # type: ignore[call-overload]
        return specs

    def block_choices(self, input_shape: Any, num_classes: int) -> list[TinySpec]:
        every = [s for arch in self.enumerate() for s in self.blocks(arch, input_shape, num_classes)]
        return list(dict.fromkeys(every))

    def build_block(self, spec: TinySpec) -> nn.Module:
        if spec.kind == "conv":
            return nn.Sequential(
                nn.Conv2d(spec.in_channels, spec.out_channels, spec.kernel, padding=spec.kernel // 2),
                nn.ReLU(),
            )
        return nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(spec.in_channels, spec.num_classes)
        )

    def build(self, arch: Architecture, task: Any = None) -> TinyNet:
        specs = self.blocks(arch, task.input_shape, task.num_classes)
        return TinyNet([self.build_block(s) for s in specs], arch)


def params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


#: the made-up cost of one call, which an identity module (no parameters) measures
CALL = 0.05


def fake_block_ms(module: nn.Module) -> float:
    """A made-up latency: 0.01 ms per parameter plus the call cost."""
    return 0.01 * params(module) + CALL


A, B = 1.3, 0.25


def fake_measurer(seen: list[Architecture] | None = None):  # type: ignore[no-untyped-def]
    """Blocks by :func:`fake_block_ms`; networks exactly ``A * sum(blocks net of the call cost) + B``."""

    def measure(module: nn.Module, input_shape: tuple[int, ...]) -> float:
        if isinstance(module, TinyNet):
            if seen is not None:
                seen.append(module.arch)
            return A * sum(fake_block_ms(block) - CALL for block in module) + B
        return fake_block_ms(module)

    return measure


@pytest.fixture
def space() -> TinyBlockSpace:
    return TinyBlockSpace()


@pytest.fixture
def table(space: TinyBlockSpace) -> LatencyTable:
    return profile_blocks(space, INPUT, CLASSES, calibration=5, seed=0, measure=fake_measurer())


# -- profiling and the fit -------------------------------------------------------------------
def test_fit_overhead_recovers_a_line_and_handles_one_point() -> None:
    a, b = fit_overhead([1.0, 2.0, 4.0], [2.5, 4.5, 8.5])
    assert a == pytest.approx(2.0) and b == pytest.approx(0.5)
    # a single distinct sum: no slope to fit, so a = 1 and b is the mean difference
    assert fit_overhead([2.0, 2.0], [2.5, 3.5]) == (1.0, pytest.approx(1.0))
    with pytest.raises(ConfigError):
        fit_overhead([], [])


def test_profile_measures_every_block_and_recovers_a_and_b(
    space: TinyBlockSpace, table: LatencyTable
) -> None:
    choices = space.block_choices(INPUT, CLASSES)
    # width 2/4 x (first conv k1/k3 from 1 channel, second conv k1/k3) + one head per width
    assert len(choices) == 2 * (2 + 2 + 1)
    assert set(table.blocks) == {block_key(s) for s in choices}
    conv = TinySpec("conv", 1, 4, 3, (4, 4))
    assert table.blocks[block_key(conv)] == pytest.approx(0.01 * (9 * 4 + 4) + CALL)
    assert table.a == pytest.approx(A, rel=1e-9) and table.b == pytest.approx(B, abs=1e-9)
    # the call cost, measured once per distinct block input: the image, and 2 or 4 channels
    assert table.overheads == {"[1,4,4]": CALL, "[2,4,4]": CALL, "[4,4,4]": CALL}
    assert len(table.calibration) == 5
    assert len({row["canonical"] for row in table.calibration}) == 5
    assert table.settings == {
        "device": "cpu",
        "runtime": "eager",
        "batch_size": 1,
        "threads": 1,
        "warmup": 10,
        "repeats": DEFAULT_REPEATS,
        "passes": 2,
    }
    assert table.machine["device_name"] and table.machine["torch"]


def test_predictor_is_a_times_block_sum_plus_b(space: TinyBlockSpace, table: LatencyTable) -> None:
    predictor = LatencyPredictor(table, space)
    arch = Architecture({"width": 4, "depth": 2, "k0": 3, "k1": 1})
    blocks = [space.build_block(s) for s in space.blocks(arch, INPUT, CLASSES)]
    expected_sum = sum(fake_block_ms(b) - CALL for b in blocks)
    assert predictor.block_sum(arch) == pytest.approx(expected_sum)
    assert predictor.predict(arch) == pytest.approx(A * expected_sum + B)
    assert predictor.predict_many([arch, arch]) == [predictor.predict(arch)] * 2
    json.dumps(predictor.describe())


def test_profile_reports_progress_and_spreads_calibration_among_blocks(space: TinyBlockSpace) -> None:
    events: list[tuple[str, int, int]] = []
    profile_blocks(
        space,
        INPUT,
        CLASSES,
        calibration=4,
        passes=1,
        measure=fake_measurer(),
        progress=lambda *e: events.append(e),
    )
    order = "".join(phase[0] for phase, _, _ in events)
    # 4 networks among 10 blocks: the j-th after block ceil((j + 0.5) * 10 / 4), i.e. 2, 4, 7 and 9
    assert order == "bbcbbcbbbcbbcb"
    assert [done for phase, done, total in events if phase == "calibration"] == [1, 2, 3, 4]


def test_each_block_and_network_keeps_its_lowest_pass(space: TinyBlockSpace) -> None:
    exact = fake_measurer()
    calls: dict[str, int] = {}

    def measure(module: nn.Module, input_shape: tuple[int, ...]) -> float:
        # every second measurement of the same module is inflated by 50%, as by a burst of load
        name = repr(module.arch) if isinstance(module, TinyNet) else repr(module)
        if isinstance(module, nn.Identity):
            name += repr(input_shape)
        calls[name] = calls.get(name, 0) + 1
        return exact(module, input_shape) * (1.5 if calls[name] % 2 == 0 else 1.0)

    for passes in (1, 2, 3):
        calls.clear()
        table = profile_blocks(space, INPUT, CLASSES, calibration=3, passes=passes, measure=measure)
        assert max(calls.values()) == passes
        assert table.a == pytest.approx(A) and table.b == pytest.approx(B, abs=1e-9)
        conv = TinySpec("conv", 1, 2, 1, (4, 4))
        assert table.blocks[block_key(conv)] == pytest.approx(0.01 * 4 + CALL)
        assert list(table.overheads.values()) == [pytest.approx(CALL)] * 3
        calls.clear()
        result = check(LatencyPredictor(table, space), n=4, measure=measure, passes=2)
        assert max(calls.values()) == 2 and result.within_5 == 1.0


def test_robust_fit_leaves_out_an_inflated_network(space: TinyBlockSpace) -> None:
    x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    y = [2 * v + 1 for v in x]
    y[2] *= 1.6  # one measurement hit by background load
    a, b = fit_overhead(x, y)
    assert abs(a - 2) > 0.1  # least squares alone is tilted
    a, b, inliers = robust_fit_overhead(x, y)
    assert (a, b) == (pytest.approx(2.0), pytest.approx(1.0))
    assert inliers == [True, True, False, True, True, True]
    # small residuals are never outliers, however tight the others are
    assert robust_fit_overhead(x, [2 * v + 1 + 0.01 * (-1) ** i for i, v in enumerate(x)])[2] == [True] * 6

    exact = fake_measurer()
    seen: list[Architecture] = []

    def measure(module: nn.Module, input_shape: tuple[int, ...]) -> float:
        if isinstance(module, TinyNet):
            seen.append(module.arch)
            return exact(module, input_shape) * (2.0 if len(seen) == 3 else 1.0)
        return exact(module, input_shape)

    table = profile_blocks(space, INPUT, CLASSES, calibration=6, passes=1, measure=measure)
    assert table.a == pytest.approx(A) and table.b == pytest.approx(B, abs=1e-9)
    assert [bool(row.get("outlier")) for row in table.calibration] == [
        False,
        False,
        True,
        False,
        False,
        False,
    ]


def test_zero_calibration_keeps_a_plain_sum(space: TinyBlockSpace) -> None:
    table = profile_blocks(space, INPUT, CLASSES, calibration=0, measure=fake_measurer())
    assert (table.a, table.b, table.calibration) == (1.0, 0.0, [])


def test_profile_with_real_measurements(space: TinyBlockSpace) -> None:
    table = profile_blocks(space, INPUT, CLASSES, calibration=3, warmup=1, repeats=3)
    assert len(table.blocks) == 10 and all(v > 0 for v in table.blocks.values())
    assert math.isfinite(table.a) and math.isfinite(table.b)
    assert all(row["measured_ms"] > 0 for row in table.calibration)


def test_non_blockwise_spaces_are_refused() -> None:
    with pytest.raises(ConfigError, match="not block-wise"):
        require_blockwise(DecisionSpace({"a": [1, 2]}))
    with pytest.raises(ConfigError, match="not block-wise"):
        profile_blocks(DecisionSpace({"a": [1, 2]}), INPUT, CLASSES)
    assert isinstance(TinyBlockSpace(), BlockwiseSpace)


def test_a_block_missing_from_the_table_is_a_clear_error(space: TinyBlockSpace, table: LatencyTable) -> None:
    predictor = LatencyPredictor(table, space)
    del table.blocks[block_key(TinySpec("head", 2, 2, 0, (4, 4), CLASSES))]
    with pytest.raises(ConfigError, match="not in the latency table"):
        predictor.predict(Architecture({"width": 2, "depth": 1, "k0": 1, "k1": 1}))


# -- held-out check --------------------------------------------------------------------------
def test_compare_on_fixed_numbers() -> None:
    stats = compare([100.0, 100.0, 100.0, 100.0], [100.0, 95.0, 108.0, 125.0])
    # relative errors 0, 5/95 = 5.3%, 8/108 = 7.4%, 25/125 = 20%
    assert stats["within_10"] == 0.75
    assert stats["within_5"] == 0.25
    assert stats["rmse_ms"] == pytest.approx(math.sqrt((0 + 25 + 64 + 625) / 4))
    assert stats["max_error"] == pytest.approx(0.2)
    assert stats["mean_error"] == pytest.approx((0 + 5 / 95 + 8 / 108 + 0.2) / 4)
    assert math.isnan(stats["spearman"])  # constant predictions have no ranking
    ranked = compare([1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0])
    assert ranked["spearman"] == pytest.approx(0.8)
    assert compare([1.1], [1.0])["within_10"] == 1.0  # exactly 10% counts as within
    with pytest.raises(ConfigError):
        compare([1.0], [0.0])


def test_check_measures_only_held_out_architectures(space: TinyBlockSpace, table: LatencyTable) -> None:
    seen: list[Architecture] = []
    result = check(LatencyPredictor(table, space), n=7, seed=0, measure=fake_measurer(seen))
    calibrated = {row["canonical"] for row in table.calibration}
    assert len(seen) == 2 * 7 and result.samples == 7  # the table's two passes
    assert not calibrated & {space.canonical(a) for a in seen}
    assert len({space.canonical(a) for a in seen}) == 7
    # the fake networks are exactly a * sum + b, so every prediction is exact
    assert result.within_10 == result.within_5 == 1.0
    assert result.rmse_ms == pytest.approx(0.0, abs=1e-9) and result.max_error == pytest.approx(0.0, abs=1e-9)
    assert result.spearman == pytest.approx(1.0)
    assert json.loads(json.dumps(result.to_dict()))["samples"] == 7


def test_check_shares_on_known_errors(space: TinyBlockSpace, table: LatencyTable) -> None:
    predictor = LatencyPredictor(table, space)
    exact = fake_measurer()

    # networks measured 3% slower when wide, 20% slower when narrow than the table predicts
    def measure(module: nn.Module, input_shape: tuple[int, ...]) -> float:
        factor = 1.03 if module.arch["width"] == 4 else 1.2  # type: ignore[union-attr]
        return exact(module, input_shape) * factor

    result = check(predictor, n=7, seed=3, measure=measure)
    wide = sum(1 for row in result.rows if '"width": 4' in space.canonical(space.parse(row["arch"])))
    assert result.within_5 == pytest.approx(wide / 7) and result.within_10 == pytest.approx(wide / 7)
    assert result.max_error == pytest.approx(1 - 1 / 1.2)
    for row in result.rows:
        assert row["error"] == pytest.approx((row["predicted_ms"] - row["measured_ms"]) / row["measured_ms"])


def test_check_with_nothing_held_out(space: TinyBlockSpace) -> None:
    table = profile_blocks(space, INPUT, CLASSES, calibration=12, measure=fake_measurer())
    assert len(table.calibration) == 12  # every distinct network of the space
    with pytest.raises(ConfigError, match="nothing is held out"):
        check(LatencyPredictor(table, space), n=3, measure=fake_measurer())


# -- table files -----------------------------------------------------------------------------
def test_table_save_load_round_trip(space: TinyBlockSpace, table: LatencyTable, tmp_path: Path) -> None:
    path = table.save(tmp_path / "sub" / "lut.json")
    loaded = LatencyTable.load(path)
    assert loaded.to_dict() == table.to_dict()
    arch = Architecture({"width": 2, "depth": 2, "k0": 3, "k1": 3})
    assert LatencyPredictor(loaded, space).predict(arch) == LatencyPredictor(table, space).predict(arch)


def test_corrupt_or_missing_tables_are_config_errors(table: LatencyTable, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        LatencyTable.load(tmp_path / "nope.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        LatencyTable.load(broken)
    broken.write_text(json.dumps({"hello": 1}))
    with pytest.raises(ConfigError, match="not a nasflow latency table"):
        LatencyTable.load(broken)
    data = table.to_dict()
    del data["fit"]
    broken.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="corrupt"):
        LatencyTable.load(broken)
    data = table.to_dict()
    data["blocks"][0]["latency_ms"] = -1.0
    broken.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="corrupt"):
        LatencyTable.load(broken)
    data = table.to_dict()
    data["version"] = 99
    broken.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="version"):
        LatencyTable.load(broken)


def test_tables_refuse_other_settings_and_other_machines(table: LatencyTable) -> None:
    table.require(device="cpu", runtime="eager", batch_size=1, threads=1)
    with pytest.raises(ConfigError, match="runtime='eager'.*runtime='onnxruntime'"):
        table.require(runtime="onnxruntime")
    table.require_this_machine()
    table.machine["device_name"] = "Imaginary CPU 9000"
    with pytest.raises(ConfigError, match="Imaginary CPU 9000"):
        table.require_this_machine()


def test_predictor_rebuilds_a_registered_space_from_the_table() -> None:
    chain = pytest.importorskip("nasflow.space.chain")
    space = chain.ChainSpace(
        stage_channels=(8,),
        stage_strides=(1,),
        max_depth=1,
        kernels=(3,),
        expansions=(3,),
        widths=(1.0,),
        acts=("relu",),
        se=(0,),
    )
    table = profile_blocks(
        space,
        (1, 8, 8),
        10,
        calibration=0,
        measure=lambda module, shape: 0.0 if isinstance(module, nn.Identity) else 1.0,
    )
    predictor = LatencyPredictor(table)  # no space given: rebuilt by name and options
    assert predictor.space.describe() == space.describe()
    arch = space.sample(np.random.default_rng(0))
    assert predictor.predict(arch) == pytest.approx(len(space.blocks(arch, (1, 8, 8), 10)))
