"""Regularized evolution whose offspring are pre-screened by an online pairwise-ranking predictor."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from nasflow.errors import ConfigError, SearchExhausted
from nasflow.space.architecture import Architecture
from nasflow.strategies.base import Strategy
from nasflow.strategies.common import encode_all, one_blas_thread, preferred_encoding
from nasflow.strategies.fitness import Scored, select_best
from nasflow.trial import FrozenTrial

#: random draws tried for an unseen architecture before the space is taken as exhausted
_MAX_REDRAWS = 1000
#: Newton iterations of a ranker fit (it usually converges in 5-10) and the loss change that stops it
_NEWTON_STEPS = 50
_TOLERANCE = 1e-10


def better_matrix(values: np.ndarray, violation: np.ndarray) -> np.ndarray:
    """``M[i, j]`` is True when observation ``i`` beats observation ``j``.

    Less constraint violation wins; at equal violation ``i`` must Pareto-dominate ``j`` on the
    oriented (larger is better) objective values, which for one objective is plain ``>``. Ties and
    mutually non-dominated pairs beat neither way, so they carry no training signal.
    """
    values = np.asarray(values, dtype=float).reshape(len(values), -1)
    violation = np.asarray(violation, dtype=float)
    ge = np.all(values[:, None, :] >= values[None, :, :], axis=2)
    gt = np.any(values[:, None, :] > values[None, :, :], axis=2)
    less_violation = violation[:, None] < violation[None, :]
    same_violation = violation[:, None] == violation[None, :]
    return less_violation | (same_violation & ge & gt)


class PairwiseRanker:
    """A linear score ``w·x`` fitted by logistic regression on pairs of encodings.

    Each pair where ``a`` beats ``b`` is one example with features ``x_a - x_b`` and label 1 (its
    mirror ``x_b - x_a`` with label 0 gives the same loss, so it is implied). Without an intercept the
    probability that ``a`` beats ``b`` is ``sigmoid(w·x_a - w·x_b)``, so ranking by ``w·x`` is ranking
    by predicted wins. The loss is strictly convex (L2-regularised) and minimised by damped Newton
    steps from zero, so refitting on the same data reproduces the same weights.

    Args:
        l2: strength of the L2 penalty ``l2 / 2 * |w|^2`` added to the mean pair loss.
    """

    def __init__(self, l2: float = 0.01) -> None:
        self.l2 = l2
        self.weights: np.ndarray | None = None

    def fit(self, features: np.ndarray, better: np.ndarray) -> PairwiseRanker:
        """Fit on ``features`` (one row per observation) and ``better`` (see :func:`better_matrix`)."""
        features = np.asarray(features, dtype=float)
        rows, cols = np.nonzero(better)
        self.weights = np.zeros(features.shape[1])
        if len(rows) == 0:
            return self
        # The weights always lie in the span of the observations (the gradient does, and we start at
        # zero), so with more features than observations we solve in that span instead: same optimum,
        # at most n unknowns.
        with one_blas_thread():
            basis = None
            if features.shape[1] > features.shape[0]:
                _, _, vt = np.linalg.svd(features, full_matrices=False)
                basis = vt.T
                features = features @ basis
            self.weights = _newton(features, rows, cols, self.l2)
            if basis is not None:
                self.weights = basis @ self.weights
        return self

    def score(self, features: np.ndarray) -> np.ndarray:
        """Larger means predicted better; zeros before :meth:`fit`."""
        features = np.asarray(features, dtype=float)
        if self.weights is None:
            return np.zeros(len(features))
        return features @ self.weights


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _pair_loss(features: np.ndarray, rows: np.ndarray, cols: np.ndarray, l2: float, w: np.ndarray) -> float:
    scores = features @ w
    return float(np.logaddexp(0.0, scores[cols] - scores[rows]).mean() + 0.5 * l2 * (w @ w))


def _newton(features: np.ndarray, rows: np.ndarray, cols: np.ndarray, l2: float) -> np.ndarray:
    """Minimise the mean pair loss plus ``l2/2 |w|^2`` with damped Newton steps.

    Everything is computed from the n scores instead of the (up to n^2) pair differences: the
    gradient is ``X^T g`` and the Hessian ``X^T L X`` with ``g`` and the Laplacian-like ``L`` summed
    over pairs, which keeps a refit on a few hundred results at a few milliseconds. Newton converges
    in a handful of steps on this smooth, strongly convex loss and needs no step-size tuning.
    """
    n, d = features.shape
    count = len(rows)
    w = np.zeros(d)
    loss = _pair_loss(features, rows, cols, l2, w)
    for _ in range(_NEWTON_STEPS):
        scores = features @ w
        p = _sigmoid(scores[cols] - scores[rows])  # predicted chance that the pair is ordered wrongly
        slope = -p / count
        grad = features.T @ (np.bincount(rows, slope, n) - np.bincount(cols, slope, n)) + l2 * w
        curvature = p * (1.0 - p) / count
        laplacian = (
            np.bincount(rows * n + rows, curvature, n * n)
            + np.bincount(cols * n + cols, curvature, n * n)
            - np.bincount(rows * n + cols, curvature, n * n)
            - np.bincount(cols * n + rows, curvature, n * n)
        ).reshape(n, n)
        hessian = features.T @ laplacian @ features + l2 * np.eye(d)
        step = np.linalg.solve(hessian, grad)
        scale = 1.0
        while scale > 1e-4:  # backtracking keeps every step a descent step
            moved = w - scale * step
            moved_loss = _pair_loss(features, rows, cols, l2, moved)
            if moved_loss <= loss:
                break
            scale *= 0.5
        else:
            break
        w, converged = moved, loss - moved_loss < _TOLERANCE
        loss = moved_loss
        if converged:
            break
    return w


class PredictorEvolution(Strategy):
    """Regularized evolution with predictor-screened offspring (BRP-NAS / NPENAS style).

    The first ``warmup`` proposals are random samples. Afterwards each proposal builds ``candidates``
    unseen children, each a single mutation of a tournament winner (``sample_size`` members of the
    aging population of the last ``population_size`` results, as in regularized evolution), and
    proposes the child that a pairwise-ranking predictor scores highest. The predictor
    (:class:`PairwiseRanker`) is a logistic regression on differences of the space's preferred
    encoding (the path encoding on NB201, one-hot otherwise), trained on every ordered pair of the
    latest ``max_train`` results; it is refitted whenever new results arrived. With several objectives
    or constraints a pair is a training example when one member has less violation or Pareto-dominates
    the other, and tournaments pick a random non-dominated member.

    Args:
        population_size: members of the aging population (P of regularized evolution).
        sample_size: tournament size (S); with S = P every child comes from the current best member.
        candidates: children screened by the predictor per proposal.
        warmup: random proposals before the predictor is used.
        l2: L2 penalty of the ranker.
        max_train: the most recent results the ranker is trained on (bounds its cost per refit).
    """

    name = "predictor-evolution"

    def __init__(
        self,
        population_size: int = 10,
        sample_size: int = 10,
        candidates: int = 16,
        warmup: int = 10,
        l2: float = 0.01,
        max_train: int = 300,
    ) -> None:
        if isinstance(population_size, bool) or not isinstance(population_size, int) or population_size < 2:
            raise ConfigError(f"population_size must be an integer >= 2, got {population_size!r}")
        if isinstance(sample_size, bool) or not isinstance(sample_size, int):
            raise ConfigError(f"sample_size must be an integer, got {sample_size!r}")
        if not 1 <= sample_size <= population_size:
            raise ConfigError(
                f"sample_size must be between 1 and population_size ({population_size}), got {sample_size}"
            )
        if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1:
            raise ConfigError(f"candidates must be an integer >= 1, got {candidates!r}")
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 1:
            raise ConfigError(f"warmup must be an integer >= 1, got {warmup!r}")
        if isinstance(l2, bool) or not isinstance(l2, (int, float)) or not l2 > 0:
            raise ConfigError(f"l2 must be a number > 0, got {l2!r}")
        if isinstance(max_train, bool) or not isinstance(max_train, int) or max_train < 2:
            raise ConfigError(f"max_train must be an integer >= 2, got {max_train!r}")
        self.population_size = population_size
        self.sample_size = sample_size
        self.candidates = candidates
        self.warmup = warmup
        self.l2 = float(l2)
        self.max_train = max_train
        self._asked = 0
        self._history: list[Scored] = []  # every result with values, in the order told
        self._features: list[np.ndarray] = []  # encodings of the history, cached
        self._seen: set[str] = set()
        self._ranker = PairwiseRanker(self.l2)
        self._fitted_on = -1  # len(history) at the last fit; the fit is a pure function of the history

    # -- ask ---------------------------------------------------------------------------------
    def ask(self, n: int = 1) -> list[Architecture]:
        return [self._propose() for _ in range(n)]

    def _propose(self) -> Architecture:
        self._asked += 1
        if self._asked <= self.warmup or not self._history:
            return self._remember(self._unseen_sample())
        pool = self._offspring()
        if not pool:
            return self._remember(self._unseen_sample())
        if len(pool) == 1:
            return self._remember(pool[0])  # nothing to choose between: skip the refit
        return self._remember(pool[int(np.argmax(self.predict(pool)))])

    def _offspring(self) -> list[Architecture]:
        """Up to ``candidates`` distinct unseen mutants of tournament winners."""
        # The aging population is the latest results: older ones have left it.
        members = self._history[-self.population_size :]
        size = min(self.sample_size, len(members))
        pool: list[Architecture] = []
        keys: set[str] = set()
        for _ in range(4 * self.candidates):
            if len(pool) == self.candidates:
                break
            picks = self.rng.choice(len(members), size=size, replace=False)
            parent = select_best([members[int(i)] for i in picks], self.rng)
            child = self.space.mutate(parent.arch, self.rng)
            key = self.space.canonical(child)
            if key not in self._seen and key not in keys:
                pool.append(child)
                keys.add(key)
        return pool

    def _unseen_sample(self) -> Architecture:
        for _ in range(_MAX_REDRAWS):
            arch = self.space.sample(self.rng)
            if self.space.canonical(arch) not in self._seen:
                return arch
        raise SearchExhausted(
            f"predictor-evolution found no unseen architecture in {_MAX_REDRAWS} random draws after "
            f"{len(self._seen)} distinct ones; the space is (nearly) exhausted"
        )

    def _remember(self, arch: Architecture) -> Architecture:
        self._seen.add(self.space.canonical(arch))
        return arch

    # -- predictor ---------------------------------------------------------------------------
    def predict(self, archs: Sequence[Architecture]) -> np.ndarray:
        """Predicted ranking scores of ``archs`` (larger is better), refitting on new results first."""
        self._refit()
        return self._ranker.score(encode_all(self.space, list(archs), preferred_encoding(self.space)))

    def _refit(self) -> None:
        if self._fitted_on == len(self._history):
            return
        train = self._history[-self.max_train :]
        features = np.stack(self._features[-self.max_train :])
        better = better_matrix(np.array([s.values for s in train]), np.array([s.violation for s in train]))
        self._ranker.fit(features, better)
        self._fitted_on = len(self._history)

    # -- tell --------------------------------------------------------------------------------
    def tell(self, trial: FrozenTrial) -> None:
        # Results of architectures this strategy did not propose are welcome training data too.
        self._seen.add(self.space.canonical(trial.arch))
        scored = Scored.from_trial(trial, self.objectives)
        if scored is None:
            return
        self._history.append(scored)
        self._features.append(self.space.encode(scored.arch, preferred_encoding(self.space)))

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        # The ranker is not stored: it is refitted from the history, which gives identical weights.
        return {
            **super().state_dict(),
            "asked": self._asked,
            "history": [m.to_json() for m in self._history],
            "seen": sorted(self._seen),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._asked = int(state["asked"])
        self._history = [Scored.from_json(m) for m in state["history"]]
        kind = preferred_encoding(self.space)
        self._features = [self.space.encode(s.arch, kind) for s in self._history]
        self._seen = set(state["seen"])
        self._ranker = PairwiseRanker(self.l2)
        self._fitted_on = -1
