"""A search process killed with SIGKILL resumes and finishes its budget, losing nothing finished."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

import nasflow as nf
from nasflow.testing.spaces import constrained_space
from nasflow.testing.strategies import synthetic_score

SCRIPT = textwrap.dedent(
    """
    import sys, time
    import nasflow as nf
    from nasflow.testing.spaces import constrained_space
    from nasflow.testing.strategies import synthetic_score

    def evaluate(arch):
        time.sleep(0.04)
        return {"accuracy": synthetic_score(arch)}

    strategy = nf.get_strategy("evolution", population_size=8, sample_size=3)
    study = nf.create_study(space=constrained_space(), strategy=strategy,
                            evaluator=nf.FunctionEvaluator(evaluate), storage=sys.argv[1], name=sys.argv[3],
                            seed=5, load_if_exists=True)
    study.optimize(budget=int(sys.argv[2]))
    """
)
BUDGET = 40


def completed(url: str, name: str) -> list[nf.FrozenTrial]:
    try:
        study = nf.load_study(name, url)
    except nf.StorageError:
        return []
    return study.trials([nf.TrialState.COMPLETE])


@pytest.mark.slow
def test_sigkill_mid_search_then_resume_keeps_every_completed_trial(tmp_path, backend_url: str) -> None:
    script = tmp_path / "search.py"
    script.write_text(SCRIPT)
    url, name = backend_url, f"killed-{uuid.uuid4().hex[:8]}"
    process = subprocess.Popen([sys.executable, str(script), url, str(BUDGET), name])
    deadline = time.monotonic() + 60
    while len(completed(url, name)) < 10:
        assert process.poll() is None, "the search ended before it could be killed"
        assert time.monotonic() < deadline, "the search made no progress"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = {t.number: t for t in completed(url, name)}
    assert 10 <= len(before) < BUDGET

    subprocess.run([sys.executable, str(script), url, str(BUDGET), name], check=True, timeout=120)
    study = nf.load_study(name, url)
    trials = study.trials()
    done = [t for t in trials if t.state is nf.TrialState.COMPLETE]
    assert len(done) == BUDGET
    for number, trial in before.items():
        assert trials[number].state is nf.TrialState.COMPLETE
        assert trials[number].arch == trial.arch and trials[number].metrics == trial.metrics
    assert [t.number for t in trials] == list(range(len(trials)))
    assert all(t.interrupted for t in trials if t.state is nf.TrialState.FAILED)

    # The completed architectures are exactly those of a run that was never killed.
    straight = nf.create_study(
        space=constrained_space(),
        strategy=nf.get_strategy("evolution", population_size=8, sample_size=3),
        evaluator=nf.FunctionEvaluator(lambda arch: {"accuracy": synthetic_score(arch)}),
        seed=5,
    )
    straight.optimize(budget=BUDGET)
    assert [t.arch for t in done] == [t.arch for t in straight.trials()]
    if url.startswith("sqlite"):
        assert os.path.exists(tmp_path / "shared.db")
