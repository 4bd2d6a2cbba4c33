"""NSGA-II (Deb, Pratap, Agarwal & Meyarivan 2002), nasflow's own, asynchronous ask/tell version."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from nasflow.errors import ConfigError
from nasflow.objectives.pareto import Point, crowded_order
from nasflow.space.architecture import Architecture
from nasflow.space.base import DecisionSpace
from nasflow.strategies.base import Strategy
from nasflow.strategies.fitness import Scored
from nasflow.trial import FrozenTrial

#: ways of recognising an architecture that was already proposed (see the class docstring)
DEDUPE_MODES = ("exact", "canonical", "off")
#: extra mutations tried on a child that repeats an architecture already seen
_MUTATION_TRIES = 20
#: uniform samples tried for an unseen architecture before a repeat is accepted
_RANDOM_TRIES = 100


def environmental_selection(points: Sequence[Point], violations: Sequence[float], size: int) -> list[int]:
    """Indices of the ``size`` survivors of NSGA-II's elitist selection, best first.

    Whole fronts (under constrained domination, Deb 2000) are taken in order; the front that does not
    fit entirely is cut by crowding distance, largest first (boundary points first); ties keep
    index order.
    """
    return crowded_order(points, violations)[:size]


def check_dedupe(dedupe: Any) -> str:
    """``dedupe`` when it is one of :data:`DEDUPE_MODES`, else a ConfigError naming them."""
    if dedupe not in DEDUPE_MODES:
        raise ConfigError(f"dedupe must be one of {', '.join(map(repr, DEDUPE_MODES))}, got {dedupe!r}")
    return str(dedupe)


class Repeats:
    """The architectures a strategy has proposed or been told, to avoid proposing them again.

    Args:
        space: the search space (for ``canonical``, ``mutate`` and ``sample``).
        mode: ``"exact"`` (same choices), ``"canonical"`` (same ``space.canonical`` key) or ``"off"``.
    """

    def __init__(self, space: DecisionSpace, mode: str) -> None:
        self.space = space
        self.mode = check_dedupe(mode)
        self.keys: set[str] = set()

    def key(self, arch: Architecture) -> str:
        if self.mode == "canonical":
            return self.space.canonical(arch)
        return json.dumps(arch.to_dict(), sort_keys=True)

    def seen(self, arch: Architecture) -> bool:
        return self.mode != "off" and self.key(arch) in self.keys

    def add(self, arch: Architecture) -> Architecture:
        if self.mode != "off":
            self.keys.add(self.key(arch))
        return arch

    def sample(self, rng: np.random.Generator) -> Architecture:
        """A random architecture not seen yet (a repeat after many draws), remembered as seen."""
        arch = self.space.sample(rng)
        for _ in range(_RANDOM_TRIES):
            if not self.seen(arch):
                break
            arch = self.space.sample(rng)
        return self.add(arch)

    def novel(self, child: Architecture, rng: np.random.Generator) -> Architecture:
        """``child``, or when it was seen a further mutation of it, or a fresh sample; remembered as seen."""
        for _ in range(_MUTATION_TRIES):
            if not self.seen(child):
                return self.add(child)
            child = self.space.mutate(child, rng)
        return self.add(child) if not self.seen(child) else self.sample(rng)


def check_probability(label: str, value: Any) -> float:
    """``value`` as a float when it is a number in [0, 1], else a ConfigError naming ``label``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"{label} must be a probability between 0 and 1, got {value!r}")
    return float(value)


class NSGA2(Strategy):
    """Elitist genetic algorithm with non-dominated sorting and crowding distance.

    Generations, asynchronously: proposals are random samples until the first ``population_size``
    results are in. Those form generation 0's pool; every ``population_size`` further results (told
    in any order, whichever proposal they answer) form the next pool of children. When a pool is
    complete, the parents and the pool compete: whole fronts under constrained domination (feasible
    beats infeasible, then smaller summed violation; Pareto dominance among the feasible) are kept
    in order and the last one is cut by crowding distance, leaving ``population_size`` parents.
    ``ask(n)`` may be called at any time and breeds from the parents of the moment: each child takes
    two parents chosen by binary tournament (lower front wins, then larger crowding distance),
    their ``space.crossover`` with probability ``crossover_prob`` (else a copy of the first), then
    ``space.mutate`` with probability ``mutation_prob``. Results of children bred from older parents
    still count towards the current pool, so parallel workers never wait for a generation to finish.
    Failed and pruned trials carry no values and are ignored. With one objective this is a plain
    elitist genetic algorithm.

    Duplicates: with ``dedupe="exact"`` a child that repeats an architecture proposed or told before
    is mutated again (up to 20 times), then replaced by an unseen random sample (up to 100 draws),
    before a repeat is accepted. ``"canonical"`` treats architectures with the same
    ``space.canonical`` key as repeats; it saves more evaluations, but on spaces such as NB201 cells
    with the same key can differ in cost (an edge that cannot reach the output still holds
    weights), which a cost objective should see, hence ``"exact"`` by default. ``"off"`` accepts
    repeats. Exact duplicates never enter a pool twice (the first result is kept).

    The defaults were chosen on NAS-Bench-201 (CIFAR-10 accuracy vs parameters, hypervolume after
    50-200 trials) with seeds other than the reported ones; the paper's ``crossover_prob=0.9`` reached
    1-1.5% less of the true front's hypervolume at 200 trials there (``docs/multiobjective.md``).

    Args:
        population_size: parents kept per generation, and results per generation.
        crossover_prob: probability that a child is a crossover of its two parents (uniform
            crossover for a plain DecisionSpace, whatever ``space.crossover`` does otherwise).
        mutation_prob: probability that a child is mutated (one decision changed).
        dedupe: ``"exact"``, ``"canonical"`` or ``"off"`` (see above).
    """

    name = "nsga2"

    def __init__(
        self,
        population_size: int = 20,
        crossover_prob: float = 0.5,
        mutation_prob: float = 1.0,
        dedupe: str = "exact",
    ) -> None:
        if isinstance(population_size, bool) or not isinstance(population_size, int) or population_size < 2:
            raise ConfigError(f"population_size must be an integer >= 2, got {population_size!r}")
        self.population_size = population_size
        self.crossover_prob = check_probability("crossover_prob", crossover_prob)
        self.mutation_prob = check_probability("mutation_prob", mutation_prob)
        self.dedupe = check_dedupe(dedupe)

    def setup(self, space: Any, objectives: Any, seed: int | None) -> None:
        super().setup(space, objectives, seed)
        self._parents: list[Scored] = []
        self._pool: list[Scored] = []
        self._repeats = Repeats(space, self.dedupe)
        self._generation = 0
        self._positions: list[int] = []

    # -- asking --------------------------------------------------------------------------------
    def ask(self, n: int = 1) -> list[Architecture]:
        return [self._propose() for _ in range(n)]

    def _propose(self) -> Architecture:
        if not self._parents:
            return self._repeats.sample(self.rng)
        first, second = self._tournament(), self._tournament()
        child = first.arch
        if self.rng.random() < self.crossover_prob:
            child = self.space.crossover(first.arch, second.arch, self.rng)
        if self.rng.random() < self.mutation_prob:
            child = self.space.mutate(child, self.rng)
        return self._repeats.novel(child, self.rng)

    def _tournament(self) -> Scored:
        """Binary tournament on the crowded-comparison order of the parents."""
        a, b = (int(i) for i in self.rng.integers(len(self._parents), size=2))
        return self._parents[a if self._positions[a] <= self._positions[b] else b]

    # -- telling -------------------------------------------------------------------------------
    def tell(self, trial: FrozenTrial) -> None:
        scored = Scored.from_trial(trial, self.objectives)
        if scored is None or not self.space.is_valid(trial.arch):
            return
        self._repeats.add(trial.arch)
        self._pool.append(scored)
        if len(self._pool) >= self.population_size:
            self._next_generation()

    def _next_generation(self) -> None:
        candidates: dict[str, Scored] = {}
        for member in [*self._parents, *self._pool]:
            candidates.setdefault(json.dumps(member.arch.to_dict(), sort_keys=True), member)
        pool = list(candidates.values())
        survivors = environmental_selection(
            [m.values for m in pool], [m.violation for m in pool], self.population_size
        )
        self._parents = [pool[i] for i in survivors]
        self._pool = []
        self._generation += 1
        self._rank_parents()

    def _rank_parents(self) -> None:
        """Each parent's place in the crowded-comparison order (0 = best), used by the tournament."""
        order = crowded_order([m.values for m in self._parents], [m.violation for m in self._parents])
        self._positions = [0] * len(order)
        for place, index in enumerate(order):
            self._positions[index] = place

    @property
    def generation(self) -> int:
        """How many generations have been formed (0 until the first pool is complete)."""
        return self._generation

    @property
    def parents(self) -> list[Scored]:
        """The current parent population (a copy), in selection order."""
        return list(self._parents)

    # -- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "generation": self._generation,
            "parents": [m.to_json() for m in self._parents],
            "pool": [m.to_json() for m in self._pool],
            "seen": sorted(self._repeats.keys),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._generation = int(state["generation"])
        self._parents = [Scored.from_json(m) for m in state["parents"]]
        self._pool = [Scored.from_json(m) for m in state["pool"]]
        self._repeats.keys = set(state["seen"])
        self._rank_parents()
