"""Latency measurement (eager and ONNX Runtime) and peak memory, on tiny networks.

No timing thresholds: the tests check the statistics on fixed numbers, the structure and invariants
of real measurements, and hand-computed memory peaks.
"""

from __future__ import annotations

import math
import sys
import time

import pytest
import torch
from torch import nn

from nasflow.errors import ConfigError, EvaluationError
from nasflow.objectives.latency import (
    MIN_WARMUP_MS,
    LatencyResult,
    ShapeTask,
    example_input,
    latency_statistics,
    measure_latency,
    time_calls,
)
from nasflow.objectives.memory import BYTES_PER_MB, peak_memory_bytes, peak_memory_mb, running_peak


def tiny_convnet() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 10),
    )


# -- statistics ------------------------------------------------------------------------------
def test_statistics_of_fixed_samples() -> None:
    stats = latency_statistics([5.0, 1.0, 4.0, 2.0, 3.0])
    assert stats["median_ms"] == 3.0
    assert stats["mean_ms"] == 3.0
    assert stats["std_ms"] == pytest.approx(math.sqrt(2.5))  # sample standard deviation, ddof=1
    # linear interpolation between order statistics: 1 + 0.4 * (2 - 1) and 4 + 0.6 * (5 - 4)
    assert stats["p10_ms"] == pytest.approx(1.4)
    assert stats["p90_ms"] == pytest.approx(4.6)
    assert stats["spread"] == pytest.approx((4.6 - 1.4) / 3.0)
    assert stats["min_ms"] == 1.0


def test_statistics_of_one_sample_and_of_equal_samples() -> None:
    one = latency_statistics([2.5])
    assert one == {
        "median_ms": 2.5,
        "mean_ms": 2.5,
        "std_ms": 0.0,
        "p10_ms": 2.5,
        "p90_ms": 2.5,
        "spread": 0.0,
        "min_ms": 2.5,
    }
    same = latency_statistics([0.7] * 4)
    assert same["std_ms"] == pytest.approx(0.0) and same["spread"] == pytest.approx(0.0)


@pytest.mark.parametrize("samples", [[], [1.0, -0.5], [1.0, float("nan")], [float("inf")]])
def test_statistics_reject_bad_samples(samples: list[float]) -> None:
    with pytest.raises(ConfigError):
        latency_statistics(samples)


def test_time_calls_counts_calls_and_sizes_the_inner_loop() -> None:
    calls = []
    samples, inner = time_calls(lambda: calls.append(1), warmup=0, repeats=4, min_repeat_ms=0.0)
    assert inner == 1 and len(samples) == 4 and len(calls) == 1 + 4  # one untimed call sizes the loop
    calls.clear()
    # a call of ~1 microsecond is timed in an inner loop lasting about 0.5 ms
    samples, inner = time_calls(lambda: calls.append(1), warmup=0, repeats=2, min_repeat_ms=0.5)
    assert inner > 1 and len(calls) == 1 + 2 * inner
    assert all(s >= 0 for s in samples)


def test_time_calls_warms_up_and_repeats_for_a_minimum_time() -> None:
    stamps: list[float] = []
    samples, _ = time_calls(
        lambda: stamps.append(time.perf_counter()), warmup=3, repeats=2, min_repeat_ms=0.0, min_time_ms=20.0
    )
    warm = len(stamps) - len(samples)
    assert warm >= 3 and stamps[warm - 1] - stamps[0] >= MIN_WARMUP_MS / 1000 * 0.99
    assert len(samples) > 2 and stamps[-1] - stamps[warm] >= 0.02 * 0.99


# -- real measurements -----------------------------------------------------------------------
@pytest.mark.parametrize("runtime", ["eager", "onnxruntime"])
def test_measure_latency_structure_and_invariants(runtime: str) -> None:
    if runtime == "onnxruntime":
        pytest.importorskip("onnxruntime")
    model = tiny_convnet()
    model.train()
    threads_before = torch.get_num_threads()
    result = measure_latency(
        model, (1, 8, 8), batch_size=2, runtime=runtime, threads=1, warmup=2, repeats=7, min_time_ms=0
    )
    assert result.median_ms > 0
    assert result.min_ms <= result.p10_ms <= result.median_ms <= result.p90_ms
    assert result.estimate_ms == result.min_ms  # the fastest repeat is the reported latency
    assert result.spread == pytest.approx((result.p90_ms - result.p10_ms) / result.median_ms)
    assert result.std_ms >= 0 and result.mean_ms > 0
    assert (result.runtime, result.device, result.batch_size, result.threads) == (runtime, "cpu", 2, 1)
    assert result.repeats == 7 and result.warmup == 2 and result.inner_loops >= 1
    # the caller's model and settings are left as they were
    assert model.training and all(m.training for m in model.modules())
    assert torch.get_num_threads() == threads_before
    assert LatencyResult.from_dict(result.to_dict()) == result


def test_onnxruntime_times_several_sessions_and_keeps_the_fastest(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    from nasflow.objectives import latency

    sessions: list[object] = []
    real_session = latency.onnx_session

    def slow_second(*args: object) -> object:
        session = real_session(*args)  # type: ignore[arg-type]
        sessions.append(session)
        if len(sessions) == 2:  # a session that is slow for its whole lifetime
            run = session.run

            class Slow:
                def __getattr__(self, name: str) -> object:
                    return getattr(session, name)

                def run(self, *a: object) -> object:
                    time.sleep(0.002)
                    return run(*a)

            return Slow()
        return session

    monkeypatch.setattr(latency, "onnx_session", slow_second)
    result = measure_latency(tiny_convnet(), (1, 8, 8), runtime="onnxruntime", repeats=5, min_time_ms=0)
    assert len(sessions) == latency.ONNX_SESSIONS == 2
    assert result.repeats == 5 and result.estimate_ms < 1.0  # the slow session's 2 ms calls are not it


def test_latency_result_from_bad_dict() -> None:
    with pytest.raises(ConfigError, match="missing keys"):
        LatencyResult.from_dict({"median_ms": 1.0})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"runtime": "tvm"}, "runtime must be one of"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"threads": 1.5}, "threads must be an integer"),
        ({"device": "tpu"}, "not a torch device"),
        ({"repeats": 0}, "repeats must be"),
    ],
)
def test_bad_settings_raise_config_errors(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        measure_latency(tiny_convnet(), (1, 8, 8), **options)  # type: ignore[arg-type]


def test_bad_input_shape_and_failing_network() -> None:
    with pytest.raises(ConfigError, match="input_shape"):
        measure_latency(tiny_convnet(), (1, 0, 8))
    # 3 channels into a 1-channel convolution: a nasflow error naming the shape, not a torch trace
    with pytest.raises(EvaluationError, match=r"input of shape \[3, 8, 8\]"):
        measure_latency(tiny_convnet(), (3, 8, 8), warmup=0, repeats=1)


def test_missing_onnxruntime_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(ConfigError, match=r"nasflow\[export\]"):
        measure_latency(tiny_convnet(), (1, 8, 8), runtime="onnxruntime")


def test_onnxruntime_and_eager_compute_the_same_function() -> None:
    ort = pytest.importorskip("onnxruntime")
    from nasflow.objectives.latency import export_onnx, onnx_session

    model = tiny_convnet().eval()
    example = example_input((1, 8, 8), 3)
    session = onnx_session(export_onnx(model, example), torch.device("cpu"), threads=1)
    (output,) = session.run(None, {session.get_inputs()[0].name: example.numpy()})
    with torch.no_grad():
        expected = model(example).numpy()
    assert output.shape == (3, 10)
    assert abs(output - expected).max() < 1e-5
    assert isinstance(session, ort.InferenceSession)


def test_example_input_is_fixed() -> None:
    assert torch.equal(example_input((1, 2, 2), 2), example_input((1, 2, 2), 2))
    assert ShapeTask((1, 8, 8), 10).input_shape == (1, 8, 8)


# -- peak memory -----------------------------------------------------------------------------
def test_running_peak() -> None:
    assert running_peak([100, 50, -100, 200, -250]) == 250
    assert running_peak([-10, 5]) == 0
    assert running_peak([]) == 0


def test_peak_memory_of_a_linear_network_is_hand_computable() -> None:
    model = nn.Sequential(nn.Linear(64, 1000), nn.ReLU(), nn.Linear(1000, 10))
    peak = peak_memory_bytes(model, (64,), batch_size=8)
    # the first layer's output (8 x 1000 float32 = 32,000 bytes) is alive while ReLU writes its own
    # 32,000 bytes; the last output is only 320 bytes: the peak is 64,000 bytes
    assert 64_000 <= peak <= 64_000 * 1.1
    assert peak_memory_mb(model, (64,), batch_size=8) == pytest.approx(peak / BYTES_PER_MB)


def test_peak_memory_covers_the_largest_activations() -> None:
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU())
    peak = peak_memory_bytes(model, (1, 8, 8), batch_size=2)
    relu_out = 2 * 8 * 8 * 8 * 4  # the second convolution's input
    conv_out = 2 * 16 * 8 * 8 * 4  # and its output, alive at the same time
    assert peak >= relu_out + conv_out
    # bounded by every activation at once plus an im2col buffer of the largest convolution
    assert peak <= 2 * (2 * 8 * 64 * 4) + 2 * conv_out + 2 * 72 * 64 * 4
    # batch size scales the activations
    assert peak_memory_bytes(model, (1, 8, 8), batch_size=4) > peak


def test_peak_memory_reports_bad_shapes_as_nasflow_errors() -> None:
    with pytest.raises(EvaluationError, match="input of shape"):
        peak_memory_mb(nn.Linear(4, 2), (5,))
