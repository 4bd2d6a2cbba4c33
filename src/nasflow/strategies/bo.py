"""Bayesian optimisation with a Gaussian process over architecture encodings."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.linalg import cho_factor, cho_solve, solve_triangular

from nasflow.errors import ConfigError
from nasflow.space.architecture import Architecture
from nasflow.strategies.acquisition import (
    SurrogateStrategy,
    expected_improvement,
    model_targets,
    upper_confidence_bound,
)
from nasflow.strategies.common import one_blas_thread
from nasflow.trial import FrozenTrial

#: lengthscales tried, as multiples of the median distance between the training architectures
LENGTHSCALE_FACTORS = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0)
#: observation noise tried, as a fraction of the signal variance
NOISE_LEVELS = (1e-3, 1e-2, 0.05, 0.2)
_JITTER = 1e-9
#: at most this many unfinished proposals are believed (a trial lost without a tell must not stay forever)
_MAX_PENDING = 32


def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise squared Euclidean distances; for 0/1 encodings this is the Hamming distance."""
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


class HammingGP:
    """A zero-mean GP on standardised targets with kernel ``s2 * exp(-d(x, x') / lengthscale)``.

    ``d`` is the squared Euclidean distance of the encodings, i.e. the number of differing bits of a
    one-hot or path encoding (an exponentiated Hamming kernel, positive definite on binary vectors).
    The lengthscale and the noise-to-signal ratio are chosen on a fixed grid by the marginal
    likelihood, with the signal variance ``s2`` profiled out in closed form; a grid (not a gradient
    optimiser) keeps the fit exactly reproducible and cheap.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, lengthscale: float | None = None, noise: float = 0.0):
        self.x, self.y = x, y
        distances = squared_distances(x, x)
        if lengthscale is None:
            lengthscale, noise = self._select(distances, y)
        self.lengthscale, self.noise = lengthscale, noise
        self._factor(distances)

    @staticmethod
    def _select(distances: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        upper = distances[np.triu_indices(len(y), 1)]
        positive = upper[upper > 0]
        unit = float(np.median(positive)) if len(positive) else 1.0
        best, choice = -math.inf, (unit, NOISE_LEVELS[0])
        eye = np.eye(len(y))
        for factor in LENGTHSCALE_FACTORS:
            base = np.exp(-distances / (unit * factor))
            for noise in NOISE_LEVELS:
                try:
                    chol, lower = cho_factor(base + (noise + _JITTER) * eye, lower=True)
                except np.linalg.LinAlgError:
                    continue
                quad = float(y @ cho_solve((chol, lower), y))
                logdet = 2.0 * float(np.log(np.diag(chol)).sum())
                score = -0.5 * len(y) * math.log(max(quad, 1e-300) / len(y)) - 0.5 * logdet
                if score > best:
                    best, choice = score, (unit * factor, noise)
        return choice

    def _factor(self, distances: np.ndarray) -> None:
        k = np.exp(-distances / self.lengthscale) + (self.noise + _JITTER) * np.eye(len(self.y))
        self._chol = np.linalg.cholesky(k)
        self._alpha = cho_solve((self._chol, True), self.y)
        self.signal = max(float(self.y @ self._alpha) / len(self.y), 1e-12)

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation of the latent function at the rows of ``x``."""
        cross = np.exp(-squared_distances(x, self.x) / self.lengthscale)
        mean = cross @ self._alpha
        v = solve_triangular(self._chol, cross.T, lower=True, check_finite=False)
        var = self.signal * np.maximum(1.0 - (v * v).sum(0), 1e-12)
        return mean, np.sqrt(var)

    def believe(self, x: np.ndarray, y: np.ndarray) -> HammingGP:
        """The same GP conditioned on fantasised observations (kriging believer), same hyperparameters."""
        return HammingGP(np.vstack([self.x, x]), np.concatenate([self.y, y]), self.lengthscale, self.noise)


class GaussianProcessBO(SurrogateStrategy):
    """GP-based Bayesian optimisation over encoded architectures.

    After ``initial_samples`` distinct random architectures, every ask fits a :class:`HammingGP` to all
    finished trials (rank-normalised :func:`model_targets`; several objectives are scalarised with
    fresh random weights at each ask, as in ParEGO) and proposes the candidate with the largest
    acquisition value. With ``candidates="all"`` (what ``"auto"`` picks for spaces of at most
    ``EXHAUSTIVE_LIMIT`` combinations, e.g. NAS-Bench-201) the acquisition is maximised exactly: every
    distinct architecture not proposed yet is scored; the GP's variance over thousands of candidates
    then dominates the cost (O(candidates x history^2)), which is why it is not the default. With
    ``"local"`` (the default, and ``"auto"`` on larger spaces) the candidates are the single-decision
    neighbours and double mutations of the ``n_parents`` best architectures plus ``n_random`` random
    samples, refined by ``local_rounds`` rounds of greedy local search on the acquisition.
    A canonical key proposed before is never a candidate.

    Parallel proposals use the kriging believer: within a batch (``ask(n)``), each pick is added to
    the GP as a fantasy observation equal to its posterior mean before the next pick is scored, which
    shrinks the uncertainty around it so the next pick goes elsewhere; proposals asked earlier and not
    yet told (other workers still evaluating them) are believed the same way.

    Args:
        initial_samples: random architectures before the model is used.
        acquisition: ``"ei"`` (expected improvement over the best observed target) or ``"ucb"``.
        beta: UCB's exploration weight (mean + beta * std), ignored for EI.
        xi: EI's improvement margin in standardised target units, ignored for UCB.
        encoding: the encoding(s) the kernel compares, a name or a list of names (concatenated); the
            default ``"onehot"`` makes the kernel an exponentiated Hamming kernel on the decisions.
            ``None`` means ``preferred_encoding(space)`` (``path`` on NAS-Bench-201).
        candidates: ``"local"`` (mutation-based pool, any space), ``"all"`` (score every unseen
            architecture; spaces of at most ``EXHAUSTIVE_LIMIT`` combinations) or ``"auto"`` (``"all"``
            where allowed).
        n_parents: best architectures whose neighbourhoods are searched (``"local"`` only).
        n_random: random samples added to the candidates (``"local"`` only).
        local_rounds: rounds of greedy neighbour expansion on the acquisition (``"local"`` only).
    """

    name = "bo"

    def __init__(
        self,
        initial_samples: int = 10,
        acquisition: str = "ei",
        beta: float = 2.0,
        xi: float = 0.0,
        encoding: str | Sequence[str] | None = "onehot",
        candidates: str = "local",
        n_parents: int = 10,
        n_random: int = 100,
        local_rounds: int = 2,
    ) -> None:
        super().__init__(initial_samples, encoding, candidates)
        if acquisition not in ("ei", "ucb"):
            raise ConfigError(f"acquisition must be 'ei' or 'ucb', got {acquisition!r}")
        if not isinstance(beta, (int, float)) or isinstance(beta, bool) or beta < 0:
            raise ConfigError(f"beta must be a number >= 0, got {beta!r}")
        if not isinstance(xi, (int, float)) or isinstance(xi, bool) or xi < 0:
            raise ConfigError(f"xi must be a number >= 0, got {xi!r}")
        for label, value, low in (("n_parents", n_parents, 1), ("n_random", n_random, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{label} must be an integer >= {low}, got {value!r}")
        if isinstance(local_rounds, bool) or not isinstance(local_rounds, int) or local_rounds < 0:
            raise ConfigError(f"local_rounds must be an integer >= 0, got {local_rounds!r}")
        self.acquisition = acquisition
        self.beta = beta
        self.xi = xi
        self.n_parents = n_parents
        self.n_random = n_random
        self.local_rounds = local_rounds
        self._pending: list[dict[str, Any]] = []  # asked, not yet told (other workers evaluate them)

    def fit(self, weights: np.ndarray | None = None) -> tuple[HammingGP, np.ndarray]:
        """The GP on the current history and its training targets."""
        y = model_targets(self._history, weights)
        return HammingGP(self.encode([s.arch for s in self._history]), y), y

    def ask(self, n: int = 1) -> list[Architecture]:
        proposals = super().ask(n)
        self._pending = (self._pending + [a.to_dict() for a in proposals])[-_MAX_PENDING:]
        return proposals

    def tell(self, trial: FrozenTrial) -> None:
        super().tell(trial)
        if self.space.is_valid(trial.arch):
            done = self.key(trial.arch)
            self._pending = [a for a in self._pending if self.key(Architecture(a)) != done]

    def _propose_batch(self, n: int, weights: np.ndarray) -> list[Architecture]:
        with one_blas_thread():
            return self._propose_with_model(n, weights)

    def _propose_with_model(self, n: int, weights: np.ndarray) -> list[Architecture]:
        gp, y = self.fit(weights)
        best = float(y.max())
        if self._pending:
            # proposals still being evaluated by other workers count as (believed) observations
            code = self.encode([Architecture(a) for a in self._pending])
            gp = gp.believe(code, gp.predict(code)[0])

        def score_codes(codes: np.ndarray, model: HammingGP) -> np.ndarray:
            mean, std = model.predict(codes)
            if self.acquisition == "ei":
                return expected_improvement(mean, std, best, self.xi)
            return upper_confidence_bound(mean, std, self.beta)

        candidates, codes = self.candidates_for(
            self.top_parents(y, self.n_parents),
            lambda archs: score_codes(self.encode(archs), gp),
            self.n_random,
            self.local_rounds,
            width=3,
        )
        values = score_codes(codes, gp) if len(candidates) else np.zeros(0)
        picks: list[Architecture] = []
        while len(candidates):
            i = int(np.argmax(values))
            picks.append(candidates.pop(i))
            picked, codes = codes[i : i + 1], np.delete(codes, i, axis=0)
            if len(picks) == n or not candidates:
                break
            gp = gp.believe(picked, gp.predict(picked)[0])
            values = score_codes(codes, gp)
        return picks

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "pending": list(self._pending)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._pending = list(state.get("pending", []))
