"""Executors run evaluations; the study (the only writer to storage) collects their results."""

from __future__ import annotations

import time
import traceback
from abc import ABC, abstractmethod
from concurrent.futures import Future
from dataclasses import dataclass, field

from nasflow.errors import EvaluationError, TrialPruned
from nasflow.estimators.base import EvalContext, Evaluator, Measurement
from nasflow.space.architecture import Architecture


@dataclass
class Outcome:
    """What came back from one evaluation: a measurement or the reason it failed."""

    measurement: Measurement | None
    error: str | None = None
    intermediate: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    seconds: float = 0.0
    #: the evaluation stopped early on purpose (``error`` holds the reason, ``measurement`` the
    #: metrics measured before stopping)
    pruned: bool = False
    #: the worker died before it could answer (process killed, Ray worker or node lost): the
    #: evaluation itself did not fail, so the study may run it again
    lost: bool = False


def run_evaluation(evaluator: Evaluator, arch: Architecture, context: EvalContext) -> Outcome:
    """Evaluate one architecture, turning any exception into a failed outcome.

    Runs inside the worker (process or thread), so intermediate reports are collected here and
    stored by the driver once the trial ends. With ``context.pruning`` set, each report is also shown
    to the pruner, which stops the evaluation by raising TrialPruned from ``context.emit``.
    """
    reports: list[tuple[int, dict[str, float]]] = []
    monitor = context.pruning

    def report(step: int, metrics: dict[str, float]) -> None:
        reports.append((int(step), dict(metrics)))
        if monitor is not None:
            monitor.observe(int(step), metrics)

    context.report = report
    start = time.perf_counter()
    try:
        measurement = evaluator.evaluate(arch, context)
    except TrialPruned as exc:
        seconds = time.perf_counter() - start
        return Outcome(Measurement(exc.metrics, seconds), str(exc), reports, seconds, pruned=True)
    except EvaluationError as exc:
        return Outcome(None, str(exc), reports, time.perf_counter() - start)
    except Exception as exc:  # noqa: BLE001 - one broken trial must not stop the search
        where = traceback.extract_tb(exc.__traceback__)[-1]
        message = f"{type(exc).__name__}: {exc} (at {where.filename}:{where.lineno})"
        return Outcome(None, message, reports, time.perf_counter() - start)
    return Outcome(measurement, None, reports, time.perf_counter() - start)


class Executor(ABC):
    """Runs ``run_evaluation`` calls, up to ``max_workers`` at once."""

    max_workers: int = 1

    @abstractmethod
    def submit(self, evaluator: Evaluator, arch: Architecture, context: EvalContext) -> Future[Outcome]:
        """Start evaluating ``arch``; the future yields an :class:`Outcome`."""

    def shutdown(self, cancel: bool = False) -> None:
        """Release workers; with ``cancel`` do not wait for running evaluations."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown(cancel=exc[0] is not None)
