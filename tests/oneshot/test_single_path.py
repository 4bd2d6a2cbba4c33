"""Single-path searches: SPOS, RSWS and ENAS, and the weight-sharing evaluator built on them."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

import nasflow as nf
from nasflow import catalog
from nasflow.errors import ConfigError
from nasflow.estimators.base import EvalContext
from nasflow.estimators.weight_sharing import WeightSharingEvaluator
from nasflow.objectives.metrics import count_parameters
from nasflow.oneshot import ENAS, RSWS, SPOS
from nasflow.oneshot.darts_supernet import DartsSupernet
from nasflow.oneshot.nb201_supernet import NB201Supernet
from nasflow.oneshot.spos import uniform_path
from nasflow.space.darts import DartsSpace
from nasflow.space.nb201 import NB201Space


def test_uniform_paths_cover_every_op_of_every_nb201_edge_equally() -> None:
    supernet = NB201Supernet(NB201Space(channels=2, cells_per_stage=1), (1, 8, 8), 10)
    rng = np.random.default_rng(0)
    counts = np.zeros((6, 5))
    for _ in range(5000):
        for edge, op in enumerate(uniform_path(supernet, rng)):
            counts[edge, op] += 1
    # binomial standard deviation sqrt(0.2 * 0.8 / 5000) = 0.0057; 0.025 is 4.4 of them
    assert np.abs(counts / 5000 - 0.2).max() < 0.025


def test_uniform_paths_of_the_darts_space_follow_its_node_inputs() -> None:
    space = DartsSpace(channels=2, layers=3, stem_multiplier=1, nodes=2)
    supernet = DartsSupernet(space, (1, 8, 8), 10)
    rng = np.random.default_rng(0)
    used = np.zeros(supernet.num_edges)
    ops = np.zeros((supernet.num_edges, supernet.num_ops))
    draws = 3000
    for _ in range(draws):
        for edge, op in enumerate(uniform_path(supernet, rng)):
            if op is not None:
                used[edge] += 1
                ops[edge, op] += 1
    # node 2 has two possible inputs and takes both; node 3 takes two of its three (2/3 each)
    expected = np.array([1, 1, 2 / 3, 2 / 3, 2 / 3] * 2)
    assert np.abs(used / draws - expected).max() < 0.03
    shares = ops / used[:, None]
    assert np.all(shares[:, 0] == 0)  # "none" is never part of an architecture
    assert np.abs(shares[:, 1:] - 1 / 7).max() < 0.03


def test_spos_trains_single_paths_and_chooses_the_best_evolved_candidate(tiny_task, tiny_space, tiny) -> None:
    search = SPOS(space=tiny_space, seed=0, candidates=12, population_size=4, sample_size=2, **tiny)
    result = search.fit(tiny_task)
    assert 4 <= len(result.candidates) <= 12  # repeats are scored once
    assert result.score == max(c["score"] for c in result.candidates) == result.candidates[0]["score"]
    assert result.arch_str == result.candidates[0]["arch_str"]
    # each epoch logs how often each op of each edge was trained; the shares sum to one per edge
    for epoch in result.epochs:
        assert epoch.arch is None
        assert all(sum(row) == pytest.approx(1.0) for row in epoch.weights.values())
    assert search.rank([result.arch]) == [pytest.approx(result.score)]


def test_rsws_scores_distinct_random_candidates(tiny_task, tiny_space, tiny) -> None:
    result = RSWS(space=tiny_space, seed=1, candidates=10, **tiny).fit(tiny_task)
    keys = {tiny_space.canonical(tiny_space.parse(c["arch_str"])) for c in result.candidates}
    assert len(result.candidates) == len(keys) == 10
    assert result.score == max(c["score"] for c in result.candidates)


@pytest.mark.slow
def test_spos_same_seed_same_result(tiny_task, tiny_space, tiny) -> None:
    runs = [SPOS(space=tiny_space, seed=5, candidates=8, **tiny).fit(tiny_task) for _ in range(2)]
    assert runs[0].arch == runs[1].arch
    assert runs[0].candidates == runs[1].candidates


def test_enas_controller_learns_and_logs_decision_probabilities(tiny_task, tiny_space, tiny) -> None:
    search = ENAS(space=tiny_space, seed=0, controller_steps=4, derive_samples=5, **tiny)
    search.prepare(tiny_task)
    initial = [p.detach().clone() for p in search.controller.parameters]
    result = search.fit(tiny_task)
    assert any(not torch.equal(a, p) for a, p in zip(initial, search.controller.parameters))
    assert result.choices["1<-0"] == list(tiny_space.decisions()["1<-0"])
    for epoch in result.epochs:
        assert 0.0 <= epoch.metrics["reward"] <= 100.0
        assert all(sum(p) == pytest.approx(1.0, abs=1e-6) for p in epoch.weights.values())
        assert epoch.arch is not None  # the controller's most likely architecture
    assert result.arch_str in {c["arch_str"] for c in result.candidates}
    assert result.score == max(c["score"] for c in result.candidates)


@pytest.mark.parametrize(("baseline", "direction"), [(-10.0, 1), (10.0, -1)])
def test_enas_reinforce_step_follows_the_advantage(tiny_task, tiny_space, tiny, baseline, direction) -> None:
    """Rewards are accuracies in [0, 1]: above a baseline of -10 the sampled architecture becomes more
    likely, below a baseline of 10 less likely."""
    search = ENAS(space=tiny_space, seed=0, controller_lr=0.05, entropy_weight=0.0, **tiny)
    search.prepare(tiny_task)
    choices = search.controller.sample(np.random.default_rng(123), 1)[0]
    search.sample = lambda: (search._decode(choices), choices)  # type: ignore[method-assign]

    def log_prob() -> float:
        with torch.no_grad():
            return float(search.controller.evaluate(torch.tensor([choices.tolist()]))[0][0])

    start = log_prob()
    search._baseline = baseline
    reward = search._controller_step()
    assert 0.0 <= reward <= 1.0
    assert (log_prob() - start) * direction > 0


def test_weight_sharing_evaluator_scores_with_the_trained_supernet(tiny_task, tiny_space, tiny) -> None:
    search = SPOS(space=tiny_space, seed=0, candidates=4, **tiny)
    search.fit(tiny_task)
    study = nf.create_study(
        space=tiny_space, strategy="random", evaluator=WeightSharingEvaluator(search), seed=0
    )
    study.optimize(budget=4)
    trials = study.trials()
    assert [t.state.value for t in trials] == ["COMPLETE"] * 4
    for trial in trials:
        assert trial.metrics["accuracy"] == pytest.approx(search.score(trial.arch))
        assert trial.metrics["params"] == count_parameters(tiny_space.build(trial.arch, tiny_task))


def test_weight_sharing_evaluator_pickles_for_worker_processes(tiny_task, tiny_space, tiny) -> None:
    search = ENAS(space=tiny_space, seed=0, controller_steps=2, derive_samples=2, **tiny)
    evaluator = WeightSharingEvaluator(search, task=tiny_task)
    evaluator.setup(tiny_space)
    copy = pickle.loads(pickle.dumps(evaluator))
    arch = tiny_space.sample(np.random.default_rng(0))
    context = EvalContext()
    assert copy.evaluate(arch, context).metrics == evaluator.evaluate(arch, context).metrics
    assert copy.search.most_likely()[1] == search.most_likely()[1]  # the controller survives too


def test_weight_sharing_evaluator_by_name_fits_in_setup(tiny_task, tiny_space, tiny) -> None:
    evaluator = catalog.get_evaluator(
        "weight-sharing", search="rsws", task=tiny_task, search_options={"candidates": 3, "seed": 2, **tiny}
    )
    assert evaluator.search.result_ is None
    evaluator.setup(tiny_space)
    assert evaluator.search.result_ is not None and evaluator.search.space_ is tiny_space
    described = evaluator.describe()
    assert described["name"] == "weight-sharing" and described["search"] == "rsws"
    assert described["task"] == "tiny-digits" and described["search_options"]["candidates"] == 3
    with pytest.raises(ConfigError, match="trained for space"):
        evaluator.setup(NB201Space(channels=2, cells_per_stage=1))


def test_weight_sharing_evaluator_rejects_other_things() -> None:
    with pytest.raises(ConfigError, match="one-shot search or its name"):
        WeightSharingEvaluator(search=42)
    with pytest.raises(ConfigError, match="unknown one-shot search 'nope'"):
        WeightSharingEvaluator(search="nope")
