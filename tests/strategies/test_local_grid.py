"""Behaviour of local search and grid search."""

from __future__ import annotations

import json

import numpy as np
import pytest

import nasflow as nf
from nasflow.benchmarks.nb201 import NB201_DATASETS, load_nb201
from nasflow.errors import SearchExhausted
from nasflow.objectives.spec import Objective
from nasflow.space.architecture import Architecture
from nasflow.strategies.grid import GridSearch, _feistel
from nasflow.strategies.local_search import LocalSearch
from nasflow.testing.spaces import constrained_space
from nasflow.testing.strategies import drive
from nasflow.trial import FrozenTrial, TrialState

ONE = [Objective("accuracy", "max")]
TWO = [Objective("accuracy", "max"), Objective("params", "min")]


def onemax_space() -> nf.DecisionSpace:
    return nf.DecisionSpace({f"b{i}": [0, 1, 2, 3] for i in range(12)})


def onemax(arch: Architecture) -> float:
    return float(sum(v == 0 for v in arch.values()))


def complete(number: int, arch: Architecture, score: float, violation: float = 0.0) -> FrozenTrial:
    return FrozenTrial(
        number, arch, "", "", TrialState.COMPLETE, {"accuracy": score}, (score,), violation=violation
    )


def differences(a: Architecture, b: Architecture) -> int:
    return sum(json.dumps(a[k]) != json.dumps(b[k]) for k in a)


def best_found(strategy: nf.Strategy, space: nf.DecisionSpace, steps: int, seed: int) -> float:
    strategy.setup(space, ONE, seed)
    best = 0.0
    for number in range(steps):
        (arch,) = strategy.ask(1)
        best = max(best, onemax(arch))
        strategy.tell(complete(number, arch, onemax(arch)))
    return best


# -- local search ---------------------------------------------------------------------------------
@pytest.mark.parametrize("improvement", ["first", "best"])
def test_local_search_beats_random_on_a_structured_objective(improvement: str) -> None:
    space = onemax_space()
    local = [best_found(LocalSearch(improvement=improvement), space, 200, s) for s in range(5)]
    random = [best_found(nf.get_strategy("random"), space, 200, s) for s in range(5)]
    # onemax has one optimum; first improvement reaches 12/12 in 200 queries, best improvement pays
    # 36 queries per step and gets to 10-12; random stays near 7
    assert np.mean(local) >= (12.0 if improvement == "first" else 10.0)
    assert np.mean(local) - np.mean(random) >= 2.5


def test_first_improvement_moves_to_the_first_better_neighbour() -> None:
    space = onemax_space()
    strategy = LocalSearch(initial_samples=1, improvement="first")
    strategy.setup(space, ONE, 3)
    (start,) = strategy.ask(1)
    strategy.tell(complete(0, start, onemax(start)))
    centre, number = start, 1
    for _ in range(60):
        (arch,) = strategy.ask(1)
        assert differences(arch, centre) == 1, "proposals are neighbours of the current centre"
        strategy.tell(complete(number, arch, onemax(arch)))
        number += 1
        if onemax(arch) > onemax(centre):
            centre = arch  # the very next proposal must come from the new centre's neighbourhood


def test_best_improvement_evaluates_the_whole_neighbourhood_before_moving() -> None:
    space = onemax_space()
    strategy = LocalSearch(initial_samples=1, improvement="best")
    strategy.setup(space, ONE, 0)
    (start,) = strategy.ask(1)
    strategy.tell(complete(0, start, onemax(start)))
    neighbourhood = space.neighbors(start)
    proposals = []
    for number in range(1, len(neighbourhood) + 1):
        (arch,) = strategy.ask(1)
        proposals.append(arch)
        strategy.tell(complete(number, arch, onemax(arch)))
    assert sorted(a.to_json() for a in proposals) == sorted(a.to_json() for a in neighbourhood)
    assert proposals != neighbourhood, "neighbours are visited in random order"
    best = max(proposals, key=onemax)
    (following,) = strategy.ask(1)
    assert differences(following, best) == 1, "the climb moved to the best neighbour"


def test_local_optimum_triggers_a_restart_from_an_unseen_architecture() -> None:
    space = onemax_space()
    strategy = LocalSearch(initial_samples=1, improvement="first", restart_samples=1)
    strategy.setup(space, ONE, 0)
    (start,) = strategy.ask(1)
    strategy.tell(complete(0, start, 100.0))  # nothing will beat the start: it is a local optimum
    for number in range(1, 37):  # 12 decisions x 3 alternatives
        (arch,) = strategy.ask(1)
        assert differences(arch, start) == 1
        strategy.tell(complete(number, arch, 1.0))
    (restart,) = strategy.ask(1)
    assert differences(restart, start) > 1, "after the last neighbour the search restarts elsewhere"


def test_local_search_never_repeats_a_network_and_uses_known_neighbours_for_free() -> None:
    space = nf.get_space("nb201")
    strategy = LocalSearch()
    strategy.setup(space, ONE, 0)
    archs = drive(strategy, 300, ONE)
    keys = [space.canonical(a) for a in archs]
    assert len(set(keys)) == len(keys)  # NB201 has 6,466 networks among 15,625 cells


def test_batched_asks_are_distinct_pending_neighbours() -> None:
    space = onemax_space()
    strategy = LocalSearch(initial_samples=1)
    strategy.setup(space, ONE, 0)
    (start,) = strategy.ask(1)
    strategy.tell(complete(0, start, onemax(start)))
    batch = strategy.ask(4)
    assert len({a.to_json() for a in batch}) == 4
    assert all(differences(a, start) == 1 for a in batch)
    # told out of order, with a failure: the search continues with new, unseen neighbours
    strategy.tell(FrozenTrial(3, batch[2], "", "", TrialState.FAILED, error="boom"))
    for number, arch in ((1, batch[0]), (2, batch[3])):
        strategy.tell(complete(number, arch, onemax(arch)))
    more = strategy.ask(4)
    assert not {a.to_json() for a in more} & {a.to_json() for a in [start, *batch]}


def test_resumed_local_search_does_not_wait_for_proposals_lost_in_the_interruption() -> None:
    space = onemax_space()
    stopped = LocalSearch(initial_samples=1, improvement="best")
    stopped.setup(space, ONE, 0)
    (start,) = stopped.ask(1)
    stopped.tell(complete(0, start, onemax(start)))
    stopped.ask(2)  # still running when the process dies; a resumed study never reports them
    resumed = LocalSearch(initial_samples=1, improvement="best")
    resumed.setup(space, ONE, 0)
    resumed.load_state_dict(json.loads(json.dumps(stopped.state_dict())))
    best = 0.0
    for number in range(3, 300):
        (arch,) = resumed.ask(1)
        best = max(best, onemax(arch))
        resumed.tell(complete(number, arch, onemax(arch)))
    assert best >= 10.0  # the climb went on (waiting for the lost two would leave it random, ~7)


def test_local_search_covers_a_constrained_space_then_is_exhausted() -> None:
    space = constrained_space()
    distinct = {space.canonical(a) for a in space.enumerate()}
    strategy = LocalSearch(initial_samples=3, improvement="best")
    strategy.setup(space, TWO, 0)
    archs = drive(strategy, len(distinct), TWO, batch=3, fail_every=4)
    assert all(space.is_valid(a) for a in archs)
    assert {space.canonical(a) for a in archs} == distinct
    with pytest.raises(SearchExhausted):
        strategy.ask(1)


def test_local_search_climbs_towards_feasible_architectures() -> None:
    space = onemax_space()
    strategy = LocalSearch(initial_samples=1)
    strategy.setup(space, ONE, 1)
    (start,) = strategy.ask(1)
    strategy.tell(complete(0, start, 50.0, violation=2.0))
    (neighbour,) = strategy.ask(1)
    strategy.tell(complete(1, neighbour, 10.0, violation=0.0))  # worse accuracy but feasible
    (following,) = strategy.ask(1)
    assert differences(following, neighbour) == 1 and following != start


def test_local_search_rejects_bad_settings() -> None:
    with pytest.raises(nf.ConfigError, match="improvement must be one of"):
        nf.get_strategy("local", improvement="steepest")
    with pytest.raises(nf.ConfigError, match="initial_samples must be an integer >= 1"):
        nf.get_strategy("local", initial_samples=0)
    with pytest.raises(nf.ConfigError, match="restart_samples must be an integer >= 1"):
        nf.get_strategy("local", restart_samples=1.5)


def test_local_search_finds_good_nb201_cells_faster_than_random() -> None:
    # the documented benchmark protocol, shortened: 6 seeds, 100 queries on CIFAR-10 validation accuracy
    table = load_nb201()
    column = table.column_index(NB201_DATASETS["cifar10"][0])
    space = nf.get_space("nb201")

    def best_validation(name: str, seed: int) -> float:
        strategy = nf.get_strategy(name)
        strategy.setup(space, ONE, seed)
        best = 0.0
        for number in range(100):
            (arch,) = strategy.ask(1)
            value = table.values(space.format(arch))[column]  # type: ignore[index]
            best = max(best, value)
            strategy.tell(complete(number, arch, value))
        return best

    local = [best_validation("local", s) for s in range(6)]
    random = [best_validation("random", s) for s in range(6)]
    assert np.mean(local) >= 84.4  # the table's best validation accuracy is 84.89
    assert np.mean(local) - np.mean(random) >= 0.4


# -- grid -----------------------------------------------------------------------------------------
def run_grid(space: nf.DecisionSpace, seed: int = 0, **settings: bool) -> list[Architecture]:
    grid = GridSearch(**settings)
    grid.setup(space, ONE, seed)
    archs = []
    while True:
        try:
            archs.extend(grid.ask(1))
        except SearchExhausted:
            return archs


def test_grid_follows_enumerate_order_and_skips_networks_already_proposed() -> None:
    space = constrained_space()
    expected, seen = [], set()
    for arch in space.enumerate():
        if space.canonical(arch) not in seen:
            seen.add(space.canonical(arch))
            expected.append(arch)
    assert run_grid(space, shuffle=False) == expected
    assert run_grid(space, shuffle=False, unique=False) == list(space.enumerate())


def test_shuffled_grid_visits_every_network_once_in_a_seeded_order() -> None:
    space = constrained_space()
    distinct = {space.canonical(a) for a in space.enumerate()}
    first = run_grid(space, seed=0)
    keys = [space.canonical(a) for a in first]
    assert len(keys) == len(set(keys)) and set(keys) == distinct
    assert run_grid(space, seed=0) == first
    assert run_grid(space, seed=1) != first
    assert first != run_grid(space, shuffle=False)


def test_grid_raises_search_exhausted_and_the_study_stops_cleanly() -> None:
    space = nf.DecisionSpace({"a": [1, 2, 3], "b": ["x", "y"]})
    study = nf.create_study(
        space=space,
        strategy="grid",
        evaluator=nf.FunctionEvaluator(lambda arch: {"accuracy": float(arch["a"])}),
        seed=0,
    )
    study.optimize(budget=50)
    assert len(study.trials()) == 6
    assert study.best().arch["a"] == 3


def test_grid_state_is_the_position_and_resumes_exactly() -> None:
    space = nf.get_space("nb201")
    grid = GridSearch()
    grid.setup(space, ONE, 0)
    head = grid.ask(700)
    state = json.loads(json.dumps(grid.state_dict()))
    assert set(state) == {"rng", "position", "keys"}
    tail = grid.ask(300)
    resumed = GridSearch()
    resumed.setup(space, ONE, 99)
    resumed.load_state_dict(state)
    assert resumed.ask(300) == tail
    keys = {space.canonical(a) for a in head + tail}
    assert len(keys) == 1000


@pytest.mark.parametrize("total", [1, 2, 3, 5, 17, 64, 1000])
def test_feistel_cycle_walk_is_a_permutation(total: int) -> None:
    grid = GridSearch()
    grid.setup(nf.DecisionSpace({"a": list(range(total))}), ONE, 7)
    assert sorted(grid._permute(i) for i in range(total)) == list(range(total))
    assert 0 <= _feistel(5, [1, 2, 3, 4], 4) < 16


def test_grid_rejects_bad_settings_and_huge_shuffled_spaces() -> None:
    with pytest.raises(nf.ConfigError, match="shuffle must be true or false"):
        nf.get_strategy("grid", shuffle="yes")
    huge = nf.DecisionSpace({f"d{i}": list(range(10)) for i in range(20)})  # 1e20 combinations
    with pytest.raises(nf.ConfigError, match="at most 2\\*\\*62"):
        GridSearch().setup(huge, ONE, 0)
    with pytest.warns(UserWarning, match="will not finish"):
        grid = GridSearch(shuffle=False)
        grid.setup(huge, ONE, 0)
    assert grid.ask(2)[1]["d19"] == 1  # lazy: works on any size, last decision varies fastest
