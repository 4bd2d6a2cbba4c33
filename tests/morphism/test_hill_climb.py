"""NASH hill climbing on digits with tiny settings: records, trials, inherited weights, reproducibility."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

import nasflow as nf
from nasflow.morphism import HillClimb, MorphismResult
from nasflow.morphism.base import Data, evaluate
from nasflow.morphism.hill_climb import default_initial
from nasflow.space.macro import MacroSpace
from nasflow.tasks import Task

SPACE = MacroSpace(max_layers=3, widths=(8, 16), stem_channels=8)
TINY = {"n_steps": 1, "n_children": 2, "epochs_per_child": 1, "initial_epochs": 1, "data_fraction": 0.1}


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def task() -> Task:
    return nf.load_task("digits")


def study_for(space: MacroSpace) -> nf.Study:
    # add_trial needs no evaluator work; the function evaluator only satisfies create_study
    return nf.create_study(
        space=space, strategy="random", evaluator=nf.FunctionEvaluator(lambda arch: 0.0), seed=0
    )


def test_default_initial_is_one_narrow_conv_per_stage() -> None:
    assert MacroSpace().format(default_initial(MacroSpace())) == (
        "conv3x3-16|none/conv3x3-16|none|none/conv3x3-16|none|none"
    )
    assert SPACE.format(default_initial(SPACE)) == "conv3x3-8/conv3x3-8/conv3x3-8"


@pytest.mark.slow
def test_fit_records_every_network_as_a_trial_and_returns_the_best(task: Task) -> None:
    study = study_for(SPACE)
    search = HillClimb(
        space=SPACE, n_steps=2, n_children=2, epochs_per_child=1, initial_epochs=2, data_fraction=0.1, seed=3
    )
    result = search.fit(task, study=study)
    assert isinstance(result, MorphismResult)
    history = result.history
    assert [r["step"] for r in history] == [0, 1, 1, 2, 2]
    assert [r["parent"] for r in history[:3]] == [None, 0, 0]
    best_of_step_1 = max(history[1:3], key=lambda r: (r["accuracy"], -r["index"]))["index"]
    assert [r["parent"] for r in history[3:]] == [best_of_step_1] * 2
    assert [r["lineage_epochs"] for r in history] == [2, 3, 3, 4, 4]
    assert result.total_epochs == 2 + 4 * 1
    for record in history[1:]:
        assert 1 <= len(record["morphisms"]) <= 2
        assert record["params"] >= history[0]["params"]  # morphisms only grow networks

    trials = study.trials()
    assert [t.state for t in trials] == [nf.TrialState.COMPLETE] * 5
    assert [t.number for t in trials] == [r["trial"] for r in history]
    assert [t.arch_str for t in trials] == [r["arch"] for r in history]
    assert [t.metrics["accuracy"] for t in trials] == [r["accuracy"] for r in history]
    assert trials[0].intermediate.keys() == {1, 2}  # per-epoch validation accuracy

    best = max(history, key=lambda r: r["accuracy"])
    assert result.best_accuracy == best["accuracy"] == max(t.metrics["accuracy"] for t in trials)
    assert SPACE.format(search.derive()) == best["arch"] == SPACE.format(result.best_arch)
    # the stored weights are the best network's: evaluated again they give its accuracy
    data = Data.from_task(task)
    accuracy, _ = evaluate(result.network(SPACE, task), data.x_val, data.y_val)
    assert accuracy == pytest.approx(result.best_accuracy)


def test_children_start_from_the_parent_function(task: Task) -> None:
    # the search's own morph step applied to a trained network keeps its validation accuracy
    search = HillClimb(space=SPACE, **TINY, seed=0)
    search._start(task, None)
    first = search._train_and_record(search.initial_arch, search._fresh(search.initial_arch), 2, None, [], 0)
    assert first is not None
    arch, network, done = search._morph(first, np.random.default_rng(0))
    assert len(done) == 2 and SPACE.canonical(arch) != SPACE.canonical(first.arch)
    data = search._data
    before, before_loss = evaluate(first.network, data.x_val, data.y_val)
    after, after_loss = evaluate(network, data.x_val, data.y_val)
    assert after == before and after_loss == pytest.approx(before_loss, abs=1e-5)


def test_same_seed_same_search_and_other_seed_differs(task: Task) -> None:
    runs = [HillClimb(space=SPACE, **TINY, seed=seed).fit(task).history for seed in (5, 5, 6)]

    def strip(history: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in history]

    assert strip(runs[0]) == strip(runs[1])
    assert strip(runs[0]) != strip(runs[2])


def test_a_study_of_another_space_is_refused(task: Task) -> None:
    with pytest.raises(nf.ConfigError, match="must be the search's macro space"):
        HillClimb(space=SPACE, **TINY).fit(task, study=study_for(MacroSpace()))


def test_settings_are_checked() -> None:
    with pytest.raises(nf.ConfigError, match="n_children must be an integer >= 1"):
        HillClimb(n_children=0)
    with pytest.raises(nf.ConfigError, match="morphisms must be a non-empty list"):
        HillClimb(morphisms=["shrink"])
    with pytest.raises(nf.ConfigError, match="needs a MacroSpace"):
        HillClimb(space=nf.get_space("nb201"))
    with pytest.raises(nf.ConfigError, match="data_fraction"):
        HillClimb(data_fraction=0.0)
    with pytest.raises(nf.InvalidArchitectureError):
        HillClimb(initial_arch="conv3x3-12|none/none|none|none/none|none|none")
    with pytest.raises(nf.ConfigError, match="call fit"):
        HillClimb().derive()
    assert HillClimb(seed=1).describe()["initial_arch"] == (
        "conv3x3-16|none/conv3x3-16|none|none/conv3x3-16|none|none"
    )
