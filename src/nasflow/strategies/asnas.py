"""Reinforced evolution on binary strings, after AS-NAS (Zhang et al., IEEE TEVC 2021)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from nasflow.errors import ConfigError
from nasflow.space.architecture import Architecture
from nasflow.strategies.base import Strategy
from nasflow.strategies.bitstring import BitCodec
from nasflow.strategies.common import scalar_fitness
from nasflow.strategies.fitness import Scored
from nasflow.trial import FrozenTrial

#: the variation operators, in the order of their action values
OPERATORS: tuple[str, ...] = ("elite", "turnover", "mutual", "flip")
#: operator applications tried per proposal before falling back to a walk of single mutations
_VARIATION_TRIES = 10
#: steps of that walk (and uniform draws after it) before accepting a repeat
_FALLBACK_TRIES = 200
_SURVIVORS = ("worst", "oldest")


@dataclass
class _Member:
    arch: Architecture
    fitness: float  # scalar fitness minus the sparsity penalty; larger is better
    born: int  # arrival order, to break ties and to age members out
    bits: np.ndarray


class ASNAS(Strategy):
    """A steady-state genetic algorithm on bit strings whose operator is chosen by a tiny RL agent.

    Architectures are encoded by :class:`~nasflow.strategies.bitstring.BitCodec`. Each proposal
    picks one of four operators modelled on the I-Ching divination evolutionary algorithm (IDEA) that
    AS-NAS builds on, with softmax probabilities over the operators' action values ``Q``:

    * ``elite`` (IDEA's "intrication"): a random member receives a random run of decisions from the
      best member;
    * ``turnover``: a random run of bits of a tournament winner is reversed or complemented;
    * ``mutual``: two tournament winners exchange an inner run of decisions (the child keeps the
      first winner's outer bits and takes the second's inner ones);
    * ``flip``: every bit of a tournament winner flips with probability 1 / length (at least one).

    The child's string is repaired into a valid architecture; architectures proposed before (same
    canonical key) are redrawn, and when ten operator applications in a row give only known
    architectures (the parents' neighbourhood is used up) the proposal is the first unseen step of a
    random walk of single-decision mutations (``space.mutate``) from a tournament winner.

    When the child's result comes back, its operator is rewarded with 1 if the child beats the
    population's best, else with the child's fitness gain over its (best) parent divided by the
    population's fitness range, clipped to [-1, 1];
    ``Q <- Q + q_step * (reward - Q)``. The child then joins the population and, beyond
    ``population_size``, the worst member (or the oldest, with ``survivor="oldest"``) leaves.

    Fitness is ``scalar_fitness`` (equal weights with several objectives; constraint violations
    first) minus ``sparsity_weight`` times the number of ones in the string, the counterpart of
    AS-NAS's L1/2 sparsity regularisation: with NAS-Bench-201 that counts the edges that are not
    ``none``.

    Args:
        population_size: members kept; the first ``population_size`` proposals are random samples.
        tournament_size: members drawn to pick each parent (the best of them wins).
        temperature: softmax temperature over the action values (lower: greedier).
        q_step: step size of the action-value update (exponential recency weighting).
        sparsity_weight: fitness penalty per one in the string (0: none).
        survivor: which member leaves a full population, ``"worst"`` (elitist) or ``"oldest"``
            (aging, as in regularized evolution).
    """

    name = "as-nas"

    def __init__(
        self,
        population_size: int = 10,
        tournament_size: int = 10,
        temperature: float = 0.5,
        q_step: float = 0.1,
        sparsity_weight: float = 0.0,
        survivor: str = "worst",
    ) -> None:
        if isinstance(population_size, bool) or not isinstance(population_size, int) or population_size < 2:
            raise ConfigError(f"population_size must be an integer >= 2, got {population_size!r}")
        if (
            isinstance(tournament_size, bool)
            or not isinstance(tournament_size, int)
            or not 1 <= tournament_size <= population_size
        ):
            raise ConfigError(
                f"tournament_size must be an integer between 1 and population_size ({population_size}), "
                f"got {tournament_size!r}"
            )
        if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
            raise ConfigError(f"temperature must be a positive number, got {temperature!r}")
        if not (isinstance(q_step, (int, float)) and 0 < q_step <= 1):
            raise ConfigError(f"q_step must be in (0, 1], got {q_step!r}")
        if not (
            isinstance(sparsity_weight, (int, float))
            and math.isfinite(sparsity_weight)
            and sparsity_weight >= 0
        ):
            raise ConfigError(f"sparsity_weight must be a non-negative number, got {sparsity_weight!r}")
        if survivor not in _SURVIVORS:
            raise ConfigError(f"survivor must be one of {list(_SURVIVORS)}, got {survivor!r}")
        self.population_size = population_size
        self.tournament_size = tournament_size
        self.temperature = float(temperature)
        self.q_step = float(q_step)
        self.sparsity_weight = float(sparsity_weight)
        self.survivor = survivor

    def setup(self, space: Any, objectives: Any, seed: int | None) -> None:
        super().setup(space, objectives, seed)
        self.codec = BitCodec(space)
        self._population: list[_Member] = []
        self._values = np.zeros(len(OPERATORS))
        self._uses = np.zeros(len(OPERATORS), dtype=np.int64)
        self._pending: dict[str, tuple[int, float]] = {}  # canonical key -> (operator, parent fitness)
        self._seen: set[str] = set()
        self._asked = 0
        self._born = 0

    # -- inspection ----------------------------------------------------------------------------
    def operator_values(self) -> dict[str, float]:
        """The action value ``Q`` of every operator."""
        return dict(zip(OPERATORS, self._values.tolist()))

    def operator_probabilities(self) -> dict[str, float]:
        """The probability that the next variation uses each operator."""
        return dict(zip(OPERATORS, self._probabilities().tolist()))

    def origin(self, arch: Architecture) -> str | None:
        """The operator that produced a proposal still awaiting its result.

        None for random samples and fallback walks, which teach the operator values nothing.
        """
        entry = self._pending.get(self.space.canonical(arch))
        return None if entry is None or entry[0] < 0 else OPERATORS[entry[0]]

    # -- ask ---------------------------------------------------------------------------------
    def ask(self, n: int = 1) -> list[Architecture]:
        return [self._propose() for _ in range(n)]

    def _propose(self) -> Architecture:
        self._asked += 1
        if self._asked > self.population_size and len(self._population) >= 2 and self.codec.length > 0:
            for _ in range(_VARIATION_TRIES):
                operator = int(self.rng.choice(len(OPERATORS), p=self._probabilities()))
                child, parent_fitness = self._vary(operator)
                if child is not None and self._is_new(child):
                    return self._remember(child, operator, parent_fitness)
            # Every child tried was seen before (the parents' neighbourhood is used up): walk away
            # from a parent one mutation at a time until the walk reaches an unseen architecture.
            parent = self._tournament()
            child = parent.arch
            for _ in range(_FALLBACK_TRIES):
                child = self.space.mutate(child, self.rng)
                if self._is_new(child):
                    return self._remember(child, -1, parent.fitness)
        arch = self.space.sample(self.rng)
        for _ in range(_FALLBACK_TRIES):
            if self._is_new(arch):
                break
            arch = self.space.sample(self.rng)
        return self._remember(arch, -1, 0.0)

    def _probabilities(self) -> np.ndarray:
        logits = self._values / self.temperature
        weights = np.exp(logits - logits.max())
        return weights / weights.sum()

    def _vary(self, operator: int) -> tuple[Architecture | None, float]:
        """A child of the chosen operator and its parent's fitness; None when it equals the parent."""
        name = OPERATORS[operator]
        if name in ("elite", "mutual"):
            if name == "elite":
                donor = self._best()
                others = [m for m in self._population if m is not donor]
                parent = others[int(self.rng.integers(len(others)))]
                parent_fitness = parent.fitness
            else:
                parent = self._tournament()
                donor = self._tournament(exclude=parent)
                parent_fitness = max(parent.fitness, donor.fitness)
            bits = parent.bits.copy()
            start, stop = self._decision_run()
            bits[start:stop] = donor.bits[start:stop]
            if np.array_equal(bits, parent.bits):
                return None, parent_fitness
            return self.codec.decode(bits, self.rng), parent_fitness
        parent = self._tournament()
        bits = parent.bits.copy()
        if name == "turnover":
            length = self.codec.length
            span = int(self.rng.integers(2, max(3, length // 4 + 1))) if length > 1 else 1
            start = int(self.rng.integers(length - span + 1))
            if self.rng.random() < 0.5:
                bits[start : start + span] = bits[start : start + span][::-1].copy()
            else:
                bits[start : start + span] ^= 1
        else:
            flips = self.rng.random(len(bits)) < 1.0 / len(bits)
            if not flips.any():
                flips[int(self.rng.integers(len(bits)))] = True
            bits ^= flips.astype(np.uint8)
        if np.array_equal(bits, parent.bits):
            return None, parent.fitness
        return self.codec.decode(bits, self.rng), parent.fitness

    def _decision_run(self) -> tuple[int, int]:
        """Bit range of a random run of whole decisions, at most half of them (at least one)."""
        bounds = self.codec.boundaries
        count = len(bounds) - 1
        span = int(self.rng.integers(1, max(1, count // 2) + 1))
        first = int(self.rng.integers(count - span + 1))
        return bounds[first], bounds[first + span]

    def _tournament(self, exclude: _Member | None = None) -> _Member:
        pool = [m for m in self._population if m is not exclude] or self._population
        size = min(self.tournament_size, len(pool))
        picks = self.rng.choice(len(pool), size=size, replace=False)
        return max((pool[int(i)] for i in picks), key=lambda m: (m.fitness, -m.born))

    def _best(self) -> _Member:
        return max(self._population, key=lambda m: (m.fitness, -m.born))

    def _is_new(self, arch: Architecture) -> bool:
        return self.space.canonical(arch) not in self._seen

    def _remember(self, arch: Architecture, operator: int, parent_fitness: float) -> Architecture:
        key = self.space.canonical(arch)
        self._seen.add(key)
        self._pending[key] = (operator, parent_fitness)
        return arch

    # -- tell --------------------------------------------------------------------------------
    def tell(self, trial: FrozenTrial) -> None:
        key = self.space.canonical(trial.arch)
        operator, parent_fitness = self._pending.pop(key, (-1, 0.0))
        self._seen.add(key)
        scored = Scored.from_trial(trial, self.objectives)
        if scored is None or not self.space.is_valid(trial.arch):
            return
        bits = self.codec.encode(self.space.validate(trial.arch))
        fitness = scalar_fitness(scored) - self.sparsity_weight * float(bits.sum())
        if operator >= 0 and self._population:
            self._reward(operator, fitness, parent_fitness)
        self._population.append(_Member(trial.arch, fitness, self._born, bits))
        self._born += 1
        if len(self._population) > self.population_size:
            if self.survivor == "oldest":
                leaving = min(self._population, key=lambda m: m.born)
            else:
                leaving = min(self._population, key=lambda m: (m.fitness, m.born))
            self._population.remove(leaving)

    def _reward(self, operator: int, fitness: float, parent_fitness: float) -> None:
        values = [m.fitness for m in self._population]
        if fitness > max(values):
            reward = 1.0
        else:
            spread = max(values) - min(values)
            gain = fitness - parent_fitness
            reward = float(np.clip(gain / spread, -1.0, 1.0)) if spread > 0 else float(np.sign(gain))
        self._uses[operator] += 1
        self._values[operator] += self.q_step * (reward - self._values[operator])

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "population": [[m.arch.to_dict(), m.fitness, m.born] for m in self._population],
            "values": self._values.tolist(),
            "uses": self._uses.tolist(),
            "pending": [[k, op, fit] for k, (op, fit) in self._pending.items()],
            "seen": sorted(self._seen),
            "asked": self._asked,
            "born": self._born,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._population = [
            _Member(Architecture(a), float(f), int(b), self.codec.encode(Architecture(a)))
            for a, f, b in state["population"]
        ]
        self._values = np.array(state["values"], dtype=float)
        self._uses = np.array(state["uses"], dtype=np.int64)
        self._pending = {k: (int(op), float(fit)) for k, op, fit in state["pending"]}
        self._seen = set(state["seen"])
        self._asked = int(state["asked"])
        self._born = int(state["born"])
