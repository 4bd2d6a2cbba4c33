"""The storage contract on the bundled stores, plus what only the SQL store promises."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from nasflow.errors import StorageError
from nasflow.storage import ExperimentStore, InMemoryStore, open_store
from nasflow.storage import sql as sql_module
from nasflow.storage.sql import SQLStore, metadata
from nasflow.testing.storage import StoreContract, concurrent_trial_numbers
from nasflow.trial import TrialState

#: set to a throwaway PostgreSQL database to run the contract there too; its tables are dropped
POSTGRES_URL = os.environ.get("NASFLOW_TEST_POSTGRES_URL")


def _sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'studies.db'}"


class TestInMemoryStore(StoreContract):
    def make_store(self, tmp_path: Path) -> ExperimentStore:
        return InMemoryStore()


class TestSQLiteFileStore(StoreContract):
    def make_store(self, tmp_path: Path) -> ExperimentStore:
        return open_store(_sqlite_url(tmp_path))

    def reopen_store(self, tmp_path: Path) -> ExperimentStore:
        return open_store(_sqlite_url(tmp_path))


class TestSQLiteMemoryStore(StoreContract):
    def make_store(self, tmp_path: Path) -> ExperimentStore:
        return open_store("sqlite://")


@pytest.mark.skipif(POSTGRES_URL is None, reason="NASFLOW_TEST_POSTGRES_URL is not set")
class TestPostgresStore(StoreContract):
    def make_store(self, tmp_path: Path) -> ExperimentStore:
        assert POSTGRES_URL is not None
        store = open_store(POSTGRES_URL)
        assert isinstance(store, SQLStore)
        # every test starts from an empty database
        metadata.drop_all(store._engine)
        store.close()
        return open_store(POSTGRES_URL)

    def reopen_store(self, tmp_path: Path) -> ExperimentStore:
        assert POSTGRES_URL is not None
        return open_store(POSTGRES_URL)


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
            "2",
        )
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


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
        conn.execute("UPDATE nasflow_meta SET value = '3' WHERE key = 'schema_version'")
    with pytest.raises(StorageError, match="newer nasflow"):
        open_store(f"sqlite:///{path}")


def test_version_1_database_is_migrated_and_keeps_its_trials(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    store = open_store(f"sqlite:///{path}")
    study = store.create_study("old", {"seed": 3})
    trial = store.create_trial(study.study_id, {"op": "a"}, "a", "a")
    store.finish_trial(trial.trial_id, TrialState.COMPLETE, {"acc": 0.5})
    store.close()
    # what nasflow 0.1 with schema version 1 wrote: no study_results table
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE study_results")
        conn.execute("UPDATE nasflow_meta SET value = '1' WHERE key = 'schema_version'")
    store = open_store(f"sqlite:///{path}")
    try:
        loaded = store.load_study("old")
        assert [t.metrics for t in store.get_trials(loaded.study_id)] == [{"acc": 0.5}]
        store.add_result(loaded.study_id, "export", {"test_accuracy": 99.0})
        assert [r.payload for r in store.get_results(loaded.study_id)] == [{"test_accuracy": 99.0}]
    finally:
        store.close()
    assert "study_results" in _tables(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM nasflow_meta WHERE key = 'schema_version'").fetchone() == (
            "2",
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
