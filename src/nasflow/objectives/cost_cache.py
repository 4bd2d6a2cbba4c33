"""A cache of cost measurements, so that no architecture is profiled twice.

Entries are keyed by the architecture's canonical string and the measurement settings (device,
batch size, runtime, threads, plus a ``scope`` naming the space and input shape), and hold a dict of
metric values. The cache lives in memory and, given a path, also in a SQLite file: reopening the file
(or opening it from several worker processes at once) sees every entry written so far.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from contextlib import closing
from pathlib import Path
from typing import Any

from nasflow.errors import ConfigError, StorageError

_SCHEMA = "CREATE TABLE IF NOT EXISTS costs (key TEXT PRIMARY KEY, metrics TEXT NOT NULL)"
#: seconds a writer waits for another process's lock on the file
_LOCK_TIMEOUT = 60.0


def cost_key(
    canonical: str, *, device: str, batch_size: int, runtime: str, threads: int, scope: str = ""
) -> str:
    """The cache key of one architecture's measurement under these settings (a JSON list string).

    ``scope`` separates architectures whose canonical strings coincide but whose networks differ,
    e.g. the same genotype built for another input shape or by a differently configured space.
    """
    if not isinstance(canonical, str):
        raise ConfigError(f"the canonical architecture must be a string, got {type(canonical).__name__}")
    return json.dumps([scope, canonical, str(device), int(batch_size), str(runtime), int(threads)])


def _check_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    checked: dict[str, float] = {}
    for name, value in metrics.items():
        if not isinstance(name, str) or isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"cost metrics map names to numbers, got {name!r}: {value!r}")
        if math.isnan(float(value)):
            raise ConfigError(f"cost metric {name!r} is NaN; a failed measurement must not be cached")
        checked[name] = float(value)
    return checked


class CostCache:
    """Cost measurements by :func:`cost_key`, in memory and optionally in a SQLite file.

    Args:
        path: a SQLite file (created if missing) that keeps the entries across runs and shares them
            between processes; ``None`` keeps them in this object only.

    The object pickles (for worker processes) with its in-memory entries and its path; each process
    then reads and writes the same file, so a measurement made in one is found by the others.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = None if path is None else Path(path)
        self._entries: dict[str, dict[str, float]] = {}
        if self.path is not None:
            if self.path.is_dir():
                raise ConfigError(f"cost cache path {self.path} is a folder; give a file, e.g. costs.sqlite")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"cannot create the folder of cost cache {self.path}: {exc}") from None
            try:
                with closing(self._connect()) as connection, connection:
                    connection.execute(_SCHEMA)
            except sqlite3.DatabaseError as exc:
                raise StorageError(f"cannot use {self.path} as a cost cache (a SQLite file): {exc}") from None

    # -- file access -----------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        assert self.path is not None
        try:
            connection = sqlite3.connect(self.path, timeout=_LOCK_TIMEOUT)
            connection.execute("SELECT 1")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open cost cache {self.path}: {exc}") from None
        return connection

    def _read(self, key: str) -> dict[str, float] | None:
        if self.path is None:
            return None
        try:
            with closing(self._connect()) as connection:
                row = connection.execute("SELECT metrics FROM costs WHERE key = ?", (key,)).fetchone()
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"cannot read cost cache {self.path}: {exc}") from None
        if row is None:
            return None
        try:
            return _check_metrics(json.loads(row[0]))
        except (json.JSONDecodeError, ConfigError, AttributeError):
            raise StorageError(f"cost cache {self.path} holds a corrupt entry for {key}") from None

    def _write(self, key: str, metrics: dict[str, float]) -> None:
        if self.path is None:
            return
        try:
            with closing(self._connect()) as connection, connection:
                # merge with what another process may have stored meanwhile, inside one transaction
                connection.execute("BEGIN IMMEDIATE")
                row = connection.execute("SELECT metrics FROM costs WHERE key = ?", (key,)).fetchone()
                merged = {**(json.loads(row[0]) if row else {}), **metrics}
                connection.execute(
                    "INSERT OR REPLACE INTO costs (key, metrics) VALUES (?, ?)", (key, json.dumps(merged))
                )
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"cannot write cost cache {self.path}: {exc}") from None

    # -- public ----------------------------------------------------------------------------
    def get(self, key: str) -> dict[str, float] | None:
        """The metrics stored under ``key`` (memory first, then the file), or None."""
        if key in self._entries:
            return dict(self._entries[key])
        stored = self._read(key)
        if stored is not None:
            self._entries[key] = stored
            return dict(stored)
        return None

    def put(self, key: str, metrics: Mapping[str, float]) -> None:
        """Store ``metrics`` under ``key``, merged with (and overriding) any metrics already there."""
        checked = _check_metrics(metrics)
        self._entries[key] = {**(self.get(key) or {}), **checked}
        self._write(key, checked)

    def get_or_measure(
        self, key: str, names: Iterable[str], measure: Callable[[list[str]], Mapping[str, float]]
    ) -> dict[str, float]:
        """The metrics ``names`` for ``key``; only those not cached yet are measured (and stored).

        ``measure(missing_names)`` must return at least those metrics; it is not called when every
        name is cached.
        """
        wanted = list(dict.fromkeys(names))
        cached = self.get(key) or {}
        missing = [name for name in wanted if name not in cached]
        if missing:
            measured = dict(measure(missing))
            absent = [name for name in missing if name not in measured]
            if absent:
                raise ConfigError(f"the measurement did not return the metrics {absent}")
            self.put(key, {name: measured[name] for name in missing})
            cached = {**cached, **measured}
        return {name: float(cached[name]) for name in wanted}

    def keys(self) -> list[str]:
        """Every key in memory and in the file."""
        keys = dict.fromkeys(self._entries)
        if self.path is not None:
            try:
                with closing(self._connect()) as connection:
                    keys.update(dict.fromkeys(row[0] for row in connection.execute("SELECT key FROM costs")))
            except sqlite3.DatabaseError as exc:
                raise StorageError(f"cannot read cost cache {self.path}: {exc}") from None
        return list(keys)

    def __len__(self) -> int:
        return len(self.keys())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def describe(self) -> dict[str, Any]:
        """JSON-able settings: the file, if any."""
        return {"path": None if self.path is None else str(self.path)}

    def __repr__(self) -> str:
        return f"CostCache(path={None if self.path is None else str(self.path)!r})"
