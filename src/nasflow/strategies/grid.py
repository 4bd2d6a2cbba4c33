"""Exhaustive enumeration of a finite space (grid search)."""

from __future__ import annotations

import warnings
from typing import Any

from nasflow.errors import ConfigError, SearchExhausted
from nasflow.space.architecture import Architecture
from nasflow.strategies.base import Strategy

#: a shuffled grid permutes positions with 64-bit arithmetic, so it is limited to this many combinations
MAX_SHUFFLED = 2**62
#: above this many combinations a grid is unlikely to finish; setup warns
WARN_SIZE = 10**7
_FEISTEL_ROUNDS = 4
_MASK64 = 2**64 - 1


class GridSearch(Strategy):
    """Every valid architecture once, in ``space.enumerate()`` order or in a seeded random order.

    Positions ``0 .. space.size() - 1`` index the combinations of choices (the last decision varies
    fastest, as in ``space.enumerate()``). The grid walks them lazily, skipping combinations the
    space rejects, so the full list is never built and ``state_dict`` is just the position and the
    shuffle key. With ``shuffle=True`` the positions go through a keyed pseudo-random permutation
    (a Feistel network with cycle walking), which visits every combination exactly once in an order
    that looks random, without storing the order. With ``unique=True`` architectures whose
    canonical key was already proposed are skipped; that set is rebuilt on ``load_state_dict`` by
    replaying the positions already passed. When every position is used, ``ask`` raises
    :class:`~nasflow.errors.SearchExhausted`, which ends a study cleanly.

    Limits: shuffled grids need ``space.size() <= 2**62``; memory grows with the number of distinct
    architectures proposed (``unique=True``), and resuming costs one validity check and canonical
    key per position already passed.

    Args:
        shuffle: visit the grid in a random order drawn from the study seed (the default, so a
            budget smaller than the grid samples it evenly); False for ``space.enumerate()`` order.
        unique: skip architectures whose canonical key was already proposed.
    """

    name = "grid"

    def __init__(self, shuffle: bool = True, unique: bool = True) -> None:
        for label, value in (("shuffle", shuffle), ("unique", unique)):
            if not isinstance(value, bool):
                raise ConfigError(f"{label} must be true or false, got {value!r}")
        self.shuffle = shuffle
        self.unique = unique

    def setup(self, space: Any, objectives: Any, seed: int | None) -> None:
        super().setup(space, objectives, seed)
        decisions = space.decisions()
        self._names = list(decisions)
        self._choices = [decisions[k] for k in self._names]
        self._total = space.size()
        if self.shuffle and self._total > MAX_SHUFFLED:
            raise ConfigError(
                f"grid with shuffle=true supports spaces of at most 2**62 combinations; space "
                f"{space.name!r} has {self._total:.3e}. Use shuffle=false or a sampling strategy"
            )
        if self._total > WARN_SIZE:
            warnings.warn(
                f"grid search over {self._total:.3e} combinations of space {space.name!r} will not "
                "finish in any practical budget; consider 'random' or 'evolution'",
                stacklevel=2,
            )
        self._position = 0
        self._keys = (
            [int(k) for k in self.rng.integers(0, 2**63, size=_FEISTEL_ROUNDS)] if self.shuffle else []
        )
        self._bits = _even_bits(self._total)
        self._seen: set[str] = set()

    # -- asking ----------------------------------------------------------------------------
    def ask(self, n: int = 1) -> list[Architecture]:
        return [self._next() for _ in range(n)]

    def _next(self) -> Architecture:
        while self._position < self._total:
            arch = self._visit(self._position)
            self._position += 1
            if arch is not None:
                return arch
        raise SearchExhausted(
            f"grid search has proposed every {'distinct ' if self.unique else ''}valid architecture of "
            f"space {self.space.name!r} ({self._total} combinations)"
        )

    def _visit(self, position: int) -> Architecture | None:
        """The architecture at ``position`` if it is valid and new, else None (and mark it seen)."""
        arch = self._decode(self._permute(position) if self.shuffle else position)
        if not self.space.is_valid(arch):
            return None
        if self.unique:
            key = self.space.canonical(arch)
            if key in self._seen:
                return None
            self._seen.add(key)
        return arch

    def _decode(self, index: int) -> Architecture:
        values = []
        for choices in reversed(self._choices):
            index, digit = divmod(index, len(choices))
            values.append(choices[digit])
        return Architecture(dict(zip(self._names, reversed(values))))

    def _permute(self, position: int) -> int:
        # cycle walking: the Feistel network permutes [0, 2**bits); re-encrypting values that fall
        # outside [0, total) keeps the map a permutation of [0, total)
        value = _feistel(position, self._keys, self._bits)
        while value >= self._total:
            value = _feistel(value, self._keys, self._bits)
        return value

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "position": self._position, "keys": self._keys}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._keys = [int(k) for k in state["keys"]]
        self._seen = set()
        position = int(state["position"])
        for passed in range(position):
            self._visit(passed)
        self._position = position


def _even_bits(total: int) -> int:
    """An even number of bits whose range covers ``total`` (a balanced Feistel network needs it)."""
    bits = max(2, (max(total, 1) - 1).bit_length())
    return bits + bits % 2


def _mix(value: int) -> int:
    """The splitmix64 finaliser: a fast 64-bit hash with good avalanche."""
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def _feistel(value: int, keys: list[int], bits: int) -> int:
    half = bits // 2
    mask = (1 << half) - 1
    left, right = value >> half, value & mask
    for key in keys:
        left, right = right, left ^ (_mix((right + key) & _MASK64) & mask)
    return (left << half) | right
