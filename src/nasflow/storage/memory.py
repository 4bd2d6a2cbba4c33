"""A store that keeps everything in this process's memory (lost when the process ends)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from nasflow.errors import StorageError, StudyExistsError
from nasflow.storage.base import (
    ExperimentStore,
    ResultRecord,
    StudyRecord,
    TrialRecord,
    budget_reached,
    check_budget,
    check_driver,
    check_drivers,
    check_finish_state,
    check_result_kind,
    check_study_name,
    check_utc,
    clean_metrics,
    dump_json,
    load_json,
    no_study_id,
    not_running,
    study_not_found,
    uses_budget,
    utc_now,
)
from nasflow.trial import TrialState


@dataclass
class _Study:
    study_id: int
    name: str
    # JSON text rather than the caller's objects: callers cannot mutate stored data, and
    # values behave exactly as in the SQL store (tuples become lists, bad types are refused)
    config: str
    created_at: datetime
    trial_ids: list[int] = field(default_factory=list)
    strategy_state: str | None = None


@dataclass
class _Trial:
    trial_id: int
    study_id: int
    number: int
    arch: str
    arch_str: str
    canonical: str
    state: TrialState
    started_at: datetime
    metrics: dict[str, float] = field(default_factory=dict)
    intermediate: dict[int, dict[str, float]] = field(default_factory=dict)
    error: str | None = None
    finished_at: datetime | None = None
    fidelity: str = "{}"
    driver: str | None = None
    heartbeat_at: datetime | None = None
    attempts: int = 1

    def record(self) -> TrialRecord:
        return TrialRecord(
            trial_id=self.trial_id,
            number=self.number,
            arch=load_json(self.arch),
            arch_str=self.arch_str,
            canonical=self.canonical,
            state=self.state,
            metrics=dict(self.metrics),
            intermediate={step: dict(m) for step, m in sorted(self.intermediate.items())},
            error=self.error,
            started_at=self.started_at,
            finished_at=self.finished_at,
            fidelity=load_json(self.fidelity),
            driver=self.driver,
            heartbeat_at=self.heartbeat_at,
            attempts=self.attempts,
        )

    def fail(self, error: str, now: datetime) -> None:
        self.state = TrialState.FAILED
        self.error = error
        self.finished_at = now


class InMemoryStore(ExperimentStore):
    """Keeps studies in a dict; thread-safe, one lock makes every method atomic."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._studies: dict[int, _Study] = {}
        self._by_name: dict[str, int] = {}
        self._trials: dict[int, _Trial] = {}
        # (result_id, study_id, kind, payload JSON, created_at)
        self._results: list[tuple[int, int, str, str, datetime]] = []
        self._closed = False

    def __repr__(self) -> str:
        return f"InMemoryStore(studies={len(self._studies)})"

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("the in-memory store is closed")

    def _study(self, study_id: int) -> _Study:
        study = self._studies.get(study_id)
        if study is None:
            raise no_study_id(study_id)
        return study

    def _trial(self, trial_id: int) -> _Trial:
        trial = self._trials.get(trial_id)
        if trial is None:
            raise StorageError(f"no trial with id {trial_id}")
        return trial

    @staticmethod
    def _study_record(study: _Study) -> StudyRecord:
        return StudyRecord(study.study_id, study.name, load_json(study.config), study.created_at)

    def create_study(self, name: str, config: dict[str, Any]) -> StudyRecord:
        check_study_name(name)
        config_json = dump_json(config, "the study config")
        with self._lock:
            self._check_open()
            if name in self._by_name:
                raise StudyExistsError(f"a study named {name!r} already exists")
            study = _Study(len(self._studies) + 1, name, config_json, utc_now())
            self._studies[study.study_id] = study
            self._by_name[name] = study.study_id
            return self._study_record(study)

    def load_study(self, name: str) -> StudyRecord:
        with self._lock:
            self._check_open()
            study_id = self._by_name.get(name)
            if study_id is None:
                raise study_not_found(name, self._by_name)
            return self._study_record(self._studies[study_id])

    def study_names(self) -> list[str]:
        with self._lock:
            self._check_open()
            return list(self._by_name)

    def create_trial(
        self,
        study_id: int,
        arch: dict[str, Any],
        arch_str: str,
        canonical: str,
        fidelity: dict[str, float] | None = None,
        *,
        driver: str | None = None,
        budget: int | None = None,
    ) -> TrialRecord:
        arch_json = dump_json(arch, "the architecture")
        fidelity_json = dump_json(clean_metrics(fidelity or {}, "fidelity"), "the fidelity")
        driver = check_driver(driver)
        budget = check_budget(budget)
        with self._lock:
            self._check_open()
            study = self._study(study_id)
            if budget is not None:
                used = sum(uses_budget(self._trials[t].state, self._trials[t].error) for t in study.trial_ids)
                if used >= budget:
                    raise budget_reached(study.name, study_id, budget)
            started_at = utc_now()
            trial = _Trial(
                trial_id=len(self._trials) + 1,
                study_id=study_id,
                number=len(study.trial_ids),
                arch=arch_json,
                arch_str=str(arch_str),
                canonical=str(canonical),
                state=TrialState.RUNNING,
                started_at=started_at,
                fidelity=fidelity_json,
                driver=driver,
                heartbeat_at=started_at,
            )
            self._trials[trial.trial_id] = trial
            study.trial_ids.append(trial.trial_id)
            return trial.record()

    def report_intermediate(self, trial_id: int, step: int, metrics: dict[str, float]) -> None:
        cleaned = clean_metrics(metrics, "intermediate metrics")
        with self._lock:
            self._check_open()
            trial = self._trial(trial_id)
            if trial.state is not TrialState.RUNNING:
                raise not_running(trial_id, trial.number, trial.state)
            trial.intermediate[int(step)] = cleaned

    def finish_trial(
        self,
        trial_id: int,
        state: TrialState,
        metrics: dict[str, float],
        error: str | None = None,
        strategy_state: dict[str, Any] | None = None,
        study_id: int | None = None,
    ) -> None:
        state = check_finish_state(state)
        cleaned = clean_metrics(metrics)
        state_json = None if strategy_state is None else dump_json(strategy_state, "the strategy state")
        with self._lock:
            self._check_open()
            trial = self._trial(trial_id)
            if study_id is not None and study_id != trial.study_id:
                raise StorageError(f"trial id {trial_id} belongs to study {trial.study_id}, not {study_id}")
            if trial.state is not TrialState.RUNNING:
                raise not_running(trial_id, trial.number, trial.state)
            # everything that can fail is checked above, so the two writes below are all-or-nothing
            trial.state = state
            trial.metrics = cleaned
            trial.error = error
            trial.finished_at = utc_now()
            if state_json is not None:
                self._studies[trial.study_id].strategy_state = state_json

    def get_trials(self, study_id: int) -> list[TrialRecord]:
        with self._lock:
            self._check_open()
            study = self._study(study_id)
            return [self._trials[t].record() for t in study.trial_ids]

    def save_strategy_state(self, study_id: int, state: dict[str, Any]) -> None:
        state_json = dump_json(state, "the strategy state")
        with self._lock:
            self._check_open()
            self._study(study_id).strategy_state = state_json

    def load_strategy_state(self, study_id: int) -> dict[str, Any] | None:
        with self._lock:
            self._check_open()
            text = self._study(study_id).strategy_state
            return None if text is None else load_json(text)

    def fail_running_trials(self, study_id: int, error: str) -> list[int]:
        return self._fail_running(study_id, error, lambda trial: True)

    def _fail_running(self, study_id: int, error: str, chosen: Callable[[_Trial], bool]) -> list[int]:
        """Fail the study's RUNNING trials that ``chosen`` picks, in one step; returns their numbers."""
        with self._lock:
            self._check_open()
            study = self._study(study_id)
            now = utc_now()
            failed = []
            for trial_id in study.trial_ids:
                trial = self._trials[trial_id]
                if trial.state is TrialState.RUNNING and chosen(trial):
                    trial.fail(error, now)
                    failed.append(trial.number)
            return failed

    def heartbeat(self, trial_ids: Sequence[int]) -> None:
        ids = [int(t) for t in trial_ids]
        if not ids:
            return
        with self._lock:
            self._check_open()
            now = utc_now()
            for trial_id in ids:
                trial = self._trials.get(trial_id)
                if trial is not None and trial.state is TrialState.RUNNING:
                    trial.heartbeat_at = now

    def fail_stale_trials(
        self, study_id: int, error: str, *, heartbeat_before: datetime, drivers: Sequence[str] = ()
    ) -> list[int]:
        before = check_utc(heartbeat_before, "heartbeat_before")
        gone = set(check_drivers(drivers))

        def stale(trial: _Trial) -> bool:
            return (trial.heartbeat_at or trial.started_at) < before or trial.driver in gone

        return self._fail_running(study_id, error, stale)

    def retry_trial(self, trial_id: int) -> int:
        with self._lock:
            self._check_open()
            trial = self._trial(trial_id)
            if trial.state is not TrialState.RUNNING:
                raise not_running(trial_id, trial.number, trial.state)
            trial.attempts += 1
            trial.heartbeat_at = utc_now()
            trial.intermediate.clear()
            return trial.attempts

    def add_result(self, study_id: int, kind: str, payload: dict[str, Any]) -> ResultRecord:
        kind = check_result_kind(kind)
        payload_json = dump_json(payload, "the result")
        with self._lock:
            self._check_open()
            self._study(study_id)
            entry = (len(self._results) + 1, study_id, kind, payload_json, utc_now())
            self._results.append(entry)
        return ResultRecord(entry[0], study_id, kind, load_json(payload_json), entry[4])

    def get_results(self, study_id: int, kind: str | None = None) -> list[ResultRecord]:
        with self._lock:
            self._check_open()
            self._study(study_id)
            return [
                ResultRecord(rid, sid, k, load_json(text), created)
                for rid, sid, k, text, created in self._results
                if sid == study_id and (kind is None or k == kind)
            ]

    def close(self) -> None:
        with self._lock:
            self._closed = True
