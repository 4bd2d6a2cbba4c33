"""Several `nasflow search` processes on one study: a joint budget, no duplicate or lost trial."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

import nasflow as nf
from nasflow.storage import open_store
from nasflow.testing.spaces import constrained_space
from nasflow.testing.strategies import synthetic_score

BUDGET = 14


def _search(url: str, name: str, config: Path) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "nasflow.cli.main", "search", "--config", str(config)]
    command += ["--storage", url, "--name", name, "--budget", str(BUDGET), "--quiet", "--output", "json"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finished(url: str, name: str) -> int:
    try:
        trials = nf.load_study(name, url).trials()
    except nf.NasflowError:
        return 0
    return sum(t.state.finished for t in trials)


@pytest.mark.slow
def test_two_search_processes_finish_their_joint_budget(backend_url: str, tmp_path: Path) -> None:
    name = f"joint-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "search.yaml"
    # real (short) training, so both processes are busy at the same time
    config.write_text("evaluator_options: {epochs: 2}\nstrategy: evolution\n")
    first = _search(backend_url, name, config)
    deadline = time.monotonic() + 120
    while _finished(backend_url, name) < 1:  # the second joins a study that is under way
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.1)
    second = _search(backend_url, name, config)
    for process in (first, second):
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err

    with open_store(backend_url) as store:
        records = store.get_trials(store.load_study(name).study_id)
    assert [r.number for r in records] == list(range(BUDGET))  # none duplicated, none missing
    assert all(r.state is nf.TrialState.COMPLETE for r in records)
    drivers = {r.driver for r in records}
    assert len(drivers) == 2, "both processes should have run trials"
    assert all(r.attempts == 1 and r.metrics["accuracy"] > 0 for r in records)
    # the second driver got its own random stream rather than repeating the first one's proposals
    assert len({r.canonical for r in records}) >= BUDGET - 1


def _score(arch: object) -> dict[str, float]:
    return {"accuracy": synthetic_score(arch)}  # type: ignore[arg-type]


def _random_study(url: str) -> nf.Study:
    return nf.create_study(
        space=constrained_space(),
        strategy="random",
        evaluator=nf.FunctionEvaluator(_score),
        storage=url,
        name="shared",
        seed=4,
        load_if_exists=True,
    )


def test_a_driver_that_meets_another_live_driver_draws_its_own_architectures(tmp_path: Path) -> None:
    alone_url, shared_url = f"sqlite:///{tmp_path / 'alone.db'}", f"sqlite:///{tmp_path / 'shared.db'}"
    alone = _random_study(alone_url)
    alone.optimize(budget=6)
    joining = _random_study(shared_url)
    with open_store(shared_url) as store:  # a live driver elsewhere is running trial 0
        study_id = store.load_study("shared").study_id
        store.create_trial(study_id, {"x": 1}, "x", "x", driver="other-host:7:live")
    joining.optimize(budget=7)
    mine = [t.canonical for t in joining.trials()[1:]]
    assert len(mine) == 6
    assert mine != [t.canonical for t in alone.trials()]
    # resuming alone never forks: the same seed gives the same trials
    again = _random_study(f"sqlite:///{tmp_path / 'again.db'}")
    again.optimize(budget=3)
    again = _random_study(f"sqlite:///{tmp_path / 'again.db'}")
    again.optimize(budget=6)
    assert [t.canonical for t in again.trials()] == [t.canonical for t in alone.trials()]


def test_a_driver_forks_when_its_next_trial_number_shows_another_driver(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    joint = _random_study(url)

    def other_driver_starts(study: nf.Study, trial: nf.FrozenTrial) -> None:
        if trial.number == 0:
            assert not study._forked
            study._sync_due = float("inf")  # no look at the study: only the trial number can tell
            with open_store(url) as store:
                study_id = store.load_study("shared").study_id
                store.create_trial(study_id, {"x": 1}, "x", "x", driver="other-host:9:live")

    joint.optimize(budget=4, callbacks=[other_driver_starts])
    assert joint._forked
    alone = _random_study(f"sqlite:///{tmp_path / 'alone.db'}")
    alone.optimize(budget=3)
    mine, straight = joint.trials(), alone.trials()
    assert mine[1].state is nf.TrialState.RUNNING and [t.number for t in mine] == [0, 1, 2, 3]
    assert mine[0].canonical == straight[0].canonical  # the same stream until the fork
    assert [t.canonical for t in mine[2:]] != [t.canonical for t in straight[1:]]
