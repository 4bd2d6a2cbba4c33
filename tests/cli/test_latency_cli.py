"""``nasflow latency profile`` and ``check`` on a tiny chain space, and their one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nasflow.cli.main import main

pytest.importorskip("nasflow.space.chain")  # the block-wise space the CLI profiles

#: a chain space of 4 distinct networks (2 stages of 1-2 blocks, one kernel / expansion): 6 blocks
TINY_CHAIN = json.dumps(
    {
        "stage_channels": [8, 12],
        "stage_strides": [1, 2],
        "min_depth": 1,
        "max_depth": 2,
        "kernels": [3],
        "expansions": [3],
        "widths": [1.0],
        "acts": ["relu"],
        "se": [0],
        "head_channels": 16,
    }
)
FAST = ["--warmup", "1", "--repeats", "3", "--quiet"]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def profile(capsys: pytest.CaptureFixture[str], path: Path, *extra: str) -> tuple[int, str, str]:
    return run(
        capsys,
        "latency",
        "profile",
        "--space",
        "chain",
        "--space-options",
        TINY_CHAIN,
        "--calibration",
        "2",
        "--passes",
        "1",
        "--output",
        str(path),
        *FAST,
        *extra,
    )


@pytest.mark.parametrize("runtime", ["eager", "onnxruntime"])
def test_profile_then_check(capsys: pytest.CaptureFixture[str], tmp_path: Path, runtime: str) -> None:
    if runtime == "onnxruntime":
        pytest.importorskip("onnxruntime")
    table_path = tmp_path / "lut.json"
    code, out, err = profile(capsys, table_path, "--runtime", runtime)
    assert code == 0, err
    table = json.loads(table_path.read_text())
    assert table["settings"]["runtime"] == runtime and table["settings"]["repeats"] == 3
    assert table["settings"]["passes"] == 1
    assert table["space"]["name"] == "chain" and table["space"]["head_channels"] == 16
    assert table["input_shape"] == [1, 8, 8] and table["num_classes"] == 10
    # stem, two blocks per stage, head
    assert len(table["blocks"]) == 6 and len(table["calibration"]) == 2
    assert "profiled 6 blocks and 2 calibration networks of chain" in out and f"({runtime}," in out

    report = tmp_path / "out" / "check.json"
    code, out, err = run(
        capsys,
        "latency",
        "check",
        "--table",
        str(table_path),
        "--samples",
        "2",
        "--output-json",
        str(report),
        "--quiet",
    )
    assert code == 0, err
    assert "within ±10%" in out and "Spearman" in out and "RMSE (ms)" in out
    result = json.loads(report.read_text())
    assert result["samples"] == 2 and len(result["rows"]) == 2
    calibrated = {row["arch"] for row in table["calibration"]}
    assert not calibrated & {row["arch"] for row in result["rows"]}  # held out
    assert all(row["measured_ms"] > 0 and row["predicted_ms"] != 0 for row in result["rows"])
    assert 0.0 <= result["within_5"] <= result["within_10"] <= 1.0


def test_unknown_and_non_blockwise_spaces(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "latency", "profile", "--space", "nope", "--output", str(tmp_path / "t.json"))
    assert code == 2 and err.startswith("error: unknown space 'nope'") and err.count("\n") == 1
    code, _, err = run(capsys, "latency", "profile", "--space", "nb201", "--output", str(tmp_path / "t.json"))
    assert code == 2 and "not block-wise" in err and "Traceback" not in err
    code, _, err = run(
        capsys, "latency", "profile", "--space-options", "[1]", "--output", str(tmp_path / "t.json")
    )
    assert code == 2 and "--space-options must be a JSON object" in err


def test_bad_tables(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "latency", "check", "--table", str(tmp_path / "missing.json"))
    assert code == 2 and "does not exist" in err
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text('{"format": "nasflow-latency-table", "version": 1, "blocks": [')
    code, _, err = run(capsys, "latency", "check", "--table", str(corrupt))
    assert code == 2 and "not valid JSON" in err and err.count("\n") == 1


def test_a_table_from_another_machine_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    table_path = tmp_path / "lut.json"
    assert profile(capsys, table_path, "--calibration", "0")[0] == 0
    table = json.loads(table_path.read_text())
    table["machine"]["device_name"] = "Imaginary CPU 9000"
    table_path.write_text(json.dumps(table))
    code, _, err = run(capsys, "latency", "check", "--table", str(table_path), "--quiet")
    assert code == 2 and "Imaginary CPU 9000" in err and "profile a new table here" in err
    table["settings"]["device"] = "cuda:7"
    table_path.write_text(json.dumps(table))
    code, _, err = run(capsys, "latency", "check", "--table", str(table_path), "--quiet")
    assert code == 2 and "error:" in err and "Traceback" not in err
