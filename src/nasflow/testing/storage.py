"""A contract test suite that every :class:`~nasflow.storage.ExperimentStore` must pass.

Use it for your own store by subclassing in a test module::

    from nasflow.testing.storage import StoreContract

    class TestMyStore(StoreContract):
        def make_store(self, tmp_path):
            return MyStore(tmp_path / "data")

        def reopen_store(self, tmp_path):  # optional: only for stores that persist
            return MyStore(tmp_path / "data")

pytest collects the inherited ``test_*`` methods; ``StoreContract`` itself is not collected
because its name does not start with ``Test``. :func:`concurrent_trial_numbers` checks
trial numbering across processes for stores that :func:`~nasflow.storage.open_store` opens.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from nasflow.errors import StorageError, StudyExistsError, StudyNotFoundError
from nasflow.storage import ExperimentStore, StudyRecord, TrialRecord, open_store
from nasflow.trial import TrialState

# stores may keep microseconds only, and clocks of a database server may differ slightly
_CLOCK_SLACK = timedelta(seconds=1)


def _arch(i: int) -> dict[str, Any]:
    return {"ops": ["conv3x3", "skip", f"op{i}"], "depth": i, "nested": {"w": [1.5, None, True]}}


class StoreContract:
    """Behaviour every store must show; subclass and implement :meth:`make_store`."""

    def make_store(self, tmp_path: Path) -> ExperimentStore:
        """A new, empty store whose data (if any) lives under ``tmp_path``."""
        raise NotImplementedError

    def reopen_store(self, tmp_path: Path) -> ExperimentStore | None:
        """A second store object on the data :meth:`make_store` wrote, or None if it cannot persist."""
        return None

    @contextmanager
    def _store(self, tmp_path: Path) -> Iterator[ExperimentStore]:
        store = self.make_store(tmp_path)
        try:
            yield store
        finally:
            store.close()

    def _study(self, store: ExperimentStore, name: str = "study") -> StudyRecord:
        return store.create_study(name, {"seed": 0})

    def _trials(self, store: ExperimentStore, study: StudyRecord, count: int) -> list[TrialRecord]:
        return [store.create_trial(study.study_id, _arch(i), f"arch-{i}", f"canon-{i}") for i in range(count)]

    # ----------------------------------------------------------------- studies

    def test_create_and_load_study_round_trips_config(self, tmp_path: Path) -> None:
        config = {
            "seed": 3,
            "space": "nb201",
            "objectives": [{"metric": "acc", "direction": "max"}],
            "x": None,
        }
        before = datetime.now(timezone.utc)
        with self._store(tmp_path) as store:
            created = store.create_study("alpha", config)
            loaded = store.load_study("alpha")
        assert created.name == "alpha" and loaded.name == "alpha"
        assert created.config == config and loaded.config == config
        assert loaded.study_id == created.study_id
        assert loaded.created_at == created.created_at
        assert loaded.created_at.utcoffset() == timedelta(0)
        assert before - _CLOCK_SLACK <= loaded.created_at <= datetime.now(timezone.utc) + _CLOCK_SLACK

    def test_returned_config_is_a_copy(self, tmp_path: Path) -> None:
        with self._store(tmp_path) as store:
            config = {"list": [1, 2]}
            store.create_study("alpha", config)
            config["list"].append(3)
            store.load_study("alpha").config["list"].append(4)
            assert store.load_study("alpha").config == {"list": [1, 2]}

    def test_duplicate_study_name_raises(self, tmp_path: Path) -> None:
        with self._store(tmp_path) as store:
            store.create_study("alpha", {"seed": 1})
            with pytest.raises(StudyExistsError, match="alpha"):
                store.create_study("alpha", {"seed": 2})
            assert store.load_study("alpha").config == {"seed": 1}
            assert store.study_names() == ["alpha"]

    def test_unknown_study_lists_existing_names(self, tmp_path: Path) -> None:
        with self._store(tmp_path) as store:
            with pytest.raises(StudyNotFoundError, match="no studies"):
                store.load_study("ghost")
            store.create_study("alpha", {})
            store.create_study("beta", {})
            with pytest.raises(StudyNotFoundError) as info:
                store.load_study("ghost")
        message = str(info.value)
        assert "ghost" in message and "alpha" in message and "beta" in message

    def test_study_names_in_creation_order(self, tmp_path: Path) -> None:
        with self._store(tmp_path) as store:
            assert store.study_names() == []
            for name in ["zeta", "alpha", "mid"]:
                store.create_study(name, {})
            assert store.study_names() == ["zeta", "alpha", "mid"]
            ids = [store.load_study(n).study_id for n in ["zeta", "alpha", "mid"]]
        assert len(set(ids)) == 3

    def test_unknown_study_id_raises(self, tmp_path: Path) -> None:
        with self._store(tmp_path) as store:
            study = self._study(store)
            missing = study.study_id + 1000
            with pytest.raises(StudyNotFoundError):
                store.create_trial(missing, {}, "a", "a")
            with pytest.raises(StudyNotFoundError):
                store.get_trials(missing)
            with pytest.raises(StudyNotFoundError):
                store.save_strategy_state(missing, {})
            with pytest.raises(StudyNotFoundError):
                store.load_strategy_state(missing)
            with pytest.raises(StudyNotFoundError):
                store.fail_running_trials(missing, "x")

    def test_non_json_values_are_refused(self, tmp_path: Path) -> None:
        with self._store(tmp_path) as store:
            with pytest.raises(StorageError, match="JSON"):
                store.create_study("alpha", {"bad": object()})
            assert store.study_names() == []
            study = self._study(store)
            with pytest.raises(StorageError, match="JSON"):
                store.create_trial(study.study_id, {"bad": {1, 2}}, "a", "a")
            assert store.get_trials(study.study_id) == []

    # ----------------------------------------------------------------- trials

    def test_new_trial_is_running(self, tmp_path: Path) -> None:
        before = datetime.now(timezone.utc)
        with self._store(tmp_path) as store:
            study = self._study(store)
            trial = store.create_trial(study.study_id, _arch(7), "arch-7", "canon-7")
            (stored,) = store.get_trials(study.study_id)
        for record in (trial, stored):
            assert record.number == 0
            assert record.arch == _arch(7)
            assert (record.arch_str, record.canonical) == ("arch-7", "canon-7")
            assert record.state is TrialState.RUNNING
            assert record.metrics == {} and record.intermediate == {} and record.error is None
            assert record.finished_at is None
            assert record.started_at.utcoffset() == timedelta(0)
            assert before - _CLOCK_SLACK <= record.started_at <= datetime.now(timezone.utc) + _CLOCK_SLACK
        assert stored == trial

    def test_fidelity_round_trips_and_defaults_to_full(self, tmp_path: Path) -> None:
        with self._store(tmp_path) as store:
            study = self._study(store)
            low = store.create_trial(
                study.study_id, _arch(1), "arch-1", "canon-1", {"epochs": 3, "data_fraction": 0.5}
            )
            full = store.create_trial(study.study_id, _arch(2), "arch-2", "canon-2")
            stored = store.get_trials(study.study_id)
        assert low.fidelity == {"epochs": 3.0, "data_fraction": 0.5} == stored[0].fidelity
        assert full.fidelity == {} == stored[1].fidelity

    def test_trial_numbers_are_consecutive_per_study(self, tmp_path: Path) -> None:
        with self._store(tmp_path) as store:
            first = self._study(store, "first")
            second = self._study(store, "second")
            a = self._trials(store, first, 3)
            b = self._trials(store, second, 2)
            a += self._trials(store, first, 2)
            assert [t.number for t in a] == [0, 1, 2, 3, 4]
            assert [t.number for t in b] == [0, 1]
            assert len({t.trial_id for t in a + b}) == 7
            assert [t.number for t in store.get_trials(first.study_id)] == [0, 1, 2, 3, 4]
            assert [t.number for t in store.get_trials(second.study_id)] == [0, 1]

    def test_get_trials_ordered_by_number(self, tmp_path: Path) -> None:
        with self._store(tmp_path) as store:
            study = self._study(store)
            created = self._trials(store, study, 12)
            # finish in a scrambled order so that any "last modified" ordering would show
            for trial in reversed(created[::2]):
                store.finish_trial(trial.trial_id, TrialState.COMPLETE, {"acc": float(trial.number)})
            trials = store.get_trials(study.study_id)
        assert [t.number for t in trials] == list(range(12))
        assert [t.trial_id for t in trials] == [t.trial_id for t in created]
        assert [t.arch_str for t in trials] == [f"arch-{i}" for i in range(12)]

    def test_finish_stores_state_metrics_and_error(self, tmp_path: Path) -> None:
        with self._store(tmp_path) as store:
            study = self._study(store)
            done, pruned, failed, running = self._trials(store, study, 4)
            store.finish_trial(done.trial_id, TrialState.COMPLETE, {"acc": 0.93, "params": 1.5e6})
            store.finish_trial(pruned.trial_id, TrialState.PRUNED, {"acc": 0.1}, error="pruned at step 3")
            store.finish_trial(failed.trial_id, TrialState.FAILED, {}, error="loss became NaN")
            trials = store.get_trials(study.study_id)
        assert [t.state for t in trials] == [
            TrialState.COMPLETE,
            TrialState.PRUNED,
            TrialState.FAILED,
            TrialState.RUNNING,
        ]
        assert trials[0].metrics == {"acc": 0.93, "params": 1.5e6} and trials[0].error is None
        assert trials[1].metrics == {"acc": 0.1} and trials[1].error == "pruned at step 3"
        assert trials[2].metrics == {} and trials[2].error == "loss became NaN"
        assert trials[3].finished_at is None
        for trial in trials[:3]:
            assert trial.finished_at is not None
            assert trial.finished_at.utcoffset() == timedelta(0)
            assert trial.finished_at >= trial.started_at
        assert all(type(v) is float for t in trials for v in t.metrics.values())

    def test_metrics_are_converted_to_float(self, tmp_path: Path) -> None:
        with self._store(tmp_path) as store:
            study = self._study(store)
            (trial,) = self._trials(store, study, 1)
            store.finish_trial(trial.trial_id, TrialState.COMPLETE, {"epochs": 3, "flag": True})
            (stored,) = store.get_trials(study.study_id)
        assert stored.metrics == {"epochs": 3.0, "flag": 1.0}
        assert all(type(v) is float for v in stored.metrics.values())

    def test_non_numeric_metric_is_refused(self, tmp_path: Path) -> None:
        with self._store(tmp_path) as store:
            study = self._study(store)
            (trial,) = self._trials(store, study, 1)
            with pytest.raises(StorageError, match="acc"):
                store.finish_trial(trial.trial_id, TrialState.COMPLETE, {"acc": "high"})  # type: ignore[dict-item]
            assert store.get_trials(study.study_id)[0].state is TrialState.RUNNING

    def test_finishing_twice_raises(self, tmp_path: Path) -> None:
        with self._store(tmp_path) as store:
            study = self._study(store)
            (trial,) = self._trials(store, study, 1)
            store.finish_trial(trial.trial_id, TrialState.COMPLETE, {"acc": 0.5})
            with pytest.raises(StorageError, match="COMPLETE"):
                store.finish_trial(
                    trial.trial_id, TrialState.FAILED, {}, error="again", strategy_state={"x": 1}
                )
            (stored,) = store.get_trials(study.study_id)
            assert stored.state is TrialState.COMPLETE and stored.metrics == {"acc": 0.5}
            assert stored.error is None
            # the refused call must not have saved its strategy state either
            assert store.load_strategy_state(study.study_id) is None

    def test_finish_with_running_state_or_unknown_trial_raises(self, tmp_path: Path) -> None:
        with self._store(tmp_path) as store:
            study = self._study(store)
            (trial,) = self._trials(store, study, 1)
            with pytest.raises(StorageError):
                store.finish_trial(trial.trial_id, TrialState.RUNNING, {})
            with pytest.raises(StorageError):
                store.finish_trial(trial.trial_id + 1000, TrialState.COMPLETE, {})
            assert store.get_trials(study.study_id)[0].state is TrialState.RUNNING

    def test_nan_and_inf_metrics_round_trip(self, tmp_path: Path) -> None:
        metrics = {"nan": float("nan"), "inf": float("inf"), "ninf": float("-inf"), "tiny": 5e-324}
        with self._store(tmp_path) as store:
            study = self._study(store)
            (trial,) = self._trials(store, study, 1)
            store.report_intermediate(trial.trial_id, 0, metrics)
            store.finish_trial(trial.trial_id, TrialState.COMPLETE, metrics)
            (stored,) = store.get_trials(study.study_id)
        for values in (stored.metrics, stored.intermediate[0]):
            assert math.isnan(values["nan"])
            assert values["inf"] == math.inf and values["ninf"] == -math.inf
            assert values["tiny"] == 5e-324

    # ----------------------------------------------------------------- intermediate values

    def test_intermediate_values_round_trip_by_step(self, tmp_path: Path) -> None:
        with self._store(tmp_path) as store:
            study = self._study(store)
            first, second = self._trials(store, study, 2)
            for step in (2, 0, 1):
                store.report_intermediate(first.trial_id, step, {"acc": step / 10, "loss": 1.0 - step / 10})
            store.report_intermediate(second.trial_id, 5, {"acc": 0.7})
            store.report_intermediate(second.trial_id, 5, {"acc": 0.8})  # a repeated step replaces
            store.finish_trial(first.trial_id, TrialState.COMPLETE, {"acc": 0.2})
            a, b = store.get_trials(study.study_id)
        assert a.intermediate == {
            0: {"acc": 0.0, "loss": 1.0},
            1: {"acc": 0.1, "loss": 0.9},
            2: {"acc": 0.2, "loss": 0.8},
        }
        assert list(a.intermediate) == [0, 1, 2]
        assert all(type(step) is int for step in a.intermediate)
        assert b.intermediate == {5: {"acc": 0.8}}

    def test_intermediate_on_finished_or_unknown_trial_raises(self, tmp_path: Path) -> None:
        with self._store(tmp_path) as store:
            study = self._study(store)
            (trial,) = self._trials(store, study, 1)
            store.finish_trial(trial.trial_id, TrialState.COMPLETE, {})
            with pytest.raises(StorageError):
                store.report_intermediate(trial.trial_id, 0, {"acc": 1.0})
            with pytest.raises(StorageError):
                store.report_intermediate(trial.trial_id + 1000, 0, {"acc": 1.0})
            assert store.get_trials(study.study_id)[0].intermediate == {}

    # ----------------------------------------------------------------- strategy state

    def test_strategy_state_save_and_load(self, tmp_path: Path) -> None:
        with self._store(tmp_path) as store:
            first = self._study(store, "first")
            second = self._study(store, "second")
            assert store.load_strategy_state(first.study_id) is None
            store.save_strategy_state(first.study_id, {"population": [[0, 1], [2, 3]], "rng": "abc"})
            store.save_strategy_state(first.study_id, {"population": [[4, 5]], "rng": "def"})
            assert store.load_strategy_state(first.study_id) == {"population": [[4, 5]], "rng": "def"}
            assert store.load_strategy_state(second.study_id) is None

    def test_strategy_state_saved_with_finish_trial(self, tmp_path: Path) -> None:
        state = {"population": [{"arch": _arch(i), "fitness": i / 3} for i in range(20)], "gen": 4}
        with self._store(tmp_path) as store:
            study = self._study(store)
            first, second = self._trials(store, study, 2)
            store.finish_trial(first.trial_id, TrialState.COMPLETE, {"acc": 0.5}, strategy_state=state)
            assert store.load_strategy_state(study.study_id) == state
            # the study id is optional but, when given, must be the trial's study
            store.finish_trial(
                second.trial_id, TrialState.COMPLETE, {}, strategy_state={"gen": 5}, study_id=study.study_id
            )
            assert store.load_strategy_state(study.study_id) == {"gen": 5}

    def test_finish_trial_with_wrong_study_changes_nothing(self, tmp_path: Path) -> None:
        with self._store(tmp_path) as store:
            first = self._study(store, "first")
            second = self._study(store, "second")
            (trial,) = self._trials(store, first, 1)
            with pytest.raises(StorageError):
                store.finish_trial(
                    trial.trial_id, TrialState.COMPLETE, {}, strategy_state={"x": 1}, study_id=second.study_id
                )
            assert store.get_trials(first.study_id)[0].state is TrialState.RUNNING
            assert store.load_strategy_state(first.study_id) is None
            assert store.load_strategy_state(second.study_id) is None

    # ----------------------------------------------------------------- crash recovery

    def test_fail_running_trials_touches_only_running_trials_of_that_study(self, tmp_path: Path) -> None:
        with self._store(tmp_path) as store:
            study = self._study(store, "mine")
            other = self._study(store, "other")
            trials = self._trials(store, study, 5)
            (other_trial,) = self._trials(store, other, 1)
            store.finish_trial(trials[1].trial_id, TrialState.COMPLETE, {"acc": 0.4})
            store.finish_trial(trials[3].trial_id, TrialState.PRUNED, {}, error="pruned")
            assert store.fail_running_trials(study.study_id, "interrupted") == [0, 2, 4]
            assert store.fail_running_trials(study.study_id, "again") == []
            mine = store.get_trials(study.study_id)
            (theirs,) = store.get_trials(other.study_id)
        assert [t.state for t in mine] == [
            TrialState.FAILED,
            TrialState.COMPLETE,
            TrialState.FAILED,
            TrialState.PRUNED,
            TrialState.FAILED,
        ]
        assert [t.error for t in mine] == ["interrupted", None, "interrupted", "pruned", "interrupted"]
        assert all(t.finished_at is not None and t.finished_at >= t.started_at for t in mine)
        assert mine[1].metrics == {"acc": 0.4}
        assert theirs.state is TrialState.RUNNING and theirs.trial_id == other_trial.trial_id

    # ----------------------------------------------------------------- results

    def test_results_round_trip_in_order_and_filter_by_kind(self, tmp_path: Path) -> None:
        with self._store(tmp_path) as store:
            study = self._study(store)
            other = self._study(store, "other")
            first = store.add_result(study.study_id, "export", {"test_accuracy": 97.5, "files": ["a", "b"]})
            store.add_result(other.study_id, "export", {"test_accuracy": 1.0})
            second = store.add_result(study.study_id, "validation", {"seeds": [0, 1], "nan": math.nan})
            assert first.kind == "export" and first.payload == {"test_accuracy": 97.5, "files": ["a", "b"]}
            assert second.result_id > first.result_id
            results = store.get_results(study.study_id)
            assert [r.result_id for r in results] == [first.result_id, second.result_id]
            assert math.isnan(results[1].payload["nan"])
            assert [r.payload for r in store.get_results(study.study_id, "export")] == [first.payload]
            assert store.get_results(other.study_id, "validation") == []
            assert results[0].created_at.tzinfo is not None

    def test_bad_results_are_refused(self, tmp_path: Path) -> None:
        with self._store(tmp_path) as store:
            study = self._study(store)
            with pytest.raises(StorageError):
                store.add_result(study.study_id, "", {})
            with pytest.raises(StorageError):
                store.add_result(study.study_id, "export", {"model": object()})
            with pytest.raises(StudyNotFoundError):
                store.add_result(study.study_id + 100, "export", {})
            assert store.get_results(study.study_id) == []

    # ----------------------------------------------------------------- lifecycle

    def test_closed_store_refuses_work(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        store.create_study("alpha", {})
        store.close()
        store.close()  # closing twice is harmless
        with pytest.raises(StorageError):
            store.study_names()
        with pytest.raises(StorageError):
            store.create_study("beta", {})

    def test_data_survives_reopening(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        try:
            study = store.create_study("kept", {"seed": 9, "ratio": 0.25})
            done, running = self._trials(store, study, 2)
            store.report_intermediate(done.trial_id, 1, {"acc": 0.3})
            store.finish_trial(
                done.trial_id, TrialState.COMPLETE, {"acc": float("nan")}, strategy_state={"g": 1}
            )
            before = store.get_trials(study.study_id)
        finally:
            store.close()
        reopened = self.reopen_store(tmp_path)
        if reopened is None:
            pytest.skip("this store does not persist across store objects")
        try:
            loaded = reopened.load_study("kept")
            after = reopened.get_trials(loaded.study_id)
            assert loaded == study
            assert reopened.load_strategy_state(loaded.study_id) == {"g": 1}
            # NaN != NaN, so compare the NaN metric separately
            assert math.isnan(after[0].metrics["acc"])
            assert [_without_metrics(t) for t in after] == [_without_metrics(t) for t in before]
            assert after[1] == before[1]
            # numbering continues where the earlier store object stopped
            assert reopened.create_trial(loaded.study_id, {}, "x", "x").number == 2
        finally:
            reopened.close()


def _without_metrics(trial: TrialRecord) -> TrialRecord:
    return dataclasses.replace(trial, metrics={})


# ----------------------------------------------------------------- several processes


def _create_trials_worker(url: str, study_name: str, count: int, worker: int, barrier: Any) -> None:
    store = open_store(url)
    try:
        study_id = store.load_study(study_name).study_id
        barrier.wait(timeout=60)  # start together so the processes really contend
        for i in range(count):
            # the full create/finish cycle of a driver, so the processes' writes interleave
            trial = store.create_trial(
                study_id, {"worker": worker, "i": i}, f"w{worker}-{i}", f"w{worker}-{i}"
            )
            time.sleep(0.001)  # a token evaluation; without any pause one process can starve the other
            store.finish_trial(trial.trial_id, TrialState.COMPLETE, {"worker": float(worker)})
    finally:
        store.close()


def concurrent_trial_numbers(
    url: str, study_name: str, processes: int = 2, trials_each: int = 50, timeout_s: float = 120.0
) -> list[TrialRecord]:
    """Let ``processes`` spawned processes create trials at once; returns the study's trials.

    The study ``study_name`` must exist in the store at ``url``. Callers assert the numbers.
    """
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    workers = [
        context.Process(target=_create_trials_worker, args=(url, study_name, trials_each, w, barrier))
        for w in range(processes)
    ]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout_s)
    alive = [p for p in workers if p.is_alive()]
    for process in alive:
        process.kill()
    codes = [p.exitcode for p in workers]
    if alive or any(code != 0 for code in codes):
        raise AssertionError(f"trial-creating processes failed: exit codes {codes}")
    store = open_store(url)
    try:
        return store.get_trials(store.load_study(study_name).study_id)
    finally:
        store.close()
