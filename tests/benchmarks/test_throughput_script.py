"""benchmarks/throughput.py and benchmarks/parallel_efficiency.py: their --quick runs and their arithmetic."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from nasflow.errors import SearchExhausted
from nasflow.space.nb201 import NB201Space

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str) -> ModuleType:
    path = ROOT / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_nasflow_benchmark_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


throughput = _load("throughput")
efficiency = _load("parallel_efficiency")


def _tables(text: str) -> list[list[list[str]]]:
    """Markdown tables in ``text``: each a list of rows (header first, alignment row dropped) of cells."""
    tables: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            current.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif current:
            tables.append([current[0], *current[2:]])
            current = []
    return tables


def _positive(*values: Any) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in values)


# -- throughput.py ----------------------------------------------------------------------------------
def _check_throughput(payload: dict[str, Any], tables: list[list[list[str]]], executors: list[str]) -> None:
    rows = payload["executors"]
    assert [(r["executor"], r["storage"]) for r in rows] == [
        (e, s) for e in executors for s in ("memory", "sqlite")
    ]
    for row in rows:
        assert row["trials"] == 20  # every run completed exactly its budget
        assert row["workers"] == (1 if row["executor"] == "inline" else 2)
        assert _positive(row["start_s"], row["wall_s"], row["trials_per_s"], row["driver_cpu_ms_per_trial"])
        assert row["trials_per_s"] == pytest.approx(20 / row["wall_s"])
        assert row["ms_per_trial"] == pytest.approx(1e3 / row["trials_per_s"])

    assert [(r["storage"], r["study_size"], r["window"]) for r in payload["growth"]] == [
        ("memory", 10, 2),
        ("memory", 20, 4),
        ("sqlite", 10, 2),
        ("sqlite", 20, 4),
    ]
    assert all(_positive(r["ms_per_trial"]) for r in payload["growth"])

    stores = payload["stores"]
    assert [(r["storage"], r["study_size"]) for r in stores] == [
        ("memory", 10),
        ("memory", 20),
        ("sqlite", 10),
        ("sqlite", 20),
    ]
    for row in stores:
        assert _positive(row["create_ms"], row["report_ms"], row["finish_ms"], row["get_trials_ms"])
        assert row["write_ms"] == pytest.approx(row["create_ms"] + row["finish_ms"])
        assert row["max_trials_per_s"] == pytest.approx(1e3 / row["write_ms"])
    # the state written is an evolution population of 10: a few KB, the same in every row
    assert len({r["state_bytes"] for r in stores}) == 1 and 500 < stores[0]["state_bytes"] < 20_000

    for row in payload["strategies"]:
        assert row["history"] in (10, 20) if row["strategy"] in ("random", "evolution") else (12, 16)
        assert row["window"] == max(1, row["history"] // 5)
        assert _positive(row["ask_ms"], row["tell_ms"], row["state_ms"], row["state_kb"])
        assert row["total_ms"] == pytest.approx(row["ask_ms"] + row["tell_ms"] + row["state_ms"])

    for row in payload["drivers"]:
        assert row["storage"] == "sqlite" and row["trials"] == 20  # the trials were numbered 0..19
        assert 1 <= row["distinct_archs"] <= 20
        # the busiest driver ran at least its fair share, and a lone driver ran every trial
        assert 1 / row["drivers"] <= row["busiest_share"] <= 1
        assert row["busiest_share"] == 1 or row["drivers"] > 1
        assert _positive(row["wall_s"]) and row["trials_per_s"] == pytest.approx(20 / row["wall_s"])

    # printed: one table per part, each row with as many cells as its header
    headers = [t[0][0] for t in tables]
    parts = ["executors", "growth", "stores", "strategies", "drivers"]
    assert headers == ["executor", "storage", "storage", "strategy", "storage"][: len(headers)]
    counts = [len(payload[part]) for part in parts if payload[part]]
    assert [len(t) - 1 for t in tables] == counts
    assert all(len(row) == len(t[0]) for t in tables for row in t)
    assert [row[3] for row in tables[0][1:]] == ["20"] * len(rows)


def test_throughput_quick_inline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "throughput.json"
    argv = ["--quick", "--executors", "inline", "--storages", "memory", "sqlite", "--drivers", "1"]
    assert throughput.main([*argv, "--output", str(output)]) == 0
    payload = json.loads(output.read_text())
    assert payload["benchmark"] == "throughput" and payload["ray"] == [] and payload["drivers"] == []
    _check_throughput(payload, _tables(capsys.readouterr().out), ["inline"])
    strategies = [(r["strategy"], r["history"]) for r in payload["strategies"]]
    assert strategies == [
        ("random", 10),
        ("random", 20),
        ("evolution", 10),
        ("evolution", 20),
        ("bananas", 12),
        ("bananas", 16),
    ]
    # random's state is its generator alone; evolution's holds its population of up to 10 members
    random_kb, evolution_kb = payload["strategies"][1]["state_kb"], payload["strategies"][3]["state_kb"]
    assert random_kb < 0.5 < evolution_kb


@pytest.mark.slow
def test_throughput_quick_processes_and_drivers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "throughput.json"
    argv = ["--quick", "--executors", "inline", "processes", "--storages", "memory", "sqlite"]
    assert throughput.main([*argv, "--strategies", "random", "--output", str(output)]) == 0
    payload = json.loads(output.read_text())
    _check_throughput(payload, _tables(capsys.readouterr().out), ["inline", "processes"])
    assert [r["strategy"] for r in payload["strategies"]] == ["random", "random"]
    # one SQLite study searched by one driver process, then by two at once
    assert [r["drivers"] for r in payload["drivers"]] == [1, 2]


def test_throughput_rejects_postgres_without_url(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        throughput.parse_args(["--storages", "postgres", "--postgres", ""])
    assert "needs --postgres URL" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        throughput.parse_args(["--trials", "0"])


def test_window_ms_is_the_mean_gap_of_the_last_fifth() -> None:
    finished = [0.001 * (i + 1) ** 2 for i in range(20)]  # trial i finishes at (i+1)^2 ms
    # size 10: the last 2 trials finished at 81 and 100 ms, the one before them at 64 ms
    assert throughput.window_ms(finished, 10) == pytest.approx((100 - 64) / 2)
    # size 4: a window of 0.8 rounds up to 1 trial: 16 - 9 ms
    assert throughput.window_ms(finished, 4) == pytest.approx(16 - 9)
    # the window may reach back to the start of the search
    assert throughput.window_ms([0.002, 0.004], 1) == pytest.approx(2.0)


# -- parallel_efficiency.py -------------------------------------------------------------------------
def test_fixed_list_proposes_in_order_and_resumes() -> None:
    space = NB201Space()
    archs = [space.sample(np.random.default_rng(i)).to_dict() for i in range(3)]
    strategy = efficiency.FixedList(archs)
    strategy.setup(space, [], seed=0)
    assert [a.to_dict() for a in strategy.ask(2)] == archs[:2]
    again = efficiency.FixedList(archs)
    again.setup(space, [], seed=0)
    again.load_state_dict(json.loads(json.dumps(strategy.state_dict())))
    assert [a.to_dict() for a in again.ask(1)] == archs[2:]
    with pytest.raises(SearchExhausted):
        again.ask(1)


def test_list_schedule_hands_trials_in_order_to_the_first_free_worker() -> None:
    # a long trial first: the other worker runs the three short ones meanwhile
    assert efficiency.list_schedule([3.0, 1.0, 1.0, 1.0], 2) == 3.0
    # a long trial last: it starts only when a worker frees up at t=1, and ends at 4
    assert efficiency.list_schedule([1.0, 1.0, 1.0, 3.0], 2) == 4.0
    assert efficiency.list_schedule([2.0, 2.0], 1) == 4.0
    assert efficiency.list_schedule([], 2) == 0.0


def test_summarise_keeps_the_fastest_run_and_computes_efficiency() -> None:
    def run(mode: str, workers: int, threads: int, wall: float, evaluate: float) -> dict[str, Any]:
        return {
            "mode": mode,
            "workers": workers,
            "threads_per_worker": threads,
            "start_s": 2.0,
            "wall_s": wall,
            "evaluate_s": evaluate,
            "accuracy": {"a": 90.0},
        }

    runs = [
        run("inline", 1, 1, 12.0, 11.0),
        run("inline-threads", 1, 2, 8.0, 7.5),
        run("processes", 2, 1, 6.5, 12.0),
        run("inline", 1, 1, 10.0, 9.5),
        run("inline-threads", 1, 2, 7.0, 6.5),
        run("processes", 2, 1, 6.0, 11.0),
    ]
    rows = efficiency.summarise(runs)
    assert [r["mode"] for r in rows] == ["inline", "inline-threads", "processes"]
    assert [r["walls_s"] for r in rows] == [[12.0, 10.0], [8.0, 7.0], [6.5, 6.0]]
    inline, threads, processes = rows
    assert inline["efficiency"] == 1.0 and inline["efficiency_with_start"] == 1.0  # no start-up for inline
    assert threads["efficiency"] == pytest.approx(10 / (2 * 7))
    assert processes["efficiency"] == pytest.approx(10 / (2 * 6))
    assert processes["speedup"] == pytest.approx(10 / 6)
    assert processes["efficiency_with_start"] == pytest.approx(10 / (2 * (6 + 2)))
    assert processes["evaluate_slowdown"] == pytest.approx(11 / 9.5)
    assert processes["same_metrics"] is True and threads["same_metrics"] is None


@pytest.mark.slow
def test_parallel_efficiency_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    threads = torch.get_num_threads()
    output = tmp_path / "efficiency.json"
    argv = ["--quick", "--modes", "inline", "processes", "--output", str(output)]
    assert efficiency.main(argv) == 0
    assert torch.get_num_threads() == threads  # the inline modes gave back the thread count
    payload = json.loads(output.read_text())
    rows = payload["results"]
    modes = [(r["mode"], r["workers"], r["threads_per_worker"]) for r in rows]
    assert modes == [("inline", 1, 1), ("processes", 2, 1)]
    assert len(payload["architectures"]) == 4 and len(payload["runs"]) == 2
    for row in rows:
        assert row["trials"] == 4
        assert _positive(row["start_s"], row["wall_s"], row["evaluate_s"], row["efficiency"])
        assert row["efficiency"] == pytest.approx(rows[0]["wall_s"] / (row["cores"] * row["wall_s"]))
        # the workers cannot evaluate for longer than they exist (small tolerance for clock reads), and
        # a run without overhead (the list schedule) is at most as long as the measured one
        assert row["evaluate_s"] <= row["workers"] * row["wall_s"] + 0.05
        assert row["evaluate_s"] / row["workers"] <= row["scheduled_s"] <= row["wall_s"] + 0.05
        assert 0 <= row["imbalance_ms_per_trial"] <= row["overhead_ms_per_trial"] + 50
        assert set(row["accuracy"]) == set(payload["architectures"])
        assert all(0 <= a <= 100 for a in row["accuracy"].values())
    # one thread per worker: worker processes train bit-identically to the driver
    assert rows[1]["same_metrics"] is True
    assert rows[1]["accuracy"] == rows[0]["accuracy"]
    table = _tables(capsys.readouterr().out)[0]
    assert [row[0] for row in table[1:]] == ["inline", "processes"]
    assert all(len(row) == len(table[0]) for row in table)
