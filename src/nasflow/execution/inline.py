"""Evaluate in the calling thread (the default for one worker: no start-up cost, easy to debug)."""

from __future__ import annotations

from concurrent.futures import Future

from nasflow.estimators.base import EvalContext, Evaluator
from nasflow.execution.base import Executor, Outcome, run_evaluation
from nasflow.space.architecture import Architecture


class InlineExecutor(Executor):
    max_workers = 1

    def submit(self, evaluator: Evaluator, arch: Architecture, context: EvalContext) -> Future[Outcome]:
        future: Future[Outcome] = Future()
        future.set_result(run_evaluation(evaluator, arch, context))
        return future
