"""Latency look-up tables for block-wise spaces, in the style of nn-Meter (Zhang et al., 2021).

A block-wise space (e.g. ``chain``) describes every network as a chain of blocks, each a
:class:`BlockSpecLike`, and can list every block any of its networks may contain. Profiling measures
each such block, plus a calibration sample of whole networks. A block timed on its own also pays the
runtime's fixed cost of one call (about 2 us in eager PyTorch, 8 us in ONNX Runtime: comparable to a
small block), which a network pays once, not once per block; so that cost, measured as the latency of
an identity module on the block's input shape, is subtracted from every block. A network's latency is
predicted as ``a * sum + b`` from the sum of its blocks' net latencies, with ``a`` and ``b`` fitted to
the calibration networks by least squares (``b`` is chiefly the network's own call cost, ``a`` the
systematic difference between blocks timed alone and inside a network). Predictions take
microseconds, so a search can use latency as an objective or constraint without measuring anything.

:func:`check` measures held-out networks (never the calibration ones) and reports how often the
prediction is within 10% and 5% of the measurement.
"""

from __future__ import annotations

import datetime
import functools
import json
import math
import platform
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from nasflow.errors import ConfigError, EvaluationError
from nasflow.objectives.latency import (
    DEFAULT_REPEATS,
    DEFAULT_WARMUP,
    ShapeTask,
    check_device,
    check_input_shape,
    check_runtime,
    device_name,
    int_at_least,
    measure_latency,
)
from nasflow.space.architecture import Architecture

TABLE_FORMAT = "nasflow-latency-table"
TABLE_VERSION = 1
DEFAULT_CALIBRATION = 30
#: measurement passes of a table: each block and network keeps its lowest pass estimate
DEFAULT_PASSES = 2
#: calibration networks this many scaled MADs off the line are left out of the fit
OUTLIER_MADS = 3.0
#: settings a table records and a user of the table must match
SETTING_KEYS = ("device", "runtime", "batch_size", "threads")

#: ``measure(module, input_shape) -> milliseconds``; the default wraps :func:`measure_latency`
Measurer = Callable[[nn.Module, tuple[int, ...]], float]
Progress = Callable[[str, int, int], None]


@runtime_checkable
class BlockSpecLike(Protocol):
    """What a block description must offer (``nasflow.ops.mobile.BlockSpec`` is one)."""

    def input_shape(self) -> tuple[int, int, int]: ...

    def to_dict(self) -> dict[str, Any]: ...

    def __hash__(self) -> int: ...


@runtime_checkable
class BlockwiseSpace(Protocol):
    """A search space whose networks are chains of blocks (``ChainSpace`` is one).

    ``build(arch, task)`` must be exactly the chain of ``build_block(spec)`` for
    ``spec in blocks(arch, task.input_shape, task.num_classes)``.
    """

    name: str

    def blocks(self, arch: Architecture, input_shape: Sequence[int], num_classes: int) -> list[Any]: ...

    def block_choices(self, input_shape: Sequence[int], num_classes: int) -> list[Any]: ...

    def build_block(self, spec: Any) -> nn.Module: ...

    def build(self, arch: Architecture, task: Any = None) -> Any: ...

    def sample(self, rng: np.random.Generator) -> Architecture: ...

    def canonical(self, arch: Architecture) -> str: ...

    def format(self, arch: Architecture) -> str: ...

    def parse(self, text: str) -> Architecture: ...

    def describe(self) -> dict[str, Any]: ...


def require_blockwise(space: Any) -> BlockwiseSpace:
    """``space`` if it has ``blocks``, ``block_choices`` and ``build_block``; else a ConfigError."""
    missing = [m for m in ("blocks", "block_choices", "build_block") if not callable(getattr(space, m, None))]
    if missing:
        name = getattr(space, "name", type(space).__name__)
        raise ConfigError(
            f"space {name!r} is not block-wise (it has no {', '.join(m + '()' for m in missing)}); latency "
            "look-up tables need a space such as 'chain'"
        )
    return space  # type: ignore[no-any-return]


def block_key(spec: Any) -> str:
    """The table key of a block: its ``to_dict()`` as sorted, compact JSON."""
    return json.dumps(spec.to_dict(), sort_keys=True, separators=(",", ":"))


def shape_key(shape: Sequence[int]) -> str:
    """The table key of an input shape, e.g. ``"[16,8,8]"``."""
    return json.dumps([int(d) for d in shape], separators=(",", ":"))


def machine_info(device: str, runtime: str) -> dict[str, str]:
    """Where a table was profiled: device model, library versions, platform."""
    info = {
        "device_name": device_name(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    if runtime == "onnxruntime":
        import onnxruntime  # type: ignore[import-untyped]

        info["onnxruntime"] = onnxruntime.__version__
    return info


def fit_overhead(
    block_sums: Sequence[float] | np.ndarray, measured: Sequence[float] | np.ndarray
) -> tuple[float, float]:
    """Least-squares ``(a, b)`` of ``measured ≈ a * block_sum + b``.

    With fewer than two distinct block sums the slope cannot be fitted: ``a = 1`` and ``b`` is the
    mean difference.
    """
    x = np.asarray(block_sums, dtype=float)
    y = np.asarray(measured, dtype=float)
    if x.shape != y.shape or x.size == 0:
        raise ConfigError("the overhead fit needs as many measurements as block sums, at least one")
    if np.unique(x).size < 2:
        return 1.0, float(np.mean(y - x))
    design = np.column_stack([x, np.ones_like(x)])
    (a, b), *_ = np.linalg.lstsq(design, y, rcond=None)
    return float(a), float(b)


def robust_fit_overhead(
    block_sums: Sequence[float], measured: Sequence[float], threshold: float = OUTLIER_MADS
) -> tuple[float, float, list[bool]]:
    """:func:`fit_overhead`, refitted once without outliers; returns ``(a, b, inlier flags)``.

    A calibration network is an outlier when its relative residual is more than ``threshold``
    scaled median absolute deviations (and more than 5%) away from the median residual: typically
    a measurement that a burst of background load inflated. Least squares lets one such point tilt
    the whole line.
    """
    x = np.asarray(block_sums, dtype=float)
    y = np.asarray(measured, dtype=float)
    a, b = fit_overhead(x, y)
    residuals = (y - (a * x + b)) / y
    centre = np.median(residuals)
    scale = 1.4826 * np.median(np.abs(residuals - centre))
    inliers = np.abs(residuals - centre) <= max(threshold * scale, 0.05)
    if inliers.all() or np.unique(x[inliers]).size < 2:
        return a, b, [True] * len(x)
    a, b = fit_overhead(x[inliers], y[inliers])
    return a, b, inliers.tolist()


# -- the table -------------------------------------------------------------------------------
@dataclass
class LatencyTable:
    """Measured block latencies of one space on one device, plus the fitted network overhead.

    Attributes:
        space: the space's ``describe()`` (name and options), to rebuild it.
        input_shape, num_classes: what the networks were built for.
        settings: ``device``, ``runtime``, ``batch_size``, ``threads``, ``warmup``, ``repeats``.
        machine: ``device_name`` (CPU model or GPU name), library versions, platform.
        blocks: block key (:func:`block_key`) -> measured milliseconds (the lowest pass median).
        specs: block key -> the block's ``to_dict()``.
        overheads: input shape key (:func:`shape_key`) -> milliseconds of one call of an identity
            module on that input, subtracted from the blocks that receive it.
        a, b: the fit ``network ≈ a * sum(net block latencies) + b`` (milliseconds).
        calibration: the calibration networks: ``arch`` (formatted), ``canonical``, ``measured_ms``,
            ``block_sum_ms`` (net), and ``outlier`` when the fit left it out.
        created: ISO time of profiling.
    """

    space: dict[str, Any]
    input_shape: tuple[int, ...]
    num_classes: int
    settings: dict[str, Any]
    machine: dict[str, str]
    blocks: dict[str, float]
    specs: dict[str, dict[str, Any]] = field(default_factory=dict)
    overheads: dict[str, float] = field(default_factory=dict)
    a: float = 1.0
    b: float = 0.0
    calibration: list[dict[str, Any]] = field(default_factory=list)
    created: str = ""

    @property
    def device(self) -> str:
        return str(self.settings["device"])

    @property
    def runtime(self) -> str:
        return str(self.settings["runtime"])

    def require(self, **expected: Any) -> None:
        """Raise ConfigError unless the table's settings equal ``expected`` (e.g. ``device="cpu"``)."""
        wrong = {k: v for k, v in expected.items() if v is not None and self.settings.get(k) != v}
        if wrong:
            mine = ", ".join(f"{k}={self.settings.get(k)!r}" for k in wrong)
            wanted = ", ".join(f"{k}={v!r}" for k, v in wrong.items())
            raise ConfigError(
                f"the latency table was profiled with {mine}, but {wanted} is needed; "
                "profile a table for these settings (nasflow latency profile)"
            )

    def require_this_machine(self) -> None:
        """Raise ConfigError unless this machine has the table's device (same CPU model / GPU)."""
        check_device(self.device)  # e.g. a CUDA table where CUDA is missing
        here = device_name(self.device)
        there = self.machine.get("device_name")
        if there != here:
            raise ConfigError(
                f"the latency table was profiled on {self.device} {there!r}, but this machine's "
                f"{self.device} is {here!r}; profile a new table here (nasflow latency profile)"
            )

    def to_dict(self) -> dict[str, Any]:
        """The JSON document :meth:`save` writes."""
        return {
            "format": TABLE_FORMAT,
            "version": TABLE_VERSION,
            "created": self.created,
            "space": self.space,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "settings": self.settings,
            "machine": self.machine,
            "fit": {"a": self.a, "b": self.b},
            "call_overhead": [
                {"input_shape": json.loads(k), "latency_ms": v} for k, v in self.overheads.items()
            ],
            "calibration": self.calibration,
            "blocks": [
                {"spec": self.specs.get(k, json.loads(k)), "latency_ms": v} for k, v in self.blocks.items()
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "the latency table") -> LatencyTable:
        """Inverse of :meth:`to_dict`; raises ConfigError naming what is wrong."""
        if not isinstance(data, Mapping) or data.get("format") != TABLE_FORMAT:
            raise ConfigError(f"{source} is not a nasflow latency table (no format {TABLE_FORMAT!r})")
        if data.get("version") != TABLE_VERSION:
            raise ConfigError(
                f"{source} has version {data.get('version')!r}; this nasflow reads {TABLE_VERSION}"
            )
        try:
            settings = dict(data["settings"])
            for key in SETTING_KEYS:
                settings[key]  # noqa: B018 - presence check
            specs = {block_key(_DictSpec(entry["spec"])): dict(entry["spec"]) for entry in data["blocks"]}
            latencies = [float(entry["latency_ms"]) for entry in data["blocks"]]
            table = cls(
                space=dict(data["space"]),
                input_shape=check_input_shape(data["input_shape"]),
                num_classes=int(data["num_classes"]),
                settings=settings,
                machine={str(k): str(v) for k, v in dict(data["machine"]).items()},
                blocks=dict(zip(specs, latencies)),
                specs=specs,
                overheads={
                    shape_key(entry["input_shape"]): float(entry["latency_ms"])
                    for entry in data.get("call_overhead", [])
                },
                a=float(data["fit"]["a"]),
                b=float(data["fit"]["b"]),
                calibration=[dict(row) for row in data.get("calibration", [])],
                created=str(data.get("created", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{source} is corrupt: {type(exc).__name__} {exc}") from None
        if "name" not in table.space:
            raise ConfigError(f"{source} is corrupt: its space has no name")
        values = [*table.blocks.values(), *table.overheads.values()]
        bad = [v for v in values if not (math.isfinite(v) and v >= 0)]
        if bad or not (math.isfinite(table.a) and math.isfinite(table.b)):
            raise ConfigError(f"{source} is corrupt: a latency or fit coefficient is not a finite number")
        return table

    def save(self, path: str | Path) -> Path:
        """Write the table as JSON to ``path`` (folders are created)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        document = self.to_dict()
        blocks = document.pop("blocks")
        # one block per line: a default table has hundreds, and this keeps the file readable
        head = json.dumps(document, indent=1)
        rows = ",\n".join("  " + json.dumps(entry, sort_keys=True) for entry in blocks)
        path.write_text(f'{head[:-2]},\n "blocks": [\n{rows}\n ]\n}}\n', encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        """Read a table written by :meth:`save`; ConfigError for a missing, unreadable or corrupt file."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(
                f"latency table {path} does not exist; create it with nasflow latency profile"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read latency table {path}: {exc}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"latency table {path} is not valid JSON: {exc}") from None
        return cls.from_dict(data, source=f"latency table {path}")


@dataclass(frozen=True)
class _DictSpec:
    """A block spec read back from JSON: enough to compute its key."""

    data: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        if not isinstance(self.data, Mapping):
            raise TypeError(f"a block spec must be an object, got {self.data!r}")
        return dict(self.data)


# -- prediction ------------------------------------------------------------------------------
class LatencyPredictor:
    """Predicts a network's latency from a :class:`LatencyTable`: ``a * sum(block latencies) + b``.

    Args:
        table: a table, or the path of one.
        space: the block-wise space; by default rebuilt from the table's record of it.
    """

    def __init__(self, table: LatencyTable | str | Path, space: Any = None) -> None:
        self.table = table if isinstance(table, LatencyTable) else LatencyTable.load(table)
        if space is None:
            from nasflow import catalog

            options = dict(self.table.space)
            space = catalog.get_space(options.pop("name"), **options)
        self.space = require_blockwise(space)

    @property
    def settings(self) -> dict[str, Any]:
        """The measurement settings the table was profiled with (device, runtime, batch, threads)."""
        return dict(self.table.settings)

    def block_sum(self, arch: Architecture) -> float:
        """Sum of the net latencies (measured minus call overhead) of ``arch``'s blocks (ms)."""
        specs = self.space.blocks(arch, self.table.input_shape, self.table.num_classes)
        total = 0.0
        for spec in specs:
            key = block_key(spec)
            if key not in self.table.blocks:
                raise ConfigError(
                    f"block {key} of {self.space.format(arch)} is not in the latency table; the table was "
                    "profiled for another space configuration or input shape - profile it again"
                )
            total += self.table.blocks[key] - self.table.overheads.get(shape_key(spec.input_shape()), 0.0)
        return total

    def predict(self, arch: Architecture) -> float:
        """Predicted latency of ``arch`` in milliseconds."""
        return self.table.a * self.block_sum(arch) + self.table.b

    def predict_many(self, archs: Iterable[Architecture]) -> list[float]:
        """:meth:`predict` for each architecture."""
        return [self.predict(arch) for arch in archs]

    def describe(self) -> dict[str, Any]:
        """JSON-able summary: space, settings, fit and number of blocks."""
        return {
            "space": self.table.space,
            "input_shape": list(self.table.input_shape),
            "num_classes": self.table.num_classes,
            "settings": self.table.settings,
            "device_name": self.table.machine.get("device_name"),
            "a": self.table.a,
            "b": self.table.b,
            "blocks": len(self.table.blocks),
        }


# -- profiling -------------------------------------------------------------------------------
def default_measurer(
    *, device: str, runtime: str, batch_size: int, threads: int, warmup: int, repeats: int
) -> Measurer:
    """``measure(module, input_shape)``: the median of :func:`measure_latency` with these settings."""

    def measure(module: nn.Module, input_shape: tuple[int, ...]) -> float:
        return measure_latency(
            module,
            input_shape,
            batch_size=batch_size,
            runtime=runtime,
            device=device,
            threads=threads,
            warmup=warmup,
            repeats=repeats,
            # a table measures every block in several passes far apart and keeps the lowest, which
            # already steps around bursts of other work; a long window per block would cost minutes
            min_time_ms=0.0,
        ).estimate_ms

    return measure


def _no_progress(phase: str, done: int, total: int) -> None:
    """The progress callback that reports nothing."""


def _seeded(build: Callable[[], Any], seed: int) -> Any:
    # weights do not change a latency, but fixed weights keep every measurement reproducible
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _build_network(space: BlockwiseSpace, arch: Architecture, task: ShapeTask) -> nn.Module:
    model = _seeded(lambda: space.build(arch, task), 0)
    if not isinstance(model, nn.Module):
        raise EvaluationError(f"space {space.name!r} built {type(model).__name__}, not a torch.nn.Module")
    return model


def sample_distinct(
    space: BlockwiseSpace, n: int, rng: np.random.Generator, exclude: Iterable[str] = ()
) -> list[Architecture]:
    """Up to ``n`` random architectures with distinct canonical keys, none of them in ``exclude``."""
    seen = set(exclude)
    archs: list[Architecture] = []
    for _ in range(max(100, 50 * n)):
        if len(archs) == n:
            break
        arch = space.sample(rng)
        key = space.canonical(arch)
        if key not in seen:
            seen.add(key)
            archs.append(arch)
    return archs


def profile_blocks(
    space: Any,
    input_shape: Sequence[int],
    num_classes: int,
    *,
    device: str = "cpu",
    runtime: str = "eager",
    batch_size: int = 1,
    threads: int = 1,
    calibration: int = DEFAULT_CALIBRATION,
    seed: int = 0,
    warmup: int = DEFAULT_WARMUP,
    repeats: int = DEFAULT_REPEATS,
    passes: int = DEFAULT_PASSES,
    measure: Measurer | None = None,
    progress: Progress | None = None,
) -> LatencyTable:
    """Measure every block of ``space.block_choices`` and calibration networks; fit the overhead.

    Args:
        space: a block-wise space (see :class:`BlockwiseSpace`).
        input_shape, num_classes: the input (``(C, H, W)``) and classes the networks are built for.
        device, runtime, batch_size, threads, warmup, repeats: measurement settings
            (see :func:`~nasflow.objectives.latency.measure_latency`).
        calibration: random networks (distinct, drawn with ``seed``) measured end to end to fit
            ``a`` and ``b``; 0 keeps ``a = 1, b = 0`` (a plain sum of blocks).
        seed: seed of the calibration sample.
        passes: every block and calibration network is measured this many times, in separate
            passes over all of them, and keeps its lowest estimate (each the fastest repeat of a
            measurement, ``LatencyResult.estimate_ms``): background load only ever adds
            time, and a burst of it rarely hits the same block in two passes a minute apart.
        measure: replaces the measurement (``measure(module, input_shape) -> ms``), e.g. in tests.
        progress: called as ``progress(phase, done, total)`` with phase ``"blocks"`` or ``"calibration"``.

    The calibration networks are fitted with :func:`robust_fit_overhead`; those it leaves out are
    marked ``"outlier": true`` in ``table.calibration``.
    """
    space = require_blockwise(space)
    check_runtime(runtime)
    check_device(device)
    shape = check_input_shape(input_shape)
    num_classes = int_at_least("num_classes", num_classes, 1)
    batch_size = int_at_least("batch_size", batch_size, 1)
    threads = int_at_least("threads", threads, 1)
    calibration = int_at_least("calibration", calibration, 0)
    seed = int_at_least("seed", seed, 0)
    warmup = int_at_least("warmup", warmup, 0)
    repeats = int_at_least("repeats", repeats, 1)
    passes = int_at_least("passes", passes, 1)
    settings: dict[str, Any] = {
        "device": device,
        "runtime": runtime,
        "batch_size": batch_size,
        "threads": threads,
        "warmup": warmup,
        "repeats": repeats,
        "passes": passes,
    }
    if measure is None:
        measure = default_measurer(
            device=device,
            runtime=runtime,
            batch_size=batch_size,
            threads=threads,
            warmup=warmup,
            repeats=repeats,
        )
    report: Progress = progress or _no_progress

    choices = list(dict.fromkeys(space.block_choices(shape, num_classes)))
    if not choices:
        raise ConfigError(f"space {space.name!r} lists no block choices for input {list(shape)}")
    archs = sample_distinct(space, calibration, np.random.default_rng(seed))
    task = ShapeTask(shape, num_classes)
    blocks: dict[str, float] = {}
    specs = {block_key(spec): spec.to_dict() for spec in choices}
    overheads: dict[str, float] = {}
    by_shape: dict[str, int] = {}
    for index, spec in enumerate(choices):
        by_shape.setdefault(shape_key(spec.input_shape()), index)
    first_of_shape = set(by_shape.values())
    measured = [math.inf] * len(archs)
    total, done = passes * len(choices), 0
    for step in range(1, total + 1):
        spec = choices[(step - 1) % len(choices)]
        module = _seeded(functools.partial(space.build_block, spec), 0)
        key = block_key(spec)
        shape_in = tuple(spec.input_shape())
        blocks[key] = min(blocks.get(key, math.inf), float(measure(module, shape_in)))
        if (step - 1) % len(choices) in first_of_shape:  # once per input shape and pass
            overhead = float(measure(nn.Identity(), shape_in))
            overheads[shape_key(shape_in)] = min(overheads.get(shape_key(shape_in), math.inf), overhead)
        report("blocks", step, total)
        # The calibration networks are spread evenly among the blocks, so that blocks and networks
        # are measured under the same conditions: a drift of the machine's background load between
        # two separate phases would otherwise bias a and b.
        while done < passes * len(archs) and (done + 0.5) * total / (passes * len(archs)) <= step:
            j = done % len(archs)
            network = _build_network(space, archs[j], task)
            measured[j] = min(measured[j], float(measure(network, shape)))
            done += 1
            report("calibration", done, passes * len(archs))

    table = LatencyTable(
        space=space.describe(),
        input_shape=shape,
        num_classes=num_classes,
        settings=settings,
        machine=machine_info(device, runtime),
        blocks=blocks,
        specs=specs,
        overheads=overheads,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )
    predictor = LatencyPredictor(table, space)
    for arch, latency in zip(archs, measured):
        table.calibration.append(
            {
                "arch": space.format(arch),
                "canonical": space.canonical(arch),
                "measured_ms": latency,
                "block_sum_ms": predictor.block_sum(arch),
            }
        )
    if table.calibration:
        table.a, table.b, inliers = robust_fit_overhead(
            [row["block_sum_ms"] for row in table.calibration],
            [row["measured_ms"] for row in table.calibration],
        )
        for row, inlier in zip(table.calibration, inliers):
            if not inlier:
                row["outlier"] = True
    return table


# -- held-out check --------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckResult:
    """How well a predictor matches fresh measurements of held-out architectures.

    ``within_10``/``within_5`` are the shares (0..1) of predictions within ±10% / ±5% of the measured
    latency; ``rmse_ms`` the root-mean-square error; ``spearman`` the rank correlation;
    ``max_error`` the largest relative error; ``rows`` one dict per architecture.
    """

    samples: int
    within_10: float
    within_5: float
    rmse_ms: float
    spearman: float
    max_error: float
    mean_error: float
    rows: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict with the rows."""
        return {
            "samples": self.samples,
            "within_10": self.within_10,
            "within_5": self.within_5,
            "rmse_ms": self.rmse_ms,
            "spearman": self.spearman,
            "max_error": self.max_error,
            "mean_error": self.mean_error,
            "rows": list(self.rows),
        }


def compare(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    """Agreement statistics of predictions and measurements (see :class:`CheckResult`)."""
    p = np.asarray(predicted, dtype=float)
    m = np.asarray(measured, dtype=float)
    if p.shape != m.shape or p.size == 0:
        raise ConfigError("compare needs as many predictions as measurements, at least one")
    if np.any(m <= 0):
        raise ConfigError("measured latencies must be positive")
    relative = np.abs(p - m) / m
    # a tiny tolerance, so that an error of exactly 10% (in decimal terms) counts as within 10%
    spearman = math.nan
    if p.size > 1 and np.ptp(p) > 0 and np.ptp(m) > 0:
        from scipy.stats import spearmanr  # type: ignore[import-untyped]

        spearman = float(spearmanr(p, m).statistic)
    return {
        "within_10": float(np.mean(relative <= 0.10 + 1e-12)),
        "within_5": float(np.mean(relative <= 0.05 + 1e-12)),
        "rmse_ms": float(np.sqrt(np.mean((p - m) ** 2))),
        "spearman": spearman,
        "max_error": float(relative.max()),
        "mean_error": float(relative.mean()),
    }


def check(
    predictor: LatencyPredictor,
    n: int = 50,
    seed: int = 0,
    *,
    passes: int | None = None,
    measure: Measurer | None = None,
    progress: Progress | None = None,
) -> CheckResult:
    """Measure ``n`` random held-out architectures and compare them with the predictions.

    Held out: the calibration networks of the table (by canonical key) are never drawn. The
    measurements follow the table's protocol: its settings (device, runtime, batch size, threads,
    warm-up, repeats) and its number of passes (each network keeps its lowest estimate).

    Args:
        predictor: the predictor to check.
        n: architectures to measure (distinct).
        seed: seed of the sample.
        passes: passes over the sample (default: the table's).
        measure: replaces the measurement (``measure(module, input_shape) -> ms``), e.g. in tests.
        progress: called as ``progress("check", done, total)``.
    """
    n = int_at_least("n", n, 1)
    seed = int_at_least("seed", seed, 0)
    table, space = predictor.table, predictor.space
    settings = table.settings
    passes = int_at_least("passes", passes if passes is not None else settings.get("passes", 1), 1)
    if measure is None:
        measure = default_measurer(
            device=str(settings["device"]),
            runtime=str(settings["runtime"]),
            batch_size=int(settings["batch_size"]),
            threads=int(settings["threads"]),
            warmup=int(settings.get("warmup", DEFAULT_WARMUP)),
            repeats=int(settings.get("repeats", DEFAULT_REPEATS)),
        )
    report: Progress = progress or _no_progress
    calibrated = [str(row.get("canonical", "")) for row in table.calibration]
    archs = sample_distinct(space, n, np.random.default_rng(seed), exclude=calibrated)
    if not archs:
        raise ConfigError("every architecture of the space was used for calibration; nothing is held out")
    task = ShapeTask(table.input_shape, table.num_classes)
    measured = [math.inf] * len(archs)
    for done in range(1, passes * len(archs) + 1):
        j = (done - 1) % len(archs)
        measured[j] = min(
            measured[j], float(measure(_build_network(space, archs[j], task), table.input_shape))
        )
        report("check", done, passes * len(archs))
    rows: list[dict[str, Any]] = []
    for arch, latency in zip(archs, measured):
        predicted = predictor.predict(arch)
        rows.append(
            {
                "arch": space.format(arch),
                "predicted_ms": predicted,
                "measured_ms": latency,
                "error": (predicted - latency) / latency if latency > 0 else math.inf,
            }
        )
    stats = compare([r["predicted_ms"] for r in rows], [r["measured_ms"] for r in rows])
    return CheckResult(samples=len(rows), rows=tuple(rows), **stats)
