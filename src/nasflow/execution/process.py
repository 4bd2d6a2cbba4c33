"""Evaluate in local worker processes."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from nasflow.errors import ConfigError
from nasflow.estimators.base import EvalContext, Evaluator
from nasflow.execution.base import Executor, Outcome, run_evaluation
from nasflow.space.architecture import Architecture


def _init_worker(threads: int) -> None:
    # Ctrl-C in a terminal reaches the whole process group: the driver decides what stops (it lets
    # running trials finish on the first press), so workers ignore it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Without this every worker would start one torch thread per core and they would fight.
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


class ProcessExecutor(Executor):
    """A pool of ``workers`` spawned processes, each limited to its share of the CPU cores.

    When a worker process dies (killed, out of memory), Python's pool breaks and every evaluation it
    was running fails: each is answered with a *lost* outcome, which the study runs again, and the
    next submission starts a fresh pool.
    """

    def __init__(self, workers: int, threads_per_worker: int | None = None) -> None:
        if workers < 1:
            raise ConfigError(f"workers must be >= 1, got {workers}")
        self.max_workers = workers
        self._threads = threads_per_worker or max(1, (os.cpu_count() or 1) // workers)
        self._pool = self._new_pool()
        self._checked: set[int] = set()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.max_workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(self._threads,),
        )

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
        try:
            inner = self._pool.submit(run_evaluation, evaluator, arch, context)
        except BrokenProcessPool:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
            inner = self._pool.submit(run_evaluation, evaluator, arch, context)
        outer: Future[Outcome] = Future()
        inner.add_done_callback(lambda done: outer.set_result(_outcome(done)))
        return outer

    def shutdown(self, cancel: bool = False) -> None:
        # Running evaluations cannot be cancelled; stop their processes so Ctrl-C is prompt.
        processes = list((getattr(self._pool, "_processes", None) or {}).values()) if cancel else []
        self._pool.shutdown(wait=not cancel, cancel_futures=cancel)
        for process in processes:
            process.terminate()


def _outcome(future: Future[Outcome]) -> Outcome:
    """The pool's answer as an Outcome: a dead worker becomes a *lost* outcome, to be run again."""
    if future.cancelled():
        return Outcome(None, "the evaluation was cancelled before it ran", lost=True)
    error = future.exception()
    if error is None:
        return future.result()
    if isinstance(error, BrokenProcessPool):
        return Outcome(None, "a worker process died (killed or out of memory)", lost=True)
    # e.g. a result that could not be sent back from the worker
    return Outcome(None, f"{type(error).__name__}: {error}")
