"""Faults in a search: dead workers are retried, Ctrl-C stops gracefully, vanished drivers are replaced."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import nasflow as nf
from nasflow.cli.render import trials_table
from nasflow.execution import ProcessExecutor
from nasflow.storage import open_store
from nasflow.strategies.random_search import RandomSearch
from nasflow.testing.spaces import constrained_space
from nasflow.testing.strategies import synthetic_score
from nasflow.trial import INTERRUPTED


def _die_once(arch: Any, marker_dir: str) -> dict[str, float]:
    """Kill this worker process the first time it evaluates any architecture (per marker dir)."""
    marker = Path(marker_dir) / "died"
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return {"accuracy": synthetic_score(arch)}


class _DieOnce:
    """Picklable evaluator function: dies in its worker the first time, answers afterwards."""

    def __init__(self, marker_dir: Path) -> None:
        self.marker_dir = str(marker_dir)

    def __call__(self, arch: Any) -> dict[str, float]:
        return _die_once(arch, self.marker_dir)


@pytest.mark.slow
def test_trial_whose_worker_process_dies_is_run_again(tmp_path: Path) -> None:
    study = nf.create_study(
        space=constrained_space(),
        strategy="random",
        evaluator=nf.FunctionEvaluator(_DieOnce(tmp_path)),
        seed=3,
    )
    with pytest.warns(UserWarning, match="worker process died"), ProcessExecutor(2, 1) as executor:
        study.optimize(budget=6, executor=executor)
    trials = study.trials()
    assert [t.state for t in trials] == [nf.TrialState.COMPLETE] * 6
    retried = [t for t in trials if t.attempts > 1]
    # the dead worker broke the pool: its trial, and the one running beside it, ran again
    assert 1 <= len(retried) <= 2 and all(t.attempts == 2 for t in retried)
    assert all(t.metrics["accuracy"] == synthetic_score(t.arch) for t in trials)


def _always_die(arch: Any) -> dict[str, float]:
    os.kill(os.getpid(), signal.SIGKILL)
    return {}


class _AlwaysDie:
    def __call__(self, arch: Any) -> dict[str, float]:
        return _always_die(arch)


@pytest.mark.slow
def test_worker_that_keeps_dying_fails_the_trial_with_the_reason(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'dying.db'}"
    study = nf.create_study(
        space=constrained_space(),
        strategy="random",
        evaluator=nf.FunctionEvaluator(_AlwaysDie()),
        storage=url,
        name="dying",
        seed=1,
    )
    with pytest.warns(UserWarning, match="running it again"), ProcessExecutor(1, 1) as executor:
        study.optimize(budget=1, executor=executor, max_retries=1)
    (trial,) = nf.load_study("dying", url).trials()
    assert trial.state is nf.TrialState.FAILED
    assert trial.attempts == 2 and trial.to_dict()["attempts"] == 2
    assert "worker process died" in trial.error and "gave up after 2 attempts" in trial.error
    table = trials_table([trial], "trials")
    assert [c.header for c in table.columns] == ["#", "state", "runs", "architecture"]
    assert list(table.columns[2].cells) == ["2"]


class Recording(RandomSearch):
    """Random search that remembers which trials it was told, in its saved state."""

    name = "recording"

    def __init__(self) -> None:
        super().__init__()
        self.told: list[int] = []

    def tell(self, trial: nf.FrozenTrial) -> None:
        self.told.append(trial.number)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "told": list(self.told)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.told = list(state["told"])


def _score(arch: Any) -> dict[str, float]:
    return {"accuracy": synthetic_score(arch)}


def _study(url: str, strategy: Any = "random", name: str = "shared") -> nf.Study:
    return nf.create_study(
        space=constrained_space(),
        strategy=strategy,
        evaluator=nf.FunctionEvaluator(_score),
        storage=url,
        name=name,
        seed=0,
        load_if_exists=True,
    )


def test_each_driver_is_told_the_trials_the_other_finished(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    first, second = _study(url, Recording()), _study(url, Recording())
    first.optimize(budget=4)
    second.optimize(budget=7)  # the joint budget: 3 more
    first.optimize(budget=9)
    assert [t.number for t in first.trials()] == list(range(9))
    assert sorted(first.strategy.told) == list(range(9))
    assert sorted(second.strategy.told) == list(range(7))
    # a driver that starts later restores the last saved state and is told what it lacks, once
    third = _study(url, Recording())
    third.optimize(budget=9)
    assert sorted(third.strategy.told) == list(range(9))


def test_running_trial_of_a_vanished_driver_is_taken_over(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    study = _study(url)
    study.stale_after = 0.3
    with open_store(url) as store:
        study_id = store.load_study("shared").study_id
        foreign = store.create_trial(study_id, {"x": 1}, "x", "x", driver="other-host:1:abcd")
    time.sleep(0.4)  # its driver never beats: the trial goes stale
    study.optimize(budget=3)
    trials = study.trials()
    assert trials[0].state is nf.TrialState.FAILED and trials[0].error == INTERRUPTED
    assert [t.state for t in trials[1:]] == [nf.TrialState.COMPLETE] * 3
    assert foreign.number == 0


def test_live_foreign_trial_takes_budget_and_is_left_alone(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    study = _study(url)
    with open_store(url) as store:
        study_id = store.load_study("shared").study_id
        store.create_trial(study_id, {"x": 1}, "x", "x", driver="other-host:1:abcd")
    study.optimize(budget=3)
    states = [t.state for t in study.trials()]
    assert states == [nf.TrialState.RUNNING, nf.TrialState.COMPLETE, nf.TrialState.COMPLETE]


def test_running_trial_of_a_dead_local_process_is_taken_over_at_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    dead_pid = int(finished.stdout)
    study = _study(url)  # stale_after stays 60 s: the dead pid alone tells
    with open_store(url) as store:
        study_id = store.load_study("shared").study_id
        store.create_trial(study_id, {"x": 1}, "x", "x", driver=f"{socket.gethostname()}:{dead_pid}:abcd")
    study.optimize(budget=2)
    trials = study.trials()
    assert trials[0].error == INTERRUPTED and len(trials) == 3


SIGINT_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import nasflow as nf
    from nasflow.testing.spaces import constrained_space
    from nasflow.testing.strategies import synthetic_score

    started = Path(sys.argv[2])

    def evaluate(arch):
        with started.open("a") as f:
            f.write("x")
        time.sleep(float(sys.argv[4]))
        return {"accuracy": synthetic_score(arch)}

    strategy = nf.get_strategy("evolution", population_size=4, sample_size=2)
    study = nf.create_study(space=constrained_space(), strategy=strategy,
                            evaluator=nf.FunctionEvaluator(evaluate), storage=sys.argv[1], name="stopped",
                            seed=2, load_if_exists=True)
    study.optimize(budget=int(sys.argv[3]))
    print("stopped" if study.stopped else "done", flush=True)
    """
)


def _start(script: Path, url: str, started: Path, budget: int, sleep: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(script), url, str(started), str(budget), str(sleep)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_starts(process: subprocess.Popen[str], started: Path, count: int) -> None:
    deadline = time.monotonic() + 60
    while not started.exists() or len(started.read_text()) < count:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the search made no progress"
        time.sleep(0.02)


@pytest.mark.slow
def test_first_sigint_lets_the_running_trial_finish_then_resume_completes_the_same_trials(
    tmp_path: Path,
) -> None:
    script, url, started = tmp_path / "search.py", f"sqlite:///{tmp_path / 's.db'}", tmp_path / "started"
    script.write_text(SIGINT_SCRIPT)
    process = _start(script, url, started, 10, 0.5)
    _wait_for_starts(process, started, 3)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert out.strip() == "stopped" and "press Ctrl-C again" in err
    trials = nf.load_study("stopped", url).trials()
    assert len(trials) == 3 and all(t.state is nf.TrialState.COMPLETE for t in trials)

    resumed = _start(script, url, tmp_path / "started2", 10, 0.0)
    assert resumed.communicate(timeout=60)[0].strip() == "done"
    done = nf.load_study("stopped", url).trials()
    straight = nf.create_study(
        space=constrained_space(),
        strategy=nf.get_strategy("evolution", population_size=4, sample_size=2),
        evaluator=nf.FunctionEvaluator(_score),
        seed=2,
    )
    straight.optimize(budget=10)
    assert [t.arch for t in done] == [t.arch for t in straight.trials()]


@pytest.mark.slow
def test_second_sigint_stops_at_once_and_marks_the_running_trial_interrupted(tmp_path: Path) -> None:
    script, url, started = tmp_path / "search.py", f"sqlite:///{tmp_path / 's.db'}", tmp_path / "started"
    script.write_text(SIGINT_SCRIPT)
    process = _start(script, url, started, 10, 30.0)
    _wait_for_starts(process, started, 1)
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=20)
    assert process.returncode != 0 and "KeyboardInterrupt" in err
    (trial,) = nf.load_study("stopped", url).trials()
    assert trial.state is nf.TrialState.FAILED and trial.error == INTERRUPTED
