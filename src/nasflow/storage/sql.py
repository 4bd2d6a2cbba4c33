"""A store in a SQL database (SQLite or PostgreSQL) through SQLAlchemy Core."""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    not_,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator

from nasflow.errors import StorageError, StudyExistsError
from nasflow.storage.base import (
    DRIVER_MAX_LENGTH,
    URL_FORMS,
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
    utc_now,
)
from nasflow.trial import INTERRUPTED, SCREENED, TrialState

#: version 2 added the study_results table (retrain/validation/export results next to the trials);
#: version 3 added the trials' driver, heartbeat_at and attempts (several drivers on one study)
SCHEMA_VERSION = 3
BUSY_TIMEOUT_S = 30
_RUNNING = TrialState.RUNNING.value
_PRUNED = TrialState.PRUNED.value
#: execution option that makes a SQLite transaction take the write lock when it begins
_WRITE_OPTION = "nasflow_write"


class _UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC and hands back aware UTC, because SQLite drops time zones."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


# JSON lives in TEXT columns written by Python's json module: PostgreSQL's JSON types reject
# NaN and infinities, which metrics legitimately contain.
metadata = MetaData()

meta_table = Table(
    "nasflow_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

studies_table = Table(
    "studies",
    metadata,
    Column("study_id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(512), nullable=False, unique=True),
    Column("config", Text, nullable=False),
    Column("created_at", _UTCDateTime, nullable=False),
)

trials_table = Table(
    "trials",
    metadata,
    Column("trial_id", Integer, primary_key=True, autoincrement=True),
    Column("study_id", Integer, ForeignKey("studies.study_id"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("arch", Text, nullable=False),
    Column("arch_str", Text, nullable=False),
    Column("canonical", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("metrics", Text, nullable=False),
    Column("error", Text, nullable=True),
    Column("started_at", _UTCDateTime, nullable=False),
    Column("finished_at", _UTCDateTime, nullable=True),
    # server defaults let ALTER TABLE add these columns to a table that already has rows
    Column("fidelity", Text, nullable=False, default="{}", server_default=text("'{}'")),
    Column("driver", String(DRIVER_MAX_LENGTH), nullable=True),
    Column("heartbeat_at", _UTCDateTime, nullable=True),
    Column("attempts", Integer, nullable=False, default=1, server_default=text("1")),
    # also the index behind "next number" lookups and ordered reads
    UniqueConstraint("study_id", "number", name="uq_trials_study_number"),
    Index("ix_trials_study_state", "study_id", "state"),
)

intermediate_table = Table(
    "intermediate_values",
    metadata,
    Column("trial_id", Integer, ForeignKey("trials.trial_id"), primary_key=True),
    Column("step", Integer, primary_key=True),
    Column("metrics", Text, nullable=False),
)

strategy_states_table = Table(
    "strategy_states",
    metadata,
    Column("study_id", Integer, ForeignKey("studies.study_id"), primary_key=True),
    Column("state", Text, nullable=False),
    Column("updated_at", _UTCDateTime, nullable=False),
)

results_table = Table(
    "study_results",
    metadata,
    Column("result_id", Integer, primary_key=True, autoincrement=True),
    Column("study_id", Integer, ForeignKey("studies.study_id"), nullable=False),
    Column("kind", String(64), nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at", _UTCDateTime, nullable=False),
    Index("ix_results_study_kind", "study_id", "kind"),
)

_TABLE_NAMES = frozenset(metadata.tables)
#: trials columns that schema versions before 3 may lack (early version 1 files even lack fidelity);
#: opening such a database adds them
_ADDED_TRIAL_COLUMNS = ("fidelity", "driver", "heartbeat_at", "attempts")
#: serialises schema set-up and migration of concurrent openers on PostgreSQL (an arbitrary constant)
_SCHEMA_LOCK = text("SELECT pg_advisory_xact_lock(7405186321)")

# Statements are built once: building and cache-keying a fresh statement on every call cost
# SQLAlchemy more than SQLite spends running it. Bound names differ from column names
# because SQLAlchemy reserves those in UPDATE ... SET.
_studies, _trials = studies_table.c, trials_table.c
_steps, _states = intermediate_table.c, strategy_states_table.c

_STUDY_BY_ID = select(_studies.study_id, _studies.name).where(_studies.study_id == bindparam("b_study"))
_LOCK_STUDY = _STUDY_BY_ID.with_for_update()  # rendered as nothing on SQLite, whose BEGIN IMMEDIATE locks
_STUDY_BY_NAME = select(studies_table).where(_studies.name == bindparam("b_name"))
_STUDY_NAMES = select(_studies.name).order_by(_studies.study_id)
_INSERT_STUDY = insert(studies_table)

_NEXT_NUMBER = select(func.coalesce(func.max(_trials.number) + 1, 0)).where(
    _trials.study_id == bindparam("b_study")
)
_INSERT_TRIAL = insert(trials_table)
# Trials that do not use budget: interrupted ones and screened-out ones (nasflow.storage.base.uses_budget).
# substr rather than LIKE, because SQLite's LIKE ignores case and startswith does not.
_FREE_OF_BUDGET = and_(
    _trials.state != _RUNNING,
    _trials.error.is_not(None),
    or_(
        _trials.error == INTERRUPTED,
        and_(_trials.state == _PRUNED, func.substr(_trials.error, 1, len(SCREENED)) == SCREENED),
    ),
)
_BUDGET_USED = select(func.count()).where(_trials.study_id == bindparam("b_study"), not_(_FREE_OF_BUDGET))
_TRIAL_STATUS = select(_trials.study_id, _trials.number, _trials.state).where(
    _trials.trial_id == bindparam("b_trial")
)
_FINISH_TRIAL = (
    update(trials_table)
    .where(_trials.trial_id == bindparam("b_trial"), _trials.state == _RUNNING)
    .values(
        state=bindparam("b_state"),
        metrics=bindparam("b_metrics"),
        error=bindparam("b_error"),
        finished_at=bindparam("b_finished", type_=_UTCDateTime),
    )
)
_STUDY_TRIALS = select(trials_table).where(_trials.study_id == bindparam("b_study")).order_by(_trials.number)
# Statements that update several trials first lock them in trial_id order (FOR UPDATE, a no-op on
# SQLite), so that two of them running at once on PostgreSQL cannot deadlock.
_RUNNING_NUMBERS = (
    select(_trials.number)
    .where(_trials.study_id == bindparam("b_study"), _trials.state == _RUNNING)
    .order_by(_trials.trial_id)
    .with_for_update()
)
_FAIL_RUNNING = (
    update(trials_table)
    .where(_trials.study_id == bindparam("b_study"), _trials.state == _RUNNING)
    .values(
        state=TrialState.FAILED.value,
        error=bindparam("b_error"),
        finished_at=bindparam("b_finished", type_=_UTCDateTime),
    )
)

_LOCK_BEATING = (
    select(_trials.trial_id)
    .where(_trials.trial_id.in_(bindparam("b_trials", expanding=True)), _trials.state == _RUNNING)
    .order_by(_trials.trial_id)
    .with_for_update()
)
_HEARTBEAT = (
    update(trials_table)
    .where(_trials.trial_id.in_(bindparam("b_trials", expanding=True)), _trials.state == _RUNNING)
    .values(heartbeat_at=bindparam("b_now", type_=_UTCDateTime))
)
# the staleness test is part of the UPDATE itself, so a heartbeat committed first keeps its trial alive
_STALE = and_(
    _trials.study_id == bindparam("b_study"),
    _trials.state == _RUNNING,
    or_(
        func.coalesce(_trials.heartbeat_at, _trials.started_at) < bindparam("b_before", type_=_UTCDateTime),
        _trials.driver.in_(bindparam("b_drivers", expanding=True)),
    ),
)
_STALE_NUMBERS = select(_trials.number).where(_STALE)
_FAIL_STALE = (
    update(trials_table)
    .where(_STALE)
    .values(
        state=TrialState.FAILED.value,
        error=bindparam("b_error"),
        finished_at=bindparam("b_finished", type_=_UTCDateTime),
    )
)
_FAIL_STALE_RETURNING = _FAIL_STALE.returning(_trials.number)
_RETRY_TRIAL = (
    update(trials_table)
    .where(_trials.trial_id == bindparam("b_trial"), _trials.state == _RUNNING)
    .values(attempts=_trials.attempts + 1, heartbeat_at=bindparam("b_now", type_=_UTCDateTime))
)
_TRIAL_ATTEMPTS = select(_trials.attempts).where(_trials.trial_id == bindparam("b_trial"))
#: rows per statement when updating many trials by id (SQLite limits bound parameters per statement)
_IDS_PER_STATEMENT = 500

_DELETE_STEP = delete(intermediate_table).where(
    _steps.trial_id == bindparam("b_trial"), _steps.step == bindparam("b_step")
)
_INSERT_STEP = insert(intermediate_table)
_DELETE_TRIAL_STEPS = delete(intermediate_table).where(_steps.trial_id == bindparam("b_trial"))
_STUDY_STEPS = (
    select(_steps.trial_id, _steps.step, _steps.metrics)
    .join(trials_table, _trials.trial_id == _steps.trial_id)
    .where(_trials.study_id == bindparam("b_study"))
    .order_by(_steps.trial_id, _steps.step)
)

_UPDATE_STATE = (
    update(strategy_states_table)
    .where(_states.study_id == bindparam("b_study"))
    .values(state=bindparam("b_state"), updated_at=bindparam("b_updated", type_=_UTCDateTime))
)
_INSERT_STATE = insert(strategy_states_table)
_results = results_table.c
_INSERT_RESULT = insert(results_table)
_STUDY_RESULTS = (
    select(results_table).where(_results.study_id == bindparam("b_study")).order_by(_results.result_id)
)
_LOAD_STATE = select(_states.state).where(_states.study_id == bindparam("b_study"))


def _shown(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def _reason(exc: BaseException) -> str:
    # the DBAPI's own message is the useful part; SQLAlchemy's adds SQL text and a link
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return str(exc.orig)
    return str(exc)


def _sqlite_engine(url: URL, shown: str) -> Engine:
    database = url.database
    if not database or database == ":memory:":
        # one shared connection, else every pooled connection would see its own empty database
        return create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    if "uri" not in url.query:
        folder = Path(database).expanduser().absolute().parent
        if not folder.is_dir():
            raise StorageError(
                f"cannot open storage {shown}: the folder {folder} does not exist; create it first"
            )
    return create_engine(url, connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_S})


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # take transaction control from the sqlite3 module so "begin" below decides the lock mode
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # busy_timeout first: switching to WAL itself may have to wait for another process
            cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # IMMEDIATE takes the write lock up front: a deferred transaction that reads and then
        # writes can fail with "database is locked" without waiting when another writer is active
        immediate = connection.get_execution_options().get(_WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _postgres_engine(url: URL, shown: str) -> Engine:
    if url.drivername == "postgresql":
        # prefer psycopg 3 (what the extra installs), fall back to SQLAlchemy's default psycopg2
        if importlib.util.find_spec("psycopg") is not None:
            url = url.set(drivername="postgresql+psycopg")
        elif importlib.util.find_spec("psycopg2") is None:
            raise StorageError(
                f"cannot open storage {shown}: no PostgreSQL driver is installed; "
                "install one with: pip install 'nasflow[postgres]' (or pip install psycopg)"
            )
    try:
        return create_engine(url, pool_pre_ping=True)
    except ImportError as exc:
        raise StorageError(
            f"cannot open storage {shown}: the PostgreSQL driver is missing ({exc}); "
            "install it with: pip install 'nasflow[postgres]' (or pip install psycopg)"
        ) from exc


def _make_engine(url_text: str) -> tuple[Engine, str]:
    try:
        url = make_url(url_text)
    except ArgumentError as exc:
        raise StorageError(f"cannot parse storage URL {url_text!r}; use {URL_FORMS}") from exc
    shown = _shown(url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        engine = _sqlite_engine(url, shown)
        _configure_sqlite(engine)
    elif backend == "postgresql":
        engine = _postgres_engine(url, shown)
    else:
        raise StorageError(f"unsupported storage URL {shown!r}; use {URL_FORMS}")
    return engine, shown


class SQLStore(ExperimentStore):
    """Studies in a SQLite or PostgreSQL database; creates its tables if they are absent.

    Trial numbers are allocated inside one write transaction that first locks the study:
    ``BEGIN IMMEDIATE`` on SQLite, ``SELECT ... FOR UPDATE`` on the study row elsewhere.
    Both run the same code; SQLite simply ignores ``FOR UPDATE``.
    """

    def __init__(self, url: str) -> None:
        self._engine, self.url = _make_engine(url)
        self._writer = self._engine.execution_options(**{_WRITE_OPTION: True})
        # one lock per object: the in-memory SQLite connection is shared, and within one process
        # queuing on a lock is cheaper than SQLite's busy-wait
        self._lock = threading.Lock()
        self._closed = False
        try:
            self._init_schema()
        except StorageError:
            self._engine.dispose()
            raise

    def __repr__(self) -> str:
        return f"SQLStore({self.url!r})"

    @contextmanager
    def _transaction(self, write: bool, opening: bool = False) -> Iterator[Connection]:
        with self._lock:
            if self._closed:
                raise StorageError(f"the store {self.url} is closed")
            try:
                with (self._writer if write else self._engine).begin() as connection:
                    yield connection
            except SQLAlchemyError as exc:
                # when opening, the usual cause is the file itself (e.g. "file is not a database")
                what = f"cannot open storage {self.url}" if opening else f"storage {self.url} failed"
                raise StorageError(f"{what}: {_reason(exc)}") from exc

    def _init_schema(self) -> None:
        with self._transaction(write=True, opening=True) as conn:
            if conn.dialect.name == "postgresql":
                # SQLite's BEGIN IMMEDIATE already keeps a second opener out until this one commits
                conn.execute(_SCHEMA_LOCK)
            existing = set(inspect(conn).get_table_names())
            stored_version = SCHEMA_VERSION
            if meta_table.name in existing:
                stored_version = self._check_version(conn)
            else:
                foreign = sorted(existing & _TABLE_NAMES)
                if foreign:
                    raise StorageError(
                        f"cannot open storage {self.url}: it already has table(s) "
                        f"{', '.join(foreign)} that nasflow did not create"
                    )
            # Migrations add tables (create_all does that) and trials columns; all of it happens in this
            # transaction, so a failed upgrade leaves the old database as it was. The database is then
            # stamped with the current version.
            if stored_version < SCHEMA_VERSION and trials_table.name in existing:
                self._add_trial_columns(conn)
            metadata.create_all(conn, checkfirst=True)
            if meta_table.name not in existing:
                conn.execute(insert(meta_table).values(key="schema_version", value=str(SCHEMA_VERSION)))
            elif stored_version < SCHEMA_VERSION:
                conn.execute(
                    update(meta_table)
                    .where(meta_table.c.key == "schema_version")
                    .values(value=str(SCHEMA_VERSION))
                )

    @staticmethod
    def _add_trial_columns(conn: Connection) -> None:
        present = {column["name"] for column in inspect(conn).get_columns(trials_table.name)}
        for name in _ADDED_TRIAL_COLUMNS:
            if name in present:
                continue
            column = trials_table.c[name]
            ddl = f"ALTER TABLE {trials_table.name} ADD COLUMN {name} {column.type.compile(conn.dialect)}"
            if column.server_default is not None:
                ddl += f" DEFAULT {column.server_default.arg.text}"  # type: ignore[attr-defined]
            if not column.nullable:
                ddl += " NOT NULL"
            conn.exec_driver_sql(ddl)

    def _check_version(self, conn: Connection) -> int:
        stored = conn.execute(
            select(meta_table.c.value).where(meta_table.c.key == "schema_version")
        ).scalar_one_or_none()
        if stored is None or not stored.isdigit():
            raise StorageError(f"cannot open storage {self.url}: its schema version {stored!r} is unreadable")
        if int(stored) > SCHEMA_VERSION:
            raise StorageError(
                f"cannot open storage {self.url}: it was written by a newer nasflow (schema "
                f"version {stored}); this version reads schema version {SCHEMA_VERSION}, so upgrade nasflow"
            )
        return int(stored)

    # ----------------------------------------------------------------- studies

    @staticmethod
    def _study_exists(conn: Connection, study_id: int, lock: bool = False) -> Any:
        query = _LOCK_STUDY if lock else _STUDY_BY_ID
        row = conn.execute(query, {"b_study": study_id}).first()
        if row is None:
            raise no_study_id(study_id)
        return row

    def create_study(self, name: str, config: dict[str, Any]) -> StudyRecord:
        check_study_name(name)
        config_json = dump_json(config, "the study config")
        created_at = utc_now()
        with self._transaction(write=True) as conn:
            if conn.execute(_STUDY_BY_NAME, {"b_name": name}).first() is not None:
                raise StudyExistsError(f"a study named {name!r} already exists")
            try:
                result = conn.execute(
                    _INSERT_STUDY, {"name": name, "config": config_json, "created_at": created_at}
                )
            except IntegrityError as exc:  # another process created it between the check and insert
                raise StudyExistsError(f"a study named {name!r} already exists") from exc
            study_id = int(result.inserted_primary_key[0])  # type: ignore[index]
        return StudyRecord(study_id, name, load_json(config_json), created_at)

    def load_study(self, name: str) -> StudyRecord:
        with self._transaction(write=False) as conn:
            row = conn.execute(_STUDY_BY_NAME, {"b_name": name}).first()
            if row is None:
                raise study_not_found(name, conn.execute(_STUDY_NAMES).scalars())
        return StudyRecord(row.study_id, row.name, load_json(row.config), row.created_at)

    def study_names(self) -> list[str]:
        with self._transaction(write=False) as conn:
            return list(conn.execute(_STUDY_NAMES).scalars())

    # ----------------------------------------------------------------- trials

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
        arch_str, canonical = str(arch_str), str(canonical)
        driver = check_driver(driver)
        budget = check_budget(budget)
        with self._transaction(write=True) as conn:
            # the study's row lock (or SQLite's write lock) makes count-then-insert one atomic step
            study = self._study_exists(conn, study_id, lock=True)
            if budget is not None:
                used = int(conn.execute(_BUDGET_USED, {"b_study": study_id}).scalar_one())
                if used >= budget:
                    raise budget_reached(study.name, study_id, budget)
            number = int(conn.execute(_NEXT_NUMBER, {"b_study": study_id}).scalar_one())
            started_at = utc_now()
            result = conn.execute(
                _INSERT_TRIAL,
                {
                    "study_id": study_id,
                    "number": number,
                    "arch": arch_json,
                    "arch_str": arch_str,
                    "canonical": canonical,
                    "state": _RUNNING,
                    "metrics": "{}",
                    "started_at": started_at,
                    "fidelity": fidelity_json,
                    "driver": driver,
                    "heartbeat_at": started_at,
                    "attempts": 1,
                },
            )
            trial_id = int(result.inserted_primary_key[0])  # type: ignore[index]
        return TrialRecord(
            trial_id=trial_id,
            number=number,
            arch=load_json(arch_json),
            arch_str=arch_str,
            canonical=canonical,
            state=TrialState.RUNNING,
            metrics={},
            intermediate={},
            error=None,
            started_at=started_at,
            finished_at=None,
            fidelity=load_json(fidelity_json),
            driver=driver,
            heartbeat_at=started_at,
            attempts=1,
        )

    @staticmethod
    def _running_trial(conn: Connection, trial_id: int) -> Any:
        row = conn.execute(_TRIAL_STATUS, {"b_trial": trial_id}).first()
        if row is None:
            raise StorageError(f"no trial with id {trial_id}")
        if row.state != _RUNNING:
            raise not_running(trial_id, row.number, TrialState(row.state))
        return row

    def report_intermediate(self, trial_id: int, step: int, metrics: dict[str, float]) -> None:
        metrics_json = dump_json(clean_metrics(metrics, "intermediate metrics"), "intermediate metrics")
        step = int(step)
        with self._transaction(write=True) as conn:
            self._running_trial(conn, trial_id)
            # delete + insert is the portable upsert; the write transaction keeps it atomic
            conn.execute(_DELETE_STEP, {"b_trial": trial_id, "b_step": step})
            conn.execute(_INSERT_STEP, {"trial_id": trial_id, "step": step, "metrics": metrics_json})

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
        metrics_json = dump_json(clean_metrics(metrics), "metrics")
        state_json = None if strategy_state is None else dump_json(strategy_state, "the strategy state")
        with self._transaction(write=True) as conn:
            row = self._running_trial(conn, trial_id)
            if study_id is not None and study_id != row.study_id:
                raise StorageError(f"trial id {trial_id} belongs to study {row.study_id}, not {study_id}")
            result = conn.execute(
                _FINISH_TRIAL,
                {
                    "b_trial": trial_id,
                    "b_state": state.value,
                    "b_metrics": metrics_json,
                    "b_error": error,
                    "b_finished": utc_now(),
                },
            )
            if result.rowcount != 1:  # only possible without a database-wide write lock
                raise StorageError(f"trial {row.number} (id {trial_id}) was finished by someone else")
            if state_json is not None:
                self._put_strategy_state(conn, row.study_id, state_json)

    def get_trials(self, study_id: int) -> list[TrialRecord]:
        with self._transaction(write=False) as conn:
            self._study_exists(conn, study_id)
            rows = conn.execute(_STUDY_TRIALS, {"b_study": study_id}).all()
            steps = conn.execute(_STUDY_STEPS, {"b_study": study_id}).all()
        intermediate: dict[int, dict[int, dict[str, float]]] = {}
        for trial_id, step, metrics in steps:
            intermediate.setdefault(trial_id, {})[step] = load_json(metrics)
        return [
            TrialRecord(
                trial_id=row.trial_id,
                number=row.number,
                arch=load_json(row.arch),
                arch_str=row.arch_str,
                canonical=row.canonical,
                state=TrialState(row.state),
                metrics=load_json(row.metrics),
                intermediate=intermediate.get(row.trial_id, {}),
                error=row.error,
                started_at=row.started_at,
                finished_at=row.finished_at,
                fidelity=load_json(row.fidelity),
                driver=row.driver,
                heartbeat_at=row.heartbeat_at,
                attempts=row.attempts,
            )
            for row in rows
        ]

    def fail_running_trials(self, study_id: int, error: str) -> list[int]:
        with self._transaction(write=True) as conn:
            self._study_exists(conn, study_id, lock=True)
            numbers = list(conn.execute(_RUNNING_NUMBERS, {"b_study": study_id}).scalars())
            if numbers:
                conn.execute(_FAIL_RUNNING, {"b_study": study_id, "b_error": error, "b_finished": utc_now()})
        return numbers

    def heartbeat(self, trial_ids: Sequence[int]) -> None:
        ids = sorted({int(t) for t in trial_ids})
        if not ids:
            return
        chunks = [ids[start : start + _IDS_PER_STATEMENT] for start in range(0, len(ids), _IDS_PER_STATEMENT)]
        with self._transaction(write=True) as conn:
            for chunk in chunks:
                conn.execute(_LOCK_BEATING, {"b_trials": chunk})
            # read the clock only once the rows are ours: a fail_stale_trials that committed meanwhile
            # is then already visible, and one that comes later sees a heartbeat no older than its cut-off
            now = utc_now()
            for chunk in chunks:
                conn.execute(_HEARTBEAT, {"b_trials": chunk, "b_now": now})

    def fail_stale_trials(
        self, study_id: int, error: str, *, heartbeat_before: datetime, drivers: Sequence[str] = ()
    ) -> list[int]:
        values = {
            "b_study": study_id,
            "b_before": check_utc(heartbeat_before, "heartbeat_before"),
            "b_drivers": check_drivers(drivers),
            "b_error": error,
            "b_finished": utc_now(),
        }
        with self._transaction(write=True) as conn:
            self._study_exists(conn, study_id)
            conn.execute(_RUNNING_NUMBERS, {"b_study": study_id})  # locks the candidates, see above
            if conn.dialect.update_returning:
                numbers = list(conn.execute(_FAIL_STALE_RETURNING, values).scalars())
            else:
                # SQLite before 3.35 has no RETURNING; its write lock keeps this pair atomic
                numbers = list(conn.execute(_STALE_NUMBERS, values).scalars())
                conn.execute(_FAIL_STALE, values)
        return sorted(numbers)

    def retry_trial(self, trial_id: int) -> int:
        with self._transaction(write=True) as conn:
            row = self._running_trial(conn, trial_id)
            result = conn.execute(_RETRY_TRIAL, {"b_trial": trial_id, "b_now": utc_now()})
            if result.rowcount != 1:  # only possible without a database-wide write lock
                raise StorageError(f"trial {row.number} (id {trial_id}) was finished by someone else")
            conn.execute(_DELETE_TRIAL_STEPS, {"b_trial": trial_id})
            return int(conn.execute(_TRIAL_ATTEMPTS, {"b_trial": trial_id}).scalar_one())

    # ----------------------------------------------------------------- strategy state

    @staticmethod
    def _put_strategy_state(conn: Connection, study_id: int, state_json: str) -> None:
        now = utc_now()
        result = conn.execute(_UPDATE_STATE, {"b_study": study_id, "b_state": state_json, "b_updated": now})
        if result.rowcount == 0:
            conn.execute(_INSERT_STATE, {"study_id": study_id, "state": state_json, "updated_at": now})

    def save_strategy_state(self, study_id: int, state: dict[str, Any]) -> None:
        state_json = dump_json(state, "the strategy state")
        with self._transaction(write=True) as conn:
            self._study_exists(conn, study_id)
            self._put_strategy_state(conn, study_id, state_json)

    def load_strategy_state(self, study_id: int) -> dict[str, Any] | None:
        with self._transaction(write=False) as conn:
            text = conn.execute(_LOAD_STATE, {"b_study": study_id}).scalar_one_or_none()
            if text is None:
                self._study_exists(conn, study_id)
                return None
        return load_json(text)

    # ----------------------------------------------------------------- results

    def add_result(self, study_id: int, kind: str, payload: dict[str, Any]) -> ResultRecord:
        kind = check_result_kind(kind)
        payload_json = dump_json(payload, "the result")
        now = utc_now()
        with self._transaction(write=True) as conn:
            self._study_exists(conn, study_id)
            values = {"study_id": study_id, "kind": kind, "payload": payload_json, "created_at": now}
            result_id = int(conn.execute(_INSERT_RESULT, values).inserted_primary_key[0])  # type: ignore[index]
        return ResultRecord(result_id, study_id, kind, load_json(payload_json), now)

    def get_results(self, study_id: int, kind: str | None = None) -> list[ResultRecord]:
        with self._transaction(write=False) as conn:
            self._study_exists(conn, study_id)
            rows = conn.execute(_STUDY_RESULTS, {"b_study": study_id}).all()
        return [
            ResultRecord(row.result_id, row.study_id, row.kind, load_json(row.payload), row.created_at)
            for row in rows
            if kind is None or row.kind == kind
        ]

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._engine.dispose()
