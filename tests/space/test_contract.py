"""Every registered space, and a constrained user-defined one, pass the space contract."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nasflow as nf
from nasflow.testing.spaces import check_space, constrained_space


@pytest.mark.parametrize("name", nf.list_spaces())
def test_registered_space_passes_contract(name: str) -> None:
    check_space(nf.get_space(name))


def test_constrained_decision_space_passes_contract() -> None:
    check_space(constrained_space())


def test_constrained_space_counts_and_canonical_keys() -> None:
    space = constrained_space()
    valid = list(space.enumerate())
    # depth*width <= 128: (1: 4 widths) + (2: 4) + (3: 3) + (4: 3) = 14 shapes, x 5 act/skip pairs
    assert space.size() == 96
    assert len(valid) == 14 * 5
    keys = {space.canonical(a) for a in valid}
    # depth 1 merges skip=True/False for relu and silu (gelu allows only skip=False): 4 widths x 2
    assert len(keys) == len(valid) - 4 * 2


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_operators_never_leave_the_constrained_space(seed: int) -> None:
    space = constrained_space()
    rng = np.random.default_rng(seed)
    a, b = space.sample(rng), space.sample(rng)
    for arch in (space.mutate(a, rng), space.crossover(a, b, rng), *space.neighbors(a)):
        assert space.is_valid(arch)
    assert space.parse(space.format(a)) == a


def test_decision_space_rejects_bad_definitions() -> None:
    with pytest.raises(nf.SpaceError, match="no choices"):
        nf.DecisionSpace({"a": []})
    with pytest.raises(nf.SpaceError, match="twice"):
        nf.DecisionSpace({"a": [1, 1]})
    with pytest.raises(nf.SpaceError, match="list of choices"):
        nf.DecisionSpace({"a": "abc"})


def test_over_constrained_space_says_so() -> None:
    space = nf.DecisionSpace({"a": [1, 2]}, is_valid=lambda arch: False)
    with pytest.raises(nf.SpaceError, match="could not sample a valid architecture"):
        space.sample(np.random.default_rng(0))


def test_validate_names_the_bad_decision_and_choices() -> None:
    space = constrained_space()
    with pytest.raises(nf.InvalidArchitectureError, match=r"'width' cannot be 7; allowed: \[8, 16, 32, 64\]"):
        space.validate({"depth": 1, "width": 7, "act": "relu", "skip": True})
    with pytest.raises(nf.InvalidArchitectureError, match="missing decisions \\['skip'\\]"):
        space.validate({"depth": 1, "width": 8, "act": "relu"})
    with pytest.raises(nf.InvalidArchitectureError, match="rejected by is_valid"):
        space.parse("depth=4,width=64,act=relu,skip=True")
