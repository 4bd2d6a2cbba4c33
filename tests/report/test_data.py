"""What the report computes: best-so-far, rankings, frequencies, Pareto front, hypervolume, summary."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest

import nasflow as nf
from nasflow.errors import TrialPruned
from nasflow.estimators.function import FunctionEvaluator
from nasflow.objectives.spec import Objective
from nasflow.report.data import (
    best_so_far,
    choice_frequencies,
    describe_component,
    gather,
    good_count,
    lookup,
    rank_trials,
    robustness_rows,
    trajectory_by_time,
)
from nasflow.space.architecture import Architecture
from nasflow.space.base import DecisionSpace
from nasflow.strategies.grid import GridSearch
from nasflow.trial import FrozenTrial, TrialState

SPACE = {"op": ["conv", "pool", "skip"], "width": [8, 16]}
#: (op, width, metrics) added in this order; trial 2 lacks the objective (FAILED), trial 6 is pruned
TRIALS = [
    ("conv", 16, {"accuracy": 0.80, "params": 320}),  # 0: violates params<=300
    ("pool", 8, {"accuracy": 0.60, "params": 50}),  # 1
    ("skip", 8, {"params": 10}),  # 2: failed
    ("conv", 8, {"accuracy": 0.75, "params": 200}),  # 3
    ("pool", 16, {"accuracy": 0.70, "params": 100}),  # 4
    ("skip", 16, {"accuracy": 0.55, "params": 20}),  # 5
    None,  # 6: pruned by the evaluator
    ("conv", 8, {"accuracy": 0.78, "params": 200}),  # 7: same network as 3, better
]


def _prune(arch: Architecture) -> dict[str, float]:
    raise TrialPruned("stopped early", {"accuracy": 0.1})


def make_study(storage: str | None = None, name: str = "hand") -> nf.Study:
    """Eight hand-made trials on a 6-architecture space, two objectives and one constraint."""
    study = nf.create_study(
        space=DecisionSpace(SPACE),
        strategy=GridSearch(shuffle=False),
        evaluator=FunctionEvaluator(_prune),
        objectives=["accuracy:max", "params:min"],
        constraints=["params<=300"],
        storage=storage,
        name=name,
        seed=0,
    )
    for entry in TRIALS:
        if entry is None:
            study.evaluate({"op": "skip", "width": 8})
        else:
            op, width, metrics = entry
            study.add_trial({"op": op, "width": width}, metrics)
    return study


@pytest.fixture(scope="module")
def data():
    return gather(make_study(), top=3)


def test_best_so_far_keeps_the_best_feasible_value_in_the_objective_direction() -> None:
    values = [3.0, 1.0, 2.0, 0.5]
    assert best_so_far(values, Objective("loss", "min")) == [3.0, 1.0, 1.0, 0.5]
    assert best_so_far(values, Objective("acc", "max")) == [3.0, 3.0, 3.0, 3.0]
    result = best_so_far(values, Objective("acc", "max"), [False, True, True, False])
    assert math.isnan(result[0]) and result[1:] == [1.0, 2.0, 2.0]


def test_trajectory_by_number_counts_completed_trials_only(data) -> None:
    series = data.by_number
    assert series.numbers == (0, 1, 3, 4, 5, 7)  # failed 2 and pruned 6 are not plotted
    assert series.x == (0.0, 1.0, 3.0, 4.0, 5.0, 7.0)
    assert series.values == (0.80, 0.60, 0.75, 0.70, 0.55, 0.78)
    assert series.feasible == (False, True, True, True, True, True)
    assert math.isnan(series.best[0])  # trial 0 is infeasible, so no best yet
    assert series.best[1:] == (0.60, 0.75, 0.75, 0.75, 0.78)


def _trial(number: int, accuracy: float, start: float, end: float) -> FrozenTrial:
    origin = datetime(2024, 1, 1, tzinfo=timezone.utc)
    return FrozenTrial(
        number=number,
        arch=Architecture(op="conv"),
        arch_str="op=conv",
        canonical=str(number),
        state=TrialState.COMPLETE,
        metrics={"accuracy": accuracy},
        values=(accuracy,),
        started_at=origin + timedelta(seconds=start),
        finished_at=origin + timedelta(seconds=end),
    )


def test_trajectory_by_time_orders_trials_by_when_their_results_arrived() -> None:
    # two workers: trial 1 starts after trial 0 but finishes first
    trials = [_trial(0, 0.5, 0.0, 5.0), _trial(1, 0.7, 1.0, 3.0), _trial(2, 0.6, 5.0, 6.5)]
    series = trajectory_by_time(trials, Objective("accuracy", "max"))
    assert series is not None
    assert series.numbers == (1, 0, 2)
    assert series.x == (3.0, 5.0, 6.5)
    assert series.best == (0.7, 0.7, 0.7)


def test_ranking_puts_feasible_trials_first_then_the_first_objective(data) -> None:
    assert [t.number for t in data.ranked] == [7, 3, 4, 1, 5, 0]
    assert [t.number for t in data.top] == [7, 3, 4]
    # ties on the objective go to the earlier trial
    tied = [_trial(4, 0.9, 0, 1), _trial(2, 0.9, 0, 1), _trial(3, 0.95, 0, 1)]
    assert [t.number for t in rank_trials(tied, [Objective("accuracy")])] == [3, 2, 4]


def test_choice_frequencies_count_top_quartile_and_all_completed(data) -> None:
    assert good_count(6) == 2 and good_count(1) == 1 and good_count(0) == 0
    assert data.good_trials == 2  # trials 7 and 3, both conv-8
    op, width = data.frequencies
    assert op.decisions == ("op",) and op.choices == ("conv", "pool", "skip")
    assert op.all_counts == (3, 2, 1) and op.top_counts == (2, 0, 0)
    assert width.choices == (8, 16)
    assert width.all_counts == (3, 3) and width.top_counts == (2, 0)
    assert op.top == (1.0, 0.0, 0.0)
    assert op.shift == pytest.approx(0.5)  # total variation between (1, 0, 0) and (1/2, 1/3, 1/6)


def test_alike_decisions_are_pooled_into_one_group() -> None:
    decisions = {"e1": ["a", "b"], "e2": ["a", "b"], "k": [1, 2]}
    trials = [
        _with_arch(0, {"e1": "a", "e2": "a", "k": 1}),
        _with_arch(1, {"e1": "a", "e2": "b", "k": 2}),
        _with_arch(2, {"e1": "b", "e2": "b", "k": 2}),
    ]
    edges, k = choice_frequencies(decisions, trials, trials[:1])
    assert edges.decisions == ("e1", "e2") and edges.label == "e1, e2"
    assert edges.all_counts == (3, 3) and edges.top_counts == (2, 0)
    assert k.all_counts == (1, 2) and k.top_counts == (1, 0)
    # many pooled decisions are named by the parts of their names they share
    slots = {f"op_{i}": ["a", "b"] for i in range(6)}
    assert choice_frequencies(slots, trials, [])[0].label == "op_* (6 decisions)"
    cells = {f"{c}_node2_input_{s}": [0, 1] for c in ("normal", "reduce") for s in "ab"}
    assert choice_frequencies(cells, [], [])[0].label == "*_node2_input_* (4 decisions)"
    edges6 = {f"{d}<-{s}": ["x", "y"] for d, s in ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))}
    assert choice_frequencies(edges6, [], [])[0].label == "1<-0, 2<-0, …, 3<-2 (6 decisions)"


def _with_arch(number: int, arch: dict) -> FrozenTrial:
    return FrozenTrial(number, Architecture(arch), "", str(number), TrialState.COMPLETE, {"a": 1.0}, (1.0,))


def test_pareto_front_and_hypervolume_over_trials(data) -> None:
    # trial 3 is dominated by 7 (same params, lower accuracy); 0 violates the constraint
    assert [t.number for t in data.front] == [7, 4, 1, 5]
    curve = data.hypervolume
    assert curve is not None and curve.numbers == tuple(range(8))
    # reference: the front's nadir (0.55, 200 params) moved out by 10 % of the ranges (0.23, 180)
    assert curve.reference == pytest.approx((0.527, 218.0))
    # hand-computed areas (accuracy x params saved below 218): flat at infeasible, failed, pruned trials
    expected = [0.0, 12.264, 12.264, 14.964, 24.964, 25.654, 25.654, 26.194]
    assert curve.values == pytest.approx(expected)


def test_summary_counts_states_and_names_the_best_feasible_trial(data) -> None:
    summary = data.summary
    assert summary.counts == {"RUNNING": 0, "COMPLETE": 6, "PRUNED": 1, "FAILED": 1}
    assert summary.best is not None and summary.best.number == 7
    assert summary.space == "custom" and summary.strategy == "grid (shuffle=false, unique=true)"
    assert summary.evaluator.startswith("function (fn=")
    assert summary.objectives == ("accuracy:max", "params:min")
    assert summary.constraints == ("params<=300",)
    assert [t.number for t in summary.failures] == [2, 6]
    assert summary.total_seconds is not None and summary.total_seconds >= 0
    assert summary.mean_seconds == pytest.approx(summary.total_seconds / 8)


def test_a_stored_study_without_its_space_uses_the_decisions_seen(tmp_path) -> None:
    storage = f"sqlite:///{tmp_path / 'r.db'}"
    make_study(storage)
    loaded = nf.load_study("hand", storage)
    assert loaded.space is None  # a custom space is not rebuilt from storage
    data = gather(loaded)
    op, width = data.frequencies
    assert op.choices == ("conv", "pool", "skip") and op.all_counts == (3, 2, 1)
    assert width.all_counts == (3, 3)
    assert data.summary.evaluator.startswith("function (fn=")  # read from the stored settings


def test_no_completed_trial_gives_empty_data_and_a_note() -> None:
    study = nf.create_study(
        space=DecisionSpace(SPACE), strategy="random", evaluator=FunctionEvaluator(_prune), name="empty"
    )
    study.add_trial({"op": "conv", "width": 8}, {"params": 1.0})  # failed: no accuracy
    data = gather(study)
    assert data.completed == [] and data.top == [] and data.good_trials == 0
    assert data.by_number.x == () and data.by_time is None
    assert data.summary.best is None and data.summary.best_note == "no trial has completed yet"
    assert all(sum(g.all_counts) == 0 for g in data.frequencies)


def test_cards_are_read_defensively() -> None:
    rows = [
        {"perturbation": "noise", "severity": 1, "accuracy": 0.8},
        {"perturbation": "noise", "severity": "high", "accuracy": 0.7},  # not a number: dropped
        "garbage",
        {"severity": 2, "accuracy": 0.6},
    ]
    card = {"metrics": {"test_accuracy": 0.9}, "robustness": rows}
    assert lookup(card, "metrics.test_accuracy") == 0.9
    assert lookup(card, "metrics.missing") is None and lookup(card, "metrics.test_accuracy.x") is None
    assert robustness_rows(card) == [("noise", 1.0, 0.8), ("—", 2.0, 0.6)]
    assert robustness_rows({"robustness": "nope"}) == []


def test_component_descriptions_read_like_settings() -> None:
    assert (
        describe_component({"name": "evolution", "population_size": 10}) == "evolution (population_size=10)"
    )
    assert describe_component({"name": "nb201"}) == "nb201"
    assert describe_component(None) == "—"
