"""The ask/tell strategy interface.

A strategy proposes architectures (``ask``) and learns from finished trials (``tell``). It never
trains, looks anything up or touches the store; the study does that. Its whole state is JSON
(``state_dict``), so a stopped search resumes exactly where it was.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nasflow.objectives.spec import Objective
from nasflow.space.architecture import Architecture
from nasflow.space.base import DecisionSpace
from nasflow.trial import FrozenTrial


@dataclass(frozen=True)
class Suggestion:
    """An architecture to evaluate at a given fidelity (multi-fidelity strategies return these).

    ``fidelity`` overrides evaluator settings for this trial, e.g. ``{"epochs": 3}`` or
    ``{"data_fraction": 0.25}``; plain strategies return bare Architectures (full fidelity).
    """

    arch: Architecture
    fidelity: dict[str, float] = field(default_factory=dict)


Proposal = Architecture | Suggestion


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """The JSON-able state of a numpy Generator."""
    return dict(rng.bit_generator.state)


def restore_rng(state: dict[str, Any]) -> np.random.Generator:
    bit_generator = getattr(np.random, state["bit_generator"])()
    bit_generator.state = state
    return np.random.Generator(bit_generator)


class Strategy(ABC):
    """Base class of ask/tell search strategies.

    Constructor arguments are the strategy's settings only (as in scikit-learn); the study calls
    :meth:`setup` with the space, the objectives and the seed before the first ``ask``.
    """

    name: str = "strategy"

    def setup(self, space: DecisionSpace, objectives: Sequence[Objective], seed: int | None) -> None:
        self.space = space
        self.objectives = list(objectives)
        self.rng = np.random.default_rng(seed)

    @abstractmethod
    def ask(self, n: int = 1) -> list[Architecture]:
        """Propose ``n`` architectures to evaluate next (they may run in parallel).

        Multi-fidelity strategies may return :class:`Suggestion` objects instead. A strategy with
        nothing left to propose raises :class:`nasflow.errors.SearchExhausted`.
        """

    def tell(self, trial: FrozenTrial) -> None:
        """Learn from a finished trial (COMPLETE, PRUNED or FAILED)."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly, as JSON-able data."""
        return {"rng": rng_state(self.rng)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng = restore_rng(state["rng"])

    def get_params(self) -> dict[str, Any]:
        """The constructor settings, recorded in the study."""
        params = inspect.signature(type(self).__init__).parameters
        return {p: getattr(self, p) for p in params if p != "self" and hasattr(self, p)}

    def describe(self) -> dict[str, Any]:
        """JSON-able name and settings, recorded in the study."""
        return {"name": self.name, **self.get_params()}
