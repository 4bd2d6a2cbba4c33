"""Objectives (``"accuracy:max"``) and constraints (``"latency_ms<=5"``)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from nasflow.errors import ConfigError

Direction = Literal["max", "min"]
_METRIC = r"[A-Za-z_][A-Za-z0-9_]*"
#: cost metrics only a measurement gives (nasflow.estimators.cost); naming one in a study measures it
MEASURED_COSTS = ("latency_ms", "latency_spread", "peak_memory_mb")
_CONSTRAINT = re.compile(rf"^\s*({_METRIC})\s*(<=|>=|<|>)\s*([-+0-9.eE]+)\s*$")


@dataclass(frozen=True)
class Objective:
    """A metric to optimise and its direction."""

    metric: str
    direction: Direction = "max"

    @classmethod
    def parse(cls, text: str | Objective) -> Objective:
        """Parse ``"metric:max"`` or ``"metric:min"`` (a bare metric means max)."""
        if isinstance(text, Objective):
            return text
        metric, _, direction = str(text).strip().partition(":")
        direction = direction.strip() or "max"
        if not re.fullmatch(_METRIC, metric.strip()) or direction not in ("max", "min"):
            raise ConfigError(f"bad objective {text!r}; write METRIC:max or METRIC:min, e.g. 'accuracy:max'")
        return cls(metric.strip(), direction)  # type: ignore[arg-type]

    def oriented(self, value: float) -> float:
        """The value turned so that larger is always better."""
        return value if self.direction == "max" else -value

    def __str__(self) -> str:
        return f"{self.metric}:{self.direction}"


@dataclass(frozen=True)
class Constraint:
    """A hard bound on a metric, e.g. ``latency_ms<=5``."""

    metric: str
    op: Literal["<=", ">=", "<", ">"]
    bound: float

    @classmethod
    def parse(cls, text: str | Constraint) -> Constraint:
        """Parse ``"metric<=bound"`` (also ``>=``, ``<``, ``>``)."""
        if isinstance(text, Constraint):
            return text
        match = _CONSTRAINT.match(str(text))
        if match is None:
            raise ConfigError(
                f"bad constraint {text!r}; write METRIC<=BOUND or METRIC>=BOUND, e.g. 'params<=2e5'"
            )
        try:
            bound = float(match.group(3))
        except ValueError:
            raise ConfigError(
                f"bad bound in constraint {text!r}: {match.group(3)!r} is not a number"
            ) from None
        return cls(match.group(1), match.group(2), bound)  # type: ignore[arg-type]

    def violation(self, metrics: Mapping[str, float]) -> float:
        """How far ``metrics`` are outside the bound (0 when satisfied, inf when the metric is missing)."""
        value = metrics.get(self.metric)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return math.inf
        value = float(value)
        if self.op in ("<=", "<"):
            excess = value - self.bound
            ok = value <= self.bound if self.op == "<=" else value < self.bound
        else:
            excess = self.bound - value
            ok = value >= self.bound if self.op == ">=" else value > self.bound
        return 0.0 if ok else max(excess, 1e-12)

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.bound:g}"


def parse_objectives(items: list[str | Objective] | str | Objective | None) -> list[Objective]:
    """Objectives from strings; default ``["accuracy:max"]``."""
    if items is None:
        return [Objective("accuracy", "max")]
    if isinstance(items, (str, Objective)):
        items = [items]
    objectives = [Objective.parse(i) for i in items]
    if not objectives:
        return [Objective("accuracy", "max")]
    metrics = [o.metric for o in objectives]
    if len(set(metrics)) != len(metrics):
        raise ConfigError(f"objectives name a metric twice: {metrics}")
    return objectives


def parse_constraints(items: list[str | Constraint] | str | Constraint | None) -> list[Constraint]:
    """Constraints from strings; default none."""
    if items is None:
        return []
    if isinstance(items, (str, Constraint)):
        items = [items]
    return [Constraint.parse(i) for i in items]
