"""Shared machinery of the surrogate-model strategies (``bo``, ``bananas``).

* :class:`SurrogateStrategy`: the bookkeeping both need (history of finished trials, canonical keys
  already proposed, the random initial design, JSON state) so that a subclass only fits a model and
  ranks candidates.
* :func:`model_targets`: one training target per finished trial from :func:`scalar_fitness`, bounded so
  a constraint violation's huge penalty cannot swamp the differences between feasible architectures.
* :func:`candidate_pool` / :func:`local_search`: candidates made by mutating the best architectures
  (never already-proposed canonical keys), and a greedy search of an acquisition function over them.
* :func:`expected_improvement`, :func:`upper_confidence_bound`, :func:`independent_thompson`.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.special import ndtr, ndtri
from scipy.stats import rankdata

from nasflow.errors import ConfigError, SearchExhausted
from nasflow.space.architecture import Architecture
from nasflow.space.base import DecisionSpace
from nasflow.strategies.base import Strategy
from nasflow.strategies.common import preferred_encoding, random_weights, scalar_fitness
from nasflow.strategies.fitness import Scored
from nasflow.trial import FrozenTrial

KeyFn = Callable[[Architecture], str]
#: random draws tried per wanted architecture before falling back to enumerating the space
_REDRAWS = 200
#: spaces up to this many combinations may be enumerated when random draws find nothing new
_ENUMERATE_LIMIT = 100_000
#: cached canonical keys / encodings kept before the caches are emptied (they only save time)
_CACHE_LIMIT = 50_000
#: spaces with at most this many combinations can have every distinct architecture scored per ask
EXHAUSTIVE_LIMIT = 50_000
#: how surrogate strategies choose the architectures they score (see SurrogateStrategy)
CANDIDATE_MODES = ("auto", "all", "local")


# -- training targets -------------------------------------------------------------------------------
def model_targets(history: Sequence[Scored], weights: np.ndarray | None = None) -> np.ndarray:
    """Training targets (larger is better) for the finished trials in ``history``.

    With several objectives each one is first scaled to [0, 1] over the history (as in ParEGO), so
    ``weights`` trade objectives rather than their units. Feasible trials get :func:`scalar_fitness`;
    infeasible ones get a value just below the worst feasible one, lower the larger their violation
    (the raw penalty of 1e6 per unit would make every feasible trial look alike to a regression model).
    The result is rank-transformed to standard-normal scores (:func:`gaussianise`) and standardised.
    """
    values = np.array([s.values for s in history], dtype=float)
    violation = np.array([s.violation for s in history], dtype=float)
    infeasible = violation > 0
    if values.shape[1] > 1 and not infeasible.all():
        # scaled over the feasible trials: an infeasible trial's target depends on its violation only
        # (and a trial screened out before evaluation has no values at all)
        low, high = values[~infeasible].min(axis=0), values[~infeasible].max(axis=0)
        values = (values - low) / np.where(high > low, high - low, 1.0)
    y = np.array(
        [scalar_fitness(Scored(s.arch, tuple(v), 0.0), weights) for s, v in zip(history, values)], dtype=float
    )
    if infeasible.all():
        y = -violation
    elif infeasible.any():
        feasible = y[~infeasible]
        spread = float(feasible.std()) or 1.0
        y[infeasible] = feasible.min() - spread * (1.0 + violation[infeasible] / violation.max())
    return standardise(gaussianise(y))


def gaussianise(y: np.ndarray) -> np.ndarray:
    """Replace values by the standard-normal quantiles of their ranks (ties share a rank).

    Accuracies of a search space are far from Gaussian: a long tail of broken architectures (10 % on
    CIFAR-10) would dominate a squared-error fit and squeeze the top candidates, which are the only
    ones that matter, into a sliver of the target range. Only the order of the targets is kept.
    """
    return ndtri((rankdata(y) - 0.5) / len(y))


def standardise(y: np.ndarray) -> np.ndarray:
    std = float(y.std())
    return (y - y.mean()) / (std if std > 0 else 1.0)


# -- acquisition functions --------------------------------------------------------------------------
def expected_improvement(mean: np.ndarray, std: np.ndarray, best: float, xi: float = 0.0) -> np.ndarray:
    """E[max(f - best - xi, 0)] under independent Gaussians N(mean, std^2)."""
    std = np.maximum(std, 1e-12)
    z = (mean - best - xi) / std
    return (mean - best - xi) * ndtr(z) + std * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


def upper_confidence_bound(mean: np.ndarray, std: np.ndarray, beta: float) -> np.ndarray:
    return mean + beta * std


def independent_thompson(mean: np.ndarray, std: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One independent draw per candidate from N(mean, std^2) (ITS in the BANANAS paper)."""
    return mean + std * rng.standard_normal(len(mean))


# -- candidates -------------------------------------------------------------------------------------
def candidate_pool(
    space: DecisionSpace,
    parents: Sequence[Architecture],
    rng: np.random.Generator,
    key: KeyFn,
    exclude: set[str],
    neighbours_per_parent: int,
    mutations_per_parent: int,
    n_random: int,
) -> list[Architecture]:
    """Distinct new architectures near ``parents`` plus a few random ones.

    For each parent: up to ``neighbours_per_parent`` of its single-decision neighbours (all of them
    when there are fewer, a random subset otherwise) and ``mutations_per_parent`` double mutations
    (two steps of ``space.mutate``, to reach a little further). Then ``n_random`` uniform samples.
    Architectures whose canonical key is in ``exclude`` or already in the pool are skipped.
    """
    pool: list[Architecture] = []
    keys: set[str] = set()

    def add(arch: Architecture) -> None:
        k = key(arch)
        if k not in exclude and k not in keys:
            keys.add(k)
            pool.append(arch)

    for parent in parents:
        neighbours = space.neighbors(parent)
        if len(neighbours) > neighbours_per_parent:
            picks = np.sort(rng.choice(len(neighbours), size=neighbours_per_parent, replace=False))
            neighbours = [neighbours[int(i)] for i in picks]
        for arch in neighbours:
            add(arch)
        for _ in range(mutations_per_parent):
            add(space.mutate(space.mutate(parent, rng), rng))
    for _ in range(n_random):
        add(space.sample(rng))
    return pool


def local_search(
    space: DecisionSpace,
    pool: list[Architecture],
    score: Callable[[list[Architecture]], np.ndarray],
    key: KeyFn,
    exclude: set[str],
    rounds: int,
    width: int,
) -> tuple[list[Architecture], np.ndarray]:
    """Score ``pool``, then ``rounds`` times add the unscored neighbours of the ``width`` best.

    This is a greedy hill climb on the acquisition function started from every candidate at once; it
    stops early when the best candidates have no unscored neighbours. Returns every scored candidate
    and its score (so callers can take the top few for a batch).
    """
    scored = list(pool)
    values = score(scored) if scored else np.zeros(0)
    keys = {key(a) for a in scored}
    expanded: set[str] = set()
    for _ in range(rounds):
        fresh: list[Architecture] = []
        for i in np.argsort(-values, kind="stable")[:width]:
            parent = scored[int(i)]
            parent_key = key(parent)
            if parent_key in expanded:
                continue
            expanded.add(parent_key)
            for arch in space.neighbors(parent):
                k = key(arch)
                if k not in exclude and k not in keys:
                    keys.add(k)
                    fresh.append(arch)
        if not fresh:
            break
        scored.extend(fresh)
        values = np.concatenate([values, score(fresh)])
    return scored, values


# -- the shared strategy bookkeeping ----------------------------------------------------------------
class SurrogateStrategy(Strategy):
    """Bookkeeping shared by strategies that fit a model on the history and rank new candidates.

    The first ``initial_samples`` proposals are distinct uniform samples; afterwards
    :meth:`_propose_batch` is called with the finished trials. No canonical key is ever proposed twice;
    when the space has nothing new left, :class:`SearchExhausted` is raised. Trials the strategy did
    not ask for are learned from too; failed ones only mark their architecture as seen.
    """

    def __init__(
        self, initial_samples: int, encoding: str | Sequence[str] | None, candidates: str = "auto"
    ) -> None:
        if isinstance(initial_samples, bool) or not isinstance(initial_samples, int) or initial_samples < 1:
            raise ConfigError(f"initial_samples must be an integer >= 1, got {initial_samples!r}")
        if encoding is not None and not isinstance(encoding, str):
            names = isinstance(encoding, Sequence) and all(isinstance(e, str) for e in encoding)
            if not names or not encoding:
                raise ConfigError(
                    f"encoding must be None (the space's preferred one), a name or a list of names, "
                    f"got {encoding!r}"
                )
            encoding = list(encoding)
        if candidates not in CANDIDATE_MODES:
            raise ConfigError(f"candidates must be one of {list(CANDIDATE_MODES)}, got {candidates!r}")
        self.initial_samples = initial_samples
        self.encoding = encoding
        self.candidates = candidates
        self._history: list[Scored] = []
        self._history_json: list[dict[str, Any]] = []
        self._seen: set[str] = set()
        self._asked = 0
        self._keys: dict[Architecture, str] = {}
        self._codes: dict[Architecture, np.ndarray] = {}
        # (architectures, canonical key -> row, codes, unseen mask, keys already masked)
        self._everything: tuple[list[Architecture], dict[str, int], np.ndarray, np.ndarray, set[str]] | None
        self._everything = None

    def setup(self, space: DecisionSpace, objectives: Sequence[Any], seed: int | None) -> None:
        super().setup(space, objectives, seed)
        kinds = preferred_encoding(space) if self.encoding is None else self.encoding
        self._kinds = [kinds] if isinstance(kinds, str) else list(kinds)
        unknown = [k for k in self._kinds if k not in space.encodings()]
        if unknown:
            raise ConfigError(
                f"encoding {unknown[0]!r} is not offered by space {space.name!r}; "
                f"allowed: {list(space.encodings())} or None"
            )
        if self.candidates == "all" and space.size() > EXHAUSTIVE_LIMIT:
            raise ConfigError(
                f"candidates='all' needs a space of at most {EXHAUSTIVE_LIMIT} combinations; "
                f"{space.name!r} has {space.size():.3g}. Use 'auto' or 'local'"
            )
        self._keys = {}
        self._codes = {}
        self._everything = None

    # -- ask / tell ---------------------------------------------------------------------------------
    def ask(self, n: int = 1) -> list[Architecture]:
        if self._asked < self.initial_samples or len(self._history) < 2:
            proposals = self._fresh_samples(n)
        else:
            weights = random_weights(len(self.objectives), self.rng)
            proposals = self._propose_batch(n, weights)
            if len(proposals) < n:
                proposals += self._fresh_samples(n - len(proposals), {self.key(a) for a in proposals})
        self._seen.update(self.key(a) for a in proposals)
        self._asked += n
        return proposals

    @abstractmethod
    def _propose_batch(self, n: int, weights: np.ndarray) -> list[Architecture]:
        """Up to ``n`` distinct unseen architectures chosen with the model (may return fewer)."""

    def tell(self, trial: FrozenTrial) -> None:
        if not self.space.is_valid(trial.arch):
            return  # a trial from another space or version cannot be encoded; nothing to learn
        self._seen.add(self.key(trial.arch))
        scored = Scored.from_trial(trial, self.objectives)
        if trial.screened and trial.violation > 0:
            # never evaluated, but known to be infeasible: the model learns to avoid its region
            scored = Scored(trial.arch, tuple(math.nan for _ in self.objectives), trial.violation)
        elif scored is None or not all(math.isfinite(v) for v in scored.values):
            return
        self._history.append(scored)
        self._history_json.append(scored.to_json())

    # -- helpers for subclasses -----------------------------------------------------------------------
    def key(self, arch: Architecture) -> str:
        """The canonical key, cached (computing it is a large part of scoring a candidate pool)."""
        found = self._keys.get(arch)
        if found is None:
            if len(self._keys) >= _CACHE_LIMIT:
                self._keys.clear()
            found = self._keys[arch] = self.space.canonical(arch)
        return found

    def encode(self, archs: Sequence[Architecture]) -> np.ndarray:
        """Encoded architectures, one per row (cached per architecture)."""
        rows = []
        for arch in archs:
            code = self._codes.get(arch)
            if code is None:
                if len(self._codes) >= _CACHE_LIMIT:
                    self._codes.clear()
                parts = [np.asarray(self.space.encode(arch, kind), dtype=float) for kind in self._kinds]
                code = self._codes[arch] = np.concatenate(parts)
            rows.append(code)
        return np.stack(rows)

    def candidates_for(
        self,
        parents: list[Architecture],
        score: Callable[[list[Architecture]], np.ndarray],
        n_random: int,
        local_rounds: int,
        width: int,
    ) -> tuple[list[Architecture], np.ndarray]:
        """The architectures to rank with the model, and their codes.

        ``candidates="all"`` (what ``"auto"`` picks for spaces of at most ``EXHAUSTIVE_LIMIT``
        combinations) takes every distinct architecture not proposed yet, so the model's choice is
        exact; ``"local"`` (``"auto"`` on larger spaces) takes the neighbours and double mutations of
        ``parents`` plus ``n_random`` samples, grown by ``local_rounds`` of greedy local search on
        ``score``.
        """
        if self.candidates != "local":
            everything = self.unseen_everything()  # None only for "auto" on a large space (see setup)
            if everything is not None:
                return everything
        pool = candidate_pool(
            self.space,
            parents,
            self.rng,
            self.key,
            self._seen,
            neighbours_per_parent=50,
            mutations_per_parent=2,
            n_random=n_random,
        )
        if not pool:
            return [], np.zeros((0, 0))
        archs, _ = local_search(self.space, pool, score, self.key, self._seen, local_rounds, width)
        return archs, self.encode(archs)

    def unseen_everything(self) -> tuple[list[Architecture], np.ndarray] | None:
        """Every distinct architecture not proposed yet and its code; None for spaces too large.

        One representative per canonical key, in enumeration order. The enumeration and encoding run
        once, at the first call (for NAS-Bench-201: 15,625 cells, 6,466 distinct, under a second);
        afterwards each call only filters out what was proposed since.
        """
        if self.space.size() > EXHAUSTIVE_LIMIT:
            return None
        if self._everything is None:
            archs: list[Architecture] = []
            index: dict[str, int] = {}
            for arch in self.space.enumerate():
                index.setdefault(self.space.canonical(arch), len(archs))
                if len(index) > len(archs):
                    archs.append(arch)
            codes = (
                np.hstack(
                    [
                        np.stack([np.asarray(self.space.encode(a, k), dtype=float) for a in archs])
                        for k in self._kinds
                    ]
                )
                if archs
                else np.zeros((0, 0))
            )
            self._everything = (archs, index, codes, np.ones(len(archs), dtype=bool), set())
        archs, index, codes, unseen, marked = self._everything
        for k in self._seen - marked:  # only what was proposed since the last call
            if k in index:
                unseen[index[k]] = False
        marked |= self._seen
        keep = np.flatnonzero(unseen)
        return [archs[i] for i in keep], codes[keep]

    def top_parents(self, targets: np.ndarray, count: int) -> list[Architecture]:
        """The ``count`` best distinct architectures of the history by model target."""
        parents: list[Architecture] = []
        keys: set[str] = set()
        for i in np.argsort(-targets, kind="stable"):
            arch = self._history[int(i)].arch
            k = self.key(arch)
            if k not in keys:
                keys.add(k)
                parents.append(arch)
                if len(parents) == count:
                    break
        return parents

    def _fresh_samples(self, n: int, taken: set[str] | None = None) -> list[Architecture]:
        """``n`` uniform samples with new canonical keys; enumerates small spaces when draws stall."""
        exclude = self._seen | (taken or set())
        found: list[Architecture] = []
        for _ in range(_REDRAWS * n):
            if len(found) == n:
                return found
            arch = self.space.sample(self.rng)
            k = self.key(arch)
            if k not in exclude:
                exclude.add(k)
                found.append(arch)
        if len(found) < n and self.space.size() <= _ENUMERATE_LIMIT:
            rest = [a for a in self.space.enumerate() if self.key(a) not in exclude]
            while rest and len(found) < n:
                arch = rest.pop(int(self.rng.integers(len(rest))))
                k = self.key(arch)
                if k not in exclude:  # equivalent architectures share a key
                    exclude.add(k)
                    found.append(arch)
        if len(found) < n:
            raise SearchExhausted(
                f"{self.name} found only {len(found)} of {n} architectures not proposed before; "
                f"{len(self._seen)} distinct ones were proposed and the space is (nearly) exhausted"
            )
        return found

    # -- state ----------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "asked": self._asked,
            "seen": sorted(self._seen),
            "history": list(self._history_json),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._asked = int(state["asked"])
        self._seen = set(state["seen"])
        self._history_json = list(state["history"])
        self._history = [Scored.from_json(h) for h in self._history_json]
