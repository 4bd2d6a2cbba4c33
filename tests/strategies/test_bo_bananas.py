"""Behaviour of the surrogate-model strategies: GP Bayesian optimisation and BANANAS."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import spearmanr

import nasflow as nf
from nasflow.errors import ConfigError, SearchExhausted
from nasflow.objectives.spec import Objective
from nasflow.space.architecture import Architecture
from nasflow.space.nb201 import NB201Space
from nasflow.strategies.acquisition import (
    candidate_pool,
    expected_improvement,
    independent_thompson,
    model_targets,
)
from nasflow.strategies.bananas import Bananas, MLPEnsemble
from nasflow.strategies.bo import GaussianProcessBO, HammingGP
from nasflow.strategies.fitness import Scored
from nasflow.testing.spaces import constrained_space
from nasflow.testing.strategies import check_strategy, drive
from nasflow.trial import FrozenTrial, TrialState

ONE = [Objective("accuracy", "max")]
STRATEGIES = ["bo", "bananas"]


def small_space() -> nf.DecisionSpace:
    return nf.DecisionSpace({f"d{i}": [0, 1, 2, 3] for i in range(8)})


def matches(arch: Architecture) -> float:
    """A structured objective: how many decisions take their target value (optimum 8)."""
    return float(sum(int(arch[f"d{i}"] == i % 4) for i in range(8)))


def complete(number: int, arch: Architecture, value: float, violation: float = 0.0) -> FrozenTrial:
    return FrozenTrial(
        number, arch, "", "", TrialState.COMPLETE, {"accuracy": value}, (value,), violation=violation
    )


def best_found(strategy: nf.Strategy, steps: int, seed: int) -> float:
    strategy.setup(small_space(), ONE, seed)
    best = 0.0
    for number in range(steps):
        (arch,) = strategy.ask(1)
        score = matches(arch)
        best = max(best, score)
        strategy.tell(complete(number, arch, score))
    return best


# -- search quality ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", STRATEGIES)
def test_finds_the_optimum_much_faster_than_random(name: str) -> None:
    seeds = range(4)
    model = [best_found(nf.get_strategy(name), 40, s) for s in seeds]
    random = [best_found(nf.get_strategy("random"), 40, s) for s in seeds]
    # 40 random draws of 4^8 cells reach about 5 of 8 matches; the model climbs to (almost) 8
    assert np.mean(model) >= 7.5
    assert np.mean(model) - np.mean(random) >= 2.0


# -- the surrogates ---------------------------------------------------------------------------------
def nb201_data(count: int, seed: int) -> tuple[list[Architecture], np.ndarray, np.ndarray]:
    """NB201 cells, their path encodings and a smooth made-up score over the paths."""
    space = NB201Space()
    rng = np.random.default_rng(seed)
    archs = [space.sample(rng) for _ in range(count)]
    x = np.stack([space.encode(a, "path") for a in archs])
    weights = np.random.default_rng(99).normal(size=x.shape[1])
    return archs, x, x @ weights


def test_gp_ranks_unseen_architectures() -> None:
    _, x, y = nb201_data(160, 0)
    gp = HammingGP(x[:120], (y[:120] - y[:120].mean()) / y[:120].std())
    mean, std = gp.predict(x[120:])
    assert spearmanr(mean, y[120:]).statistic > 0.8
    # at the data the GP is sure; far from it (every path at once) it falls back to its prior
    _, near = gp.predict(x[:5])
    _, far = gp.predict(np.ones((1, x.shape[1])))
    assert far[0] == pytest.approx(np.sqrt(gp.signal), rel=1e-3)
    assert near.max() < 0.5 * far[0]


def test_gp_marginal_likelihood_prefers_short_lengthscales_for_rough_functions() -> None:
    _, x, smooth = nb201_data(80, 1)
    rough = np.random.default_rng(3).normal(size=len(smooth))
    smooth_gp = HammingGP(x, (smooth - smooth.mean()) / smooth.std())
    rough_gp = HammingGP(x, rough)
    assert rough_gp.lengthscale < smooth_gp.lengthscale
    assert rough_gp.noise > smooth_gp.noise


def test_kriging_believer_keeps_the_mean_and_removes_the_uncertainty_at_a_pick() -> None:
    _, x, y = nb201_data(60, 4)
    gp = HammingGP(x[:50], (y[:50] - y[:50].mean()) / y[:50].std())
    mean, std = gp.predict(x[50:51])
    believed = gp.believe(x[50:51], mean)
    new_mean, new_std = believed.predict(x[50:51])
    assert believed.lengthscale == gp.lengthscale and believed.noise == gp.noise
    assert new_mean[0] == pytest.approx(mean[0], abs=1e-6)
    assert new_std[0] < 0.5 * std[0]


def test_mlp_ensemble_learns_a_ranking_and_is_unsure_away_from_data() -> None:
    _, x, y = nb201_data(160, 2)
    y = (y - y.mean()) / y.std()
    ensemble = MLPEnsemble(5, x.shape[1], [32, 32], np.random.default_rng(0))
    ensemble.fit(x[:120], y[:120], steps=200, lr=0.01, weight_decay=1e-4)
    held_out = ensemble.predict(x[120:])
    assert held_out.shape == (5, 40)
    assert spearmanr(held_out.mean(0), y[120:]).statistic > 0.8
    train_spread = ensemble.predict(x[:120]).std(0).mean()
    novel = np.zeros((1, x.shape[1]))
    novel[0, :] = 1.0  # every path at once: far outside the training data
    assert ensemble.predict(novel).std(0)[0] > 3 * train_spread


# -- acquisition helpers ----------------------------------------------------------------------------
def test_expected_improvement_values() -> None:
    ei = expected_improvement(np.array([0.0, 1.0, 0.0]), np.array([1.0, 1e-9, 2.0]), best=0.0)
    # N(0, 1) above 0: 1/sqrt(2 pi); a sure gain of 1: exactly 1; twice the spread: twice the gain
    assert ei[0] == pytest.approx(1 / np.sqrt(2 * np.pi))
    assert ei[1] == pytest.approx(1.0)
    assert ei[2] == pytest.approx(2 * ei[0])


def test_independent_thompson_draws_around_the_mean() -> None:
    rng = np.random.default_rng(0)
    draws = np.stack(
        [independent_thompson(np.array([1.0, -1.0]), np.array([0.5, 0.0]), rng) for _ in range(2000)]
    )
    assert draws[:, 0].mean() == pytest.approx(1.0, abs=0.05)
    assert draws[:, 0].std() == pytest.approx(0.5, abs=0.05)
    assert np.all(draws[:, 1] == -1.0)


def test_model_targets_put_infeasible_trials_below_feasible_ones() -> None:
    arch = Architecture({"d0": 0})
    history = [
        Scored(arch, (90.0,), 0.0),
        Scored(arch, (50.0,), 0.0),
        Scored(arch, (99.0,), 0.5),  # best accuracy, but violates a constraint
        Scored(arch, (99.0,), 2.0),
    ]
    y = model_targets(history)
    assert y[0] > y[1] > y[2] > y[3]
    assert abs(y.mean()) < 1e-12 and y.std() == pytest.approx(1.0)


def test_model_targets_scale_objectives_before_weighting() -> None:
    arch = Architecture({"d0": 0})
    # accuracy in percent and a parameter count in millions of units: weights must trade them fairly
    history = [
        Scored(arch, (90.0, -5e6), 0.0),
        Scored(arch, (80.0, -1e6), 0.0),
        Scored(arch, (85.0, -3e6), 0.0),
    ]
    accuracy_first = model_targets(history, np.array([0.9, 0.1]))
    size_first = model_targets(history, np.array([0.1, 0.9]))
    assert np.argmax(accuracy_first) == 0 and np.argmax(size_first) == 1


def test_candidate_pool_is_distinct_new_and_near_the_parents() -> None:
    space = NB201Space()
    rng = np.random.default_rng(0)
    parent = space.sample(rng)
    seen = {space.canonical(parent), space.canonical(space.neighbors(parent)[0])}
    pool = candidate_pool(space, [parent], rng, space.canonical, seen, 50, 0, 0)
    keys = [space.canonical(a) for a in pool]
    assert len(set(keys)) == len(keys) and not set(keys) & seen
    assert all(sum(a[k] != parent[k] for k in a) == 1 for a in pool)


# -- strategy behaviour -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", STRATEGIES)
def test_never_repeats_and_exhausts_a_small_constrained_space(name: str) -> None:
    space = constrained_space()
    distinct = {space.canonical(a) for a in space.enumerate()}
    strategy = nf.get_strategy(name)
    strategy.setup(space, ONE, 0)
    proposed = drive(strategy, len(distinct), ONE, batch=3)
    assert all(space.is_valid(a) for a in proposed)
    assert {space.canonical(a) for a in proposed} == distinct
    with pytest.raises(SearchExhausted):
        strategy.ask(1)


@pytest.mark.parametrize("name", STRATEGIES)
def test_steers_towards_feasible_architectures(name: str) -> None:
    # only cells with d0 == 0 (a quarter of them) meet the constraint, whatever their score
    strategy = nf.get_strategy(name)
    strategy.setup(small_space(), ONE, 0)
    proposed = []
    for number in range(40):
        (arch,) = strategy.ask(1)
        violation = 0.0 if arch["d0"] == 0 else 1.0
        strategy.tell(complete(number, arch, matches(arch) + 10 * violation, violation))
        proposed.append(arch)
    later = proposed[20:]
    assert sum(a["d0"] == 0 for a in later) >= 0.75 * len(later)


@pytest.mark.parametrize("name", STRATEGIES)
def test_batches_are_distinct_and_model_based(name: str) -> None:
    strategy = nf.get_strategy(name, initial_samples=5)
    strategy.setup(small_space(), ONE, 0)
    drive(strategy, 12, ONE)
    batch = strategy.ask(4)
    assert len({json.dumps(a.to_dict(), sort_keys=True) for a in batch}) == 4


@pytest.mark.parametrize("name", STRATEGIES)
def test_learns_from_trials_it_did_not_ask_for_and_skips_failures(name: str) -> None:
    space = small_space()
    strategy = nf.get_strategy(name, initial_samples=3)
    strategy.setup(space, ONE, 0)
    rng = np.random.default_rng(5)
    foreign = [space.sample(rng) for _ in range(6)]
    for number, arch in enumerate(foreign):
        strategy.tell(complete(number, arch, matches(arch)))
    failed = space.sample(rng)
    strategy.tell(FrozenTrial(6, failed, "", "", TrialState.FAILED, error="boom"))
    state = strategy.state_dict()
    assert len(state["history"]) == 6
    assert space.canonical(failed) in state["seen"]
    proposals = drive(strategy, 5, ONE, start=7)
    assert not {space.canonical(a) for a in proposals} & set(state["seen"])


def test_bananas_retrains_when_the_history_has_grown_by_the_refit_fraction() -> None:
    strategy = Bananas(initial_samples=5, refit_growth=0.5, steps=20)
    strategy.setup(small_space(), ONE, 0)
    sizes = []
    for number in range(20):
        (arch,) = strategy.ask(1)
        strategy.tell(complete(number, arch, matches(arch)))
        fit = strategy.state_dict()["fit"]
        sizes.append(None if fit is None else fit["size"])
    # trained on 5 results, then again after 2 (half of 5, rounded down), 3 more, 5 more
    assert [s for s in dict.fromkeys(sizes) if s is not None] == [5, 7, 10, 15]


def test_bo_believes_proposals_that_are_still_running() -> None:
    space = small_space()
    strategy = GaussianProcessBO(initial_samples=4)
    strategy.setup(space, ONE, 0)
    drive(strategy, 8, ONE)
    first = strategy.ask(1)[0]
    second = strategy.ask(1)[0]  # asked while the first is still being evaluated
    assert space.canonical(first) != space.canonical(second)
    assert [Architecture(a) for a in strategy.state_dict()["pending"]] == [first, second]
    strategy.tell(complete(8, first, matches(first)))
    assert [Architecture(a) for a in strategy.state_dict()["pending"]] == [second]


def test_bananas_resume_between_refits_continues_exactly() -> None:
    # with a stale model in use, the resumed strategy must retrain the very same ensemble
    check_strategy(lambda: Bananas(initial_samples=5, refit_growth=0.5, steps=50), NB201Space(), steps=30)


def test_bo_ucb_passes_the_contract() -> None:
    check_strategy(
        lambda: GaussianProcessBO(initial_samples=5, acquisition="ucb"), constrained_space(), steps=30
    )


@pytest.mark.parametrize(
    ("name", "settings", "setting"),
    [
        ("bo", {"initial_samples": 0}, "initial_samples"),
        ("bo", {"acquisition": "pi"}, "acquisition"),
        ("bo", {"beta": -1.0}, "beta"),
        ("bo", {"n_parents": 0}, "n_parents"),
        ("bo", {"local_rounds": -1}, "local_rounds"),
        ("bananas", {"ensemble_size": 1}, "ensemble_size"),
        ("bananas", {"hidden": []}, "hidden"),
        ("bananas", {"hidden": [32, 0]}, "hidden"),
        ("bananas", {"lr": 0.0}, "lr"),
        ("bananas", {"steps": 0}, "steps"),
        ("bananas", {"refit_growth": -0.1}, "refit_growth"),
    ],
)
def test_bad_settings_raise_config_error(name: str, settings: dict, setting: str) -> None:
    with pytest.raises(ConfigError, match=setting):
        nf.get_strategy(name, **settings)


@pytest.mark.parametrize("name", STRATEGIES)
def test_unknown_encoding_is_rejected_at_setup(name: str) -> None:
    strategy = nf.get_strategy(name, encoding="path")
    with pytest.raises(ConfigError, match="encoding"):
        strategy.setup(small_space(), ONE, 0)


@pytest.mark.parametrize("name", ["bo", "bananas"])
def test_all_candidates_on_a_space_too_large_to_enumerate_fails_at_setup(name: str) -> None:
    strategy = nf.get_strategy(name, candidates="all")
    with pytest.raises(nf.ConfigError, match="candidates='all' needs a space of at most 50000"):
        strategy.setup(nf.get_space("darts"), [nf.Objective("accuracy", "max")], 0)
