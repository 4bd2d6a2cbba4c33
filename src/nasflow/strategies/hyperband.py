"""Hyperband (Li et al., JMLR 2018) and BOHB (Falkner, Klein & Hutter, ICML 2018).

Both spend a small budget (e.g. few epochs) on many architectures and more on the promising ones.
Each evaluation is one trial proposed as a :class:`Suggestion` whose ``fidelity`` names the budget,
e.g. ``{"epochs": 3.0}``; the study hands it to the evaluator as ``context.fidelity``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nasflow.errors import ConfigError
from nasflow.objectives.spec import Objective
from nasflow.space.architecture import Architecture
from nasflow.space.base import DecisionSpace
from nasflow.strategies.base import Strategy, Suggestion
from nasflow.strategies.common import random_weights, scalar_fitness
from nasflow.strategies.fitness import Scored
from nasflow.trial import FrozenTrial

#: random draws tried for an architecture not sampled before, after which repeats are allowed
_MAX_REDRAWS = 1000
#: slack for floating-point budget arithmetic (e.g. 9 * 3**-2 must count as 1)
_EPS = 1e-9

PENDING, RUNNING, DONE = "pending", "running", "done"


@dataclass
class _Job:
    """One evaluation of one architecture at the budget of its bracket's current rung."""

    arch: Architecture
    status: str = PENDING
    fitness: float | None = None  # scalar fitness once done; None while open or when the trial failed

    def to_json(self) -> dict[str, Any]:
        return {"arch": self.arch.to_dict(), "status": self.status, "fitness": self.fitness}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _Job:
        return cls(Architecture(data["arch"]), data["status"], data["fitness"])


@dataclass
class _Bracket:
    """One run of successive halving; only its current rung's jobs are kept."""

    number: int  # position in the endless sequence of brackets, from 0
    weights: list[float]  # objective weights of its scalar fitness (random per bracket with several)
    rung: int = 0
    quota: int = 0  # jobs the current rung will have (rung 0 samples them as they are handed out)
    jobs: list[_Job] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "weights": self.weights,
            "rung": self.rung,
            "quota": self.quota,
            "jobs": [job.to_json() for job in self.jobs],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _Bracket:
        jobs = [_Job.from_json(j) for j in data["jobs"]]
        return cls(int(data["number"]), list(data["weights"]), int(data["rung"]), int(data["quota"]), jobs)


def _check_number(name: str, value: object, low: float, inclusive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if value < low or (value == low and not inclusive):
        raise ConfigError(f"{name} must be {'>=' if inclusive else '>'} {low}, got {value!r}")
    return float(value)


class Hyperband(Strategy):
    """Hyperband: brackets of successive halving over a fidelity such as epochs.

    Budgets are ``max_resource * eta**-k`` for ``k = 0 .. s_max``, where ``s_max`` is the largest
    ``k`` keeping the budget at or above ``min_resource`` (rounded to whole numbers when both bounds
    are integers, as for epochs). Bracket ``s`` (``s = s_max, s_max - 1, .., 0``, then again from
    ``s_max``, for as long as the study's budget lasts) samples ``ceil((s_max + 1) / (s + 1) * eta**s)``
    new architectures at budget ``max_resource * eta**-s``; when all results of a rung are in, the best
    ``1 / eta`` of them (by scalar fitness of that rung's trials; failed trials are never promoted) are
    evaluated again at ``eta`` times the budget, up to ``max_resource``. With ``eta=3``, ``min=1``,
    ``max=9``: 9 architectures at 1, the best 3 at 3, the best at 9; then 5 at 3 and the best at 9;
    then 3 at 9. Every evaluation is its own trial, so the study records each rung's result.

    ``ask(n)`` hands out the open jobs of the oldest bracket first; when every open bracket waits for
    results (its rung is handed out but not finished), it opens the next bracket, so parallel workers
    never idle and nothing waits on a lost result. Results are matched to jobs by architecture (and
    budget where the trial records it). New architectures are uniformly random and not sampled before
    (repeats only once 1000 draws find nothing new). A resumed state hands out again the jobs that
    were running when it was saved: a study never reports trials that an interruption cut off.

    Args:
        resource: the fidelity key, e.g. ``"epochs"`` or ``"data_fraction"`` (both understood by
            :class:`~nasflow.estimators.train.TrainEvaluator`).
        min_resource: the smallest budget.
        max_resource: the full budget; the last rung of every bracket evaluates at exactly this.
        eta: the halving rate: each rung keeps the best ``1 / eta`` for ``eta`` times the budget.
    """

    name = "hyperband"

    def __init__(
        self,
        resource: str = "epochs",
        min_resource: float = 1,
        max_resource: float = 9,
        eta: float = 3,
    ) -> None:
        if not isinstance(resource, str) or not resource:
            raise ConfigError(
                f"resource must be a non-empty fidelity name such as 'epochs', got {resource!r}"
            )
        low = _check_number("min_resource", min_resource, 0.0)
        high = _check_number("max_resource", max_resource, low, inclusive=True)
        _check_number("eta", eta, 2.0, inclusive=True)
        self.resource = resource
        self.min_resource = min_resource
        self.max_resource = max_resource
        self.eta = eta
        self.s_max = 0
        while high * eta ** -(self.s_max + 1) >= low * (1 - _EPS):
            self.s_max += 1
        whole = all(isinstance(v, int) for v in (min_resource, max_resource))
        #: budget of each level, smallest first; level ``s_max`` is max_resource
        self.budgets: list[float] = []
        for level in range(self.s_max + 1):
            value = high * eta ** (level - self.s_max)
            self.budgets.append(float(max(low, math.floor(value + 0.5))) if whole else value)
        self.budgets[-1] = high
        self._opened = 0
        self._brackets: list[_Bracket] = []
        self._seen: set[str] = set()

    # -- schedule ----------------------------------------------------------------------------
    def bracket_rungs(self, number: int) -> list[tuple[int, float]]:
        """``(configurations, budget)`` of each rung of bracket ``number`` (before any failures)."""
        s = self.s_max - number % (self.s_max + 1)
        first = math.ceil((self.s_max + 1) / (s + 1) * self.eta**s - _EPS)
        return [
            (math.floor(first * self.eta**-i + _EPS), self.budgets[self.s_max - s + i]) for i in range(s + 1)
        ]

    def _suggest(self, bracket: _Bracket, job: _Job) -> Suggestion:
        job.status = RUNNING
        budget = self.bracket_rungs(bracket.number)[bracket.rung][1]
        return Suggestion(job.arch, {self.resource: budget})

    # -- ask ---------------------------------------------------------------------------------
    def ask(self, n: int = 1) -> list[Suggestion]:  # type: ignore[override]
        return [self._next() for _ in range(n)]

    def _next(self) -> Suggestion:
        for bracket in self._brackets:
            suggestion = self._hand_out(bracket)
            if suggestion is not None:
                return suggestion
        # Every open bracket waits for results: start the next one rather than leave a worker idle.
        bracket = _Bracket(self._opened, random_weights(len(self.objectives), self.rng).tolist())
        bracket.quota = self.bracket_rungs(bracket.number)[0][0]
        self._opened += 1
        self._brackets.append(bracket)
        suggestion = self._hand_out(bracket)
        assert suggestion is not None  # a fresh bracket always needs a new architecture
        return suggestion

    def _hand_out(self, bracket: _Bracket) -> Suggestion | None:
        for job in bracket.jobs:
            if job.status == PENDING:
                return self._suggest(bracket, job)
        if bracket.rung == 0 and len(bracket.jobs) < bracket.quota:
            arch = self._new_architecture(bracket)
            self._seen.add(self.space.canonical(arch))
            bracket.jobs.append(_Job(arch))
            return self._suggest(bracket, bracket.jobs[-1])
        return None

    def _new_architecture(self, bracket: _Bracket) -> Architecture:
        """A new configuration for the first rung of ``bracket`` (BOHB overrides this)."""
        return self._unseen_sample()

    def _unseen_sample(self) -> Architecture:
        for _ in range(_MAX_REDRAWS):
            arch = self.space.sample(self.rng)
            if self.space.canonical(arch) not in self._seen:
                return arch
        return self.space.sample(self.rng)  # the space is (nearly) exhausted: allow a repeat

    # -- tell --------------------------------------------------------------------------------
    def tell(self, trial: FrozenTrial) -> None:
        scored = Scored.from_trial(trial, self.objectives)
        self._observe(trial, scored)
        found = self._match(trial)
        if found is None:
            return  # not ours (or reported twice): it cannot change the schedule
        bracket, job = found
        job.status = DONE
        job.fitness = None if scored is None else scalar_fitness(scored, bracket.weights)
        if len(bracket.jobs) == bracket.quota and all(j.status == DONE for j in bracket.jobs):
            self._promote(bracket)

    def _match(self, trial: FrozenTrial) -> tuple[_Bracket, _Job] | None:
        """The open job this trial reports: same architecture, preferring the same budget, then running."""
        value = trial.fidelity.get(self.resource)
        options = []
        for bracket in self._brackets:
            budget = self.bracket_rungs(bracket.number)[bracket.rung][1]
            for job in bracket.jobs:
                if job.status != DONE and job.arch == trial.arch:
                    same_budget = value is not None and float(value) == budget
                    options.append((not same_budget, job.status != RUNNING, bracket, job))
        if not options:
            return None
        best = min(range(len(options)), key=lambda i: (options[i][0], options[i][1], i))
        return options[best][2], options[best][3]

    def _promote(self, bracket: _Bracket) -> None:
        rungs = self.bracket_rungs(bracket.number)
        finished = [j for j in bracket.jobs if j.fitness is not None]
        # stable sort: among equal results the one sampled (or promoted) first goes on
        finished.sort(key=lambda j: -j.fitness)  # type: ignore[operator]
        if bracket.rung + 1 == len(rungs) or not finished:
            self._brackets.remove(bracket)
            return
        bracket.rung += 1
        bracket.jobs = [_Job(j.arch) for j in finished[: rungs[bracket.rung][0]]]
        bracket.quota = len(bracket.jobs)

    def _observe(self, trial: FrozenTrial, scored: Scored | None) -> None:
        """Hook for model-based subclasses: every reported trial, matched or not."""

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "opened": self._opened,
            "brackets": [b.to_json() for b in self._brackets],
            "seen": sorted(self._seen),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._opened = int(state["opened"])
        self._brackets = [_Bracket.from_json(b) for b in state["brackets"]]
        for bracket in self._brackets:
            for job in bracket.jobs:
                if job.status == RUNNING:  # cut off by the interruption: hand it out again
                    job.status = PENDING
        self._seen = set(state["seen"])


class BOHB(Hyperband):
    """BOHB: Hyperband whose new architectures come from a TPE-like density-ratio model.

    The schedule is Hyperband's. For each new architecture, with probability ``random_fraction`` it
    is a uniform random sample; otherwise the model picks it. The model uses the results at the
    largest budget that has at least ``min_points + 2`` of them: the best ``max(min_points,
    top_fraction * N)`` form the "good" set and the worst ``max(min_points, (1 - top_fraction) * N)``
    the "bad" set (they overlap while N is small; failed trials are the worst). Each set gets a
    product-kernel density over the categorical decisions (Aitchison-Aitken kernel: a value keeps
    ``1 - bandwidth`` of its mass and spreads ``bandwidth`` evenly over the other choices), and the
    proposal is the candidate with the largest ratio ``l(x) / g(x)`` of good to bad density among
    ``candidates`` unseen architectures: half single-decision mutations of good ones, half uniform
    samples. Until some budget has enough results, every new architecture is random (plain Hyperband).

    Args:
        resource, min_resource, max_resource, eta: as for :class:`Hyperband`.
        random_fraction: share of new architectures drawn uniformly at random (keeps exploring).
        top_fraction: share of results that make the "good" set.
        candidates: architectures scored by the density ratio per model-based proposal.
        bandwidth: mass a kernel moves off its observed value (capped at uniform); smaller = sharper.
        min_points: minimum size of each set; ``None`` means the number of decisions + 1 (as in BOHB).
    """

    name = "bohb"

    def __init__(
        self,
        resource: str = "epochs",
        min_resource: float = 1,
        max_resource: float = 9,
        eta: float = 3,
        random_fraction: float = 1 / 3,
        top_fraction: float = 0.15,
        candidates: int = 64,
        bandwidth: float = 0.4,
        min_points: int | None = None,
    ) -> None:
        super().__init__(resource, min_resource, max_resource, eta)
        _check_number("random_fraction", random_fraction, 0.0, inclusive=True)
        if random_fraction > 1:
            raise ConfigError(f"random_fraction must be between 0 and 1, got {random_fraction!r}")
        _check_number("top_fraction", top_fraction, 0.0)
        if top_fraction >= 1:
            raise ConfigError(f"top_fraction must be between 0 and 1 (exclusive), got {top_fraction!r}")
        if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1:
            raise ConfigError(f"candidates must be an integer >= 1, got {candidates!r}")
        _check_number("bandwidth", bandwidth, 0.0)
        if min_points is not None and (
            isinstance(min_points, bool) or not isinstance(min_points, int) or min_points < 1
        ):
            raise ConfigError(f"min_points must be None or an integer >= 1, got {min_points!r}")
        self.random_fraction = random_fraction
        self.top_fraction = top_fraction
        self.candidates = candidates
        self.bandwidth = bandwidth
        self.min_points = min_points
        #: per budget level, every result reported at that budget (None: the trial failed)
        self._results: list[list[tuple[Architecture, Scored | None]]] = [[] for _ in self.budgets]
        self._codes: list[list[np.ndarray]] = [[] for _ in self.budgets]  # their choice indices

    def setup(self, space: DecisionSpace, objectives: Sequence[Objective], seed: int | None) -> None:
        super().setup(space, objectives, seed)
        decisions = space.decisions()
        self._names = list(decisions)
        # keyed by (type, value) so that 1, 1.0 and True stay different choices, as in the space
        self._index = [{(type(v), v): i for i, v in enumerate(c)} for c in decisions.values()]
        self._sizes = np.array([len(c) for c in decisions.values()], dtype=float)

    # -- observations ------------------------------------------------------------------------
    def _observe(self, trial: FrozenTrial, scored: Scored | None) -> None:
        value = trial.fidelity.get(self.resource)
        if value is None:
            level = self.s_max  # no fidelity recorded means a full evaluation
        else:
            matches = [i for i, budget in enumerate(self.budgets) if float(value) == budget]
            if not matches:
                return  # a budget outside the schedule says little about any of its levels
            level = matches[0]
        self._record(level, trial.arch, scored)

    def _record(self, level: int, arch: Architecture, scored: Scored | None) -> None:
        self._results[level].append((arch, scored))
        self._codes[level].append(self._encode([arch])[0])

    # -- the model ---------------------------------------------------------------------------
    def _new_architecture(self, bracket: _Bracket) -> Architecture:
        if self.rng.random() < self.random_fraction:
            return self._unseen_sample()
        sets = self._good_and_bad(bracket.weights)
        if sets is None:
            return self._unseen_sample()
        good, good_codes, bad_codes = sets
        pool = self._candidates(good)
        if not pool:
            return self._unseen_sample()
        codes = self._encode(pool)
        ratio = self._log_density(codes, good_codes) - self._log_density(codes, bad_codes)
        return pool[int(np.argmax(ratio))]

    def _good_and_bad(
        self, weights: Sequence[float]
    ) -> tuple[list[Architecture], np.ndarray, np.ndarray] | None:
        """Good architectures and the codes of good and bad ones, at the largest budget with enough data."""
        least = self._min_points() + 2
        for level in reversed(range(len(self.budgets))):
            results = self._results[level]
            if len(results) < least:
                continue
            fitness = [-math.inf if s is None else scalar_fitness(s, weights) for _, s in results]
            order = sorted(range(len(results)), key=lambda i: -fitness[i])  # stable: earlier first on ties
            top = math.ceil(self.top_fraction * len(results))
            good = order[: max(self._min_points(), top)]
            bad = order[len(order) - max(self._min_points(), len(results) - top) :]
            codes = np.stack(self._codes[level])
            return [results[i][0] for i in good], codes[good], codes[bad]
        return None

    def _min_points(self) -> int:
        return len(self.space.decisions()) + 1 if self.min_points is None else self.min_points

    def _candidates(self, good: list[Architecture]) -> list[Architecture]:
        pool: list[Architecture] = []
        keys: set[str] = set()
        for i in range(self.candidates):
            if i % 2 == 0:
                arch = self.space.mutate(good[int(self.rng.integers(len(good)))], self.rng)
            else:
                arch = self.space.sample(self.rng)
            key = self.space.canonical(arch)
            if key not in self._seen and key not in keys:
                pool.append(arch)
                keys.add(key)
        return pool

    def _encode(self, archs: Sequence[Architecture]) -> np.ndarray:
        """Choice indices, one row per architecture (works for any decision values)."""
        rows = [[self._index[j][(type(a[k]), a[k])] for j, k in enumerate(self._names)] for a in archs]
        return np.array(rows, dtype=int).reshape(len(archs), len(self._names))

    def _log_density(self, codes: np.ndarray, data: np.ndarray) -> np.ndarray:
        """Log of the product-kernel density of ``data`` at each row of ``codes``."""
        sizes = self._sizes
        spread = np.minimum(self.bandwidth, (sizes - 1) / sizes)
        same = np.log1p(-spread)
        with np.errstate(divide="ignore"):  # decisions with one choice never differ
            other = np.log(spread / np.maximum(sizes - 1, 1))
        equal = codes[:, None, :] == data[None, :, :]
        per_point = np.where(equal, same, other).sum(axis=2)
        top = per_point.max(axis=1, keepdims=True)
        return top[:, 0] + np.log(np.exp(per_point - top).mean(axis=1))

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        results = [
            [{"arch": a.to_dict(), "scored": None if s is None else s.to_json()} for a, s in level]
            for level in self._results
        ]
        return {**super().state_dict(), "results": results}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._results = [[] for _ in self.budgets]
        self._codes = [[] for _ in self.budgets]
        for level, results in enumerate(state["results"]):
            for r in results:
                scored = None if r["scored"] is None else Scored.from_json(r["scored"])
                self._record(level, Architecture(r["arch"]), scored)
