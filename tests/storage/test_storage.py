"""The storage contract on the bundled stores, plus what only the SQL store promises.

PostgreSQL: set NASFLOW_TEST_POSTGRES_URL to a throw-away database (its nasflow tables are dropped);
``eval "$(scripts/start_test_postgres.sh)"`` starts such a server. CI starts one (see ``.ci/run``), so
there a missing URL fails the PostgreSQL tests; elsewhere (``CI`` unset) they are skipped.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import event, inspect, text, update
from sqlalchemy.exc import OperationalError

from nasflow.errors import StorageError
from nasflow.storage import ExperimentStore, InMemoryStore, open_store
from nasflow.storage import sql as sql_module
from nasflow.storage.sql import SQLStore, metadata, trials_table
from nasflow.testing.storage import StoreContract, concurrent_trial_numbers
from nasflow.trial import INTERRUPTED, TrialState

#: set to a throwaway PostgreSQL database to run the contract there too; its tables are dropped
POSTGRES_URL = os.environ.get("NASFLOW_TEST_POSTGRES_URL")


def _sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'studies.db'}"


class TestInMemoryStore(StoreContract):
    def make_store(self, tmp_path: Path) -> ExperimentStore:
        return InMemoryStore()


def _postgres_url() -> str:
    if POSTGRES_URL:
        return POSTGRES_URL
    if os.environ.get("CI"):
        pytest.fail(
            "NASFLOW_TEST_POSTGRES_URL is required in CI (.ci/run starts a server with "
            "scripts/start_test_postgres.sh)"
        )
    pytest.skip(
        'NASFLOW_TEST_POSTGRES_URL is not set (eval "$(scripts/start_test_postgres.sh)" starts a server)'
    )


def _empty_postgres() -> str:
    """The test PostgreSQL database's URL, after dropping every nasflow table in it."""
    url = _postgres_url()
    engine, _ = sql_module._make_engine(url)
    try:
        metadata.drop_all(engine)
    finally:
        engine.dispose()
    return url


class TestSQLiteFileStore(StoreContract):
    def make_store(self, tmp_path: Path) -> ExperimentStore:
        return open_store(_sqlite_url(tmp_path))

    def reopen_store(self, tmp_path: Path) -> ExperimentStore:
        return open_store(_sqlite_url(tmp_path))

    def shared_url(self, tmp_path: Path) -> str:
        return _sqlite_url(tmp_path)


class TestSQLiteMemoryStore(StoreContract):
    def make_store(self, tmp_path: Path) -> ExperimentStore:
        return open_store("sqlite://")


class TestPostgresStore(StoreContract):
    @pytest.fixture(autouse=True)
    def _needs_postgres(self) -> None:
        _postgres_url()

    def make_store(self, tmp_path: Path) -> ExperimentStore:
        # every test starts from an empty database
        return open_store(_empty_postgres())

    def reopen_store(self, tmp_path: Path) -> ExperimentStore:
        return open_store(_postgres_url())

    def shared_url(self, tmp_path: Path) -> str:
        return _postgres_url()


# ----------------------------------------------------------------- open_store


def test_open_store_kinds(tmp_path: Path) -> None:
    assert isinstance(open_store(None), InMemoryStore)
    assert isinstance(open_store("memory"), InMemoryStore)
    for url in ("sqlite://", "sqlite:///:memory:", _sqlite_url(tmp_path)):
        store = open_store(url)
        assert isinstance(store, SQLStore)
        store.close()


def test_relative_sqlite_path_is_relative_to_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    open_store("sqlite:///rel.db").close()
    assert (tmp_path / "rel.db").is_file()


def test_in_memory_sqlite_stores_are_separate() -> None:
    first, second = open_store("sqlite://"), open_store("sqlite://")
    first.create_study("only-here", {})
    assert second.study_names() == []
    first.close()
    second.close()


@pytest.mark.parametrize("url", ["mysql://bob:secret@host/db", "nasflow.db", "redis://x", "sqlite", ""])
def test_unknown_url_names_allowed_forms(url: str) -> None:
    with pytest.raises(StorageError) as info:
        open_store(url)
    message = str(info.value)
    assert "sqlite:///path/to/file.db" in message and "postgresql://" in message and "memory" in message
    assert "secret" not in message


def test_bare_db_file_name_gets_a_hint() -> None:
    with pytest.raises(StorageError, match="sqlite:///runs.db"):
        open_store("runs.db")


def test_missing_folder_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such"
    with pytest.raises(StorageError) as info:
        open_store(f"sqlite:///{missing / 'studies.db'}")
    assert str(missing) in str(info.value) and "does not exist" in str(info.value)
    assert not missing.exists()


def test_garbage_file_is_reported_as_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not SQLite\x00\xff" * 500)
    with pytest.raises(StorageError) as info:
        open_store(f"sqlite:///{path}")
    message = str(info.value)
    assert message.startswith("cannot open storage") and "not a database" in message
    assert "Traceback" not in message and "sqlalche.me" not in message
    assert path.read_bytes().startswith(b"this is not SQLite")


def test_postgres_without_driver_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sql_module.importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(StorageError) as info:
        open_store("postgresql://bob:secret@localhost/nasflow")
    message = str(info.value)
    assert "pip install 'nasflow[postgres]'" in message and "psycopg" in message
    assert "secret" not in message


def test_postgres_with_named_missing_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise ModuleNotFoundError("No module named 'psycopg'")

    monkeypatch.setattr(sql_module, "create_engine", refuse)
    with pytest.raises(StorageError, match=r"pip install 'nasflow\[postgres\]'"):
        open_store("postgresql+psycopg://bob@localhost/nasflow")


# ----------------------------------------------------------------- schema


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_schema_tables_and_version(tmp_path: Path) -> None:
    path = tmp_path / "studies.db"
    open_store(f"sqlite:///{path}").close()
    assert {
        "nasflow_meta",
        "studies",
        "trials",
        "intermediate_values",
        "strategy_states",
        "study_results",
    } <= _tables(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM nasflow_meta WHERE key = 'schema_version'").fetchone() == (
            "3",
        )
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        columns = {row[1]: row for row in conn.execute("PRAGMA table_info(trials)")}
    # cid, name, type, notnull, default, pk
    assert columns["driver"][2:5] == ("VARCHAR(128)", 0, None)
    assert columns["heartbeat_at"][2:5] == ("DATETIME", 0, None)
    assert columns["attempts"][2:5] == ("INTEGER", 1, "1")


def test_trial_numbers_are_unique_in_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "studies.db"
    store = open_store(f"sqlite:///{path}")
    study = store.create_study("s", {})
    store.create_trial(study.study_id, {}, "a", "a")
    store.close()
    with sqlite3.connect(path) as conn, pytest.raises(sqlite3.IntegrityError):
        conn.execute(
            "INSERT INTO trials (study_id, number, arch, arch_str, canonical, state, metrics, started_at) "
            "VALUES (?, 0, '{}', 'b', 'b', 'RUNNING', '{}', '2024-01-01 00:00:00')",
            (study.study_id,),
        )


def test_connection_settings(tmp_path: Path) -> None:
    store = open_store(_sqlite_url(tmp_path))
    assert isinstance(store, SQLStore)
    with store._engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    store.close()


def test_values_are_stored_as_json_text(tmp_path: Path) -> None:
    path = tmp_path / "studies.db"
    store = open_store(f"sqlite:///{path}")
    study = store.create_study("s", {"seed": 1})
    trial = store.create_trial(study.study_id, {"ops": ["a", "b"]}, "a|b", "ab")
    store.finish_trial(trial.trial_id, TrialState.COMPLETE, {"acc": float("nan")}, strategy_state={"g": [1]})
    store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT config FROM studies").fetchone() == ('{"seed":1}',)
        assert conn.execute("SELECT arch, metrics FROM trials").fetchone() == (
            '{"ops":["a","b"]}',
            '{"acc":NaN}',
        )
        assert conn.execute("SELECT state FROM strategy_states").fetchone() == ('{"g":[1]}',)


def test_database_of_another_program_gets_our_tables(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE inventory (item TEXT, count INTEGER)")
        conn.execute("INSERT INTO inventory VALUES ('bolts', 12)")
    store = open_store(f"sqlite:///{path}")
    store.create_study("s", {})
    store.close()
    assert {"inventory", "studies", "trials"} <= _tables(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT * FROM inventory").fetchall() == [("bolts", 12)]


def test_foreign_table_with_our_name_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE studies (student TEXT)")
    with pytest.raises(StorageError, match="studies.*did not create"):
        open_store(f"sqlite:///{path}")
    assert _tables(path) == {"studies"}


def test_newer_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "studies.db"
    open_store(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE nasflow_meta SET value = '4' WHERE key = 'schema_version'")
    with pytest.raises(StorageError, match="newer nasflow.*version 4"):
        open_store(f"sqlite:///{path}")


# The tables older nasflow versions created, as SQLAlchemy wrote them; {serial} and {time} are the
# column types that differ between SQLite and PostgreSQL.
_OLD_TABLES = [
    'CREATE TABLE nasflow_meta ("key" VARCHAR(64) NOT NULL, value TEXT NOT NULL, PRIMARY KEY ("key"))',
    "CREATE TABLE studies (study_id {serial} NOT NULL, name VARCHAR(512) NOT NULL, config TEXT NOT NULL, "
    "created_at {time} NOT NULL, PRIMARY KEY (study_id), UNIQUE (name))",
    "CREATE TABLE strategy_states (study_id INTEGER NOT NULL, state TEXT NOT NULL, "
    "updated_at {time} NOT NULL, PRIMARY KEY (study_id), "
    "FOREIGN KEY(study_id) REFERENCES studies (study_id))",
    "CREATE TABLE trials (trial_id {serial} NOT NULL, study_id INTEGER NOT NULL, number INTEGER NOT NULL, "
    "arch TEXT NOT NULL, arch_str TEXT NOT NULL, canonical TEXT NOT NULL, state VARCHAR(16) NOT NULL, "
    "metrics TEXT NOT NULL, error TEXT, started_at {time} NOT NULL, finished_at {time},{fidelity} "
    "PRIMARY KEY (trial_id), CONSTRAINT uq_trials_study_number UNIQUE (study_id, number), "
    "FOREIGN KEY(study_id) REFERENCES studies (study_id))",
    "CREATE INDEX ix_trials_study_state ON trials (study_id, state)",
    "CREATE TABLE intermediate_values (trial_id INTEGER NOT NULL, step INTEGER NOT NULL, "
    "metrics TEXT NOT NULL, PRIMARY KEY (trial_id, step), "
    "FOREIGN KEY(trial_id) REFERENCES trials (trial_id))",
]
#: schema version 2 (and late version 1 files) had a fidelity column in trials
_OLD_FIDELITY = " fidelity TEXT NOT NULL,"
#: schema version 2 added study_results
_OLD_RESULTS = [
    "CREATE TABLE study_results (result_id {serial} NOT NULL, study_id INTEGER NOT NULL, "
    "kind VARCHAR(64) NOT NULL, payload TEXT NOT NULL, created_at {time} NOT NULL, PRIMARY KEY (result_id), "
    "FOREIGN KEY(study_id) REFERENCES studies (study_id))",
    "CREATE INDEX ix_results_study_kind ON study_results (study_id, kind)",
]
_OLD_ROWS = [
    "INSERT INTO studies (name, config, created_at) "
    "VALUES ('old', '{{\"seed\":3}}', '2024-05-01 10:00:00.000000')",
    "INSERT INTO studies (name, config, created_at) VALUES ('older', '{{}}', '2024-05-01 11:00:00.000000')",
    "INSERT INTO trials (study_id, number, arch, arch_str, canonical, state, metrics, error, started_at, "
    "finished_at{fidelity_column}) SELECT study_id, 0, '{{\"op\":\"conv\"}}', 'conv', 'c0', 'COMPLETE', "
    "'{{\"acc\":0.5,\"loss\":NaN}}', NULL, '2024-05-01 10:01:00.000000', '2024-05-01 10:02:30.250000'"
    "{fidelity_value} FROM studies WHERE name = 'old'",
    "INSERT INTO trials (study_id, number, arch, arch_str, canonical, state, metrics, error, started_at, "
    "finished_at{fidelity_column}) SELECT study_id, 1, '{{\"op\":\"skip\"}}', 'skip', 'c1', 'PRUNED', "
    "'{{\"acc\":0.1}}', 'pruned at step 1', '2024-05-01 10:03:00.000000', '2024-05-01 10:04:00.000000'"
    "{fidelity_value} FROM studies WHERE name = 'old'",
    "INSERT INTO trials (study_id, number, arch, arch_str, canonical, state, metrics, error, started_at, "
    "finished_at{fidelity_column}) SELECT study_id, 2, '{{\"op\":\"pool\"}}', 'pool', 'c2', 'RUNNING', "
    "'{{}}', NULL, '2024-05-01 10:05:00.000000', NULL{fidelity_value} FROM studies WHERE name = 'old'",
    "INSERT INTO intermediate_values (trial_id, step, metrics) "
    "SELECT trial_id, 0, '{{\"acc\":0.25}}' FROM trials WHERE number = 0",
    "INSERT INTO intermediate_values (trial_id, step, metrics) "
    "SELECT trial_id, 1, '{{\"acc\":0.5}}' FROM trials WHERE number = 0",
    "INSERT INTO strategy_states (study_id, state, updated_at) "
    "SELECT study_id, '{{\"gen\":[1,2]}}', '2024-05-01 10:06:00.000000' FROM studies WHERE name = 'old'",
]
_OLD_RESULT_ROW = (
    "INSERT INTO study_results (study_id, kind, payload, created_at) "
    "SELECT study_id, 'export', '{{\"test_accuracy\":97.5}}', '2024-05-02 09:00:00.000000' FROM studies "
    "WHERE name = 'old'"
)
#: (stored version, trials have fidelity, study_results exists) of the layouts nasflow wrote
_OLD_LAYOUTS = {"v1": (1, False, False), "v1-fidelity": (1, True, False), "v2": (2, True, True)}


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


@contextmanager
def _old_database(tmp_path: Path, backend: str, layout: str) -> Iterator[str]:
    """A database holding studies in an old ``layout``, written with that version's DDL; yields its URL."""
    version, fidelity, results = _OLD_LAYOUTS[layout]
    url = _sqlite_url(tmp_path) if backend == "sqlite" else _empty_postgres()
    types = {"serial": "INTEGER", "time": "DATETIME"}
    if backend == "postgresql":
        types = {"serial": "SERIAL", "time": "TIMESTAMP WITHOUT TIME ZONE"}
    columns = {
        "fidelity_column": ", fidelity" if fidelity else "",
        "fidelity_value": ", '{\"epochs\":3.0}'" if fidelity else "",
    }
    statements = [s.format(**types, fidelity=_OLD_FIDELITY if fidelity else "") for s in _OLD_TABLES]
    if results:
        statements += [s.format(**types) for s in _OLD_RESULTS]
    statements += [s.format(**columns) for s in _OLD_ROWS]
    if results:
        statements.append(_OLD_RESULT_ROW.format())
    statements.append(f"INSERT INTO nasflow_meta (\"key\", value) VALUES ('schema_version', '{version}')")
    engine, _ = sql_module._make_engine(url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)
    finally:
        engine.dispose()
    try:
        yield url
    finally:
        if backend == "postgresql":
            _empty_postgres()


def _stored_version(url: str) -> str:
    engine, _ = sql_module._make_engine(url)
    try:
        with engine.connect() as conn:
            return str(conn.exec_driver_sql("SELECT value FROM nasflow_meta").scalar_one())
    finally:
        engine.dispose()


@pytest.mark.parametrize("layout", sorted(_OLD_LAYOUTS))
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_old_database_is_upgraded_in_place(tmp_path: Path, backend: str, layout: str) -> None:
    _, fidelity, results = _OLD_LAYOUTS[layout]
    with _old_database(tmp_path, backend, layout) as url:
        store = open_store(url)
        try:
            study = store.load_study("old")
            trials = store.get_trials(study.study_id)
            assert store.study_names() == ["old", "older"]
            assert study.config == {"seed": 3} and study.created_at == _utc("2024-05-01 10:00:00")
            assert store.load_strategy_state(study.study_id) == {"gen": [1, 2]}
            expected_results = [{"test_accuracy": 97.5}] if results else []
            assert [r.payload for r in store.get_results(study.study_id)] == expected_results
            # every old trial intact; the new columns hold their defaults
            assert [(t.number, t.arch, t.arch_str, t.canonical, t.state) for t in trials] == [
                (0, {"op": "conv"}, "conv", "c0", TrialState.COMPLETE),
                (1, {"op": "skip"}, "skip", "c1", TrialState.PRUNED),
                (2, {"op": "pool"}, "pool", "c2", TrialState.RUNNING),
            ]
            assert trials[0].metrics["acc"] == 0.5 and math.isnan(trials[0].metrics["loss"])
            assert trials[0].intermediate == {0: {"acc": 0.25}, 1: {"acc": 0.5}}
            assert [t.error for t in trials] == [None, "pruned at step 1", None]
            assert [t.started_at for t in trials] == [
                _utc("2024-05-01 10:01:00"),
                _utc("2024-05-01 10:03:00"),
                _utc("2024-05-01 10:05:00"),
            ]
            assert [t.finished_at for t in trials] == [
                _utc("2024-05-01 10:02:30.250000"),
                _utc("2024-05-01 10:04:00"),
                None,
            ]
            assert all(t.fidelity == ({"epochs": 3.0} if fidelity else {}) for t in trials)
            assert [(t.driver, t.heartbeat_at, t.attempts) for t in trials] == [(None, None, 1)] * 3
            # the upgraded database takes new trials, budgets and the stale check (which falls back to
            # started_at for trials without a heartbeat)
            new = store.create_trial(study.study_id, {"op": "new"}, "new", "new", driver="d", budget=4)
            assert (new.number, new.driver, new.attempts) == (3, "d", 1)
            cut = _utc("2024-05-01 10:06:00")
            assert store.fail_stale_trials(study.study_id, INTERRUPTED, heartbeat_before=cut) == [2]
            assert store.create_trial(study.study_id, {}, "x", "x", budget=4).number == 4
            assert store.retry_trial(new.trial_id) == 2
        finally:
            store.close()
        assert _stored_version(url) == "3"
        # opening it again changes nothing
        store = open_store(url)
        try:
            again = store.get_trials(store.load_study("old").study_id)
        finally:
            store.close()
        assert [(t.number, t.state, t.attempts) for t in again] == [
            (0, TrialState.COMPLETE, 1),
            (1, TrialState.PRUNED, 1),
            (2, TrialState.FAILED, 1),
            (3, TrialState.RUNNING, 2),
            (4, TrialState.RUNNING, 1),
        ]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_failed_upgrade_leaves_the_old_database_as_it_was(
    tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _old_database(tmp_path, backend, "v1") as url:

        def crash(*args: object, **kwargs: object) -> None:
            raise OperationalError("CREATE TABLE study_results", {}, Exception("disk full"))

        # the trials columns are added first; creating the new table then fails
        monkeypatch.setattr(metadata, "create_all", crash)
        with pytest.raises(StorageError, match="disk full"):
            open_store(url)
        monkeypatch.undo()
        engine, _ = sql_module._make_engine(url)
        try:
            with engine.connect() as conn:
                columns = {c["name"] for c in inspect(conn).get_columns("trials")}
                tables = set(inspect(conn).get_table_names())
        finally:
            engine.dispose()
        assert "driver" not in columns and "fidelity" not in columns
        assert "study_results" not in tables
        assert _stored_version(url) == "1"
        store = open_store(url)  # and a later attempt succeeds
        store.close()
        assert _stored_version(url) == "3"


def test_fail_stale_trials_without_returning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # SQLite before 3.35 has no UPDATE ... RETURNING; the store then selects and updates under its lock
    store = open_store(_sqlite_url(tmp_path))
    assert isinstance(store, SQLStore)
    monkeypatch.setattr(store._engine.dialect, "update_returning", False)
    study = store.create_study("s", {})
    for driver in ("a", "b", "a"):
        store.create_trial(study.study_id, {}, "x", "x", driver=driver)
    long_ago = datetime(2000, 1, 1, tzinfo=timezone.utc)
    assert store.fail_stale_trials(study.study_id, "gone", heartbeat_before=long_ago, drivers=["a"]) == [0, 2]
    assert [t.state for t in store.get_trials(study.study_id)] == [
        TrialState.FAILED,
        TrialState.RUNNING,
        TrialState.FAILED,
    ]
    soon = datetime.now(timezone.utc) + timedelta(seconds=5)
    assert store.fail_stale_trials(study.study_id, "gone", heartbeat_before=soon) == [1]
    store.close()


def test_budget_is_counted_in_sql(tmp_path: Path) -> None:
    # the count runs in the database (one COUNT query), not over trials loaded into Python
    store = open_store(_sqlite_url(tmp_path))
    assert isinstance(store, SQLStore)
    study = store.create_study("s", {})
    statements: list[str] = []

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    event.listen(store._engine, "before_cursor_execute", record)
    store.create_trial(study.study_id, {}, "a", "a", budget=3)
    event.remove(store._engine, "before_cursor_execute", record)
    store.close()
    counts = [s for s in statements if "count(*)" in s.lower()]
    assert len(counts) == 1 and "substr" in counts[0].lower()
    assert not any(
        "SELECT trials.trial_id, trials.study_id, trials.number, trials.arch" in s for s in statements
    )


# ----------------------------------------------------------------- atomicity and concurrency


def test_finish_trial_and_strategy_state_are_one_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(_sqlite_url(tmp_path))
    study = store.create_study("s", {})
    trial = store.create_trial(study.study_id, {}, "a", "a")
    store.save_strategy_state(study.study_id, {"gen": 1})

    def crash(*args: object) -> None:
        raise OperationalError("UPDATE strategy_states", {}, Exception("disk I/O error"))

    monkeypatch.setattr(SQLStore, "_put_strategy_state", staticmethod(crash))
    with pytest.raises(StorageError, match="disk I/O error"):
        store.finish_trial(trial.trial_id, TrialState.COMPLETE, {"acc": 1.0}, strategy_state={"gen": 2})
    monkeypatch.undo()
    (stored,) = store.get_trials(study.study_id)
    assert stored.state is TrialState.RUNNING and stored.metrics == {} and stored.finished_at is None
    assert store.load_strategy_state(study.study_id) == {"gen": 1}
    store.close()


def test_two_processes_share_trial_numbers(tmp_path: Path) -> None:
    url = _sqlite_url(tmp_path)
    store = open_store(url)
    store.create_study("shared", {})
    store.close()
    trials = concurrent_trial_numbers(url, "shared", processes=2, trials_each=50)
    assert [t.number for t in trials] == list(range(100))
    assert len({t.trial_id for t in trials}) == 100
    per_worker = [sum(1 for t in trials if t.arch["worker"] == w) for w in (0, 1)]
    assert per_worker == [50, 50]
    # each process saw its own trials in creation order
    for worker in (0, 1):
        mine = [t.arch["i"] for t in trials if t.arch["worker"] == worker]
        assert mine == list(range(50))


@pytest.mark.parametrize("url_kind", ["file", "memory"])
def test_threads_share_one_store(tmp_path: Path, url_kind: str) -> None:
    store = open_store(_sqlite_url(tmp_path) if url_kind == "file" else "sqlite://")
    study = store.create_study("s", {})
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(20):
                trial = store.create_trial(study.study_id, {}, "a", "a")
                store.report_intermediate(trial.trial_id, 0, {"acc": 0.1})
                store.finish_trial(trial.trial_id, TrialState.COMPLETE, {"acc": 0.2}, strategy_state={"n": 1})
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    trials = store.get_trials(study.study_id)
    assert [t.number for t in trials] == list(range(80))
    assert all(t.state is TrialState.COMPLETE for t in trials)
    store.close()


def test_reader_does_not_block_on_writer(tmp_path: Path) -> None:
    url = _sqlite_url(tmp_path)
    writer = open_store(url)
    study = writer.create_study("s", {})
    writer.create_trial(study.study_id, {}, "a", "a")
    reader = open_store(url)
    assert isinstance(writer, SQLStore)
    # hold the write lock, as another process in the middle of a transaction would
    with writer._writer.connect() as conn:
        conn.execute(text("UPDATE trials SET error = 'x'"))  # begins with BEGIN IMMEDIATE
        assert [t.error for t in reader.get_trials(study.study_id)] == [None]
        conn.rollback()
    reader.close()
    writer.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_heartbeat_that_commits_first_keeps_its_trial_alive(tmp_path: Path, backend: str) -> None:
    # Another driver's heartbeat holds trial 0's row when the stale check starts: the check must wait
    # for it and then judge the trial by the new heartbeat (a select-then-update would fail it).
    url = _sqlite_url(tmp_path) if backend == "sqlite" else _empty_postgres()
    store = open_store(url)
    other = open_store(url)
    assert isinstance(other, SQLStore)
    try:
        study = store.create_study("s", {})
        first, _ = (store.create_trial(study.study_id, {}, "a", "a") for _ in range(2))
        time.sleep(0.002)
        cut = datetime.now(timezone.utc)
        result: list[list[int]] = []
        with other._writer.connect() as conn:
            # the uncommitted update holds the row (on SQLite, the database) until the commit below
            beat = update(trials_table).where(trials_table.c.trial_id == first.trial_id)
            conn.execute(beat.values(heartbeat_at=datetime.now(timezone.utc)))

            def check() -> None:
                result.append(store.fail_stale_trials(study.study_id, "stale", heartbeat_before=cut))

            checker = threading.Thread(target=check)
            checker.start()
            checker.join(0.2)
            assert checker.is_alive(), "the stale check did not wait for the uncommitted heartbeat"
            conn.commit()
        checker.join(30)
        assert result == [[1]]
        assert [t.state for t in store.get_trials(study.study_id)] == [TrialState.RUNNING, TrialState.FAILED]
    finally:
        other.close()
        store.close()
