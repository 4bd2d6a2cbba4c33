"""Fixed-length binary strings for the architectures of any decision space (used by ``as-nas``)."""

from __future__ import annotations

import json

import numpy as np

from nasflow.space.architecture import Architecture
from nasflow.space.base import DecisionSpace


class BitCodec:
    """Dummy coding: a decision with ``c`` choices takes ``c - 1`` bits.

    The first choice is all zeros and choice ``i > 0`` sets bit ``i - 1`` alone, so the number of
    ones counts the decisions that are not at their first choice. In NAS-Bench-201, whose first
    operation is ``none``, that is the number of active edges: the "connections" AS-NAS's sparsity
    pressure penalises. Decisions with a single choice take no bits.

    Variation operators produce arbitrary strings; :meth:`decode` repairs them: a segment with no
    one means the first choice, a segment with several ones keeps one of them at random, and a
    combination that the space's ``is_valid`` rejects becomes a random valid single-decision
    neighbour (the nearest valid architectures), or a fresh sample when there is none.
    """

    def __init__(self, space: DecisionSpace) -> None:
        self.space = space
        self.decisions = space.decisions()
        self._index = {k: {json.dumps(v): i for i, v in enumerate(c)} for k, c in self.decisions.items()}
        self.slices: list[slice] = []
        offset = 0
        for choices in self.decisions.values():
            self.slices.append(slice(offset, offset + len(choices) - 1))
            offset += len(choices) - 1
        self.length = offset
        #: start of every decision's bits plus the end, skipping decisions without bits
        self.boundaries = sorted({s.start for s in self.slices if s.stop > s.start} | {offset})

    def encode(self, arch: Architecture) -> np.ndarray:
        bits = np.zeros(self.length, dtype=np.uint8)
        for (key, _), part in zip(self.decisions.items(), self.slices):
            index = self._index[key][json.dumps(arch[key])]
            if index > 0:
                bits[part.start + index - 1] = 1
        return bits

    def decode(self, bits: np.ndarray, rng: np.random.Generator) -> Architecture:
        """A valid architecture for ``bits`` (repaired as described in the class docstring)."""
        values = {}
        for (key, choices), part in zip(self.decisions.items(), self.slices):
            ones = np.flatnonzero(bits[part])
            if len(ones) == 0:
                values[key] = choices[0]
            elif len(ones) == 1:
                values[key] = choices[int(ones[0]) + 1]
            else:
                values[key] = choices[int(ones[int(rng.integers(len(ones)))]) + 1]
        arch = Architecture(values)
        if self.space.is_valid(arch):
            return arch
        options = self.space.neighbors(arch)
        if options:
            return options[int(rng.integers(len(options)))]
        return self.space.sample(rng)

    def active(self, arch: Architecture) -> int:
        """Ones in the string of ``arch``: decisions that are not at their first choice."""
        return int(self.encode(arch).sum())
