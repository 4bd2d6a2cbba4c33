"""A strategy wrapper that measures the time a strategy itself spends in ask and tell."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from nasflow.objectives.spec import Objective
from nasflow.space.base import DecisionSpace
from nasflow.strategies.base import Proposal, Strategy
from nasflow.trial import FrozenTrial


class TimedStrategy(Strategy):
    """Delegates everything to ``inner`` and adds up the seconds spent in ``ask`` and ``tell``."""

    def __init__(self, inner: Strategy) -> None:
        self.inner = inner
        self.name = inner.name
        self.seconds = 0.0

    def setup(self, space: DecisionSpace, objectives: Sequence[Objective], seed: int | None) -> None:
        self.inner.setup(space, objectives, seed)

    def ask(self, n: int = 1) -> list[Proposal]:  # type: ignore[override]
        start = time.perf_counter()
        try:
            return self.inner.ask(n)  # type: ignore[return-value]
        finally:
            self.seconds += time.perf_counter() - start

    def tell(self, trial: FrozenTrial) -> None:
        start = time.perf_counter()
        self.inner.tell(trial)
        self.seconds += time.perf_counter() - start

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state)

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()
