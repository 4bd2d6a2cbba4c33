"""Experiment stores: where studies, trials and strategy states persist.

>>> store = open_store("sqlite:///runs.db")  # doctest: +SKIP
"""

from __future__ import annotations

import re

from nasflow.errors import BudgetReached, StorageError, StudyExistsError, StudyNotFoundError
from nasflow.storage.base import URL_FORMS, ExperimentStore, ResultRecord, StudyRecord, TrialRecord
from nasflow.storage.memory import InMemoryStore


def open_store(url: str | None) -> ExperimentStore:
    """Open the store that ``url`` names.

    ``None`` or ``"memory"`` gives an :class:`InMemoryStore`; ``sqlite:///path/to.db``,
    ``sqlite://`` (in-memory SQLite) and ``postgresql[+driver]://...`` give a SQLStore,
    creating nasflow's tables if they are absent. Anything else raises StorageError.
    """
    if url is None or url == "memory":
        return InMemoryStore()
    if not isinstance(url, str):
        raise StorageError(f"a storage URL must be a string, got {type(url).__name__}; use {URL_FORMS}")
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme == "sqlite" or scheme == "postgresql" or scheme.startswith("postgresql+"):
        # imported here so that in-memory use never loads SQLAlchemy
        from nasflow.storage.sql import SQLStore

        return SQLStore(url)
    hint = ""
    if not scheme and url.endswith((".db", ".sqlite", ".sqlite3")):
        hint = f" (for a SQLite file write 'sqlite:///{url}')"
    raise StorageError(f"unsupported storage URL {_hide_password(url)!r}{hint}; use {URL_FORMS}")


def _hide_password(url: str) -> str:
    # error messages end up in logs and terminals
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


__all__ = [
    "BudgetReached",
    "ExperimentStore",
    "InMemoryStore",
    "StorageError",
    "StudyExistsError",
    "StudyNotFoundError",
    "StudyRecord",
    "ResultRecord",
    "TrialRecord",
    "open_store",
]
