"""The benchmark harness: protocol, oracle, determinism, user evaluators, CSV/PNG output."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from PIL import Image

import nasflow as nf
from nasflow.bench import RunTrace, run_bench, summary_rows, write_csv, write_plot
from nasflow.bench.harness import tabular_oracle
from nasflow.cli.main import main
from nasflow.space.architecture import Architecture
from nasflow.testing.spaces import constrained_space


def user_metric(arch: Architecture) -> dict[str, float]:
    """A picklable user function: validation and test values that disagree a little."""
    size = int(arch["depth"]) * int(arch["width"])  # type: ignore[arg-type]
    return {"accuracy": float(size), "test_accuracy": float(size) - (3.0 if arch["act"] == "relu" else 0.0)}


def test_incumbent_follows_best_search_value_first_of_ties_and_skips_failures() -> None:
    trace = RunTrace("x", 0, [1.0, math.nan, 3.0, 3.0, 2.0], [10.0, 99.0, 30.0, 31.0, 20.0], 0.0, 0.0)
    assert trace.incumbent_report().tolist() == [10.0, 10.0, 30.0, 30.0, 30.0]


def test_tabular_oracles_match_the_table_facts() -> None:
    assert tabular_oracle("nb201", "cifar10") == pytest.approx(89.03)
    assert tabular_oracle("nb201", "cifar100") == pytest.approx(61.04)


def test_user_function_bench_is_deterministic_and_summarised() -> None:
    evaluator = nf.FunctionEvaluator(user_metric)
    kwargs = dict(seeds=3, budget=15, evaluator=evaluator, space=constrained_space(), workers=1, oracle=125.0)
    first = run_bench(["random", "evolution"], **kwargs)
    second = run_bench(["random", "evolution"], **kwargs)
    assert first.benchmark == "custom"
    for name in ("random", "evolution"):
        assert [r.search for r in first.runs[name]] == [r.search for r in second.runs[name]]
        assert len(first.runs[name]) == 3 and all(len(r.search) == 15 for r in first.runs[name])
    rows = {row["strategy"]: row for row in summary_rows(first, [5, 15])}
    curves = first.curves("random")
    assert rows["random"]["mean@15"] == pytest.approx(float(np.mean(curves[:, 14])))
    assert rows["random"]["regret@15"] == pytest.approx(125.0 - rows["random"]["mean@15"])
    assert rows["evolution"]["ms_per_trial"] > 0


def test_bench_on_the_tabular_benchmark_in_processes_matches_one_process() -> None:
    parallel = run_bench(["random"], seeds=[0, 1], budget=10, workers=2)
    serial = run_bench(["random"], seeds=[0, 1], budget=10, workers=1)
    assert parallel.oracle == pytest.approx(89.03)
    assert [r.report for r in parallel.runs["random"]] == [r.report for r in serial.runs["random"]]
    assert all(60 < v < 90 for r in parallel.runs["random"] for v in r.report)


def test_csv_and_png_outputs(tmp_path) -> None:
    result = run_bench(["random", "evolution"], seeds=2, budget=12, workers=1)
    path = write_csv(result, tmp_path / "out.csv")
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 2 * 12
    last = [r for r in rows if r["strategy"] == "evolution" and r["queries"] == "12"][0]
    assert float(last["mean"]) == pytest.approx(float(np.mean(result.curves("evolution")[:, 11])), rel=1e-5)
    assert float(last["regret"]) == pytest.approx(89.03 - float(last["mean"]), rel=1e-4)
    image = Image.open(write_plot(result, tmp_path / "out.png"))
    assert image.size[0] > 600 and image.size[1] > 300


def test_cli_bench_writes_csv_png_json(capsys, tmp_path) -> None:
    code = main(
        [
            "bench",
            "--strategies",
            "random,evolution",
            "--seeds",
            "2",
            "--budget",
            "10",
            "--workers",
            "1",
            "--dataset",
            "cifar100",
            "--output-dir",
            str(tmp_path),
            "--output",
            "json",
        ]
    )
    out, _ = capsys.readouterr()
    assert code == 0
    summary = json.loads(out)
    assert summary["oracle"] == pytest.approx(61.04)
    assert {row["strategy"] for row in summary["strategies"]} == {"random", "evolution"}
    assert (tmp_path / "nb201-cifar100.csv").exists() and (tmp_path / "nb201-cifar100.png").exists()


def test_cli_bench_rejects_unknown_strategy(capsys, tmp_path) -> None:
    code = main(
        [
            "bench",
            "--strategies",
            "random,nope",
            "--seeds",
            "1",
            "--budget",
            "5",
            "--output-dir",
            str(tmp_path),
        ]
    )
    _, err = capsys.readouterr()
    assert code == 2 and "unknown strategy 'nope'" in err
