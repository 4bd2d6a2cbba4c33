"""Pruners inside the study loop: exact prune steps, fewer steps run, workers, resume, CLI config, digits."""

from __future__ import annotations

import re
import statistics
from typing import Any

import pytest

import nasflow as nf
from nasflow.config import make_config, study_from_config
from nasflow.space.architecture import Architecture
from nasflow.strategies.base import Strategy

STEPS = 8
SPACE = nf.DecisionSpace({"q": [0, 1, 2, 3], "r": [0, 1, 2]})


def quality(arch: Architecture) -> float:
    """Distinct per architecture: 50, 51, ..., 83."""
    return 50.0 + 10.0 * int(arch["q"]) + int(arch["r"])


def accuracy_at(arch: Architecture, step: int) -> float:
    """Every curve has the same pow3 shape, shifted by the architecture's quality."""
    return quality(arch) - 40.0 * step**-0.7


class SyntheticCurves(nf.Evaluator):
    """Emits a deterministic learning curve per architecture (module level: workers can import it)."""

    name = "synthetic-curves"

    def setup(self, space: Any) -> None:
        """Needs nothing from the space."""

    def evaluate(self, arch: Architecture, context: nf.EvalContext) -> nf.Measurement:
        for step in range(1, STEPS + 1):
            context.emit(step, {"accuracy": accuracy_at(arch, step), "loss": 100.0 - accuracy_at(arch, step)})
        return nf.Measurement({"accuracy": accuracy_at(arch, STEPS)})


def make(pruner: Any = None, storage: str | None = None, name: str = "p", **kw: Any) -> nf.Study:
    return nf.create_study(
        space=SPACE,
        strategy="random",
        evaluator=SyntheticCurves(),
        storage=storage,
        name=name,
        seed=3,
        pruner=pruner,
        **kw,
    )


def steps_run(study: nf.Study) -> int:
    return sum(len(t.intermediate) for t in study.trials())


def expected_median_outcome(archs: list[Architecture], warmup_trials: int) -> list[str]:
    """The median rule replayed by hand: with one curve shape, a trial is below the completed trials'
    median at step 2 exactly when its quality is below the median of their qualities."""
    completed: list[float] = []
    states = []
    for arch in archs:
        if len(completed) >= warmup_trials and quality(arch) < statistics.median(completed):
            states.append("PRUNED")
        else:
            states.append("COMPLETE")
            completed.append(quality(arch))
    return states


def test_median_pruning_stops_bad_trials_at_step_2_and_still_finds_the_best() -> None:
    full = make(name="full")
    full.optimize(budget=20)
    pruned = make(nf.MedianPruner(warmup_trials=3), name="pruned")
    pruned.optimize(budget=20)
    trials = pruned.trials()
    # random search proposes the same architectures whatever the outcomes
    archs = [t.arch for t in trials]
    assert archs == [t.arch for t in full.trials()]
    states = expected_median_outcome(archs, warmup_trials=3)
    assert [t.state.value for t in trials] == states
    assert 5 <= states.count("PRUNED") <= 15
    for trial in trials:
        if trial.state is nf.TrialState.PRUNED:
            assert sorted(trial.intermediate) == [1, 2]
            expected = f"pruned at step 2: best accuracy so far {accuracy_at(trial.arch, 2):.6g} is worse"
            assert trial.error is not None and trial.error.startswith(expected)
            # the last reported metrics, monitored value included, for strategies and reports
            assert trial.metrics == {
                "accuracy": accuracy_at(trial.arch, 2),
                "loss": 100.0 - accuracy_at(trial.arch, 2),
            }
            assert trial.values is None
        else:
            assert sorted(trial.intermediate) == list(range(1, STEPS + 1))
    assert pruned.best().arch == full.best().arch
    assert pruned.best().metrics["accuracy"] == max(accuracy_at(a, STEPS) for a in archs)
    assert steps_run(full) == 20 * STEPS
    assert steps_run(pruned) == 2 * states.count("PRUNED") + STEPS * states.count("COMPLETE") < 20 * STEPS


def test_curve_pruning_stops_trials_that_cannot_reach_the_best_at_min_points() -> None:
    study = make(nf.CurvePruner(min_points=3))
    study.optimize(budget=20)
    best_so_far = -1.0
    for trial in study.trials():
        final = accuracy_at(trial.arch, STEPS)
        # the curves are exact pow3 laws, so the fit is exact: pruned iff it ends below the best so far
        if best_so_far >= 0 and final < best_so_far - 1e-6:
            assert trial.state is nf.TrialState.PRUNED and sorted(trial.intermediate) == [1, 2, 3]
            match = re.match(
                r"pruned at step 3: its curve extrapolates to accuracy (\S+) at step 8", trial.error
            )
            assert match and float(match.group(1)) == pytest.approx(final, abs=1e-3)
        else:
            assert trial.state is nf.TrialState.COMPLETE
            best_so_far = max(best_so_far, final)
    assert study.best().metrics["accuracy"] == best_so_far
    assert steps_run(study) < 20 * STEPS


@pytest.mark.slow
def test_pruning_with_two_worker_processes(tmp_path) -> None:
    study = make("median", storage=f"sqlite:///{tmp_path / 'w.db'}")
    study.optimize(budget=16, workers=2)
    trials = study.trials()
    assert [t.number for t in trials] == list(range(16))
    pruned = [t for t in trials if t.state is nf.TrialState.PRUNED]
    assert pruned and all(t.state in (nf.TrialState.PRUNED, nf.TrialState.COMPLETE) for t in trials)
    for trial in pruned:
        # the default warmup_steps=1 first judges the second report; the pruned step was stored
        last = max(trial.intermediate)
        assert 2 <= last < STEPS and sorted(trial.intermediate) == list(range(1, last + 1))
        assert trial.error.startswith(f"pruned at step {last}: best accuracy so far")
        assert trial.metrics["accuracy"] == accuracy_at(trial.arch, last)
    # the best architecture seen is never below the median, so it completes and is the best
    best_arch = max((t.arch for t in trials), key=quality)
    assert study.best().arch == best_arch
    assert steps_run(study) < 16 * STEPS


def test_resumed_sqlite_study_prunes_like_an_uninterrupted_one(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    pruner = nf.MedianPruner(warmup_trials=3)
    make(pruner, storage=url, name="demo").optimize(budget=8)
    again = make(nf.MedianPruner(warmup_trials=3), storage=url, name="demo", load_if_exists=True)
    again.optimize(budget=20)
    straight = make(nf.MedianPruner(warmup_trials=3), name="straight")
    straight.optimize(budget=20)
    summary = [(t.arch, t.state, t.error, t.intermediate) for t in straight.trials()]
    assert [(t.arch, t.state, t.error, t.intermediate) for t in again.trials()] == summary
    assert any(state is nf.TrialState.PRUNED for _, state, _, _ in summary)
    # the pruner is part of the stored settings
    with pytest.raises(nf.ConfigError, match="already exists with other settings.*pruner"):
        make(nf.MedianPruner(warmup_trials=4), storage=url, name="demo", load_if_exists=True)
    with pytest.raises(nf.ConfigError, match="pruner: stored .*'median'.*given None"):
        make(None, storage=url, name="demo", load_if_exists=True)
    loaded = nf.load_study("demo", url, space=SPACE, evaluator=SyntheticCurves())
    assert loaded.pruner is not None and loaded.pruner.describe() == pruner.describe()


class _Watcher(nf.Pruner):
    """A custom pruner: stops every trial at step 3."""

    name = "watcher"

    def should_prune(self, step, value, history, curve=None):  # type: ignore[no-untyped-def]
        return "step 3 reached" if step == 3 else None


def test_custom_pruner_is_compared_by_name_and_must_be_passed_to_load_study(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    study = make(_Watcher(), storage=url, name="custom")
    study.optimize(budget=3)
    assert [t.error for t in study.trials()] == ["pruned at step 3: step 3 reached"] * 3
    loaded = nf.load_study(
        "custom", url, space=SPACE, strategy=nf.get_strategy("random"), evaluator=SyntheticCurves()
    )
    assert loaded.pruner is None and len(loaded.trials()) == 3
    with pytest.raises(nf.ConfigError, match="uses the pruner 'watcher'.*pass pruner= to load_study"):
        loaded.optimize(budget=4)


def test_pruner_watching_a_metric_the_evaluator_never_reports_fails_trials_clearly() -> None:
    study = make(nf.MedianPruner(metric="top5", direction="max"))
    study.optimize(budget=2)
    assert {t.state for t in study.trials()} == {nf.TrialState.FAILED}
    assert study.trials()[0].error.startswith("the pruner watches 'top5' but the evaluator reported only")


def test_bad_pruner_names_fail_before_anything_runs() -> None:
    with pytest.raises(nf.ConfigError, match="unknown pruner 'sometimes'; allowed: curve, median"):
        make("sometimes")
    with pytest.raises(nf.ConfigError, match="pruner must be a name or a Pruner instance"):
        make(3)
    with pytest.raises(
        nf.ConfigError, match="pruner: unknown pruner 'sometimes'; allowed: none, curve, median"
    ):
        make_config(pruner="sometimes")


def test_config_pruner_settings_reach_the_study(tmp_path) -> None:
    config = make_config(
        evaluator="tabular",
        pruner="curve",
        pruner_options={"min_points": 5, "margin": 1.0},
        storage=f"sqlite:///{tmp_path / 'cfg.db'}",
        name="cfg",
    )
    study = study_from_config(config)
    assert isinstance(study.pruner, nf.CurvePruner)
    assert (study.pruner.min_points, study.pruner.margin, study.pruner.metric) == (5, 1.0, "accuracy")
    assert (
        make_config().pruner == "none" and study_from_config(make_config(evaluator="tabular")).pruner is None
    )
    with pytest.raises(nf.ConfigError, match="pruner_options are set but pruner is 'none'"):
        study_from_config(make_config(evaluator="tabular", pruner_options={"margin": 1.0}))


def test_cli_search_takes_a_pruner_and_lists_pruners(capsys, tmp_path) -> None:
    from nasflow.cli.main import main

    db = f"sqlite:///{tmp_path / 'cli.db'}"
    args = ["search", "--evaluator", "tabular", "--budget", "3", "--storage", db, "--name", "c", "--quiet"]
    assert main([*args, "--pruner", "median", "--output", "json"]) == 0
    assert nf.load_study("c", db).pruner.describe() == nf.MedianPruner().describe()
    capsys.readouterr()
    assert main([*args, "--pruner", "bogus"]) == 2
    assert "pruner: unknown pruner 'bogus'; allowed: none, curve, median" in capsys.readouterr().err
    assert main(["list", "pruners"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == ["curve", "median"]


class FixedOrder(Strategy):
    """Proposes the given architectures in order (to pin down which trial gets pruned)."""

    name = "fixed-order"

    def __init__(self, archs: list[Architecture]) -> None:
        self.archs = archs
        self.next = 0

    def ask(self, n: int = 1) -> list[Architecture]:
        chosen = [self.archs[(self.next + i) % len(self.archs)] for i in range(n)]
        self.next += n
        return chosen

    def state_dict(self) -> dict[str, Any]:
        return {"next": self.next}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.next = int(state["next"])

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}


@pytest.fixture
def one_torch_thread():
    # two threads on two busy cores spend most of their time waiting for each other
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_training_study_on_digits_prunes_a_network_that_cannot_learn(one_torch_thread) -> None:
    from nasflow.space.nb201 import EDGE_NAMES, NB201Space

    def cell(op: str) -> Architecture:
        return Architecture({edge: op for edge in EDGE_NAMES})

    # skip connections learn quickly (60% after 2 epochs); a cell of only "none" edges cannot learn
    study = nf.create_study(
        space=NB201Space(channels=4, cells_per_stage=1),
        strategy=FixedOrder([cell("skip_connect"), cell("none")]),
        evaluator=nf.TrainEvaluator(task="digits", epochs=3),
        pruner=nf.MedianPruner(warmup_trials=1),
        seed=0,
    )
    study.optimize(budget=2)
    good, bad = study.trials()
    assert good.state is nf.TrialState.COMPLETE and sorted(good.intermediate) == [1, 2, 3]
    assert good.intermediate[2]["accuracy"] > 40.0
    assert bad.state is nf.TrialState.PRUNED and sorted(bad.intermediate) == [1, 2]
    assert bad.intermediate[2]["accuracy"] < 20.0
    assert bad.error.startswith("pruned at step 2: best accuracy so far")
    assert bad.metrics == bad.intermediate[2]  # the epoch-2 accuracy and loss
    assert study.best().number == good.number
