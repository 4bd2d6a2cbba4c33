"""Who runs a trial, and whether they are still alive: driver ids and heartbeats.

Several drivers may share one study through a database. Each RUNNING trial records the driver that
runs it and a heartbeat that driver refreshes; a trial whose heartbeat has gone quiet for
``stale_after`` seconds belongs to a vanished driver (killed, node lost, network cut) and another
driver marks it interrupted, so its budget is freed and the strategy proposes it again. A driver on
the same host whose process no longer exists is recognised at once, without waiting.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Iterable

from nasflow.storage import ExperimentStore

#: seconds between two heartbeats of a driver's running trials
HEARTBEAT_INTERVAL_S = 10.0
#: a RUNNING trial whose heartbeat is older than this is taken to belong to a vanished driver
STALE_AFTER_S = 60.0


def new_driver_id() -> str:
    """``host:pid:random`` - unique per driver, and tells a driver on this host whether its owner lives."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def dead_local_drivers(drivers: Iterable[str | None]) -> list[str]:
    """The drivers among ``drivers`` that ran on this host in a process that no longer exists."""
    host = socket.gethostname()
    dead = []
    for driver in set(d for d in drivers if d):
        parts = driver.rsplit(":", 2)
        if len(parts) == 3 and parts[0] == host and parts[1].isdigit() and not _pid_alive(int(parts[1])):
            dead.append(driver)
    return sorted(dead)


class Heartbeat:
    """A daemon thread that refreshes the heartbeat of the trials a driver is running.

    The study adds a trial when it starts and removes it when it finishes; the thread beats every
    ``interval`` seconds. Storage errors (e.g. a database restart) are retried at the next beat: a
    missed beat only matters after ``STALE_AFTER_S``.
    """

    def __init__(self, store: ExperimentStore, interval: float = HEARTBEAT_INTERVAL_S) -> None:
        self._store = store
        self._interval = interval
        self._trials: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, trial_id: int) -> None:
        with self._lock:
            self._trials.add(trial_id)

    def discard(self, trial_id: int) -> None:
        with self._lock:
            self._trials.discard(trial_id)

    def beat(self) -> None:
        """Refresh the heartbeat of every trial being run now."""
        with self._lock:
            trial_ids = sorted(self._trials)
        if trial_ids:
            self._store.heartbeat(trial_ids)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.beat()
            except Exception:  # noqa: BLE001 - a missed beat is harmless; the next one retries
                pass

    def __enter__(self) -> Heartbeat:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="nasflow-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._interval + 1)
            self._thread = None
