"""Multi-objective regularized (aging) evolution: Real et al. 2019 with NSGA-II's selection order."""

from __future__ import annotations

from typing import Any

from nasflow.errors import ConfigError
from nasflow.objectives.pareto import constrained_sort, crowded_order
from nasflow.space.architecture import Architecture
from nasflow.strategies.evolution import RegularizedEvolution
from nasflow.strategies.fitness import Scored
from nasflow.strategies.nsga2 import Repeats, check_dedupe
from nasflow.trial import FrozenTrial

#: how a tournament picks its winner among the sampled members
SELECTION_RULES = ("crowding", "random")


class MultiObjectiveEvolution(RegularizedEvolution):
    """Aging evolution whose tournament is decided by Pareto front, then crowding distance.

    As in :class:`~nasflow.strategies.evolution.RegularizedEvolution`, the first
    ``population_size`` proposals are random, every finished child joins the population and the
    oldest member leaves. Each proposal draws ``sample_size`` members and mutates the winner. The
    winner is decided under constrained domination (Deb 2000: feasible beats infeasible, smaller
    summed violation beats larger, Pareto dominance among the feasible), with the fronts and crowding
    distances (Deb et al. 2002) computed over the whole population: with ``selection="crowding"``
    the sampled member in the lowest front wins, ties going to the larger crowding distance (so the
    search spreads along the front); with ``"random"`` a random sampled member of that lowest front
    wins. With one objective both rules pick the best sampled member, as plain evolution does.

    Duplicates: ``dedupe`` works as in :class:`~nasflow.strategies.nsga2.NSGA2` (``"exact"``,
    ``"canonical"`` or ``"off"``): a child repeating an architecture seen before is mutated again,
    then replaced by an unseen random sample, before a repeat is accepted.

    The defaults (P=20, S=5) were chosen on NAS-Bench-201 (accuracy vs parameters, hypervolume after
    50-200 trials) with seeds other than the reported ones; binary tournaments (S=2) were clearly
    worse there (``docs/multiobjective.md``).

    Args:
        population_size: members kept alive (P).
        sample_size: tournament size (S), 1 <= S <= P.
        selection: ``"crowding"`` or ``"random"`` (see above).
        dedupe: ``"exact"``, ``"canonical"`` or ``"off"``.
    """

    name = "mo-evolution"

    def __init__(
        self,
        population_size: int = 20,
        sample_size: int = 5,
        selection: str = "crowding",
        dedupe: str = "exact",
    ) -> None:
        super().__init__(population_size, sample_size)
        if selection not in SELECTION_RULES:
            raise ConfigError(
                f"selection must be one of {', '.join(map(repr, SELECTION_RULES))}, got {selection!r}"
            )
        self.selection = selection
        self.dedupe = check_dedupe(dedupe)

    def setup(self, space: Any, objectives: Any, seed: int | None) -> None:
        super().setup(space, objectives, seed)
        self._population.clear()
        self._asked = 0
        self._repeats = Repeats(space, self.dedupe)

    def _propose(self) -> Architecture:
        self._asked += 1
        if self._asked <= self.population_size or not self._population:
            return self._repeats.sample(self.rng)
        members = list(self._population)
        size = min(self.sample_size, len(members))
        picks = [int(i) for i in self.rng.choice(len(members), size=size, replace=False)]
        child = self.space.mutate(self._winner(members, picks).arch, self.rng)
        return self._repeats.novel(child, self.rng)

    def _winner(self, members: list[Scored], picks: list[int]) -> Scored:
        points, violations = [m.values for m in members], [m.violation for m in members]
        if self.selection == "crowding":
            place = {index: position for position, index in enumerate(crowded_order(points, violations))}
            return members[min(picks, key=place.__getitem__)]
        front_of = {i: rank for rank, front in enumerate(constrained_sort(points, violations)) for i in front}
        best = min(front_of[i] for i in picks)
        tied = [i for i in picks if front_of[i] == best]
        return members[tied[int(self.rng.integers(len(tied)))]]

    def tell(self, trial: FrozenTrial) -> None:
        if self.space.is_valid(trial.arch):
            self._repeats.add(trial.arch)
        super().tell(trial)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "seen": sorted(self._repeats.keys)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._repeats.keys = set(state["seen"])
