"""Executors: inline (one worker) and local processes (several workers)."""

from nasflow.execution.base import Executor, Outcome, run_evaluation
from nasflow.execution.inline import InlineExecutor
from nasflow.execution.process import ProcessExecutor


def make_executor(workers: int = 1) -> Executor:
    """The executor for ``workers`` parallel evaluations."""
    return InlineExecutor() if workers == 1 else ProcessExecutor(workers)


__all__ = ["Executor", "InlineExecutor", "Outcome", "ProcessExecutor", "make_executor", "run_evaluation"]
