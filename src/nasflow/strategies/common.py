"""Small helpers shared by strategies: encodings, scalar fitness, canonical bookkeeping."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]

from nasflow.space.architecture import Architecture
from nasflow.space.base import DecisionSpace
from nasflow.strategies.fitness import Scored

#: how much one unit of constraint violation costs in scalar fitness; large so feasibility comes first
VIOLATION_PENALTY = 1e6

_blas: ThreadpoolController | None = None


def one_blas_thread() -> Any:
    """A context that runs BLAS single-threaded.

    Surrogate models work on matrices a few hundred wide; on them a threaded BLAS spends more time waking and
    synchronising threads than computing, and on a busy machine a fit became 40x slower.
    """
    global _blas
    if _blas is None:
        _blas = ThreadpoolController()  # scanning the loaded libraries once costs a millisecond
    return _blas.limit(limits=1, user_api="blas")


def preferred_encoding(space: DecisionSpace) -> str:
    """The most structure-aware encoding a space offers: ``path`` when it has one, else ``onehot``."""
    return "path" if "path" in space.encodings() else "onehot"


def encode_all(space: DecisionSpace, archs: Sequence[Architecture], kind: str) -> np.ndarray:
    """A 2-D array with one encoded architecture per row."""
    if not archs:
        return np.zeros((0, 0))
    return np.stack([space.encode(a, kind) for a in archs])


def scalar_fitness(scored: Scored, weights: Sequence[float] | None = None) -> float:
    """One number to maximise: weighted oriented objectives minus a large penalty per violation.

    With one objective (and no weights) this is the oriented objective value. With several, pass
    ``weights`` (e.g. drawn at random per proposal, as in ParEGO) to trace different parts of the front.
    """
    values = np.asarray(scored.values, dtype=float)
    w = np.ones(1) if weights is None and len(values) == 1 else np.asarray(weights, dtype=float)
    if weights is None and len(values) > 1:
        w = np.full(len(values), 1.0 / len(values))
    return float(values @ w) - VIOLATION_PENALTY * scored.violation


def random_weights(n_objectives: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform weights on the simplex (all ones for a single objective)."""
    if n_objectives == 1:
        return np.ones(1)
    return rng.dirichlet(np.ones(n_objectives))
