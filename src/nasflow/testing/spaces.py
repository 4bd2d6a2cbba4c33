"""Contract checks every search space must pass (like scikit-learn's ``check_estimator``).

``check_space(space)`` raises AssertionError naming the broken property. Plugin authors can call it
from their own tests.
"""

from __future__ import annotations

import json

import numpy as np

from nasflow.errors import InvalidArchitectureError
from nasflow.space.architecture import Architecture
from nasflow.space.base import DecisionSpace


def _differences(a: Architecture, b: Architecture) -> int:
    return sum(1 for k in a if json.dumps(a[k]) != json.dumps(b[k]))


def check_space(space: DecisionSpace, samples: int = 50, seed: int = 0) -> None:
    """Run every contract check on ``space``."""
    rng = np.random.default_rng(seed)
    archs = [space.sample(rng) for _ in range(samples)]
    again = [space.sample(np.random.default_rng(seed)) for _ in range(1)]
    assert again[0] == archs[0], "sample() is not reproducible for the same seed"
    decisions = space.decisions()
    for arch in archs:
        assert isinstance(arch, Architecture), f"sample() returned {type(arch).__name__}"
        assert set(arch) == set(decisions), f"sample() set decisions {sorted(arch)}, not {sorted(decisions)}"
        assert space.is_valid(arch), f"sample() returned an invalid architecture {arch}"
        assert space.validate(arch) == arch, "validate() changed a valid architecture"
        assert Architecture.from_json(arch.to_json()) == arch, "JSON round trip changed the architecture"
        text = space.format(arch)
        assert space.parse(text) == arch, f"parse(format(arch)) != arch for {text!r}"
        assert space.canonical(space.parse(text)) == space.canonical(arch), "canonical key is not stable"
        child = space.mutate(arch, rng)
        assert space.is_valid(child), f"mutate() returned an invalid architecture {child}"
        for neighbour in space.neighbors(arch)[:20]:
            assert space.is_valid(neighbour), f"neighbors() returned an invalid architecture {neighbour}"
            assert _differences(arch, neighbour) == 1, "a neighbour must differ in exactly one decision"
        other = archs[int(rng.integers(len(archs)))]
        assert space.is_valid(space.crossover(arch, other, rng)), (
            "crossover() returned an invalid architecture"
        )
        for kind in space.encodings():
            vector = space.encode(arch, kind)
            assert vector.ndim == 1 and np.all(np.isfinite(vector)), (
                f"encode(kind={kind!r}) is not a finite vector"
            )
            assert vector.shape == space.encode(archs[0], kind).shape, f"encode(kind={kind!r}) length varies"
    mutable = any(len(c) > 1 for c in decisions.values())
    if mutable:
        moved = sum(space.mutate(a, rng) != a for a in archs)
        assert moved >= len(archs) // 2, (
            f"mutate() left {len(archs) - moved} of {len(archs)} parents unchanged"
        )
    first = next(iter(decisions))
    try:
        space.validate({**archs[0].to_dict(), first: "__not_a_choice__"})
    except InvalidArchitectureError:
        pass
    else:
        raise AssertionError("validate() accepted a value that is not among the choices")
    try:
        space.parse("@@ not an architecture @@")
    except InvalidArchitectureError:
        pass
    else:
        raise AssertionError("parse() accepted garbage")


def _constrained_is_valid(arch: Architecture) -> bool:
    # A memory-like budget couples two decisions; one combination is banned outright.
    depth, width = arch["depth"], arch["width"]
    assert isinstance(depth, int) and isinstance(width, int)
    return depth * width <= 128 and not (arch["act"] == "gelu" and arch["skip"])


def _constrained_canonical(arch: Architecture) -> Architecture:
    # With one layer there is nothing to skip over, so the skip flag does not change the network.
    return arch.replace(skip=False) if arch["depth"] == 1 else arch


def constrained_space() -> DecisionSpace:
    """A small user-style space with a validity rule and a canonicaliser, for contract tests.

    Its functions live at module level so the space pickles into worker processes.
    """
    return DecisionSpace(
        {
            "depth": [1, 2, 3, 4],
            "width": [8, 16, 32, 64],
            "act": ["relu", "gelu", "silu"],
            "skip": [True, False],
        },
        is_valid=_constrained_is_valid,
        canonical=_constrained_canonical,
        name="constrained",
    )
