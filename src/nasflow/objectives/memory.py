"""Peak memory of one inference forward pass: activations and workspaces, beyond weights and input."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nasflow.errors import EvaluationError
from nasflow.objectives.latency import (
    check_device,
    check_forward,
    check_input_shape,
    eval_mode,
    example_input,
    int_at_least,
    model_on_device,
)

#: bytes per megabyte as reported here (MiB, as torch's and most profilers' "MB")
BYTES_PER_MB = 2**20


def peak_memory_bytes(
    model: nn.Module, input_shape: Sequence[int], batch_size: int = 1, device: str = "cpu"
) -> int:
    """Peak bytes a forward pass allocates on top of what was allocated before it started.

    The network runs once untimed (so one-time lazy allocations are not counted), then once more
    measured, in eval mode without gradients. Weights and the input batch exist before the pass and
    are not counted; activations, temporary workspaces (e.g. im2col buffers) and the output are.

    CPU: every allocation and free of the pass is recorded with ``torch.profiler``
    (``profile_memory=True``) and the peak of their running sum, in order, is the result. CUDA:
    ``torch.cuda.max_memory_allocated`` after resetting the peak, minus the memory allocated before.

    Raises:
        ConfigError: a bad setting or an unavailable device.
        EvaluationError: the network fails on an input of that shape.
    """
    parsed = check_device(device)
    shape = check_input_shape(input_shape)
    batch_size = int_at_least("batch_size", batch_size, 1)
    model = model_on_device(model, parsed)
    example = example_input(shape, batch_size).to(parsed)

    def forward() -> None:
        with torch.inference_mode():
            model(example)  # the output is dropped here, as an inference loop would

    with eval_mode(model):
        check_forward(forward, shape)
        if parsed.type == "cuda":
            return _cuda_peak(forward, parsed)
        return _cpu_peak(forward)


def peak_memory_mb(
    model: nn.Module, input_shape: Sequence[int], batch_size: int = 1, device: str = "cpu"
) -> float:
    """:func:`peak_memory_bytes` in megabytes of 2**20 bytes (MiB)."""
    return peak_memory_bytes(model, input_shape, batch_size=batch_size, device=device) / BYTES_PER_MB


def running_peak(deltas: Sequence[int]) -> int:
    """The largest running sum of allocation sizes (positive) and frees (negative), at least 0."""
    total = peak = 0
    for delta in deltas:
        total += int(delta)
        peak = max(peak, total)
    return peak


def _cpu_peak(forward: object) -> int:
    from torch.profiler import ProfilerActivity, profile

    assert callable(forward)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        forward()
    # The raw event list keeps every allocation and free in order; the aggregated FunctionEvents
    # only keep per-operator totals, which cannot give a peak.
    results = getattr(prof.profiler, "kineto_results", None) if prof.profiler is not None else None
    if results is None:
        raise EvaluationError("this torch version's profiler does not expose allocation events")
    events = [e for e in results.events() if e.name() == "[memory]" and str(e.device_type()).endswith("CPU")]
    events.sort(key=lambda e: e.start_ns())
    return running_peak([e.nbytes() for e in events])


def _cuda_peak(forward: object, device: torch.device) -> int:
    assert callable(forward)
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    forward()
    torch.cuda.synchronize(device)
    return max(0, int(torch.cuda.max_memory_allocated(device)) - int(before))
