"""A contract test suite that every :class:`~nasflow.storage.ExperimentStore` must pass.

Use it for your own store by subclassing in a test module::

    from nasflow.testing.storage import StoreContract

    class TestMyStore(StoreContract):
        def make_store(self, tmp_path):
            return MyStore(tmp_path / "data")

        def reopen_store(self, tmp_path):  # optional: only for stores that persist
            return MyStore(tmp_path / "data")

        def shared_url(self, tmp_path):  # optional: for stores open_store opens from other processes
            return f"mystore://{tmp_path / 'data'}"

pytest collects the inherited ``test_*`` methods; ``StoreContract`` itself is not collected
because its name does not start with ``Test``. :func:`concurrent_trial_numbers` checks
trial numbering and :func:`concurrent_budget` a shared budget across processes, for stores that
:func:`~nasflow.storage.open_store` opens.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from nasflow.errors import BudgetReached, ConfigError, StorageError, StudyExistsError, StudyNotFoundError
from nasflow.storage import ExperimentStore, StudyRecord, TrialRecord, open_store
from nasflow.storage.base import uses_budget
from nasflow.trial import INTERRUPTED, SCREENED, TrialState

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

    def shared_url(self, tmp_path: Path) -> str | None:
        """The URL other processes open the data :meth:`make_store` wrote with, or None if they cannot."""
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

    # ----------------------------------------------------------------- several drivers (contract version 3)

    def test_new_trial_records_driver_heartbeat_and_attempts(self, tmp_path: Path) -> None:
        with self._store(tmp_path) as store:
            study = self._study(store)
            mine = store.create_trial(study.study_id, _arch(0), "a", "a", driver="host-1:4242")
            anonymous = store.create_trial(study.study_id, _arch(1), "b", "b")
            stored = store.get_trials(study.study_id)
            with pytest.raises(StorageError, match="driver"):
                store.create_trial(study.study_id, {}, "c", "c", driver="x" * 129)
            assert len(store.get_trials(study.study_id)) == 2
        assert (mine.driver, mine.attempts, mine.heartbeat_at) == ("host-1:4242", 1, mine.started_at)
        assert (anonymous.driver, anonymous.attempts) == (None, 1)
        assert anonymous.heartbeat_at == anonymous.started_at
        assert stored == [mine, anonymous]
        assert stored[0].heartbeat_at is not None and stored[0].heartbeat_at.utcoffset() == timedelta(0)

    def test_budget_counts_only_trials_that_use_budget(self, tmp_path: Path) -> None:
        with self._store(tmp_path) as store:
            study = self._study(store, "counted")
            other = self._study(store, "elsewhere")
            self._trials(store, other, 5)  # another study's trials never count
            trials = [store.create_trial(study.study_id, _arch(i), "a", "a", budget=3) for i in range(3)]
            with pytest.raises(BudgetReached) as info:
                store.create_trial(study.study_id, {}, "a", "a", budget=3)
            assert "counted" in str(info.value) and "3" in str(info.value)
            assert len(store.get_trials(study.study_id)) == 3
            # 3 used of 3. An interrupted trial gives its unit back ...
            store.finish_trial(trials[0].trial_id, TrialState.FAILED, {}, error=INTERRUPTED)
            assert store.create_trial(study.study_id, {}, "a", "a", budget=3).number == 3
            # ... and so does one screened out before evaluation
            store.finish_trial(trials[1].trial_id, TrialState.PRUNED, {}, error=f"{SCREENED} latency_ms<=5")
            assert store.create_trial(study.study_id, {}, "a", "a", budget=3).number == 4
            with pytest.raises(BudgetReached):
                store.create_trial(study.study_id, {}, "a", "a", budget=3)
            # every other outcome uses budget: complete, failed, pruned while training, and look-alikes
            # of the free errors (a screened error on a FAILED trial, another case)
            store.finish_trial(trials[2].trial_id, TrialState.PRUNED, {"acc": 0.1}, error="pruned at step 3")
            for extra, (state, error) in enumerate(
                [
                    (TrialState.COMPLETE, None),
                    (TrialState.FAILED, "loss became NaN"),
                    (TrialState.FAILED, f"{SCREENED} params<=2e5"),
                    (TrialState.PRUNED, SCREENED.upper()),
                    (TrialState.PRUNED, None),
                ]
            ):
                trial = store.create_trial(study.study_id, {}, "a", "a", budget=4 + extra)
                store.finish_trial(trial.trial_id, state, {}, error=error)
            with pytest.raises(BudgetReached):
                store.create_trial(study.study_id, {}, "a", "a", budget=8)
            assert store.create_trial(study.study_id, {}, "a", "a", budget=9).number == 10
            with pytest.raises(BudgetReached):
                store.create_trial(other.study_id, {}, "a", "a", budget=0)
            # a refused call created nothing: numbering stays consecutive
            assert [t.number for t in store.get_trials(study.study_id)] == list(range(11))
            assert store.create_trial(study.study_id, {}, "a", "a").number == 11

    def test_bad_budget_is_refused(self, tmp_path: Path) -> None:
        with self._store(tmp_path) as store:
            study = self._study(store)
            for budget in (-1, 2.5, True, "3"):
                with pytest.raises(ConfigError, match="budget"):
                    store.create_trial(study.study_id, {}, "a", "a", budget=budget)  # type: ignore[arg-type]
            with pytest.raises(StudyNotFoundError):
                store.create_trial(study.study_id + 1000, {}, "a", "a", budget=5)
            assert store.get_trials(study.study_id) == []

    def test_budget_is_exact_across_threads(self, tmp_path: Path) -> None:
        budget = 24
        with self._store(tmp_path) as store:
            study = self._study(store)
            made: list[list[int]] = [[] for _ in range(4)]
            errors: list[BaseException] = []

            def drive(worker: int) -> None:
                try:
                    while True:
                        try:
                            trial = store.create_trial(
                                study.study_id, {}, "a", "a", driver=f"t{worker}", budget=budget
                            )
                        except BudgetReached:
                            return
                        made[worker].append(trial.number)
                        # every third trial is interrupted and frees its unit for another trial
                        error = INTERRUPTED if trial.number % 3 == 0 else None
                        state = TrialState.FAILED if error else TrialState.COMPLETE
                        store.finish_trial(trial.trial_id, state, {}, error=error)
                except BaseException as exc:  # surfaced in the main thread below
                    errors.append(exc)

            threads = [threading.Thread(target=drive, args=(w,)) for w in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            assert errors == [] and not any(t.is_alive() for t in threads)
            trials = store.get_trials(study.study_id)
        # numbers 0, 3, 6, ... are free, so 24 counted trials need 36 in all (0..35, 12 of them free)
        assert [t.number for t in trials] == list(range(36))
        assert sorted(n for numbers in made for n in numbers) == list(range(36))
        assert sum(uses_budget(t.state, t.error) for t in trials) == budget
        assert all(
            t.driver == f"t{w}" for w, numbers in enumerate(made) for t in trials if t.number in numbers
        )

    def test_heartbeat_touches_only_running_trials(self, tmp_path: Path) -> None:
        with self._store(tmp_path) as store:
            study = self._study(store)
            running, done = self._trials(store, study, 2)
            store.finish_trial(done.trial_id, TrialState.COMPLETE, {"acc": 0.5})
            before = store.get_trials(study.study_id)
            store.heartbeat([])  # a no-op
            assert store.get_trials(study.study_id) == before
            time.sleep(0.002)  # so that the new heartbeat is measurably later
            store.heartbeat([running.trial_id, done.trial_id, done.trial_id + 1000])
            after = store.get_trials(study.study_id)
        assert after[0].heartbeat_at is not None and running.heartbeat_at is not None
        assert after[0].heartbeat_at > running.heartbeat_at
        assert after[0].started_at == running.started_at and after[0].state is TrialState.RUNNING
        assert after[1] == before[1]  # the finished trial is untouched

    def test_fail_stale_trials_by_heartbeat_time(self, tmp_path: Path) -> None:
        with self._store(tmp_path) as store:
            study = self._study(store, "mine")
            other = self._study(store, "other")
            trials = self._trials(store, study, 4)
            (foreign,) = self._trials(store, other, 1)
            store.finish_trial(trials[3].trial_id, TrialState.COMPLETE, {"acc": 0.9})
            time.sleep(0.002)
            store.heartbeat([trials[1].trial_id])
            cut = _by_number(store.get_trials(study.study_id))[1].heartbeat_at
            assert cut is not None
            # trial 1's heartbeat is exactly the cut-off, which is not "before" it: only 0 and 2 are stale
            assert store.fail_stale_trials(study.study_id, "driver lost", heartbeat_before=cut) == [0, 2]
            assert store.fail_stale_trials(study.study_id, "again", heartbeat_before=cut) == []
            store.heartbeat([trials[0].trial_id])  # too late: a failed trial stays failed
            with pytest.raises(StorageError, match="FAILED"):
                store.finish_trial(trials[0].trial_id, TrialState.COMPLETE, {"acc": 1.0})
            mine = store.get_trials(study.study_id)
            (theirs,) = store.get_trials(other.study_id)
        assert [t.state for t in mine] == [
            TrialState.FAILED,
            TrialState.RUNNING,
            TrialState.FAILED,
            TrialState.COMPLETE,
        ]
        assert [t.error for t in mine] == ["driver lost", None, "driver lost", None]
        assert mine[0].heartbeat_at == trials[0].heartbeat_at  # the late heartbeat was ignored
        assert all(t.finished_at is not None and t.finished_at >= cut for t in (mine[0], mine[2]))
        assert mine[3].metrics == {"acc": 0.9}
        # the other study's trial started before the cut-off but is not this study's
        assert theirs.state is TrialState.RUNNING and theirs.trial_id == foreign.trial_id

    def test_fail_stale_trials_of_gone_drivers(self, tmp_path: Path) -> None:
        long_ago = datetime(2000, 1, 1, tzinfo=timezone.utc)
        with self._store(tmp_path) as store:
            study = self._study(store)
            for i, driver in enumerate(["gone-1", "alive", None, "gone-2", "gone-1"]):
                store.create_trial(study.study_id, _arch(i), "a", "a", driver=driver)
            store.finish_trial(store.get_trials(study.study_id)[4].trial_id, TrialState.COMPLETE, {})
            assert store.fail_stale_trials(study.study_id, "x", heartbeat_before=long_ago) == []
            failed = store.fail_stale_trials(
                study.study_id, "its driver died", heartbeat_before=long_ago, drivers=["gone-2", "gone-1"]
            )
            trials = store.get_trials(study.study_id)
        assert failed == [0, 3]
        assert [t.state.value for t in trials] == ["FAILED", "RUNNING", "RUNNING", "FAILED", "COMPLETE"]
        assert trials[0].error == "its driver died" and trials[4].error is None

    def test_fail_stale_trials_refuses_bad_arguments(self, tmp_path: Path) -> None:
        now = datetime.now(timezone.utc)
        with self._store(tmp_path) as store:
            study = self._study(store)
            self._trials(store, study, 1)
            with pytest.raises(StorageError, match="time-zone aware"):
                store.fail_stale_trials(study.study_id, "x", heartbeat_before=now.replace(tzinfo=None))
            with pytest.raises(StorageError, match="sequence"):
                store.fail_stale_trials(study.study_id, "x", heartbeat_before=now, drivers="gone")
            with pytest.raises(StudyNotFoundError):
                store.fail_stale_trials(study.study_id + 1000, "x", heartbeat_before=now)
            # a cut-off in another time zone means the same instant
            ahead = now.astimezone(timezone(timedelta(hours=5)))
            assert (
                store.fail_stale_trials(study.study_id, "x", heartbeat_before=ahead - timedelta(hours=1))
                == []
            )
            assert store.get_trials(study.study_id)[0].state is TrialState.RUNNING

    def test_heartbeats_racing_fail_stale_trials(self, tmp_path: Path) -> None:
        # Heartbeats and the stale check run at the same time (through a second store object where the
        # store persists). Whatever the interleaving: a failed trial's last heartbeat is older than the
        # cut-off, and a trial left running has one at least as new.
        with self._store(tmp_path) as store:
            study = self._study(store)
            ids = [t.trial_id for t in self._trials(store, study, 12)]
            beater = self.reopen_store(tmp_path) or store
            stop = threading.Event()
            errors: list[BaseException] = []
            beats_started: list[datetime] = []  # when each completed heartbeat call began

            def beat() -> None:
                try:
                    while not stop.is_set():
                        began = datetime.now(timezone.utc)
                        beater.heartbeat(ids[::2])  # the even-numbered trials are alive
                        beats_started.append(began)
                        time.sleep(0.001)
                except BaseException as exc:  # surfaced in the main thread below
                    errors.append(exc)

            thread = threading.Thread(target=beat)
            thread.start()
            try:
                cut = datetime.now(timezone.utc)
                # wait for one heartbeat wholly after the cut-off, so the even trials are alive however
                # slowly the threads are scheduled; later heartbeats race the stale check
                deadline = time.monotonic() + 30
                while not (beats_started and beats_started[-1] >= cut) and not errors:
                    assert time.monotonic() < deadline, "the heartbeat thread made no progress"
                    time.sleep(0.001)
                failed = store.fail_stale_trials(study.study_id, "stale", heartbeat_before=cut)
                time.sleep(0.005)
            finally:
                stop.set()
                thread.join(30)
                if beater is not store:
                    beater.close()
            assert errors == []
            trials = store.get_trials(study.study_id)
        assert failed == list(range(1, 12, 2))
        for trial in trials:
            assert trial.heartbeat_at is not None
            if trial.state is TrialState.FAILED:
                assert trial.heartbeat_at < cut and trial.error == "stale"
            else:
                assert trial.state is TrialState.RUNNING and trial.heartbeat_at >= cut

    def test_retry_trial_starts_the_evaluation_over(self, tmp_path: Path) -> None:
        with self._store(tmp_path) as store:
            study = self._study(store)
            trial, other = self._trials(store, study, 2)
            for step in range(3):
                store.report_intermediate(trial.trial_id, step, {"acc": step / 10})
            store.report_intermediate(other.trial_id, 0, {"acc": 0.5})
            time.sleep(0.002)
            assert store.retry_trial(trial.trial_id) == 2
            first, second = store.get_trials(study.study_id)
            assert first.attempts == 2 and first.intermediate == {} and first.state is TrialState.RUNNING
            assert first.heartbeat_at is not None and trial.heartbeat_at is not None
            assert first.heartbeat_at > trial.heartbeat_at and first.started_at == trial.started_at
            assert second.intermediate == {0: {"acc": 0.5}} and second.attempts == 1  # untouched
            store.report_intermediate(trial.trial_id, 0, {"acc": 0.3})
            assert store.retry_trial(trial.trial_id) == 3
            store.report_intermediate(trial.trial_id, 1, {"acc": 0.4})
            store.finish_trial(trial.trial_id, TrialState.COMPLETE, {"acc": 0.4})
            with pytest.raises(StorageError, match="COMPLETE"):
                store.retry_trial(trial.trial_id)
            with pytest.raises(StorageError, match="no trial"):
                store.retry_trial(trial.trial_id + 1000)
            (done, _) = store.get_trials(study.study_id)
        assert done.attempts == 3 and done.intermediate == {1: {"acc": 0.4}}

    @pytest.mark.slow  # spawns three Python processes
    def test_budget_holds_across_processes(self, tmp_path: Path) -> None:
        store = self.make_store(tmp_path)
        try:
            store.create_study("shared", {})
        finally:
            store.close()
        url = self.shared_url(tmp_path)
        if url is None:
            pytest.skip("this store cannot be opened by other processes")
        trials = concurrent_budget(url, "shared", processes=3, budget=30)
        assert [t.number for t in trials] == list(range(30))
        assert len({t.trial_id for t in trials}) == 30
        assert all(t.state is TrialState.COMPLETE for t in trials)
        assert {t.driver for t in trials} <= {"p0", "p1", "p2"}

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


def _by_number(trials: list[TrialRecord]) -> dict[int, TrialRecord]:
    return {t.number: t for t in trials}


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
    return _run_processes(
        url, study_name, _create_trials_worker, [(trials_each, w) for w in range(processes)], timeout_s
    )


def _run_processes(
    url: str, study_name: str, target: Callable[..., None], args: list[tuple[int, int]], timeout_s: float
) -> list[TrialRecord]:
    """Run ``target(url, study_name, *a, barrier)`` in one spawned process per ``a`` in ``args``."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(args))
    workers = [context.Process(target=target, args=(url, study_name, *a, barrier)) for a in args]
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


def _budget_worker(url: str, study_name: str, budget: int, worker: int, barrier: Any) -> None:
    store = open_store(url)
    try:
        study_id = store.load_study(study_name).study_id
        barrier.wait(timeout=60)  # start together so the processes really contend
        while True:
            try:
                trial = store.create_trial(
                    study_id, {"worker": worker}, "a", "a", driver=f"p{worker}", budget=budget
                )
            except BudgetReached:
                return
            time.sleep(0.001)  # a token evaluation, so the processes' writes interleave
            store.finish_trial(trial.trial_id, TrialState.COMPLETE, {"worker": float(worker)})
    finally:
        store.close()


def concurrent_budget(
    url: str, study_name: str, processes: int = 3, budget: int = 30, timeout_s: float = 120.0
) -> list[TrialRecord]:
    """Let ``processes`` spawned drivers share one study's ``budget``; returns the study's trials.

    Each process creates trials with ``create_trial(..., budget=budget)`` (as driver ``p<i>``)
    until it gets BudgetReached. The study ``study_name`` must exist in the store at ``url``.
    Callers assert that exactly ``budget`` trials exist.
    """
    return _run_processes(url, study_name, _budget_worker, [(budget, w) for w in range(processes)], timeout_s)
