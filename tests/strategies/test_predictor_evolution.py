"""Predictor-screened regularized evolution: the pairwise ranker, the search, settings and state."""

from __future__ import annotations

import json

import numpy as np
import pytest

import nasflow as nf
from nasflow.objectives.spec import Objective
from nasflow.space.architecture import Architecture
from nasflow.strategies.common import encode_all, preferred_encoding
from nasflow.strategies.predictor_evolution import PairwiseRanker, PredictorEvolution, better_matrix
from nasflow.testing.spaces import constrained_space
from nasflow.testing.strategies import drive
from nasflow.trial import FrozenTrial, TrialState

ONE = [Objective("accuracy", "max")]


def structured_space() -> nf.DecisionSpace:
    return nf.DecisionSpace({f"d{i}": ["a", "b", "c", "d"] for i in range(10)})


_EFFECTS = np.random.default_rng(7).normal(size=(10, 4))


def structured(arch: Architecture) -> float:
    """Additive effects per decision plus one interaction: learnable, but not trivially."""
    codes = [["a", "b", "c", "d"].index(str(arch[f"d{i}"])) for i in range(10)]
    score = sum(_EFFECTS[i, c] for i, c in enumerate(codes))
    return float(score + 0.8 * (codes[0] == codes[1]))


def complete(number: int, arch: Architecture, score: float) -> FrozenTrial:
    return FrozenTrial(number, arch, "", "", TrialState.COMPLETE, {"accuracy": score}, (score,))


def best_found(strategy: nf.Strategy, steps: int, seed: int) -> float:
    strategy.setup(structured_space(), ONE, seed)
    best = -np.inf
    for number in range(steps):
        (arch,) = strategy.ask(1)
        score = structured(arch)
        best = max(best, score)
        strategy.tell(complete(number, arch, score))
    return best


def test_ranker_orders_held_out_pairs_well_above_chance() -> None:
    space = structured_space()
    rng = np.random.default_rng(0)
    train = [space.sample(rng) for _ in range(60)]
    test = [space.sample(rng) for _ in range(200)]
    kind = preferred_encoding(space)
    scores = np.array([structured(a) for a in train])
    ranker = PairwiseRanker(l2=0.01).fit(encode_all(space, train, kind), better_matrix(scores, np.zeros(60)))
    predicted = ranker.score(encode_all(space, test, kind))
    truth = np.array([structured(a) for a in test])
    i, j = np.triu_indices(len(test), k=1)
    agree = np.sign(predicted[i] - predicted[j]) == np.sign(truth[i] - truth[j])
    assert agree.mean() >= 0.8, f"only {agree.mean():.1%} of held-out pairs ordered correctly"


def test_ranker_on_the_nb201_table_orders_held_out_pairs_above_chance() -> None:
    space = nf.get_space("nb201")
    evaluator = nf.TabularEvaluator("nb201", dataset="cifar10")
    evaluator.setup(space)
    rng = np.random.default_rng(1)
    train = [space.sample(rng) for _ in range(100)]
    test = [space.sample(rng) for _ in range(300)]
    scores = np.array([evaluator.lookup(space.format(a))["accuracy"] for a in train])
    truth = np.array([evaluator.lookup(space.format(a))["accuracy"] for a in test])
    ranker = PairwiseRanker().fit(encode_all(space, train, "path"), better_matrix(scores, np.zeros(100)))
    predicted = ranker.score(encode_all(space, test, "path"))
    i, j = np.triu_indices(len(test), k=1)
    differ = truth[i] != truth[j]
    agree = np.sign(predicted[i] - predicted[j]) == np.sign(truth[i] - truth[j])
    # a linear model of real accuracies is far from perfect (about 70% here), yet clearly informative
    assert agree[differ].mean() >= 0.65


def test_ranker_fit_is_a_pure_function_of_the_data_and_has_no_pairs_fallback() -> None:
    rng = np.random.default_rng(2)
    x = rng.random((30, 12))
    better = better_matrix(rng.random(30), np.zeros(30))
    first = PairwiseRanker().fit(x, better).weights
    assert np.array_equal(first, PairwiseRanker().fit(x.copy(), better.copy()).weights)
    # more features than observations: the solution lives in their span and is still exact
    wide = rng.random((8, 40))
    weights = PairwiseRanker().fit(wide, better_matrix(rng.random(8), np.zeros(8))).weights
    assert weights is not None and np.linalg.matrix_rank(np.vstack([wide, weights])) == 8
    empty = PairwiseRanker().fit(x, np.zeros((30, 30), dtype=bool))
    assert np.all(empty.score(x) == 0)


def test_better_matrix_puts_feasibility_first_then_dominance() -> None:
    values = np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 0.0], [9.0, 9.0]])
    violation = np.array([0.0, 0.0, 0.0, 1.0])
    m = better_matrix(values, violation)
    assert m[1, 0] and not m[0, 1]  # dominance
    assert not m[1, 2] and not m[2, 1]  # non-dominated: no training pair either way
    assert m[0, 3] and not m[3, 0]  # feasible beats infeasible whatever its values
    assert not m.diagonal().any()


def test_beats_random_search_on_a_structured_objective() -> None:
    steps, seeds = 60, range(6)
    screened = [best_found(PredictorEvolution(), steps, s) for s in seeds]
    unscreened = [best_found(PredictorEvolution(candidates=1), steps, s) for s in seeds]
    random = [best_found(nf.get_strategy("random"), steps, s) for s in seeds]
    optimum = float(_EFFECTS.max(axis=1).sum())  # the interaction only adds on top of this
    # 4^10 architectures: random search's best after 60 stays far from the optimum; screening
    # ten-plus children per proposal climbs much faster than mutating blindly.
    assert np.mean(screened) - np.mean(random) >= 2.0
    assert np.mean(screened) - np.mean(unscreened) >= 0.5
    assert np.mean(screened) >= optimum - 1.0


def test_proposes_the_child_the_predictor_ranks_highest() -> None:
    space = structured_space()
    strategy = PredictorEvolution(warmup=12, candidates=8)
    strategy.setup(space, ONE, 3)
    for number in range(12):
        (arch,) = strategy.ask(1)
        strategy.tell(complete(number, arch, structured(arch)))
    state = json.loads(json.dumps(strategy.state_dict()))
    twin = PredictorEvolution(warmup=12, candidates=8)
    twin.setup(space, ONE, 3)
    twin.load_state_dict(state)
    pool = twin._offspring()  # the same candidates the strategy is about to build
    (proposal,) = strategy.ask(1)
    assert proposal == pool[int(np.argmax(twin.predict(pool)))]
    assert len(pool) == 8


def test_warmup_is_random_then_children_are_single_mutations() -> None:
    space = structured_space()
    strategy = PredictorEvolution(warmup=10)
    strategy.setup(space, ONE, 4)
    archs = []
    for number in range(30):
        (arch,) = strategy.ask(1)
        archs.append(arch)
        strategy.tell(complete(number, arch, structured(arch)))
    for i, child in enumerate(archs[10:], start=10):
        assert any(sum(child[k] != p[k] for k in child) == 1 for p in archs[:i])


def test_never_proposes_an_architecture_twice() -> None:
    space = nf.get_space("nb201")
    strategy = PredictorEvolution()
    strategy.setup(space, ONE, 5)
    archs = drive(strategy, 80, ONE, batch=4, fail_every=6)
    keys = [space.canonical(a) for a in archs]
    assert len(set(keys)) == len(keys)


def test_constrained_space_two_objectives_and_exhaustion() -> None:
    space = constrained_space()
    two = [Objective("accuracy", "max"), Objective("params", "min")]
    strategy = PredictorEvolution(warmup=5)
    strategy.setup(space, two, 0)
    archs = drive(strategy, 40, two, batch=3, fail_every=5)
    assert all(space.is_valid(a) for a in archs)
    distinct = len({space.canonical(a) for a in space.enumerate()})
    more = PredictorEvolution(warmup=5)
    more.setup(space, ONE, 0)
    with pytest.raises(nf.errors.SearchExhausted):
        drive(more, distinct + 1, ONE)


def test_learns_from_trials_it_did_not_propose() -> None:
    space = structured_space()
    strategy = PredictorEvolution(warmup=1)
    strategy.setup(space, ONE, 0)
    rng = np.random.default_rng(9)
    foreign = [space.sample(rng) for _ in range(20)]
    for number, arch in enumerate(foreign):
        strategy.tell(complete(number, arch, structured(arch)))
    proposals = [strategy.ask(1)[0] for _ in range(5)]
    assert not {space.canonical(a) for a in proposals} & {space.canonical(a) for a in foreign}
    assert strategy.predict(foreign).std() > 0


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("population_size", 1),
        ("sample_size", 0),
        ("sample_size", 11),
        ("candidates", 0),
        ("warmup", 0),
        ("l2", 0.0),
        ("l2", "big"),
        ("max_train", 1),
    ],
)
def test_bad_settings_raise_config_error_naming_the_setting(setting: str, value: object) -> None:
    with pytest.raises(nf.ConfigError, match=setting):
        PredictorEvolution(**{setting: value})  # type: ignore[arg-type]


def test_registered_and_described() -> None:
    strategy = nf.get_strategy("predictor-evolution", candidates=12)
    assert isinstance(strategy, PredictorEvolution)
    assert strategy.describe() == {
        "name": "predictor-evolution",
        "population_size": 10,
        "sample_size": 10,
        "candidates": 12,
        "warmup": 10,
        "l2": 0.01,
        "max_train": 300,
    }
