"""Behaviour of random search and regularized evolution."""

from __future__ import annotations

import numpy as np
import pytest

import nasflow as nf
from nasflow.objectives.spec import Objective
from nasflow.space.architecture import Architecture
from nasflow.testing.spaces import constrained_space
from nasflow.testing.strategies import drive
from nasflow.trial import FrozenTrial, TrialState

ONE = [Objective("accuracy", "max")]


def onemax_space() -> nf.DecisionSpace:
    return nf.DecisionSpace({f"b{i}": [0, 1, 2, 3] for i in range(12)})


def onemax(arch: Architecture) -> float:
    return float(sum(v == 0 for v in arch.values()))


def run(strategy: nf.Strategy, space: nf.DecisionSpace, steps: int, seed: int) -> float:
    strategy.setup(space, ONE, seed)
    best = 0.0
    for number in range(steps):
        (arch,) = strategy.ask(1)
        score = onemax(arch)
        best = max(best, score)
        strategy.tell(FrozenTrial(number, arch, "", "", TrialState.COMPLETE, {"accuracy": score}, (score,)))
    return best


def test_evolution_beats_random_on_a_structured_objective() -> None:
    space = onemax_space()
    evolution = [
        run(nf.get_strategy("evolution", population_size=20, sample_size=5), space, 300, s) for s in range(8)
    ]
    random = [run(nf.get_strategy("random"), space, 300, s) for s in range(8)]
    # Random needs ~4^12/300 luck to do well: its best stays near 7-8 of 12; evolution climbs to 12.
    assert np.mean(evolution) >= 11.0
    assert np.mean(evolution) - np.mean(random) >= 2.5


def test_evolution_population_ages_out_oldest_member() -> None:
    strategy = nf.get_strategy("evolution", population_size=3, sample_size=2)
    strategy.setup(onemax_space(), ONE, 0)
    archs = drive(strategy, 5, ONE)
    population = strategy.state_dict()["population"]
    assert [Architecture(m["arch"]) for m in population] == archs[-3:]


def test_evolution_starts_with_random_samples_then_mutates() -> None:
    space = onemax_space()
    strategy = nf.get_strategy("evolution", population_size=10, sample_size=3)
    strategy.setup(space, ONE, 1)
    archs = drive(strategy, 30, ONE)
    survivors = archs[:10]
    # every proposal after the first population differs from some earlier architecture in one decision
    for i, child in enumerate(archs[10:], start=10):
        assert any(sum(child[k] != p[k] for k in child) == 1 for p in archs[:i]), (
            f"proposal {i} is no mutation"
        )
    assert len(set(survivors)) == 10


def test_evolution_selects_feasible_parents_first() -> None:
    strategy = nf.get_strategy("evolution", population_size=4, sample_size=4)
    space = onemax_space()
    strategy.setup(space, ONE, 0)
    archs = strategy.ask(4)
    # the best-scoring member is infeasible; the only feasible one must be the parent
    for number, arch in enumerate(archs):
        strategy.tell(
            FrozenTrial(
                number,
                arch,
                "",
                "",
                TrialState.COMPLETE,
                {"accuracy": 90.0 + number},
                (90.0 + number,),
                violation=0.0 if number == 0 else 5.0,
            )
        )
    child = strategy.ask(1)[0]
    assert sum(child[k] != archs[0][k] for k in child) == 1


def test_evolution_rejects_bad_settings() -> None:
    with pytest.raises(nf.ConfigError, match="sample_size must be between 1 and population_size"):
        nf.get_strategy("evolution", population_size=5, sample_size=9)
    with pytest.raises(nf.ConfigError, match="allowed options: population_size, sample_size"):
        nf.get_strategy("evolution", populaton_size=5)


def test_random_without_repeats_covers_the_space_then_says_it_is_exhausted() -> None:
    space = constrained_space()
    strategy = nf.get_strategy("random", repeats=False)
    strategy.setup(space, ONE, 0)
    distinct = len({space.canonical(a) for a in space.enumerate()})
    archs = strategy.ask(distinct)
    assert len({space.canonical(a) for a in archs}) == distinct
    with pytest.raises(nf.errors.SearchExhausted, match="exhausted"):
        strategy.ask(1)


def test_unknown_strategy_lists_the_allowed_names() -> None:
    with pytest.raises(nf.ConfigError, match="unknown strategy 'bogus'; allowed: .*evolution.*random"):
        nf.get_strategy("bogus")
