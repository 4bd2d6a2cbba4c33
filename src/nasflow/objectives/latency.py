"""Measured inference latency of a network: PyTorch eager or ONNX Runtime, on CPU or CUDA.

A measurement runs ``warmup`` untimed calls, then ``repeats`` timed repeats; each repeat times an
inner loop of several calls when one call is shorter than ``min_repeat_ms``, so that the timer's
resolution and the loop's own overhead do not dominate. The reported latency is the median over the
repeats (robust to the occasional interruption by another process), with the spread of the repeats
recorded so that an unstable measurement can be recognised.
"""

from __future__ import annotations

import copy
import functools
import gc
import math
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import nn

from nasflow.errors import ConfigError, EvaluationError

RUNTIMES = ("eager", "onnxruntime")
DEFAULT_WARMUP = 10
DEFAULT_REPEATS = 100
#: a repeat lasts at least this long: calls shorter than that are timed in an inner loop
DEFAULT_MIN_REPEAT_MS = 1.0
#: the inner loop never runs more calls than this per repeat
MAX_INNER_LOOPS = 1000
#: timed repeats go on until they span at least this long: a burst of other work on a shared machine
#: lasts up to ~100 ms, and the fastest repeat must come from outside it (a shared VM's host also
#: stalls for seconds at a time, which no window of this length covers: docs/benchmarks.md "Latency")
DEFAULT_MIN_TIME_MS = 300.0
#: ONNX Runtime sessions timed per measurement (the fastest counts; see _onnx_calls)
ONNX_SESSIONS = 2
#: warm-up calls go on for at least this long (the first calls of a network build its kernels' caches)
MIN_WARMUP_MS = 50.0
#: the fixed seed of the example input, so that every measurement feeds the same numbers
_INPUT_SEED = 0

EXPORT_EXTRA_HINT = "install the ONNX extra: pip install 'nasflow[export]'"


@dataclass(frozen=True)
class ShapeTask:
    """A stand-in task that carries only what ``space.build(arch, task)`` needs: the input and classes.

    Used to build networks for cost measurement when no data is at hand.
    """

    input_shape: tuple[int, ...]
    num_classes: int
    name: str = "shape-only"


@dataclass(frozen=True)
class LatencyResult:
    """Statistics of one latency measurement, in milliseconds per forward pass of one batch.

    ``spread`` is ``(p90 - p10) / median``: the relative width of the middle 80% of the repeats.
    ``inner_loops`` is the number of calls each repeat timed (their mean is one repeat's value).

    :attr:`estimate_ms` (the fastest repeat, ``min_ms``) is the number nasflow compares and reports as
    ``latency_ms``. On a shared machine other work slows a measurement for whole bursts, which shifts
    the median of a run of repeats by up to 2x; it cannot make a repeat faster, so the minimum stays
    put (Chen & Revels 2016, "Robust benchmarking in noisy environments"). Measured here: fresh
    measurements of the same network varied by 2-7% in their minimum and 10-60% in their median.
    """

    median_ms: float
    mean_ms: float
    std_ms: float
    p10_ms: float
    p90_ms: float
    spread: float
    repeats: int
    runtime: str
    device: str
    batch_size: int
    threads: int
    inner_loops: int = 1
    warmup: int = 0
    min_ms: float = math.nan

    @property
    def estimate_ms(self) -> float:
        """The latency nasflow uses: the fastest repeat (the median when the minimum is unknown)."""
        return self.median_ms if math.isnan(self.min_ms) else self.min_ms

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (inverse: :meth:`from_dict`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LatencyResult:
        """Rebuild a result written by :meth:`to_dict`; raises ConfigError for missing or unknown keys."""
        names = {f.name for f in fields(cls)}
        required = {f.name for f in fields(cls) if f.name not in ("inner_loops", "warmup", "min_ms")}
        missing, unknown = sorted(required - set(data)), sorted(set(data) - names)
        if missing or unknown:
            raise ConfigError(f"not a latency result: missing keys {missing}, unknown keys {unknown}")
        return cls(**dict(data))


def latency_statistics(samples_ms: Sequence[float]) -> dict[str, float]:
    """Median, mean, standard deviation, 10th/90th percentiles, spread and minimum of per-repeat latencies.

    Percentiles interpolate linearly between order statistics (numpy's default); the standard
    deviation is the sample one (``ddof=1``), 0 for a single sample; ``spread`` is
    ``(p90 - p10) / median``.

    Raises:
        ConfigError: no samples, or a sample that is negative or not finite.
    """
    values = np.asarray(samples_ms, dtype=float)
    if values.ndim != 1 or values.size == 0:
        raise ConfigError("latency statistics need at least one sample")
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ConfigError(f"latency samples must be finite and non-negative, got {values.tolist()}")
    p10, median, p90 = (float(v) for v in np.percentile(values, [10, 50, 90]))
    return {
        "median_ms": median,
        "mean_ms": float(values.mean()),
        "std_ms": float(values.std(ddof=1)) if values.size > 1 else 0.0,
        "p10_ms": p10,
        "p90_ms": p90,
        "spread": (p90 - p10) / median if median > 0 else 0.0,
        "min_ms": float(values.min()),
    }


# -- argument checks -------------------------------------------------------------------------
def int_at_least(field: str, value: object, low: int) -> int:
    """``value`` as an int, or ConfigError naming ``field`` when it is not an integer >= ``low``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ConfigError(f"{field} must be an integer >= {low}, got {value!r}")
    return int(value)


def check_runtime(runtime: str) -> str:
    """Return ``runtime`` or raise ConfigError naming the allowed runtimes."""
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime must be one of {list(RUNTIMES)}, got {runtime!r}")
    return runtime


def check_device(device: str) -> torch.device:
    """The torch device for ``device``; raises ConfigError if it is malformed or CUDA is missing."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device {device!r} is not a torch device; use e.g. 'cpu' or 'cuda:0'") from None
    if parsed.type not in ("cpu", "cuda"):
        raise ConfigError(f"latency is measured on 'cpu' or 'cuda' devices, got {device!r}")
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available; use 'cpu'")
    return parsed


def check_input_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    """``input_shape`` (one example, without the batch dimension) as a tuple of positive ints."""
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = ()
    if not shape or not all(
        isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 1 for d in shape
    ):
        raise ConfigError(f"input_shape must be positive sizes such as (1, 8, 8), got {input_shape!r}")
    return tuple(int(d) for d in shape)


def cpu_name() -> str:
    """The processor's model name (Linux ``/proc/cpuinfo``; else ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "unknown"


def device_name(device: str) -> str:
    """What ``device`` is on this machine: the CPU model, or the CUDA GPU's name."""
    parsed = check_device(device)
    if parsed.type == "cuda":
        return str(torch.cuda.get_device_name(parsed))
    return cpu_name()


def example_input(input_shape: Sequence[int], batch_size: int) -> torch.Tensor:
    """A fixed standard-normal batch shaped ``(batch_size, *input_shape)`` (seeded, not global)."""
    generator = torch.Generator().manual_seed(_INPUT_SEED)
    return torch.randn((batch_size, *input_shape), generator=generator)


# -- the timing loop -------------------------------------------------------------------------
@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(threads)``, restoring the previous count after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextmanager
def _gc_paused() -> Iterator[None]:
    # a garbage collection inside a timed repeat would be charged to the network
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def time_calls(
    call: Callable[[], object],
    *,
    warmup: int,
    repeats: int,
    min_repeat_ms: float = DEFAULT_MIN_REPEAT_MS,
    synchronize: Callable[[], None] | None = None,
    min_time_ms: float = 0.0,
) -> tuple[list[float], int]:
    """Per-call milliseconds of the timed repeats of ``call``, and the calls per repeat.

    At least ``repeats`` repeats, and more until they span ``min_time_ms``. Warm-up runs ``warmup``
    calls, and more until it has lasted MIN_WARMUP_MS when ``warmup`` > 0. ``synchronize`` (e.g.
    ``torch.cuda.synchronize``) waits for asynchronous work before each clock reading. The
    inner-loop length comes from the median of the later warm-up calls' times.
    """
    sync = synchronize or (lambda: None)
    single: list[float] = []
    with _gc_paused():
        warm_until = time.perf_counter() + (MIN_WARMUP_MS / 1000.0 if warmup > 0 else 0.0)
        while len(single) < max(warmup, 1) or time.perf_counter() < warm_until:
            start = time.perf_counter()
            call()
            sync()
            single.append(time.perf_counter() - start)
        one_call_ms = float(np.median(single[len(single) // 2 :])) * 1000.0
        inner = 1
        if one_call_ms < min_repeat_ms:
            inner = min(MAX_INNER_LOOPS, max(1, math.ceil(min_repeat_ms / max(one_call_ms, 1e-6))))
        samples: list[float] = []
        until = time.perf_counter() + min_time_ms / 1000.0
        while len(samples) < repeats or time.perf_counter() < until:
            start = time.perf_counter()
            for _ in range(inner):
                call()
            sync()
            samples.append((time.perf_counter() - start) * 1000.0 / inner)
    return samples, inner


def model_on_device(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` on ``device``; a copy when it must move there, so the caller's model stays put."""
    if not isinstance(model, nn.Module):
        raise ConfigError(f"costs are measured for a torch.nn.Module, got {type(model).__name__}")

    def elsewhere(tensor: torch.Tensor) -> bool:
        wrong_index = device.index is not None and tensor.device.index != device.index
        return tensor.device.type != device.type or wrong_index

    if any(elsewhere(t) for t in (*model.parameters(), *model.buffers())):
        model = copy.deepcopy(model).to(device)
    return model


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Run the block with ``model`` in eval mode, restoring every submodule's flag afterwards."""
    # restore flags one by one: a model may mix train and eval submodules (e.g. frozen BN)
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def check_forward(call: Callable[[], object], shape: tuple[int, ...]) -> None:
    """Call ``call`` once; a failure becomes an EvaluationError naming the input ``shape``."""
    try:
        call()
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        raise EvaluationError(
            f"the network fails on an input of shape {list(shape)}: {_first_line(exc)}"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def export_onnx(model: nn.Module, example: torch.Tensor) -> bytes:
    """The ONNX graph of ``model`` for inputs shaped like ``example`` (a fixed batch size), as bytes.

    Uses the TorchScript-based exporter, which takes a fraction of a second for a small network,
    and falls back to the ``torch.export``-based one (needs ``onnxscript``) if it fails.
    """
    import io

    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
            torch.onnx.export(
                model,
                (example,),
                buffer,  # type: ignore[arg-type]  # the TorchScript exporter writes to file objects
                dynamo=False,
                input_names=["input"],
                output_names=["output"],
            )
        return buffer.getvalue()
    except Exception as exc:  # noqa: BLE001 - any failure: try the other exporter
        legacy_error = _first_line(exc)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(model, (example,), dynamo=True, verbose=False)
        assert program is not None, "the torch.export-based exporter returns a program"
        return bytes(program.model_proto.SerializeToString())
    except Exception as exc:  # noqa: BLE001
        raise EvaluationError(
            f"cannot export the network to ONNX: {legacy_error}; the torch.export-based exporter "
            f"failed too: {_first_line(exc)}"
        ) from None


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime  # type: ignore[import-untyped]
    except ImportError:
        raise ConfigError(
            f"runtime 'onnxruntime' needs the onnxruntime package; {EXPORT_EXTRA_HINT}"
        ) from None
    return onnxruntime


def onnx_session(model_bytes: bytes, device: torch.device, threads: int) -> Any:
    """An ONNX Runtime session with ``threads`` intra-op threads, one inter-op thread, sequential."""
    ort = _import_onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only
    if device.type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ConfigError(
                "runtime 'onnxruntime' on CUDA needs onnxruntime-gpu (CUDAExecutionProvider is missing)"
            )
        providers: list[Any] = [("CUDAExecutionProvider", {"device_id": device.index or 0})]
    else:
        providers = ["CPUExecutionProvider"]
    return ort.InferenceSession(model_bytes, options, providers=providers)


def _onnx_calls(
    model: nn.Module, example: torch.Tensor, device: torch.device, threads: int
) -> list[Callable[[], object]]:
    """One call per ONNX Runtime session, ONNX_SESSIONS sessions over one export of ``model``.

    A fresh session is now and then slower for its whole lifetime (by up to 1.5x on a shared VM), so
    the measurement times several and keeps the fastest.
    """
    with torch.inference_mode():
        check_forward(lambda: model(example), tuple(example.shape[1:]))
    exported = export_onnx(model, example)
    calls: list[Callable[[], object]] = []
    for _ in range(ONNX_SESSIONS):
        session = onnx_session(exported, device, threads)
        feed = {session.get_inputs()[0].name: example.detach().cpu().numpy()}
        calls.append(functools.partial(session.run, None, feed))
    return calls


def measure_latency(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    batch_size: int = 1,
    runtime: str = "eager",
    device: str = "cpu",
    threads: int = 1,
    warmup: int = DEFAULT_WARMUP,
    repeats: int = DEFAULT_REPEATS,
    min_repeat_ms: float = DEFAULT_MIN_REPEAT_MS,
    min_time_ms: float = DEFAULT_MIN_TIME_MS,
) -> LatencyResult:
    """Measure the inference latency of ``model`` on batches shaped ``(batch_size, *input_shape)``.

    Args:
        model: the network; measured in eval mode without gradients (its train/eval flags are
            restored afterwards). If its weights live on another device it is copied, not moved.
        input_shape: one example's shape, e.g. ``(1, 8, 8)``.
        batch_size: examples per forward pass.
        runtime: ``"eager"`` (PyTorch) or ``"onnxruntime"`` (the network exported to ONNX with a fixed
            batch size, run by an ONNX Runtime session; needs ``nasflow[export]``).
        device: ``"cpu"`` or a CUDA device; CUDA timings synchronise before every clock reading.
        threads: intra-op threads (``torch.set_num_threads`` for the measurement only, or the ONNX
            Runtime session's intra-op pool); inter-op parallelism is off.
        warmup: untimed calls first (caches, lazy initialisation, allocator).
        repeats: timed repeats (at least); the statistics are over them.
        min_repeat_ms: calls faster than this are timed in an inner loop lasting about this long.
        min_time_ms: more repeats until they span this long, so that one burst of other work on
            the machine cannot cover them all (0 for exactly ``repeats``).

    Raises:
        ConfigError: a bad setting, or a runtime/device that is not available.
        EvaluationError: the network fails on an input of that shape or cannot be exported.
    """
    check_runtime(runtime)
    parsed = check_device(device)
    shape = check_input_shape(input_shape)
    batch_size = int_at_least("batch_size", batch_size, 1)
    threads = int_at_least("threads", threads, 1)
    warmup = int_at_least("warmup", warmup, 0)
    repeats = int_at_least("repeats", repeats, 1)
    if (
        isinstance(min_repeat_ms, bool)
        or not isinstance(min_repeat_ms, (int, float))
        or not min_repeat_ms >= 0
    ):
        raise ConfigError(f"min_repeat_ms must be a number >= 0, got {min_repeat_ms!r}")
    if isinstance(min_time_ms, bool) or not isinstance(min_time_ms, (int, float)) or not min_time_ms >= 0:
        raise ConfigError(f"min_time_ms must be a number >= 0, got {min_time_ms!r}")
    if runtime == "onnxruntime":
        _import_onnxruntime()  # fail before any work when the extra is missing

    model = model_on_device(model, parsed)
    example = example_input(shape, batch_size).to(parsed)
    synchronize = (lambda: torch.cuda.synchronize(parsed)) if parsed.type == "cuda" else None
    with eval_mode(model), torch_threads(threads):
        if runtime == "eager":
            calls: list[Callable[[], object]] = [functools.partial(model, example)]
            with torch.inference_mode():
                check_forward(calls[0], shape)
        else:
            calls = _onnx_calls(model, example, parsed, threads)
        # inference mode is entered once, outside the timed loop, so that its small cost is not
        # charged to every call (a look-up table would count it once per block)
        with torch.inference_mode(runtime == "eager"):
            timed = [
                time_calls(
                    call,
                    warmup=warmup,
                    repeats=repeats,
                    min_repeat_ms=float(min_repeat_ms),
                    synchronize=synchronize,
                    min_time_ms=float(min_time_ms) / len(calls),
                )
                for call in calls
            ]
        samples, inner = min(timed, key=lambda run: min(run[0]))  # the fastest session's repeats
    return LatencyResult(
        **latency_statistics(samples),
        repeats=len(samples),
        runtime=runtime,
        device=str(parsed),
        batch_size=batch_size,
        threads=threads,
        inner_loops=inner,
        warmup=warmup,
    )
