"""Executors: inline (one worker), local processes (several workers) and Ray (a cluster).

Ray is imported only when a Ray executor is created; ``import nasflow.execution`` never loads it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nasflow.errors import ConfigError
from nasflow.execution.base import Executor, Outcome, run_evaluation
from nasflow.execution.inline import InlineExecutor
from nasflow.execution.process import ProcessExecutor

if TYPE_CHECKING:
    from nasflow.execution.ray import RayExecutor

#: the executor kinds :func:`make_executor` knows
EXECUTOR_KINDS = ("auto", "inline", "process", "ray")


def make_executor(
    workers: int = 1,
    kind: str = "auto",
    *,
    ray_address: str | None = None,
    trial_cpus: float | None = None,
    trial_gpus: float | None = None,
) -> Executor:
    """The executor of ``kind`` for up to ``workers`` evaluations at once.

    Args:
        workers: evaluations in parallel. For ``"ray"``, 1 (the default) means as many as the
            cluster's CPUs (and GPUs) fit for one trial's resources; above 1 it caps that number.
        kind: ``"auto"`` (inline for one worker, local processes above), ``"inline"``, ``"process"``
            (``workers`` spawned processes, even for one: isolates a crashing evaluation) or ``"ray"``.
        ray_address: Ray cluster to connect to (``"auto"`` or ``"HOST:PORT"``); None starts a local
            Ray instance. Only with ``kind="ray"``.
        trial_cpus: CPUs per trial on Ray (default 1). Only with ``kind="ray"``.
        trial_gpus: GPUs per trial on Ray (default 0). Only with ``kind="ray"``.

    Raises:
        ConfigError: an unknown kind, ``workers`` < 1, Ray options for another kind, or the inline
            executor asked for more than one worker.
    """
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ConfigError(f"workers must be an integer >= 1, got {workers!r}")
    if kind not in EXECUTOR_KINDS:
        raise ConfigError(f"unknown executor {kind!r}; choose one of: {', '.join(EXECUTOR_KINDS)}")
    ray_options = {"ray_address": ray_address, "trial_cpus": trial_cpus, "trial_gpus": trial_gpus}
    given = [name for name, value in ray_options.items() if value is not None]
    if kind != "ray" and given:
        raise ConfigError(f"{', '.join(given)} only apply to the 'ray' executor; pass kind='ray'")
    if kind == "ray":
        from nasflow.execution.ray import RayExecutor

        return RayExecutor(
            ray_address,
            trial_cpus=1.0 if trial_cpus is None else trial_cpus,
            trial_gpus=0.0 if trial_gpus is None else trial_gpus,
            max_workers=workers if workers > 1 else None,
        )
    if kind == "inline" and workers != 1:
        raise ConfigError(f"the inline executor runs one evaluation at a time; got workers={workers}")
    if kind == "process" or (kind == "auto" and workers > 1):
        return ProcessExecutor(workers)
    return InlineExecutor()


def __getattr__(name: str) -> Any:
    # RayExecutor's module is light (it imports Ray only when constructed), but loading it on demand
    # keeps ``import nasflow.execution`` free of it altogether.
    if name == "RayExecutor":
        from nasflow.execution.ray import RayExecutor

        return RayExecutor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "EXECUTOR_KINDS",
    "Executor",
    "InlineExecutor",
    "Outcome",
    "ProcessExecutor",
    "RayExecutor",
    "make_executor",
    "run_evaluation",
]
