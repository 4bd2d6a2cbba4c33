"""Pruners on hand-made curves: the median rule's exact prune steps, curve extrapolation, settings."""

from __future__ import annotations

import math
import pickle

import pytest

import nasflow as nf
from nasflow import catalog
from nasflow.objectives.spec import Objective
from nasflow.pruners import CurvePruner, MedianPruner, PruningHistory, PruningMonitor, TrialCurve, extrapolate
from nasflow.space.architecture import Architecture
from nasflow.trial import FrozenTrial, TrialState

# Five completed trials; trial i reports 10 * i + s at steps s = 1..5, so the median at step s is
# 20 + s (the value of trial 2).
COMPLETED = tuple(
    TrialCurve(i, "COMPLETE", {s: 10.0 * i + s for s in range(1, 6)}, 10.0 * i + 5) for i in range(5)
)
HISTORY = PruningHistory(COMPLETED)


def median(**settings) -> MedianPruner:
    pruner = MedianPruner(**settings)
    pruner.setup([Objective("accuracy", "max")])
    return pruner


def test_median_prunes_exactly_when_the_best_so_far_is_below_the_median_at_that_step() -> None:
    pruner = median()
    # step 2: median 22; a trial at 21.9 is pruned, one at 22 (equal) is not
    reason = pruner.should_prune(2, 21.9, HISTORY, {1: 5.0})
    assert reason == "best accuracy so far 21.9 is worse than the median 22 of 5 completed trials at step 2"
    assert pruner.should_prune(2, 22.0, HISTORY, {1: 5.0}) is None
    # the best value so far counts, not the last one: 30 at step 1 beats the median 22 at step 2
    assert pruner.should_prune(2, 0.0, HISTORY, {1: 30.0}) is None
    # step 3: median 23
    assert pruner.should_prune(3, 22.5, HISTORY, {1: 5.0, 2: 22.5}) is not None


def test_median_warmup_interval_and_last_step() -> None:
    # warmup_steps=1 (default): the first report is never judged, however bad
    assert median().should_prune(1, -100.0, HISTORY) is None
    # warmup_steps=2: the first check is the third report
    assert median(warmup_steps=2).should_prune(2, 0.0, HISTORY, {1: 0.0}) is None
    assert median(warmup_steps=2).should_prune(3, 0.0, HISTORY, {1: 0.0, 2: 0.0}) is not None
    # interval=2 after warmup_steps=1: checks at reports 2 and 4 only
    sparse = median(interval=2)
    curve = {1: 0.0, 2: 0.0, 3: 0.0}
    assert [sparse.should_prune(s, 0.0, HISTORY, curve) is not None for s in (2, 3, 4)] == [True, False, True]
    # warmup_trials: 5 completed trials are needed by default, 4 are not enough
    assert median().should_prune(2, 0.0, PruningHistory(COMPLETED[:4]), {1: 0.0}) is None
    assert median(warmup_trials=4).should_prune(2, 0.0, PruningHistory(COMPLETED[:4]), {1: 0.0}) is not None
    # at the last step the completed trials reported (5), stopping saves nothing
    assert median().should_prune(5, 0.0, HISTORY, {s: 0.0 for s in range(1, 5)}) is None
    # NaN is pruned at once, even in the warm-up
    assert median().should_prune(1, math.nan, HISTORY) == "accuracy is NaN"


def test_median_ignores_pruned_trials_and_follows_the_direction() -> None:
    pruned = tuple(TrialCurve(10 + i, "PRUNED", {1: -50.0, 2: -50.0}, -50.0) for i in range(6))
    with_pruned = PruningHistory(COMPLETED + pruned)
    assert median().should_prune(2, 21.0, with_pruned, {1: 0.0}) is not None  # median still 22
    # a loss to minimise: the same numbers, now 23 (above the median 22) is the bad one
    loss = MedianPruner(metric="loss", direction="min")
    assert loss.should_prune(2, 21.0, HISTORY, {1: 30.0}) is None
    assert loss.should_prune(2, 23.0, HISTORY, {1: 30.0}) == (
        "best loss so far 23 is worse than the median 22 of 5 completed trials at step 2"
    )


def _frozen(number: int, state: TrialState, metrics: dict, intermediate: dict) -> FrozenTrial:
    return FrozenTrial(number, Architecture(), "", "", state, metrics, intermediate=intermediate)


def test_history_from_trials_keeps_finished_curves_of_the_metric() -> None:
    trials = [
        _frozen(
            0,
            TrialState.COMPLETE,
            {"accuracy": 90.0},
            {1: {"accuracy": 50.0, "loss": 1.0}, 2: {"accuracy": 90.0}},
        ),
        _frozen(1, TrialState.FAILED, {}, {1: {"accuracy": 10.0}}),
        _frozen(2, TrialState.PRUNED, {"accuracy": 20.0}, {1: {"accuracy": 20.0}, 2: {"loss": 3.0}}),
        _frozen(3, TrialState.COMPLETE, {"accuracy": math.nan}, {1: {"accuracy": math.inf}}),
    ]
    history = PruningHistory.from_trials(trials, "accuracy")
    assert history.trials == (
        TrialCurve(0, "COMPLETE", {1: 50.0, 2: 90.0}, 90.0),
        TrialCurve(2, "PRUNED", {1: 20.0}, 20.0),
        TrialCurve(3, "COMPLETE", {}, None),
    )
    assert [t.number for t in history.completed()] == [0, 3]
    assert history.final_step() == 2
    assert PruningHistory().final_step() is None


def pow3(c: float, a: float = 40.0, alpha: float = 0.7):
    return lambda s: c - a * s**-alpha


def test_extrapolation_recovers_a_pow3_law_and_is_optimistic_for_an_exponential_one() -> None:
    law = pow3(90.0)
    steps = [1, 2, 3, 4, 5]
    predictions = extrapolate(steps, [law(s) for s in steps], 20)
    assert predictions["pow3"] == pytest.approx(law(20), abs=1e-3)  # 85.087
    assert predictions["exp3"] < predictions["pow3"]  # an exponential saturates sooner
    pruner = CurvePruner()
    assert pruner.predict({s: law(s) for s in steps}, 20) == pytest.approx(law(20), abs=1e-3)
    # the optimistic envelope never predicts below the truth of either family
    exp_law = [80.0 - 50.0 * math.exp(-0.4 * (s - 1)) for s in steps]
    assert pruner.predict(dict(zip(steps, exp_law)), 20) >= 80.0 - 50.0 * math.exp(-0.4 * 19) - 1e-6
    # a loss (to minimise) decaying by a power law
    decay = CurvePruner(metric="loss", direction="min")
    curve = {s: 0.5 + 2.0 * s**-0.8 for s in steps}
    assert decay.predict(curve, 20) == pytest.approx(0.5 + 2.0 * 20**-0.8, abs=1e-4)
    # a flat curve predicts itself
    assert CurvePruner().predict({1: 7.0, 2: 7.0, 3: 7.0, 4: 7.0}, 30) == 7.0


def test_curve_pruner_prunes_a_clearly_worse_curve_and_keeps_a_late_bloomer() -> None:
    best = pow3(90.0)
    history = PruningHistory((TrialCurve(0, "COMPLETE", {s: best(s) for s in range(1, 21)}, best(20)),))
    pruner = CurvePruner()
    pruner.setup([Objective("accuracy")])
    worse = pow3(75.0)  # ends at 70.09 < 85.09
    curve = {s: worse(s) for s in range(1, 5)}
    reason = pruner.should_prune(5, worse(5), history, curve)
    assert reason is not None and reason.startswith("its curve extrapolates to accuracy 70.08")
    assert "worse than the best completed trial's 85.087" in reason
    # a margin of 20 points makes the same curve worth finishing
    assert CurvePruner(margin=20.0).should_prune(5, worse(5), history, curve) is None
    # starts far lower than the best (20 vs 50 at step 1) but rises faster and ends higher (90.2)
    bloomer = pow3(100.0, a=80.0)
    assert bloomer(1) < best(1) and bloomer(20) > best(20)
    assert pruner.should_prune(5, bloomer(5), history, {s: bloomer(s) for s in range(1, 5)}) is None
    # too few points to fit, or at the final step: never pruned
    assert pruner.should_prune(3, worse(3), history, {1: worse(1), 2: worse(2)}) is None
    assert pruner.should_prune(20, 0.0, history, curve) is None
    # max_step overrides the history's final step: at step 6 the worse curve is still below 85.09
    assert CurvePruner(max_step=6).should_prune(5, worse(5), history, curve) is not None
    assert CurvePruner(max_step=5).should_prune(5, worse(5), history, curve) is None
    # no completed trial yet: nothing to compare with
    assert pruner.should_prune(5, worse(5), PruningHistory(), curve) is None


def test_monitor_raises_trial_pruned_with_the_last_metrics_and_rejects_a_missing_metric() -> None:
    monitor = PruningMonitor(median(), HISTORY)
    monitor.observe(1, {"accuracy": 5.0, "loss": 2.0})
    with pytest.raises(nf.TrialPruned) as caught:
        monitor.observe(2, {"accuracy": 20.0, "loss": 1.5})
    assert str(caught.value) == (
        "pruned at step 2: best accuracy so far 20 is worse than the median 22 of 5 completed trials "
        "at step 2"
    )
    assert caught.value.metrics == {"accuracy": 20.0, "loss": 1.5}
    with pytest.raises(
        nf.EvaluationError, match=r"watches 'accuracy' but the evaluator reported only \['loss'\]"
    ):
        PruningMonitor(median(), HISTORY).observe(1, {"loss": 1.0})


def test_metric_and_direction_come_from_the_objectives() -> None:
    pruner = MedianPruner()
    pruner.setup([Objective("val_loss", "min"), Objective("params", "min")])
    assert (pruner.metric, pruner.objective.direction) == ("val_loss", "min")
    named = MedianPruner(metric="params")
    named.setup([Objective("accuracy"), Objective("params", "min")])
    assert named.objective == Objective("params", "min")
    with pytest.raises(nf.ConfigError, match="watches 'loss', which is not an objective"):
        MedianPruner(metric="loss").setup([Objective("accuracy")])


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: MedianPruner(warmup_trials=0), "warmup_trials must be an integer >= 1, got 0"),
        (lambda: MedianPruner(interval=1.5), "interval must be an integer >= 1"),
        (lambda: MedianPruner(direction="up"), "direction must be 'max' or 'min'"),
        (lambda: CurvePruner(min_points=2), "min_points must be an integer >= 3"),
        (lambda: CurvePruner(margin=-1), "margin must be a number >= 0"),
        (lambda: CurvePruner(models=["pow4"]), r"unknown curve models \['pow4'\]; allowed: pow3, exp3"),
        (lambda: catalog.get_pruner("median", patience=3), "bad options for pruner 'median'"),
        (lambda: catalog.get_pruner("hyperband"), "unknown pruner 'hyperband'; allowed: curve, median"),
    ],
)
def test_bad_settings_are_config_errors_naming_the_setting(factory, match) -> None:
    with pytest.raises(nf.ConfigError, match=match):
        factory()


@pytest.mark.parametrize("name", ["median", "curve"])
def test_describe_rebuilds_the_same_pruner_and_pruners_pickle(name: str) -> None:
    pruner = catalog.get_pruner(name, warmup_trials=2, metric="loss", direction="min")
    description = pruner.describe()
    assert description["name"] == name and description["warmup_trials"] == 2
    rebuilt = catalog.rebuild(catalog.PRUNERS, description)
    assert rebuilt.describe() == description
    copy = pickle.loads(pickle.dumps(pruner))
    assert copy.describe() == description
    assert nf.list_pruners() == ["curve", "median"]
