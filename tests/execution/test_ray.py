"""The Ray executor on a real local Ray instance (2 CPUs, started once for the module).

CI installs Ray (the ``test`` extra), so there a missing Ray fails these tests; on a developer machine
without it (``CI`` unset) they are skipped. Tests that need no running Ray come first: the module's
Ray instance starts with the first test that asks for the ``cluster`` fixture.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import nasflow as nf
from nasflow.errors import ConfigError
from nasflow.estimators.base import EvalContext, Evaluator, Measurement
from nasflow.execution import InlineExecutor, ProcessExecutor, make_executor
from nasflow.execution.ray import RayExecutor, trials_that_fit
from nasflow.space.architecture import Architecture
from nasflow.testing.spaces import constrained_space
from nasflow.testing.strategies import synthetic_score

try:
    import ray
except ImportError:
    ray = None

ARCH = Architecture({"depth": 2, "width": 16})


def need_ray() -> None:
    if ray is not None:
        return
    if os.environ.get("CI"):
        pytest.fail("Ray is required in CI (the 'test' extra installs it)")
    pytest.skip("Ray is not installed (pip install 'nasflow[ray]')")


def score(arch: Architecture) -> dict[str, float]:
    return {"accuracy": synthetic_score(arch)}


class Probe(Evaluator):
    """Reports two steps and returns the torch threads it ran with; counts how often it was pickled."""

    pickled = 0  # counted in the driver, where pickling happens

    def __getstate__(self) -> dict[str, object]:
        type(self).pickled += 1
        return dict(self.__dict__)

    def evaluate(self, arch: Architecture, context: EvalContext) -> Measurement:
        import torch

        context.emit(0, {"loss": 1.0})
        context.emit(1, {"loss": 0.5})
        return Measurement({"accuracy": synthetic_score(arch), "threads": float(torch.get_num_threads())})


class Fails(Evaluator):
    def __init__(self, how: str) -> None:
        self.how = how

    def evaluate(self, arch: Architecture, context: EvalContext) -> Measurement:
        if self.how == "exit":
            sys.exit(3)
        raise ValueError(f"cannot train {arch['depth']} layers")


class DiesOnce(Evaluator):
    """The first evaluation of trial ``victim`` publishes its worker's pid and sleeps, to be killed."""

    def __init__(self, folder: Path, victim: int) -> None:
        self.folder = folder
        self.victim = victim

    def evaluate(self, arch: Architecture, context: EvalContext) -> Measurement:
        if context.trial_number == self.victim:
            try:
                (self.folder / "started").touch(exist_ok=False)  # only the first attempt sleeps
            except FileExistsError:
                pass
            else:
                (self.folder / "pid.tmp").write_text(str(os.getpid()))
                (self.folder / "pid.tmp").rename(self.folder / "pid")  # never seen half written
                time.sleep(30)
        return Measurement(score(arch))


def worker_pid(folder: Path) -> int:
    """The pid a DiesOnce evaluation published (waits for it)."""
    deadline = time.monotonic() + 60
    while not (folder / "pid").exists():
        assert time.monotonic() < deadline, "the evaluation never started"
        time.sleep(0.02)
    pid = int((folder / "pid").read_text())
    assert pid != os.getpid(), "the evaluation ran in the test process, not in a Ray worker"
    return pid


def alive(pid: int) -> bool:
    try:
        return bool(Path(f"/proc/{pid}/cmdline").read_bytes())  # empty for a zombie
    except OSError:
        return False


def kill_when_started(folder: Path) -> threading.Thread:
    thread = threading.Thread(target=lambda: os.kill(worker_pid(folder), signal.SIGKILL), daemon=True)
    thread.start()
    return thread


@pytest.fixture(scope="module")
def cluster():
    """A local 2-CPU Ray instance owned by one executor; the tests' other executors borrow it."""
    need_ray()
    module = sys.modules[__name__]
    # Workers cannot import this test module, so its evaluators travel by value.
    ray.cloudpickle.register_pickle_by_value(module)
    executor = RayExecutor(num_cpus=2)
    yield executor
    executor.shutdown()
    assert not ray.is_initialized(), "the executor that started Ray must stop it"
    ray.cloudpickle.unregister_pickle_by_value(module)


# -- without a running Ray ---------------------------------------------------------------------
def test_missing_ray_names_the_extra_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    with pytest.raises(ConfigError, match=r"pip install 'nasflow\[ray\]'"):
        RayExecutor()
    with pytest.raises(ConfigError, match=r"pip install 'nasflow\[ray\]'"):
        make_executor(4, "ray")


@pytest.mark.slow
def test_importing_the_executors_does_not_import_ray() -> None:
    code = "import sys, nasflow.execution as e; e.make_executor(2); assert 'ray' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_make_executor_kinds_and_workers() -> None:
    assert isinstance(make_executor(), InlineExecutor)
    assert isinstance(make_executor(1, "inline"), InlineExecutor)
    for workers, kind in [(3, "auto"), (1, "process"), (2, "process")]:
        executor = make_executor(workers, kind)
        assert isinstance(executor, ProcessExecutor) and executor.max_workers == workers
        executor.shutdown()
    with pytest.raises(ConfigError, match="choose one of: auto, inline, process, ray"):
        make_executor(2, "dask")
    with pytest.raises(ConfigError, match="one evaluation at a time"):
        make_executor(2, "inline")
    with pytest.raises(ConfigError, match="trial_cpus, trial_gpus only apply to the 'ray' executor"):
        make_executor(2, "process", trial_cpus=1, trial_gpus=1)
    with pytest.raises(ConfigError, match="ray_address only apply"):
        make_executor(1, ray_address="auto")
    with pytest.raises(ConfigError, match="workers must be an integer >= 1"):
        make_executor(0)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"trial_cpus": 0}, "trial_cpus must be a number > 0"),
        ({"trial_gpus": -1}, "trial_gpus must be a number >= 0"),
        ({"trial_gpus": 1.5}, "above 1 must be a whole number"),
        ({"trial_memory_mb": 0}, "trial_memory_mb must be > 0"),
        ({"max_workers": 0}, "max_workers must be an integer >= 1"),
        ({"address": "auto", "num_cpus": 2}, "num_cpus sizes a local Ray instance"),
    ],
)
def test_impossible_settings_fail_before_ray_starts(monkeypatch, settings, message) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # proves Ray is not even imported
    with pytest.raises(ConfigError, match=message):
        RayExecutor(**settings)


def test_trials_fit_per_node() -> None:
    two_small = [{"CPU": 3.0}, {"CPU": 3.0}]
    assert trials_that_fit(two_small, 1.0) == 6
    assert trials_that_fit(two_small, 2.0) == 2  # a trial cannot use one CPU of each node
    assert trials_that_fit(two_small, 0.3) == 20
    assert trials_that_fit([{"CPU": 0.7}], 0.1) == 7  # 0.7 / 0.1 is 6.999... in floating point
    with pytest.raises(ConfigError, match="trial_cpus=4 but the largest node of the Ray cluster has 3 CPUs"):
        trials_that_fit(two_small, 4.0)
    mixed = [{"CPU": 8.0, "GPU": 2.0, "memory": 4 * 2.0**30}, {"CPU": 4.0, "memory": 2 * 2.0**30}]
    assert trials_that_fit(mixed, 1.0, 1.0) == 2  # only the GPU node, 2 GPUs
    assert trials_that_fit(mixed, 1.0, 0.5) == 4
    assert trials_that_fit(mixed, 1.0, 0.0, 1024) == 6  # 4 GiB / 1 GiB + 2 GiB / 1 GiB
    with pytest.raises(ConfigError, match="trial_gpus=3 but the largest node .* has 2 GPUs"):
        trials_that_fit(mixed, 1.0, 3.0)
    with pytest.raises(ConfigError, match="trial_memory_mb=5000 but the largest node .* has 4096 MB"):
        trials_that_fit(mixed, 1.0, 0.0, 5000)
    with pytest.raises(ConfigError, match="has 0 CPUs"):
        trials_that_fit([], 1.0)


def test_an_address_nothing_listens_at_is_a_config_error() -> None:
    need_ray()
    if ray.is_initialized():
        pytest.skip("Ray already runs in this process, so the executor would use it")
    # Ray itself would retry for minutes; port 1 refuses at once.
    with pytest.raises(ConfigError, match=r"cannot reach the Ray cluster at '127.0.0.1:1'.*ray start --head"):
        RayExecutor("127.0.0.1:1")
    with pytest.raises(ConfigError, match="is not 'auto' or 'HOST:PORT'"):
        RayExecutor("head-node")
    assert not ray.is_initialized()


# -- on the module's Ray instance ---------------------------------------------------------------
@pytest.mark.slow
def test_trials_at_once_follow_the_cluster_resources(cluster) -> None:
    assert cluster.max_workers == 2  # 2 CPUs, 1 per trial
    assert RayExecutor(trial_cpus=2).max_workers == 1
    assert RayExecutor(trial_cpus=0.5).max_workers == 4
    assert RayExecutor(trial_cpus=0.3).max_workers == 6
    assert RayExecutor(trial_cpus=2, max_workers=3).max_workers == 3  # an explicit cap wins
    with pytest.raises(ConfigError, match="trial_cpus=3 but the largest node of the Ray cluster has 2 CPUs"):
        RayExecutor(trial_cpus=3)
    with pytest.raises(ConfigError, match="trial_gpus=1 but the largest node of the Ray cluster has 0 GPUs"):
        RayExecutor(trial_gpus=1)
    assert make_executor(1, "ray").max_workers == 2  # workers=1: as many as fit
    assert make_executor(5, "ray").max_workers == 5
    assert make_executor(1, "ray", trial_cpus=2).max_workers == 1
    borrowed = RayExecutor()
    borrowed.shutdown()
    assert ray.is_initialized(), "an executor that found Ray running must leave it running"


@pytest.mark.slow
def test_outcome_brings_back_metrics_reports_and_the_trial_threads(cluster) -> None:
    Probe.pickled = 0
    probe = Probe()
    futures = [cluster.submit(probe, ARCH, EvalContext(trial_number=n)) for n in range(3)]
    outcomes = [f.result(timeout=120) for f in futures]
    assert Probe.pickled == 1, "the evaluator must go to the object store once, not once per trial"
    for outcome in outcomes:
        assert outcome.error is None and not outcome.lost
        assert outcome.measurement is not None
        assert outcome.measurement.metrics == {"accuracy": synthetic_score(ARCH), "threads": 1.0}
        assert outcome.intermediate == [(0, {"loss": 1.0}), (1, {"loss": 0.5})]
    wide = RayExecutor(trial_cpus=2)
    outcome = wide.submit(Probe(), ARCH, EvalContext()).result(timeout=120)
    assert outcome.measurement is not None and outcome.measurement.metrics["threads"] == 2.0


@pytest.mark.slow
def test_failing_evaluations_are_failed_outcomes_not_lost_workers(cluster) -> None:
    raised = cluster.submit(Fails("raise"), ARCH, EvalContext()).result(timeout=120)
    assert raised.measurement is None and not raised.lost
    assert raised.error is not None and raised.error.startswith("ValueError: cannot train 2 layers")
    exited = cluster.submit(Fails("exit"), ARCH, EvalContext()).result(timeout=120)
    assert (exited.error, exited.lost) == ("the evaluation called sys.exit(3)", False)


@pytest.mark.slow
def test_an_unpicklable_evaluator_is_a_config_error_at_submit(cluster) -> None:
    lock = threading.Lock()
    with pytest.raises(ConfigError, match="evaluator cannot be sent to Ray workers.*lock"):
        cluster.submit(
            nf.FunctionEvaluator(lambda arch: {"accuracy": float(lock.locked())}), ARCH, EvalContext()
        )


@pytest.mark.slow
def test_a_killed_worker_gives_a_lost_outcome(cluster, tmp_path) -> None:
    killer = kill_when_started(tmp_path)
    outcome = cluster.submit(DiesOnce(tmp_path, victim=0), ARCH, EvalContext()).result(timeout=120)
    killer.join()
    assert outcome.lost and outcome.measurement is None
    assert outcome.error is not None and outcome.error.startswith("Ray worker lost: WorkerCrashedError")


@pytest.mark.slow
def test_shutdown_with_cancel_stops_running_evaluations(cluster, tmp_path) -> None:
    executor = RayExecutor()
    future = executor.submit(DiesOnce(tmp_path, victim=0), ARCH, EvalContext())
    pid = worker_pid(tmp_path)
    executor.shutdown(cancel=True)
    assert future.cancelled()
    deadline = time.monotonic() + 60
    while alive(pid):
        assert time.monotonic() < deadline, "the cancelled evaluation's worker is still running"
        time.sleep(0.05)
    assert ray.is_initialized()


@pytest.mark.slow
def test_a_study_on_ray_finds_what_the_inline_study_finds(cluster) -> None:
    def run(executor: object) -> set[tuple[str, tuple[tuple[str, float], ...]]]:
        study = nf.create_study(
            space=constrained_space(), strategy="random", evaluator=nf.FunctionEvaluator(score), seed=11
        )
        study.optimize(budget=12, executor=executor)  # type: ignore[arg-type]
        trials = study.trials()
        assert [t.state for t in trials] == [nf.TrialState.COMPLETE] * 12
        return {(t.arch_str, tuple(sorted(t.metrics.items()))) for t in trials}

    on_ray = run("ray")  # the study makes the executor, on the Ray instance already running
    assert ray.is_initialized(), "the study's executor must leave a Ray instance it found running"
    assert len(on_ray) > 1
    assert on_ray == run(InlineExecutor())


@pytest.mark.slow
def test_a_study_runs_again_the_trial_whose_worker_was_killed(cluster, tmp_path) -> None:
    study = nf.create_study(
        space=constrained_space(), strategy="random", evaluator=DiesOnce(tmp_path, victim=3), seed=2
    )
    killer = kill_when_started(tmp_path)
    with pytest.warns(UserWarning, match="trial 3: Ray worker lost"):
        study.optimize(budget=8, executor=RayExecutor())
    killer.join()
    trials = study.trials()
    assert [t.state for t in trials] == [nf.TrialState.COMPLETE] * 8
    assert [t.attempts for t in trials] == [1, 1, 1, 2, 1, 1, 1, 1]
    assert trials[3].metrics == score(trials[3].arch)
