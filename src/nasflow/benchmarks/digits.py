"""The ``nb201-digits`` table shipped with nasflow: NB201 cells trained from scratch on the digits task.

Unlike NAS-Bench-201 (Dong & Yang, ICLR 2020), which holds every one of the 15,625 cells, this table
holds a uniform sample (800, trained for 4 epochs) of the 6,466 distinct networks (canonical classes,
see :meth:`nasflow.space.nb201.NB201Space.canonical`), one row per class, keyed by the class's
representative: its first member in ``NB201Space.enumerate()`` order. Any member's string resolves to
its class's row (:func:`representative`), and :class:`NB201DigitsSpace` is the NB201 space restricted
to the networks in the table, so that every architecture a search proposes can be looked up.

``params`` and ``flops`` are those of the representative; members with a dead edge (one that cannot
reach the output) that is not ``none`` carry extra parameters that never change the output.

The table was made with ``benchmarks/tools/build_digits_table.sh`` (``nasflow bench build``); the
settings are in :data:`DIGITS_SETTINGS`.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Mapping
from functools import cache
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Any

import numpy as np

from nasflow.benchmarks.table import BenchmarkTable, load_table, parse_table
from nasflow.errors import BenchmarkDataError, InvalidArchitectureError
from nasflow.space.architecture import Architecture
from nasflow.space.nb201 import EDGE_NAMES, OPS, NB201Space

DIGITS_FILE = "nb201_digits.csv.gz"
#: SHA-256 of the shipped file's bytes; ``benchmarks/tools/build_digits_table.sh`` prints it.
DIGITS_SHA256 = "b18ffa261408b0263cb3a430e9b2d138b8ea4d0c728379f4117592d2eb8ff395"
#: dataset -> (validation column used as the search signal, test column used for reporting)
DIGITS_DATASETS: dict[str, tuple[str, str]] = {"digits": ("valid_acc", "test_acc")}
#: further metrics a look-up reports: metric name -> column
DIGITS_METRICS: dict[str, str] = {"params": "params", "flops": "flops", "train_seconds": "train_seconds"}
#: how the shipped table was built (``nasflow bench build`` options and the evaluator's settings)
DIGITS_SETTINGS: dict[str, Any] = {
    "space": {"name": "nb201", "channels": 8, "cells_per_stage": 1},
    "task": "digits",
    "epochs": 4,
    "archs": 800,
    "seed": 0,
    "threads": 1,
}
_REQUIRED_COLUMNS = ("valid_acc", "test_acc")
_PLAIN_SPACE = NB201Space()  # canonical keys do not depend on the network's width or depth


def load_nb201_digits(path: str | os.PathLike[str] | None = None) -> BenchmarkTable:
    """The nb201-digits table (or a table built with ``nasflow bench build``), read once per process.

    Without ``path`` the shipped file is used and its checksum verified. With ``path`` only its
    structure is checked: the ``valid_acc`` and ``test_acc`` columns, official NB201 strings as keys
    and at most one row per distinct network.
    """
    key = _key(path)
    _class_index(key)  # checks the keys and that no network appears twice
    return _load_cached(key)


def representative(arch_str: str, path: str | os.PathLike[str] | None = None) -> str | None:
    """The table's key for the network that ``arch_str`` (any NB201 string) describes, if it is held.

    Returns None when ``arch_str`` is not an NB201 string or its network is not in the table.
    """
    try:
        key = _PLAIN_SPACE.canonical(_PLAIN_SPACE.parse(arch_str))
    except InvalidArchitectureError:
        return None
    return _class_index(_key(path)).get(key)


def shipped_file() -> Traversable:
    """Where the packaged table lives (importlib.resources also works for zip installs)."""
    return resources.files("nasflow.benchmarks").joinpath("data", DIGITS_FILE)


class NB201DigitsSpace(NB201Space):
    """The NB201 cell space restricted to the networks held by the nb201-digits table.

    A cell is a member when its canonical class has a row in the table, so sampling, mutation and
    enumeration never leave the table. ``sample`` draws uniformly over the member cells (like the
    rejection sampling of other constrained spaces, but without rejections: most cells are not
    members). ``size()`` still counts all 15,625 combinations of choices, as for any constrained
    space; ``enumerate()`` yields only members.

    Args:
        channels: width of the first stage of built networks (the table used 8).
        cells_per_stage: cells per stage of built networks (the table used 1).
        path: a table built with ``nasflow bench build`` to restrict to instead of the shipped one.
    """

    name = "nb201-digits"

    def __init__(
        self,
        channels: int = DIGITS_SETTINGS["space"]["channels"],
        cells_per_stage: int = DIGITS_SETTINGS["space"]["cells_per_stage"],
        path: str | None = None,
    ) -> None:
        super().__init__(channels=channels, cells_per_stage=cells_per_stage)
        self.path = None if path is None else str(path)
        _class_index(_key(self.path))  # a missing or broken table fails here, not in the search

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "path": self.path}

    def sample(self, rng: np.random.Generator) -> Architecture:
        cells = _member_cells(_key(self.path))
        return cells[int(rng.integers(len(cells)))]

    def _check_constraints(self, arch: Architecture) -> bool:
        return super()._check_constraints(arch) and arch in _member_set(_key(self.path))


# -- loading ----------------------------------------------------------------------------------------
def _key(path: str | os.PathLike[str] | None) -> str | None:
    return None if path is None else str(Path(path).resolve())


@cache
def _load_cached(path: str | None) -> BenchmarkTable:
    # Shared by every caller in the process, which is safe because tables are immutable.
    table = _load_shipped() if path is None else load_table(path)
    missing = [c for c in _REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise BenchmarkDataError(
            f"{table.source} is not an nb201-digits table: it lacks column(s) {missing} (columns: "
            f"{list(table.columns)}); build one with `nasflow bench build`"
        )
    return table


@cache
def _class_index(path: str | None) -> Mapping[str, str]:
    """``canonical key -> arch_str`` over the table's rows; each network may appear only once."""
    table = _load_cached(path)
    index: dict[str, str] = {}
    for arch_str in table:
        try:
            key = _PLAIN_SPACE.canonical(_PLAIN_SPACE.parse(arch_str))
        except InvalidArchitectureError as exc:
            raise BenchmarkDataError(f"{table.source}: {arch_str!r} is not an NB201 cell ({exc})") from None
        if key in index:
            raise BenchmarkDataError(
                f"{table.source}: rows {index[key]!r} and {arch_str!r} describe the same network; "
                "a table of distinct networks holds one row per network"
            )
        index[key] = arch_str
    return index


@cache
def _member_cells(path: str | None) -> tuple[Architecture, ...]:
    """Every NB201 cell whose network the table holds, in enumeration order (about 1 s to find)."""
    classes = _class_index(path)
    # Every combination of operations is a valid cell, so the product skips enumerate()'s checks.
    cells = (
        Architecture(dict(zip(EDGE_NAMES, ops))) for ops in itertools.product(OPS, repeat=len(EDGE_NAMES))
    )
    return tuple(arch for arch in cells if _PLAIN_SPACE.canonical(arch) in classes)


@cache
def _member_set(path: str | None) -> frozenset[Architecture]:
    return frozenset(_member_cells(path))


def _load_shipped() -> BenchmarkTable:
    resource = shipped_file()
    try:
        data = resource.read_bytes()
    except OSError as exc:
        raise BenchmarkDataError(
            f"the shipped nb201-digits table {resource} cannot be read ({exc}); reinstall nasflow"
        ) from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != DIGITS_SHA256:
        raise BenchmarkDataError(
            f"the shipped nb201-digits table {resource} is corrupt (SHA-256 {digest}, expected "
            f"{DIGITS_SHA256}); reinstall nasflow"
        )
    return parse_table(data, source=str(resource), compressed=True)


__all__ = [
    "DIGITS_DATASETS",
    "DIGITS_FILE",
    "DIGITS_METRICS",
    "DIGITS_SETTINGS",
    "DIGITS_SHA256",
    "NB201DigitsSpace",
    "load_nb201_digits",
    "representative",
    "shipped_file",
]
