"""Evaluate architectures with a plain Python function."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from nasflow.errors import EvaluationError
from nasflow.estimators.base import EvalContext, Evaluator, Measurement
from nasflow.space.architecture import Architecture
from nasflow.space.base import DecisionSpace


class FunctionEvaluator(Evaluator):
    """Wraps ``fn(arch) -> dict`` of metrics (a bare number is taken as ``accuracy``)."""

    name = "function"

    def __init__(self, fn: Callable[[Architecture], Mapping[str, float] | float]) -> None:
        if not callable(fn):
            raise TypeError(f"FunctionEvaluator needs a callable, got {fn!r}")
        self.fn = fn

    def setup(self, space: DecisionSpace) -> None:
        """The function needs no space; keeping none lets the evaluator pickle on its own."""

    def evaluate(self, arch: Architecture, context: EvalContext) -> Measurement:
        start = time.perf_counter()
        result = self.fn(arch)
        if isinstance(result, (int, float)):
            result = {"accuracy": float(result)}
        if not isinstance(result, Mapping):
            raise EvaluationError(
                f"the evaluation function returned {type(result).__name__}; it must return a dict of "
                "metric name -> number"
            )
        metrics: dict[str, float] = {}
        for key, value in result.items():
            try:
                metrics[str(key)] = float(value)
            except (TypeError, ValueError):
                raise EvaluationError(f"metric {key!r} is {value!r}, not a number") from None
            if math.isnan(metrics[str(key)]):
                raise EvaluationError(f"metric {key!r} is NaN")
        return Measurement(metrics, time.perf_counter() - start)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "fn": getattr(self.fn, "__qualname__", repr(self.fn))}
