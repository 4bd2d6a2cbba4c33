"""The tabular benchmark format and the shipped NAS-Bench-201 table."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
from pathlib import Path

import pytest

from nasflow.benchmarks import BUILTIN_BENCHMARKS, BenchmarkTable, load_nb201, load_table, save_table
from nasflow.benchmarks import nb201 as nb201_module
from nasflow.errors import BenchmarkDataError, UnknownNameError

ROOT = Path(__file__).resolve().parents[2]
INDEX1 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
HEADER = "index,arch_str,cifar10-val,cifar10-test,cifar100-val,cifar100-test"


def _write(path: Path, text: str) -> Path:
    data = text.encode()
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    return path


def _shipped_bytes() -> bytes:
    return nb201_module.shipped_file().read_bytes()


# -- the shipped table --------------------------------------------------------------------------
def test_shipped_table_shape() -> None:
    table = load_nb201()
    assert len(table) == 15_625
    assert table.columns == ("index", "cifar10-val", "cifar10-test", "cifar100-val", "cifar100-test")
    assert sorted(table.column("index").astype(int).tolist()) == list(range(15_625))


def test_shipped_checksum_matches_constant() -> None:
    assert hashlib.sha256(_shipped_bytes()).hexdigest() == nb201_module.NB201_SHA256


def test_loader_is_cached_per_process() -> None:
    assert load_nb201() is load_nb201()


def test_facts_from_the_data_readme() -> None:
    table = load_nb201()
    best_arch, best_val = table.best("cifar10-val")
    best = table.row(best_arch)
    assert (best["index"], best_val, best["cifar10-test"]) == (13714, 84.892, 89.03)
    assert table.best("cifar10-test")[1] == 89.16
    assert table.column("cifar10-test").max() == 89.16


def test_index_1_row() -> None:
    assert load_nb201().row(INDEX1) == {
        "index": 1.0,
        "cifar10-val": 82.834,
        "cifar10-test": 88.22,
        "cifar100-val": 57.8,
        "cifar100-test": 58.26,
    }


def test_licence_travels_with_the_data() -> None:
    notice = nb201_module.shipped_file().parent.joinpath("NB201_LICENSE.txt").read_text()
    assert "MIT License" in notice
    assert "Copyright (c) 2021 BayesWatch" in notice
    assert "NAS-Bench-201" in notice
    assert "MIT" in BUILTIN_BENCHMARKS["nb201"]


def test_pack_script_rebuilds_identical_bytes() -> None:
    spec = importlib.util.spec_from_file_location(
        "pack_nb201", ROOT / "benchmarks" / "tools" / "pack_nb201.py"
    )
    assert spec is not None and spec.loader is not None
    pack_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pack_module)
    shipped = _shipped_bytes()
    assert pack_module.pack(gzip.decompress(shipped)) == shipped


def test_plain_csv_copy_loads_with_same_rows(tmp_path: Path) -> None:
    copy = tmp_path / "nb201.csv"
    copy.write_bytes(gzip.decompress(_shipped_bytes()))
    table = load_nb201(copy)
    assert table is not load_nb201()
    assert table.row(INDEX1) == load_nb201().row(INDEX1)
    assert load_nb201(str(copy)) is table  # same file, same cache entry


# -- damaged copies -------------------------------------------------------------------------------
def test_truncated_gzip(tmp_path: Path) -> None:
    broken = tmp_path / "nb201.csv.gz"
    broken.write_bytes(_shipped_bytes()[:100_000])
    for load in (load_table, load_nb201):
        with pytest.raises(BenchmarkDataError) as info:
            load(broken)
        message = str(info.value)
        assert str(broken) in message
        assert "truncated or corrupt gzip" in message
        assert "reinstall" in message and "regenerate" in message


@pytest.mark.parametrize("position", [0.5, -6])  # inside the deflate stream; inside the CRC trailer
def test_flipped_bytes_in_gzip(tmp_path: Path, position: float) -> None:
    data = bytearray(_shipped_bytes())
    at = int(len(data) * position) if isinstance(position, float) else len(data) + position
    data[at] ^= 0xFF
    broken = tmp_path / "nb201.csv.gz"
    broken.write_bytes(bytes(data))
    with pytest.raises(BenchmarkDataError, match="corrupt gzip"):
        load_table(broken)


def test_checksum_mismatch_of_shipped_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = bytearray(_shipped_bytes())
    data[1000] ^= 0x01
    damaged = tmp_path / "nb201_hp12.csv.gz"
    damaged.write_bytes(bytes(data))
    monkeypatch.setattr(nb201_module, "shipped_file", lambda: damaged)
    nb201_module._load_cached.cache_clear()
    try:
        with pytest.raises(BenchmarkDataError) as info:
            load_nb201()
    finally:
        nb201_module._load_cached.cache_clear()
    message = str(info.value)
    assert "corrupt" in message and "SHA-256" in message and "reinstall nasflow" in message
    assert str(damaged) in message


def test_missing_shipped_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nb201_module, "shipped_file", lambda: tmp_path / "absent.csv.gz")
    nb201_module._load_cached.cache_clear()
    try:
        with pytest.raises(BenchmarkDataError, match="reinstall nasflow"):
            load_nb201()
    finally:
        nb201_module._load_cached.cache_clear()


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_row_with_missing_field(tmp_path: Path, suffix: str) -> None:
    path = _write(tmp_path / f"t{suffix}", f"{HEADER}\n0,|a|,1,2,3,4\n1,|b|,1,2,3\n")
    with pytest.raises(BenchmarkDataError) as info:
        load_table(path)
    message = str(info.value)
    assert "line 3" in message and "5 fields, expected 6" in message and str(path) in message
    assert "regenerate" in message


def test_non_number_metric(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", f"{HEADER}\n0,|a|,1,2,3,4\n1,|b|,1,oops,3,4\n")
    with pytest.raises(
        BenchmarkDataError, match=r"line 3: column 'cifar10-test' of '\|b\|' is 'oops', not a number"
    ):
        load_table(path)


@pytest.mark.parametrize("value", ["nan", "inf", ""])
def test_missing_or_infinite_metric(tmp_path: Path, value: str) -> None:
    path = _write(tmp_path / "t.csv", f"{HEADER}\n0,|a|,1,2,3,{value}\n")
    with pytest.raises(BenchmarkDataError, match="cifar100-test"):
        load_table(path)


def test_duplicate_arch(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.csv", f"{HEADER}\n0,|a|,1,2,3,4\n1,|b|,1,2,3,4\n2,|a|,5,6,7,8\n")
    with pytest.raises(BenchmarkDataError, match=r"line 4: duplicate arch_str '\|a\|' \(first on line 2\)"):
        load_table(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "is empty"),
        ("name,acc\nx,1\n", "no 'arch_str' column"),
        ("arch_str\n|a|\n", "no metric columns"),
        ("arch_str,acc,acc\n|a|,1,2\n", "duplicate column names"),
        ("arch_str,acc\n", "no rows"),
        ('arch_str,acc\n"|a|,1\n', "malformed CSV"),
    ],
)
def test_malformed_tables(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(BenchmarkDataError, match=expected):
        load_table(_write(tmp_path / "t.csv", text))


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(b"arch_str,acc\n\xff\xfe,1\n")
    with pytest.raises(BenchmarkDataError, match="not UTF-8"):
        load_table(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BenchmarkDataError, match="does not exist"):
        load_table(tmp_path / "absent.csv")


def test_nb201_structure_checks(tmp_path: Path) -> None:
    short = _write(tmp_path / "short.csv", f"{HEADER}\n0,|a|,1,2,3,4\n")
    with pytest.raises(BenchmarkDataError, match="has 1 rows; the NAS-Bench-201 table has 15,625"):
        load_nb201(short)
    other = _write(tmp_path / "other.csv", "arch_str,acc\n|a|,1\n")
    with pytest.raises(BenchmarkDataError, match="not a NAS-Bench-201 table"):
        load_nb201(other)


# -- the generic format ---------------------------------------------------------------------------
def test_free_form_columns_and_key_position(tmp_path: Path) -> None:
    path = _write(tmp_path / "mine.csv", "latency_ms, arch_str ,top1\n3.5,a=1,71.2\n\n2.0,a=2,70.0\n")
    table = load_table(path)
    assert table.columns == ("latency_ms", "top1")
    assert list(table) == ["a=1", "a=2"]
    assert table.row("a=2") == {"latency_ms": 2.0, "top1": 70.0}
    assert table.best("latency_ms", maximize=False) == ("a=2", 2.0)
    assert "a=1" in table and "a=3" not in table
    assert table.values("a=3") is None


@pytest.mark.parametrize("name", ["mine.csv", "mine.csv.gz"])
def test_save_load_round_trip_is_exact(tmp_path: Path, name: str) -> None:
    table = BenchmarkTable(("acc", "params"), {"x": (0.1 + 0.2, 1e-300), "y": (1 / 3, 12345678.0)})
    path = save_table(table, tmp_path / name)
    again = load_table(path)
    assert again.columns == table.columns
    assert [again.row(a) for a in again] == [table.row(a) for a in table]
    first = path.read_bytes()
    assert save_table(again, path).read_bytes() == first  # deterministic bytes, gzip included


def test_table_lookup_errors() -> None:
    table = BenchmarkTable(["acc"], {"x": [1.0]})
    with pytest.raises(KeyError, match="'y' is not in table"):
        table.row("y")
    with pytest.raises(UnknownNameError, match="no column 'loss'; allowed: acc"):
        table.column("loss")


@pytest.mark.parametrize(
    ("columns", "rows", "expected"),
    [
        ([], {"x": []}, "no metric columns"),
        (["acc"], {"x": [1.0, 2.0]}, "has 2 values; expected 1"),
        (["acc"], {"x": ["high"]}, "not a number"),
        (["arch_str"], {"x": [1.0]}, "is the key"),
        (["acc"], {"": [1.0]}, "non-empty strings"),
    ],
)
def test_table_constructor_validates(columns: list[str], rows: dict, expected: str) -> None:
    with pytest.raises(BenchmarkDataError, match=expected):
        BenchmarkTable(columns, rows)
