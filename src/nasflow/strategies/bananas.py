"""BANANAS: an ensemble of small MLPs on path encodings with Thompson sampling (White et al. 2021)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import sparse

from nasflow.errors import ConfigError
from nasflow.space.architecture import Architecture
from nasflow.strategies.acquisition import (
    SurrogateStrategy,
    independent_thompson,
    model_targets,
)

_BETA1, _BETA2, _EPS = 0.9, 0.999, 1e-8


class MLPEnsemble:
    """``members`` independent ReLU MLPs trained together as one batched numpy computation.

    Every member sees the same data and differs only in its random initialisation (as in BANANAS).
    Stacking the members' weights along a leading axis turns training into a few array operations per
    step instead of a few per member; the first layer of all members is one ``(inputs, members *
    width)`` matrix, so sparse encodings (a path encoding has a handful of ones among 180 features)
    multiply as a sparse matrix. Parameters live in one flat float32 vector so a single Adam update
    covers them; float32 halves the cost of the small products, and the model only ranks candidates.
    """

    def __init__(self, members: int, inputs: int, hidden: Sequence[int], rng: np.random.Generator) -> None:
        self.members, self.width = members, hidden[0]
        shapes: list[tuple[int, ...]] = [(inputs, members * hidden[0]), (1, members * hidden[0])]
        sizes = [*hidden, 1]
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            shapes += [(members, fan_in, fan_out), (members, 1, fan_out)]
        total = sum(math.prod(s) for s in shapes)
        self.theta = np.zeros(total, dtype=np.float32)
        self.grad = np.zeros(total, dtype=np.float32)
        self.params = _views(self.theta, shapes)
        self.grads = _views(self.grad, shapes)
        for weight, fan_in in zip(self.params[0::2], [inputs, *hidden]):
            # He initialisation suits ReLU layers
            weight[...] = rng.standard_normal(weight.shape) * math.sqrt(2.0 / fan_in)

    def _first(self, x: Any) -> np.ndarray:
        """The first layer's pre-activations as (members, rows, width)."""
        z = np.asarray(x @ self.params[0]) + self.params[1]
        return np.ascontiguousarray(z.reshape(-1, self.members, self.width).transpose(1, 0, 2))

    def _forward(self, x: Any) -> list[np.ndarray]:
        """Post-activation outputs of every layer; the last one (the prediction) is (members, rows, 1)."""
        acts = [np.maximum(self._first(x), 0.0)]
        last = len(self.params) // 2 - 1
        for layer in range(1, last + 1):
            z = acts[-1] @ self.params[2 * layer] + self.params[2 * layer + 1]
            acts.append(z if layer == last else np.maximum(z, 0.0))
        return acts

    def fit(self, x: np.ndarray, y: np.ndarray, steps: int, lr: float, weight_decay: float) -> None:
        """Full-batch Adam on the mean squared error (each member its own loss)."""
        data = _as_input(x)
        data_t = data.T.tocsr() if sparse.issparse(data) else np.ascontiguousarray(data.T)
        m, v = np.zeros_like(self.theta), np.zeros_like(self.theta)
        target = y.astype(np.float32)[None, :, None]
        layers = len(self.params) // 2
        for step in range(1, steps + 1):
            acts = self._forward(data)
            delta = (2.0 / len(y)) * (acts[-1] - target)
            for layer in range(layers - 1, 0, -1):
                inputs = acts[layer - 1]
                np.matmul(inputs.transpose(0, 2, 1), delta, out=self.grads[2 * layer])
                self.grads[2 * layer + 1][...] = delta.sum(axis=1, keepdims=True)
                delta = (delta @ self.params[2 * layer].transpose(0, 2, 1)) * (inputs > 0)
            flat = delta.transpose(1, 0, 2).reshape(len(y), -1)
            self.grads[0][...] = data_t @ flat
            self.grads[1][...] = flat.sum(axis=0, keepdims=True)
            g = self.grad + np.float32(weight_decay) * self.theta
            m *= _BETA1
            m += (1 - _BETA1) * g
            v *= _BETA2
            v += (1 - _BETA2) * (g * g)
            scale = lr * math.sqrt(1 - _BETA2**step) / (1 - _BETA1**step)
            self.theta -= np.float32(scale) * m / (np.sqrt(v) + np.float32(_EPS))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predictions of every member, shape (members, rows)."""
        return self._forward(_as_input(x))[-1][:, :, 0].astype(float)


def _views(buffer: np.ndarray, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    views, start = [], 0
    for shape in shapes:
        size = math.prod(shape)
        views.append(buffer[start : start + size].reshape(shape))
        start += size
    return views


def _as_input(x: np.ndarray) -> Any:
    """float32 features, as a sparse matrix when at most a quarter of the entries are non-zero."""
    x = x.astype(np.float32)
    if np.count_nonzero(x) <= 0.25 * x.size:
        return sparse.csr_matrix(x)
    return x


class Bananas(SurrogateStrategy):
    """BANANAS: Bayesian optimisation with an ensemble of neural networks as the surrogate.

    After ``initial_samples`` distinct random architectures, an ensemble of ``ensemble_size`` MLPs is
    trained on the encoded history (rank-normalised :func:`model_targets`; several objectives are
    scalarised with random weights, ParEGO style). Candidates are the single-decision neighbours and
    double mutations of the ``n_parents`` best architectures plus ``n_random`` random samples, grown
    by ``local_rounds`` rounds of greedy local search on the ensemble's mean; a canonical key proposed
    before is never a candidate. Each proposal is chosen by independent Thompson sampling (ITS):
    every candidate gets one draw from a Gaussian with the ensemble's mean and standard deviation and
    the largest draw wins; a batch of ``n`` takes the ``n`` largest draws of one model.

    The ensemble is retrained from scratch once the history has grown by ``refit_growth`` (a fraction,
    at least one new result) since the last training; in between, proposals reuse the last ensemble
    with fresh candidates and fresh Thompson draws. This keeps the cost per trial flat as the history
    grows (training cost grows with its size, the retraining interval too). The state holds the seed,
    training-set size and objective weights of the current ensemble, so a resumed search retrains
    exactly the same one instead of storing its weights.

    Args:
        initial_samples: random architectures before the model is used.
        ensemble_size: MLPs in the ensemble (5 in the paper).
        hidden: widths of the hidden ReLU layers.
        steps: full-batch Adam steps per training.
        lr: Adam's learning rate.
        weight_decay: L2 penalty added to the gradient.
        encoding: the features, a name or a list of names (concatenated); None means
            ``preferred_encoding(space)`` (the path encoding of the BANANAS paper on NAS-Bench-201).
            The default one-hot features measured better on NAS-Bench-201 (docs/strategies/bananas.md).
        candidates: ``"auto"`` (``"all"`` where the space allows it, else ``"local"``), ``"all"`` (rank
            every distinct unseen architecture; spaces of at most ``EXHAUSTIVE_LIMIT`` combinations,
            such as NAS-Bench-201) or ``"local"`` (mutations of the best, as in the BANANAS paper); see
            :meth:`SurrogateStrategy.candidates_for`.
        n_parents: best architectures whose neighbourhoods become candidates.
        n_random: random samples added to the candidates.
        local_rounds: rounds of greedy neighbour expansion on the ensemble's mean.
        refit_growth: retrain when the history has grown by this fraction since the last training
            (0 = before every proposal that has a new result).
    """

    name = "bananas"

    def __init__(
        self,
        initial_samples: int = 10,
        ensemble_size: int = 5,
        hidden: Sequence[int] = (32, 32),
        steps: int = 100,
        lr: float = 0.01,
        weight_decay: float = 1e-4,
        encoding: str | Sequence[str] | None = "onehot",
        candidates: str = "auto",
        n_parents: int = 10,
        n_random: int = 100,
        local_rounds: int = 2,
        refit_growth: float = 0.1,
    ) -> None:
        super().__init__(initial_samples, encoding, candidates)
        for label, value, low in (
            ("ensemble_size", ensemble_size, 2),
            ("steps", steps, 1),
            ("n_parents", n_parents, 1),
            ("n_random", n_random, 0),
            ("local_rounds", local_rounds, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{label} must be an integer >= {low}, got {value!r}")
        if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence) or not hidden:
            raise ConfigError(f"hidden must be a non-empty list of layer widths, got {hidden!r}")
        if not all(isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in hidden):
            raise ConfigError(f"hidden layer widths must be integers >= 1, got {list(hidden)!r}")
        for label, number, positive in (
            ("lr", lr, True),
            ("weight_decay", weight_decay, False),
            ("refit_growth", refit_growth, False),
        ):
            if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
                raise ConfigError(f"{label} must be a finite number, got {number!r}")
            if number < 0 or (positive and number == 0):
                raise ConfigError(f"{label} must be {'> 0' if positive else '>= 0'}, got {number!r}")
        self.ensemble_size = ensemble_size
        self.hidden = list(hidden)
        self.steps = steps
        self.lr = lr
        self.weight_decay = weight_decay
        self.n_parents = n_parents
        self.n_random = n_random
        self.local_rounds = local_rounds
        self.refit_growth = refit_growth
        self._model: MLPEnsemble | None = None
        self._fit: dict[str, Any] | None = None  # seed, training-set size and weights of the ensemble

    def train(self, size: int, seed: int, weights: np.ndarray) -> MLPEnsemble:
        """The ensemble trained on the first ``size`` finished trials, initialised from ``seed``."""
        history = self._history[:size]
        x = self.encode([s.arch for s in history])
        y = model_targets(history, weights)
        model = MLPEnsemble(self.ensemble_size, x.shape[1], self.hidden, np.random.default_rng(seed))
        model.fit(x, y, self.steps, self.lr, self.weight_decay)
        return model

    def _retrain_due(self) -> bool:
        if self._fit is None:
            return True
        trained_on = int(self._fit["size"])
        return len(self._history) - trained_on >= max(1, int(self.refit_growth * trained_on))

    def _ensemble(self, weights: np.ndarray) -> MLPEnsemble:
        if self._retrain_due():
            seed = int(self.rng.integers(2**63))
            self._fit = {"size": len(self._history), "seed": seed, "weights": [float(w) for w in weights]}
            self._model = None
        if self._model is None:  # a new fit, or the first ask after load_state_dict
            assert self._fit is not None
            fit = self._fit
            self._model = self.train(fit["size"], fit["seed"], np.asarray(fit["weights"], dtype=float))
        return self._model

    def _propose_batch(self, n: int, weights: np.ndarray) -> list[Architecture]:
        model = self._ensemble(weights)

        def mean(archs: list[Architecture]) -> np.ndarray:
            return model.predict(self.encode(archs)).mean(0)

        parents = self.top_parents(model_targets(self._history, weights), self.n_parents)
        pool, codes = self.candidates_for(parents, mean, self.n_random, self.local_rounds, width=5)
        if not pool:
            return []
        predictions = model.predict(codes)
        draws = independent_thompson(predictions.mean(0), predictions.std(0), self.rng)
        return [pool[int(i)] for i in np.argsort(-draws, kind="stable")[:n]]

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "fit": self._fit}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._fit = state.get("fit")
        self._model = None
