"""Random search: uniform samples from the space."""

from __future__ import annotations

from typing import Any

from nasflow.errors import SearchExhausted
from nasflow.space.architecture import Architecture
from nasflow.strategies.base import Strategy

_MAX_REDRAWS = 10_000


class RandomSearch(Strategy):
    """Uniformly random architectures (Li & Talwalkar 2019 showed it is a strong NAS baseline).

    Args:
        repeats: when False, never propose an architecture whose canonical key was proposed before.
    """

    name = "random"

    def __init__(self, repeats: bool = True) -> None:
        self.repeats = repeats
        self._seen: set[str] = set()

    def ask(self, n: int = 1) -> list[Architecture]:
        return [self._draw() for _ in range(n)]

    def _draw(self) -> Architecture:
        if self.repeats:
            return self.space.sample(self.rng)
        for _ in range(_MAX_REDRAWS):
            arch = self.space.sample(self.rng)
            key = self.space.canonical(arch)
            if key not in self._seen:
                self._seen.add(key)
                return arch
        raise SearchExhausted(
            f"random search without repeats found no new architecture in {_MAX_REDRAWS} draws after "
            f"{len(self._seen)} distinct ones; the space is (nearly) exhausted"
        )

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "seen": sorted(self._seen)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._seen = set(state.get("seen", []))
