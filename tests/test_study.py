"""The study loop: budgets, persistence, resume, failures, objectives and constraints."""

from __future__ import annotations

import math

import numpy as np
import pytest

import nasflow as nf
from nasflow.space.architecture import Architecture
from nasflow.testing.spaces import constrained_space
from nasflow.testing.strategies import synthetic_score
from nasflow.trial import INTERRUPTED


def score(arch: Architecture) -> dict[str, float]:
    """Module-level (picklable) evaluation function for worker processes."""
    size = int(arch["depth"]) * int(arch["width"])
    return {"accuracy": synthetic_score(arch), "params": float(size)}


def make(storage=None, name="s", seed=0, strategy="evolution", **kw):
    return nf.create_study(
        space=constrained_space(),
        strategy=nf.get_strategy(strategy) if isinstance(strategy, str) else strategy,
        evaluator=nf.FunctionEvaluator(kw.pop("fn", score)),
        storage=storage,
        name=name,
        seed=seed,
        **kw,
    )


def test_budget_counts_trials_and_best_is_the_maximum() -> None:
    study = make()
    study.optimize(budget=25)
    trials = study.trials()
    assert [t.number for t in trials] == list(range(25))
    assert all(t.state is nf.TrialState.COMPLETE for t in trials)
    best = study.best()
    assert best.metrics["accuracy"] == max(t.metrics["accuracy"] for t in trials)
    assert best.values == (best.metrics["accuracy"],)
    assert best.arch_str == constrained_space().format(best.arch)
    # the budget is the study's total: asking again for 25 runs nothing, asking for 30 runs 5 more
    study.optimize(budget=25)
    assert len(study.trials()) == 25
    study.optimize(budget=30)
    assert len(study.trials()) == 30


def test_same_seed_same_trials_different_seed_different_trials() -> None:
    def archs(seed: int) -> list[Architecture]:
        study = make(seed=seed)
        study.optimize(budget=30)
        return [t.arch for t in study.trials()]

    assert archs(3) == archs(3)
    assert archs(3) != archs(4)


def test_sqlite_study_reloads_and_continues_like_an_uninterrupted_one(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    first = make(storage=url, name="demo", seed=7)
    first.optimize(budget=12)
    again = make(storage=url, name="demo", seed=7, load_if_exists=True)
    again.optimize(budget=30)
    straight = make(name="straight", seed=7)
    straight.optimize(budget=30)
    assert [t.arch for t in again.trials()] == [t.arch for t in straight.trials()]
    loaded = nf.load_study("demo", url, evaluator=nf.FunctionEvaluator(score))
    assert len(loaded.trials()) == 30
    assert loaded.best().number == straight.best().number
    assert loaded.best().metrics == pytest.approx(straight.best().metrics)


def test_existing_name_needs_load_if_exists_and_matching_settings(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    make(storage=url, name="demo").optimize(budget=2)
    with pytest.raises(nf.StorageError, match="already exists"):
        make(storage=url, name="demo")
    with pytest.raises(nf.ConfigError, match="already exists with other settings.*seed"):
        make(storage=url, name="demo", seed=99, load_if_exists=True)
    with pytest.raises(nf.StudyNotFoundError, match="demo"):
        nf.load_study("nope", url)


def test_failing_evaluations_become_failed_trials_and_the_search_goes_on() -> None:
    def flaky(arch: Architecture) -> dict[str, float]:
        if arch["act"] == "silu":
            raise nf.EvaluationError("training diverged: loss became NaN")
        if arch["act"] == "gelu":
            raise RuntimeError("boom")
        return score(arch)

    study = make(fn=flaky)
    study.optimize(budget=30)
    trials = study.trials()
    assert len(trials) == 30
    failed = [t for t in trials if t.state is nf.TrialState.FAILED]
    assert failed and len(failed) < 30
    for trial in failed:
        if trial.arch["act"] == "silu":
            assert trial.error == "training diverged: loss became NaN"
        else:
            assert trial.error.startswith("RuntimeError: boom")
    assert study.best().arch["act"] == "relu"


def test_pruned_evaluations_keep_reason_and_metrics_and_are_never_best(tmp_path) -> None:
    def screened(arch: Architecture) -> dict[str, float]:
        if arch["act"] != "relu":
            raise nf.TrialPruned(f"act {arch['act']} screened out", {"accuracy": 99.0})
        return score(arch)

    study = make(storage=f"sqlite:///{tmp_path / 'p.db'}", fn=screened)
    study.optimize(budget=25)
    trials = study.trials()
    pruned = [t for t in trials if t.state is nf.TrialState.PRUNED]
    assert len(trials) == 25 and 0 < len(pruned) < 25
    for trial in pruned:
        assert trial.error == f"act {trial.arch['act']} screened out"
        assert trial.metrics == {"accuracy": 99.0}
    # a pruned trial's (partial) metrics never make it the best, even when they are higher
    assert study.best().state is nf.TrialState.COMPLETE and study.best().arch["act"] == "relu"


def test_missing_objective_metric_fails_the_trial_with_a_reason() -> None:
    study = make(objectives=["accuracy:max", "latency_ms:min"])
    study.optimize(budget=3)
    errors = {t.error for t in study.trials()}
    expected = "the evaluator returned no finite value for objective ['latency_ms']; "
    assert errors == {expected + "it returned: ['accuracy', 'params']"}
    with pytest.raises(nf.NasflowError, match="no completed trial"):
        study.best()


def test_two_objectives_give_the_exact_pareto_front() -> None:
    study = make(objectives=["accuracy:max", "params:min"], strategy="random")
    study.optimize(budget=40)
    done = study.trials([nf.TrialState.COMPLETE])
    front = study.pareto_front()
    assert front
    for member in front:
        for other in done:
            better_or_equal = (
                other.metrics["accuracy"] >= member.metrics["accuracy"]
                and other.metrics["params"] <= member.metrics["params"]
            )
            strictly = (
                other.metrics["accuracy"] > member.metrics["accuracy"]
                or other.metrics["params"] < member.metrics["params"]
            )
            assert not (better_or_equal and strictly), (
                f"trial {other.number} dominates front member {member.number}"
            )
    for trial in done:
        if trial.canonical not in {m.canonical for m in front}:
            assert any(
                m.metrics["accuracy"] >= trial.metrics["accuracy"]
                and m.metrics["params"] <= trial.metrics["params"]
                for m in front
            )
    accuracies = [m.metrics["accuracy"] for m in front]
    assert accuracies == sorted(accuracies, reverse=True)
    assert study.best().number == front[0].number


def test_constraints_are_never_violated_by_best_or_front() -> None:
    study = make(constraints=["params<=32"], strategy="random")
    study.optimize(budget=40)
    trials = study.trials([nf.TrialState.COMPLETE])
    assert any(not t.feasible for t in trials)
    assert all(t.feasible == (t.metrics["params"] <= 32) for t in trials)
    assert study.best().metrics["params"] <= 32
    assert all(t.metrics["params"] <= 32 for t in study.pareto_front())
    violation = next(t for t in trials if not t.feasible)
    assert violation.violation == pytest.approx(violation.metrics["params"] - 32)


def test_best_is_never_an_infeasible_architecture() -> None:
    # params = depth * width is at least 8 here, so "params<=1" can never be met
    study = make(constraints=["params<=1"], strategy="random")
    study.optimize(budget=10)
    trials = study.trials([nf.TrialState.COMPLETE])
    assert len(trials) == 10 and not study.has_feasible_trial()
    closest = min(trials, key=lambda t: (t.metrics["params"], t.number))
    with pytest.raises(
        nf.NasflowError, match=f"none of the 10 completed.*closest is trial {closest.number} "
    ):
        study.best()
    assert study.pareto_front() == []


def test_seconds_budget_stops_starting_trials() -> None:
    import time

    def slow(arch: Architecture) -> dict[str, float]:
        time.sleep(0.02)
        return score(arch)

    study = make(fn=slow)
    start = time.monotonic()
    study.optimize(seconds=0.3)
    assert 3 <= len(study.trials()) <= 20
    assert time.monotonic() - start < 2.0


def test_two_worker_processes_complete_the_budget_with_distinct_numbers(tmp_path) -> None:
    study = make(storage=f"sqlite:///{tmp_path / 'w.db'}", strategy="random")
    study.optimize(budget=12, workers=2)
    trials = study.trials()
    assert [t.number for t in trials] == list(range(12))
    assert all(t.state is nf.TrialState.COMPLETE for t in trials)
    assert all(t.metrics == score(t.arch) for t in trials)


def test_unpicklable_evaluator_with_workers_gives_a_clear_error() -> None:
    study = make(fn=lambda arch: score(arch))
    with pytest.raises(nf.ConfigError, match="cannot be sent to worker processes"):
        study.optimize(budget=2, workers=2)


def test_interrupted_run_marks_running_trials_and_resume_completes_the_budget(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    calls = {"n": 0}

    def interrupting(arch: Architecture) -> dict[str, float]:
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return score(arch)

    study = make(storage=url, name="r", fn=interrupting)
    with pytest.raises(KeyboardInterrupt):
        study.optimize(budget=10)
    trials = study.trials()
    assert [t.state for t in trials] == [nf.TrialState.COMPLETE] * 5 + [nf.TrialState.FAILED]
    assert trials[-1].error == INTERRUPTED
    resumed = make(storage=url, name="r", load_if_exists=True)
    resumed.optimize(budget=10)
    trials = resumed.trials()
    assert sum(t.state is nf.TrialState.COMPLETE for t in trials) == 10
    assert len(trials) == 11
    # the interrupted architecture is proposed again, as the uninterrupted run would have
    assert trials[6].arch == trials[5].arch


def test_function_evaluator_rejects_non_numeric_and_nan_metrics() -> None:
    study = make(fn=lambda arch: {"accuracy": float("nan")})
    study.optimize(budget=1)
    assert study.trials()[0].error == "metric 'accuracy' is NaN"
    study = make(fn=lambda arch: "high")
    study.optimize(budget=1)
    assert "must return a dict" in study.trials()[0].error
    assert math.isnan(float("nan"))


def test_bad_optimize_arguments() -> None:
    study = make()
    with pytest.raises(nf.ConfigError, match="needs a budget"):
        study.optimize()
    with pytest.raises(nf.ConfigError, match="workers must be >= 1"):
        study.optimize(budget=1, workers=0)


class _TwoThenDone(nf.Strategy):
    """Proposes two architectures at a reduced fidelity, then has nothing left."""

    name = "two-then-done"

    def ask(self, n: int = 1) -> list:
        from nasflow.errors import SearchExhausted
        from nasflow.strategies.base import Suggestion

        self.asked = getattr(self, "asked", 0) + n
        if self.asked > 2:
            raise SearchExhausted("done")
        return [Suggestion(self.space.sample(self.rng), {"epochs": 3.0}) for _ in range(n)]


def test_fidelity_reaches_the_evaluator_is_stored_and_exhaustion_stops_cleanly(tmp_path) -> None:
    seen = []

    class Recording(nf.Evaluator):
        def evaluate(self, arch, context):
            seen.append(dict(context.fidelity))
            return nf.Measurement({"accuracy": float(context.fidelity["epochs"])})

    url = f"sqlite:///{tmp_path / 'f.db'}"
    study = nf.create_study(
        space=constrained_space(), strategy=_TwoThenDone(), evaluator=Recording(), storage=url
    )
    study.optimize(budget=10)
    assert seen == [{"epochs": 3.0}, {"epochs": 3.0}]
    trials = nf.load_study(study.name, url).trials()
    assert [t.fidelity for t in trials] == [{"epochs": 3.0}, {"epochs": 3.0}]
    assert [t.state for t in trials] == [nf.TrialState.COMPLETE] * 2


def test_evaluate_and_add_trial_record_outside_architectures_as_trials(tmp_path) -> None:
    study = make(storage=f"sqlite:///{tmp_path / 'e.db'}")
    study.optimize(budget=5)
    space = constrained_space()
    chosen = space.sample(__import__("numpy").random.default_rng(7))
    evaluated = study.evaluate(chosen)
    assert evaluated.number == 5 and evaluated.state is nf.TrialState.COMPLETE
    assert evaluated.metrics == score(chosen)
    added = study.add_trial(chosen, {"accuracy": 123.0}, intermediate={1: {"accuracy": 50.0}})
    assert added.number == 6 and added.values == (123.0,) and added.intermediate == {1: {"accuracy": 50.0}}
    assert study.best().number == 6
    missing = study.add_trial(chosen, {"params": 1.0})
    assert missing.state is nf.TrialState.FAILED and "accuracy" in missing.error
    # both count towards the budget, and the search continues after them
    study.optimize(budget=10)
    assert len(study.trials()) == 10


class ParamsInAdvance(nf.FunctionEvaluator):
    """Knows ``params`` before evaluating, like TrainEvaluator (which builds the untrained network)."""

    def __init__(self) -> None:
        super().__init__(score)
        self.evaluated: list[Architecture] = []

    def evaluate(self, arch, context):  # type: ignore[no-untyped-def]
        self.evaluated.append(arch)
        return super().evaluate(arch, context)

    def precheck(self, arch: Architecture) -> dict[str, float]:
        return {"params": score(arch)["params"]}


def test_constraint_violations_known_in_advance_are_screened_not_evaluated(tmp_path) -> None:
    evaluator = ParamsInAdvance()
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = make(storage=url, strategy="random", fn=score, constraints=["params<=32"])
    study.evaluator = evaluator
    study.optimize(budget=12)
    trials = study.trials()
    screened = [t for t in trials if t.screened]
    evaluated = [t for t in trials if not t.screened]
    assert [t.number for t in trials] == list(range(len(trials)))
    assert len(evaluated) == 12 and [t.arch for t in evaluated] == evaluator.evaluated
    assert screened and all(
        t.metrics["params"] > 32 and t.violation == t.metrics["params"] - 32 for t in screened
    )
    assert all(t.feasible and t.state is nf.TrialState.COMPLETE for t in evaluated)
    # screened trials do not count towards the budget, also after reopening the study
    resumed = nf.load_study(
        "s", url, space=constrained_space(), strategy=nf.get_strategy("random"), evaluator=evaluator
    )
    resumed.optimize(budget=15)
    assert sum(not t.screened for t in resumed.trials()) == 15


def test_a_search_whose_proposals_are_all_screened_stops_with_a_warning() -> None:
    study = make(strategy="random", constraints=["params<=1"])
    study.evaluator = ParamsInAdvance()
    with pytest.warns(UserWarning, match="proposals all violated the constraints before evaluation"):
        study.optimize(budget=3)
    assert study.trials() and all(t.screened for t in study.trials())
    assert study.evaluator.evaluated == []


def test_train_evaluator_knows_params_and_flops_before_training() -> None:
    space = nf.get_space("nb201", channels=4, cells_per_stage=1)
    evaluator = nf.TrainEvaluator("digits", epochs=1, data_fraction=0.1)
    evaluator.setup(space)
    arch = space.sample(np.random.default_rng(0))
    known = evaluator.precheck(arch)
    measured = evaluator.evaluate(arch, nf.EvalContext(trial_number=0, seed=0)).metrics
    assert known == {"params": measured["params"], "flops": measured["flops"]}


def test_a_precheck_that_fails_leaves_the_verdict_to_the_evaluation() -> None:
    class BrokenPrecheck(ParamsInAdvance):
        def precheck(self, arch: Architecture) -> dict[str, float]:
            raise RuntimeError("cannot build")

    study = make(strategy="random", constraints=["params<=32"])
    study.evaluator = BrokenPrecheck()
    study.optimize(budget=5)
    trials = study.trials()
    assert len(trials) == 5 and not any(t.screened for t in trials)
    assert all(t.state is nf.TrialState.COMPLETE for t in trials)
