"""Tabular benchmarks: precomputed metrics for every architecture of a space.

A table is a CSV file (optionally gzip-compressed) whose header names an ``arch_str`` column and any
number of metric columns; every metric value is a finite number. The format is plain text on purpose:
loading a table never executes code (no pickle), and users can build their own tables with any tool.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import math
import os
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from nasflow.errors import BenchmarkDataError, UnknownNameError

ARCH_COLUMN = "arch_str"
_GZIP_MAGIC = b"\x1f\x8b"


class BenchmarkTable:
    """Rows of named float metrics keyed by architecture string; immutable once built.

    Args:
        columns: metric column names (``arch_str`` excluded), in file order.
        rows: ``arch_str -> values``, one value per column.
        source: where the table came from, used in error messages.
    """

    def __init__(
        self, columns: Sequence[str], rows: Mapping[str, Sequence[float]], source: str = "<memory>"
    ) -> None:
        columns = tuple(columns)
        _check_columns(columns, source)
        checked: dict[str, tuple[float, ...]] = {}
        for arch_str, values in rows.items():
            if not isinstance(arch_str, str) or not arch_str:
                raise BenchmarkDataError(f"{source}: architecture keys must be non-empty strings")
            if len(values) != len(columns):
                raise BenchmarkDataError(
                    f"{source}: row {arch_str!r} has {len(values)} values; expected {len(columns)} "
                    f"({', '.join(columns)})"
                )
            checked[arch_str] = tuple(
                _to_float(v, source, arch_str, c) for v, c in zip(values, columns, strict=True)
            )
        self._init(columns, checked, source)

    def _init(self, columns: tuple[str, ...], rows: dict[str, tuple[float, ...]], source: str) -> None:
        self.source = source
        self._columns = columns
        self._rows = rows
        self._position = {name: i for i, name in enumerate(columns)}

    @classmethod
    def _from_checked(
        cls, columns: tuple[str, ...], rows: dict[str, tuple[float, ...]], source: str
    ) -> BenchmarkTable:
        # The parser has already validated every field with line numbers; checking again would
        # double the load time of large tables.
        table = cls.__new__(cls)
        table._init(columns, rows, source)
        return table

    @property
    def columns(self) -> tuple[str, ...]:
        """Metric column names, in file order."""
        return self._columns

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, arch_str: object) -> bool:
        return arch_str in self._rows

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __repr__(self) -> str:
        return f"BenchmarkTable(source={self.source!r}, rows={len(self)}, columns={list(self._columns)})"

    def column_index(self, name: str) -> int:
        """Position of ``name`` in :meth:`values` tuples (lets hot loops skip building dicts)."""
        try:
            return self._position[name]
        except KeyError:
            raise UnknownNameError(
                f"table {self.source} has no column {name!r}; allowed: {', '.join(self._columns)}"
            ) from None

    def values(self, arch_str: str) -> tuple[float, ...] | None:
        """The raw row for ``arch_str`` in column order, or None when it is not in the table."""
        return self._rows.get(arch_str)

    def row(self, arch_str: str) -> dict[str, float]:
        """``column -> value`` for ``arch_str``; KeyError when it is not in the table."""
        values = self._rows.get(arch_str)
        if values is None:
            raise KeyError(f"architecture {arch_str!r} is not in table {self.source}")
        return dict(zip(self._columns, values, strict=True))

    def column(self, name: str) -> np.ndarray:
        """All values of one column, in row order."""
        i = self.column_index(name)
        return np.fromiter((v[i] for v in self._rows.values()), dtype=float, count=len(self._rows))

    def best(self, name: str, maximize: bool = True) -> tuple[str, float]:
        """``(arch_str, value)`` of the row with the largest (or smallest) value of ``name``.

        Ties go to the earliest row, so the answer is stable for a given file.
        """
        values = self.column(name)
        position = int(np.argmax(values) if maximize else np.argmin(values))
        return next(itertools.islice(self._rows, position, None)), float(values[position])


def load_table(path: str | os.PathLike[str]) -> BenchmarkTable:
    """Read and validate a ``.csv`` or ``.csv.gz`` table; any problem raises BenchmarkDataError."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BenchmarkDataError(f"benchmark table {path} does not exist") from None
    except OSError as exc:
        raise BenchmarkDataError(f"cannot read benchmark table {path}: {exc}") from None
    return parse_table(data, source=str(path), compressed=path.suffix == ".gz" or None)


def parse_table(data: bytes, source: str = "<bytes>", compressed: bool | None = None) -> BenchmarkTable:
    """Parse table bytes; ``compressed=None`` detects gzip from its magic number."""
    if compressed is None:
        compressed = data[:2] == _GZIP_MAGIC
    if compressed:
        data = _gunzip(data, source)
    try:
        text = data.decode("utf-8-sig")  # tolerate the BOM that spreadsheet exports add
    except UnicodeDecodeError as exc:
        raise BenchmarkDataError(
            f"benchmark table {source} is not UTF-8 text (byte {exc.start}); "
            "regenerate it as a UTF-8 CSV file"
        ) from None
    return _parse_csv(text, source)


def save_table(table: BenchmarkTable, path: str | os.PathLike[str]) -> Path:
    """Write ``table`` as CSV, gzip-compressed when ``path`` ends in ``.gz``.

    Floats are written with ``repr`` so that loading gives back exactly the same numbers, and gzip
    gets mtime=0 so that saving the same table twice gives identical bytes.
    """
    path = Path(path)
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([ARCH_COLUMN, *table.columns])
    for arch_str in table:
        writer.writerow([arch_str, *map(repr, table.values(arch_str) or ())])
    data = buffer.getvalue().encode("utf-8")
    if path.suffix == ".gz":
        data = gzip.compress(data, compresslevel=9, mtime=0)
    path.write_bytes(data)
    return path


# -- parsing --------------------------------------------------------------------------------------
def _gunzip(data: bytes, source: str) -> bytes:
    # Decompress everything before parsing so that a damaged stream is reported as such (CRC or
    # length check at the end) instead of as a confusing CSV error on garbage bytes.
    try:
        return gzip.decompress(data)
    except (EOFError, OSError, zlib.error) as exc:
        raise BenchmarkDataError(
            f"benchmark table {source} is a truncated or corrupt gzip file ({exc}); reinstall the "
            "package that shipped it, or regenerate the file"
        ) from None


def _parse_csv(text: str, source: str) -> BenchmarkTable:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise BenchmarkDataError(f"benchmark table {source} is empty; it needs a header line")
        header = [name.strip() for name in header]
        if ARCH_COLUMN not in header:
            raise BenchmarkDataError(
                f"benchmark table {source}: the header has no {ARCH_COLUMN!r} column (found: "
                f"{', '.join(header)})"
            )
        arch_at = header.index(ARCH_COLUMN)
        columns = header[:arch_at] + header[arch_at + 1 :]
        _check_columns(tuple(columns), source)
        rows: dict[str, tuple[float, ...]] = {}
        first_line: dict[str, int] = {}
        for fields in reader:
            if not fields:
                continue  # blank line
            line = reader.line_num
            if len(fields) != len(header):
                raise BenchmarkDataError(
                    f"benchmark table {source}, line {line}: {len(fields)} fields, expected "
                    f"{len(header)} ({', '.join(header)}); the file is damaged or was not written by "
                    "a table writer -- regenerate it"
                )
            arch_str = fields.pop(arch_at).strip()
            if not arch_str:
                raise BenchmarkDataError(f"benchmark table {source}, line {line}: empty {ARCH_COLUMN}")
            if arch_str in rows:
                raise BenchmarkDataError(
                    f"benchmark table {source}, line {line}: duplicate {ARCH_COLUMN} {arch_str!r} "
                    f"(first on line {first_line[arch_str]}); each architecture must appear once"
                )
            rows[arch_str] = _parse_values(fields, columns, source, arch_str, line)
            first_line[arch_str] = line
    except csv.Error as exc:
        raise BenchmarkDataError(
            f"benchmark table {source}, line {reader.line_num}: malformed CSV ({exc}); regenerate the file"
        ) from None
    if not rows:
        raise BenchmarkDataError(f"benchmark table {source} has a header but no rows")
    return BenchmarkTable._from_checked(tuple(columns), rows, source)


def _check_columns(columns: tuple[str, ...], source: str) -> None:
    if not columns:
        raise BenchmarkDataError(
            f"benchmark table {source} has no metric columns; it needs {ARCH_COLUMN!r} and at least one more"
        )
    if ARCH_COLUMN in columns:
        raise BenchmarkDataError(f"benchmark table {source}: {ARCH_COLUMN!r} is the key, not a metric column")
    for name in columns:
        if not name:
            raise BenchmarkDataError(f"benchmark table {source}: a column has an empty name")
    duplicates = sorted({name for name in columns if columns.count(name) > 1})
    if duplicates:
        raise BenchmarkDataError(f"benchmark table {source}: duplicate column names {duplicates}")


def _parse_values(
    fields: list[str], columns: list[str], source: str, arch_str: str, line: int
) -> tuple[float, ...]:
    # Fast path for well-formed rows; the per-field path below only runs to word the error.
    try:
        values = tuple(map(float, fields))
    except ValueError:
        values = ()
    if values and all(map(math.isfinite, values)):
        return values
    return tuple(
        _to_float(value, source, arch_str, name, line) for value, name in zip(fields, columns, strict=True)
    )


def _to_float(value: object, source: str, arch_str: str, column: str, line: int | None = None) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = None
    # NaN and infinities would silently poison rankings and best-of searches.
    if number is None or not math.isfinite(number):
        where = f"benchmark table {source}" + (f", line {line}" if line is not None else "")
        problem = "not a number" if number is None else "not finite"
        raise BenchmarkDataError(f"{where}: column {column!r} of {arch_str!r} is {value!r}, {problem}")
    return number
