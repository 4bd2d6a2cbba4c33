"""Evaluate in local worker processes."""

from __future__ import annotations

import multiprocessing
import os
import pickle
from concurrent.futures import Future, ProcessPoolExecutor

from nasflow.errors import ConfigError
from nasflow.estimators.base import EvalContext, Evaluator
from nasflow.execution.base import Executor, Outcome, run_evaluation
from nasflow.space.architecture import Architecture


def _init_worker(threads: int) -> None:
    # Without this every worker would start one torch thread per core and they would fight.
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


class ProcessExecutor(Executor):
    """A pool of ``workers`` spawned processes, each limited to its share of the CPU cores."""

    def __init__(self, workers: int, threads_per_worker: int | None = None) -> None:
        if workers < 1:
            raise ConfigError(f"workers must be >= 1, got {workers}")
        self.max_workers = workers
        threads = threads_per_worker or max(1, (os.cpu_count() or 1) // workers)
        self._pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(threads,),
        )
        self._checked: set[int] = set()

    def submit(self, evaluator: Evaluator, arch: Architecture, context: EvalContext) -> Future[Outcome]:
        if id(evaluator) not in self._checked:
            # Fail early and clearly rather than with a pickling error from inside the pool.
            try:
                pickle.dumps(evaluator)
            except Exception as exc:
                raise ConfigError(
                    f"the evaluator cannot be sent to worker processes ({exc}); define its function "
                    "at module level or run with workers=1"
                ) from None
            self._checked.add(id(evaluator))
        return self._pool.submit(run_evaluation, evaluator, arch, context)

    def shutdown(self, cancel: bool = False) -> None:
        # Running evaluations cannot be cancelled; stop their processes so Ctrl-C is prompt.
        processes = list((getattr(self._pool, "_processes", None) or {}).values()) if cancel else []
        self._pool.shutdown(wait=not cancel, cancel_futures=cancel)
        for process in processes:
            process.terminate()
