"""Records kept by an experiment store and the abstract store interface."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from nasflow.errors import BudgetReached, ConfigError, StorageError, StudyNotFoundError
from nasflow.trial import INTERRUPTED, TrialState, is_screened

#: how many study names an unknown-study message lists before it abbreviates
_NAMES_SHOWN = 20

#: longest driver id a store keeps
DRIVER_MAX_LENGTH = 128

#: the storage URL forms nasflow understands, for error messages
URL_FORMS = (
    "'memory' (or no URL) for an in-memory store, "
    "'sqlite:///path/to/file.db' for a SQLite file, "
    "'sqlite://' for an in-memory SQLite database, "
    "'postgresql://user:password@host/dbname' or 'postgresql+psycopg://...' for PostgreSQL"
)


@dataclass(frozen=True)
class StudyRecord:
    """A study as stored: its id, unique name, JSON configuration and creation time (UTC)."""

    study_id: int
    name: str
    config: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class TrialRecord:
    """A trial as stored.

    Attributes:
        trial_id: id unique across the whole store.
        number: 0-based, consecutive position within its study.
        arch: JSON form of the architecture.
        arch_str: the space's text form of the architecture.
        canonical: key shared by architectures that are the same network.
        state: RUNNING, COMPLETE, PRUNED or FAILED.
        metrics: final metrics (may hold NaN or infinities).
        intermediate: ``step -> metrics`` reported while the trial ran.
        error: why the trial failed or was pruned.
        started_at: UTC time the trial was created.
        finished_at: UTC time it finished; None while RUNNING.
        fidelity: the budget the trial was evaluated at (e.g. ``{"epochs": 3}``); empty means full.
        driver: opaque id of the driver that runs the trial; None if it did not say.
        heartbeat_at: UTC time of the last sign of life of the trial (its start, a heartbeat or a
            retry); None for trials written before schema version 3.
        attempts: how many times the trial's evaluation was started (see ``retry_trial``).
    """

    trial_id: int
    number: int
    arch: dict[str, Any]
    arch_str: str
    canonical: str
    state: TrialState
    metrics: dict[str, float]
    intermediate: dict[int, dict[str, float]]
    error: str | None
    started_at: datetime
    finished_at: datetime | None
    fidelity: dict[str, float] = field(default_factory=dict)
    driver: str | None = None
    heartbeat_at: datetime | None = None
    attempts: int = 1


@dataclass(frozen=True)
class ResultRecord:
    """A result attached to a study after its search, e.g. an exported model's validation.

    Attributes:
        result_id: id unique across the whole store, increasing in creation order.
        study_id: the study it belongs to.
        kind: what it is, e.g. ``"export"``; readers filter on it.
        payload: its JSON content.
        created_at: UTC time it was added.
    """

    result_id: int
    study_id: int
    kind: str
    payload: dict[str, Any]
    created_at: datetime


class ExperimentStore(ABC):
    """Where studies, trials and strategy states are kept.

    Concurrency contract (version 3):

    * Several driver processes may cooperate on ONE study, and others may read it at the
      same time. A driver names itself with an opaque id (``create_trial(driver=...)``).
    * Every method is atomic: it either happens completely or not at all.
    * ``create_trial`` allocates the next trial number atomically, so numbers stay
      consecutive and unique even when several processes create trials at once. Given a
      ``budget``, it counts the trials that use budget (see :func:`uses_budget`) and creates
      the trial in the same locked transaction, so however many drivers race, a study never
      gets more than ``budget`` such trials; the loser gets BudgetReached.
    * A RUNNING trial shows it is alive through its ``heartbeat_at`` (set when it starts,
      by ``heartbeat`` and by ``retry_trial``). ``fail_stale_trials`` decides staleness in
      the same statement that fails the trials, so a heartbeat committed before it keeps
      its trial alive and one committed after finds the trial already FAILED (and is ignored).
    * ``finish_trial``, ``report_intermediate`` and ``retry_trial`` act only on RUNNING
      trials, so a trial failed as stale cannot be finished later by its old driver: that
      driver gets StorageError and should drop the result.
    * ``finish_trial`` with a ``strategy_state`` saves the trial's result and the strategy
      state in ONE transaction, so a crash never leaves a finished trial that the saved
      strategy state does not know about (or the other way round). With several drivers
      the saved state is the last writer's.
    * SQLite files are safe for several local processes: they use WAL mode and wait up to
      30 s for a lock instead of failing at once. PostgreSQL serialises trial creation per
      study with ``SELECT ... FOR UPDATE`` on the study's row.

    All values are stored as JSON (never pickle); tuples therefore come back as lists and
    mapping keys as strings. NaN and infinities in metrics round-trip. Times are UTC.
    """

    @abstractmethod
    def create_study(self, name: str, config: dict[str, Any]) -> StudyRecord:
        """Create a study; raises StudyExistsError if ``name`` is taken."""

    @abstractmethod
    def load_study(self, name: str) -> StudyRecord:
        """The study called ``name``; raises StudyNotFoundError listing the existing names."""

    @abstractmethod
    def study_names(self) -> list[str]:
        """Names of all studies, in creation order."""

    @abstractmethod
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
        """Start a RUNNING trial numbered one past the study's last trial, at ``fidelity`` (default full).

        The trial records ``driver`` (an opaque id of whoever runs it), ``heartbeat_at`` equal
        to its start and ``attempts`` 1.

        Raises:
            BudgetReached: ``budget`` is given and the study already has that many trials that
                use budget (:func:`uses_budget`); nothing is created then.
        """

    @abstractmethod
    def report_intermediate(self, trial_id: int, step: int, metrics: dict[str, float]) -> None:
        """Record metrics of a RUNNING trial at ``step``; a repeated step replaces the earlier one."""

    @abstractmethod
    def finish_trial(
        self,
        trial_id: int,
        state: TrialState,
        metrics: dict[str, float],
        error: str | None = None,
        strategy_state: dict[str, Any] | None = None,
        study_id: int | None = None,
    ) -> None:
        """Finish a RUNNING trial, and save ``strategy_state`` in the same transaction if given.

        ``study_id`` defaults to the trial's study; if given it must be that study.
        Raises StorageError if the trial is not RUNNING or ``state`` is RUNNING.
        """

    @abstractmethod
    def get_trials(self, study_id: int) -> list[TrialRecord]:
        """All trials of the study, ordered by number."""

    @abstractmethod
    def save_strategy_state(self, study_id: int, state: dict[str, Any]) -> None:
        """Replace the study's saved strategy state."""

    @abstractmethod
    def load_strategy_state(self, study_id: int) -> dict[str, Any] | None:
        """The study's last saved strategy state, or None if none was saved."""

    @abstractmethod
    def fail_running_trials(self, study_id: int, error: str) -> list[int]:
        """Mark every RUNNING trial of the study FAILED with ``error``; returns their numbers."""

    @abstractmethod
    def heartbeat(self, trial_ids: Sequence[int]) -> None:
        """Set ``heartbeat_at`` to now for those of ``trial_ids`` that are still RUNNING.

        Other ids (finished or unknown trials) are ignored; all in one transaction. An empty
        sequence does nothing at all.
        """

    @abstractmethod
    def fail_stale_trials(
        self, study_id: int, error: str, *, heartbeat_before: datetime, drivers: Sequence[str] = ()
    ) -> list[int]:
        """Mark FAILED, with ``error``, the study's RUNNING trials that look abandoned; returns their numbers.

        A trial looks abandoned when its last sign of life (``heartbeat_at``, or ``started_at``
        if it has none) is older than ``heartbeat_before`` (a time-zone aware datetime), or when
        its driver is one of ``drivers`` (drivers known to be gone). The check and the update
        are one atomic step. Numbers come back in ascending order.
        """

    @abstractmethod
    def retry_trial(self, trial_id: int) -> int:
        """Start a RUNNING trial's evaluation over; returns its new number of attempts.

        Adds one to ``attempts``, sets ``heartbeat_at`` to now and deletes the trial's
        intermediate values (a retry starts its learning curve over).
        Raises StorageError if the trial is unknown or not RUNNING.
        """

    @abstractmethod
    def add_result(self, study_id: int, kind: str, payload: dict[str, Any]) -> ResultRecord:
        """Attach a JSON result of ``kind`` (e.g. ``"export"``) to the study, next to its trials."""

    @abstractmethod
    def get_results(self, study_id: int, kind: str | None = None) -> list[ResultRecord]:
        """The study's results in the order they were added, only those of ``kind`` if given."""

    @abstractmethod
    def close(self) -> None:
        """Release resources; later calls raise StorageError. Closing twice is harmless."""

    def __enter__(self) -> ExperimentStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# Helpers shared by the bundled stores, so both reject and convert values the same way.


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def dump_json(value: Any, what: str) -> str:
    try:
        # allow_nan keeps NaN/inf metrics representable; Python's json reads them back
        return json.dumps(value, allow_nan=True, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise StorageError(f"{what} cannot be stored as JSON: {exc}") from exc


def load_json(text: str) -> Any:
    return json.loads(text)


def clean_metrics(metrics: Mapping[str, Any], what: str = "metrics") -> dict[str, float]:
    """Metrics as plain ``str -> float`` (accepts numpy/torch scalars)."""
    if not isinstance(metrics, Mapping):
        raise StorageError(f"{what} must be a mapping of name to number, got {type(metrics).__name__}")
    cleaned: dict[str, float] = {}
    for key, value in metrics.items():
        try:
            cleaned[str(key)] = float(value)
        except (TypeError, ValueError) as exc:
            raise StorageError(f"{what}[{key!r}] must be a number, got {value!r}") from exc
    return cleaned


def uses_budget(state: TrialState, error: str | None) -> bool:
    """True unless the trial finished without really being evaluated.

    Trials interrupted by a stopped process (error ``nasflow.trial.INTERRUPTED``) and trials
    screened out before evaluation (PRUNED, error starting with ``nasflow.trial.SCREENED``) are
    free; every other trial, RUNNING ones included, uses one unit of a study's budget.
    """
    if state is TrialState.RUNNING:
        return True
    return not (error == INTERRUPTED or is_screened(state, error))


def check_budget(budget: int | None) -> int | None:
    if budget is None:
        return None
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
        raise ConfigError(f"budget must be a whole number of trials >= 0 or None, got {budget!r}")
    return int(budget)


def budget_reached(study_name: str, study_id: int, budget: int) -> BudgetReached:
    return BudgetReached(
        f"study {study_name!r} (id {study_id}) has used its budget of {budget} trial(s); "
        "no further trial was started"
    )


def check_driver(driver: str | None) -> str | None:
    if driver is None:
        return None
    if not isinstance(driver, str) or not driver or len(driver) > DRIVER_MAX_LENGTH:
        raise StorageError(
            f"a driver id must be a non-empty string of at most {DRIVER_MAX_LENGTH} characters "
            f"or None, got {driver!r}"
        )
    return driver


def check_drivers(drivers: Sequence[str]) -> list[str]:
    # a lone string would otherwise be taken as a sequence of one-letter driver ids
    if isinstance(drivers, str):
        raise StorageError(f"drivers must be a sequence of driver ids, not the string {drivers!r}")
    return [d for d in (check_driver(d) for d in drivers) if d is not None]


def check_utc(moment: datetime, what: str) -> datetime:
    """``moment`` in UTC; a naive datetime is refused because its zone would be a guess."""
    if not isinstance(moment, datetime) or moment.tzinfo is None or moment.utcoffset() is None:
        raise StorageError(
            f"{what} must be a time-zone aware datetime (e.g. datetime.now(timezone.utc)), got {moment!r}"
        )
    return moment.astimezone(timezone.utc)


def check_result_kind(kind: str) -> str:
    if not isinstance(kind, str) or not kind.strip() or len(kind) > 64:
        raise StorageError(f"a result kind must be a non-empty string of at most 64 characters, got {kind!r}")
    return kind


def check_study_name(name: str) -> None:
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"a study name must be a non-empty string, got {name!r}")


def check_finish_state(state: TrialState) -> TrialState:
    try:
        state = TrialState(state)
    except ValueError as exc:
        raise StorageError(f"unknown trial state {state!r}") from exc
    if state is TrialState.RUNNING:
        raise StorageError("a trial cannot be finished with state RUNNING")
    return state


def study_not_found(name: str, existing: Iterable[str]) -> StudyNotFoundError:
    names = list(existing)
    if not names:
        return StudyNotFoundError(f"no study named {name!r}: the storage has no studies yet")
    shown = ", ".join(repr(n) for n in names[:_NAMES_SHOWN])
    if len(names) > _NAMES_SHOWN:
        shown += f" and {len(names) - _NAMES_SHOWN} more"
    return StudyNotFoundError(f"no study named {name!r}; existing studies: {shown}")


def no_study_id(study_id: int) -> StudyNotFoundError:
    return StudyNotFoundError(f"no study with id {study_id}")


def not_running(trial_id: int, number: int, state: TrialState) -> StorageError:
    return StorageError(f"trial {number} (id {trial_id}) is already {state.value}, not RUNNING")
