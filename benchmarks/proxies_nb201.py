"""How well do nasflow's zero-cost proxies rank NAS-Bench-201 cells? Rank correlations and cost.

Protocol (close to Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS", ICLR 2021):

* A uniform sample of distinct cell strings (without replacement from the 15,625 of the table), fixed
  by ``--seed``.
* Each cell's network is the official CIFAR-10 network of the benchmark (16 channels, 5 cells per
  stage, 3x32x32 input, 10 classes: ``NB201Space().build(arch, task=None)``), initialised with
  PyTorch's default initialisation from ``--seed`` (the same seed for every cell).
* No CIFAR data is shipped, so the data-using proxies see one fixed batch of ``--batch-size``
  standard Gaussian images with uniformly random labels, drawn once from ``--seed`` (through
  ``ZeroCostEvaluator(task=None)``); synflow, params and flops need no data. Real CIFAR batches are
  what the literature uses, so the data proxies' numbers here are a data-free variant.
* Spearman's rho and Kendall's tau (``scipy.stats``) between each proxy and the 12-epoch table's
  CIFAR-10 and CIFAR-100 validation and test accuracies (``nasflow.benchmarks.nb201.load_nb201``).
  ``-inf`` scores (naswot/jacob_cov for cells whose output ignores the input) rank last.
* For reference, the same correlations for the parameter count over all 15,625 cells of the table
  (last row of the table): how much of this 12-epoch table network size alone explains.
* Seconds per architecture for each proxy, single-threaded, after one untimed warm-up architecture:
  CPU seconds of the process (what one dedicated core would take, even on a busy machine) and
  wall-clock seconds (in the JSON).

Usage::

    python benchmarks/proxies_nb201.py                 # --archs 200 --batch-size 32 --seed 0
    python benchmarks/proxies_nb201.py --archs 20 --proxies synflow naswot params

Prints a markdown table and writes ``benchmarks/results/proxies_nb201.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

from nasflow.benchmarks.nb201 import NB201_DATASETS, load_nb201
from nasflow.estimators.zero_cost import ZeroCostEvaluator
from nasflow.objectives.metrics import count_parameters
from nasflow.proxies import PROXIES, score
from nasflow.space.nb201 import NB201Space

ROOT = Path(__file__).resolve().parent
DEFAULT_OUTPUT = ROOT / "results" / "proxies_nb201.json"
#: accuracy columns the proxies are correlated with, e.g. "cifar10-val"
COLUMNS = [column for dataset in NB201_DATASETS for column in NB201_DATASETS[dataset]]


def sample_cells(count: int, seed: int) -> list[str]:
    """``count`` distinct cell strings drawn uniformly from the table, in a seeded order."""
    table = load_nb201()
    names = sorted(table)
    if not 1 <= count <= len(names):
        raise SystemExit(f"--archs must be in [1, {len(names)}], got {count}")
    chosen = np.random.default_rng(seed).choice(len(names), size=count, replace=False)
    return [names[i] for i in chosen]


def measure(cells: list[str], proxies: list[str], batch_size: int, seed: int) -> list[dict[str, Any]]:
    """Proxy values and seconds for every cell, plus its table accuracies."""
    table = load_nb201()
    space = NB201Space()
    evaluator = ZeroCostEvaluator(proxies, task=None, batch_size=batch_size, split_seed=seed)
    evaluator.setup(space)
    inputs, labels = evaluator.batch()
    # one untimed architecture first: the first FLOP count and first backward pay one-off set-up costs
    warm = evaluator.build(space.parse(cells[0]), seed)
    for name in proxies:
        score(name, warm, inputs, labels, seed=seed)
    rows = []
    for number, cell in enumerate(cells, 1):
        model = evaluator.build(space.parse(cell), seed)
        values, seconds, cpu_seconds = {}, {}, {}
        for name in proxies:
            start, cpu_start = time.perf_counter(), time.process_time()
            values[name] = score(name, model, inputs, labels, seed=seed)
            seconds[name] = time.perf_counter() - start
            cpu_seconds[name] = time.process_time() - cpu_start
        rows.append(
            {
                "arch": cell,
                **table.row(cell),
                "proxies": values,
                "seconds": seconds,
                "cpu_seconds": cpu_seconds,
            }
        )
        if number % 10 == 0 or number == len(cells):
            print(f"  {number}/{len(cells)} architectures scored", flush=True)
    return rows


def whole_table_params() -> dict[str, dict[str, float]]:
    """Rank correlations of the parameter count with accuracy over all 15,625 cells of the table.

    A reference for the sample: how much of this (12-epoch) table network size alone explains.
    """
    table = load_nb201()
    space = NB201Space()
    cells = sorted(table)
    counts: dict[tuple[int, int], int] = {}
    params = []
    for cell in cells:
        # only the 1x1 and 3x3 convolutions of a cell have parameters, so their numbers fix the total
        key = (cell.count("nor_conv_1x1"), cell.count("nor_conv_3x3"))
        if key not in counts:
            with torch.random.fork_rng():
                counts[key] = count_parameters(space.build(space.parse(cell), None))
        params.append(counts[key])
    result = {}
    for column in COLUMNS:
        accuracy = np.array([table.row(cell)[column] for cell in cells])
        result[column] = {
            "spearman": float(stats.spearmanr(params, accuracy).statistic),
            "kendall": float(stats.kendalltau(params, accuracy).statistic),
        }
    return result


def correlations(rows: list[dict[str, Any]], proxies: list[str]) -> dict[str, dict[str, dict[str, float]]]:
    """proxy -> accuracy column -> {"spearman", "kendall"}."""
    result: dict[str, dict[str, dict[str, float]]] = {}
    for name in proxies:
        values = np.array([row["proxies"][name] for row in rows], dtype=float)
        result[name] = {}
        for column in COLUMNS:
            accuracy = np.array([row[column] for row in rows], dtype=float)
            result[name][column] = {
                "spearman": float(stats.spearmanr(values, accuracy).statistic),
                "kendall": float(stats.kendalltau(values, accuracy).statistic),
            }
    return result


def timing(rows: list[dict[str, Any]], proxies: list[str]) -> dict[str, dict[str, float]]:
    """proxy -> mean and median wall-clock and CPU seconds per architecture."""
    result = {}
    for name in proxies:
        result[name] = {}
        for kind in ("seconds", "cpu_seconds"):
            values = np.array([row[kind][name] for row in rows])
            result[name][f"{kind}_mean"] = float(values.mean())
            result[name][f"{kind}_median"] = float(np.median(values))
    return result


def markdown(
    corr: dict[str, dict[str, dict[str, float]]],
    secs: dict[str, dict[str, float]],
    rows: list[dict[str, Any]],
    reference: dict[str, dict[str, float]],
) -> str:
    header = " | ".join(f"{column} ρ / τ" for column in COLUMNS)
    lines = [
        f"| proxy | {header} | CPU s/arch | -inf |",
        "| --- |" + " ---: |" * (len(COLUMNS) + 2),
    ]
    order = sorted(corr, key=lambda name: -corr[name]["cifar10-test"]["spearman"])
    for name in order:
        cells = " | ".join(
            f"{corr[name][c]['spearman']:.3f} / {corr[name][c]['kendall']:.3f}" for c in COLUMNS
        )
        infinite = sum(1 for row in rows if math.isinf(row["proxies"][name]))
        lines.append(f"| {name} | {cells} | {secs[name]['cpu_seconds_mean']:.3f} | {infinite} |")
    cells = " | ".join(f"{reference[c]['spearman']:.3f} / {reference[c]['kendall']:.3f}" for c in COLUMNS)
    lines.append(f"| *params, all 15,625 cells* | {cells} | | |")
    return "\n".join(lines)


def finite_or_null(value: Any) -> Any:
    """``value`` with every infinite or NaN float replaced by None (strict JSON has no infinities)."""
    if isinstance(value, dict):
        return {key: finite_or_null(item) for key, item in value.items()}
    if isinstance(value, list):
        return [finite_or_null(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def environment() -> dict[str, Any]:
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "nasflow": metadata.version("nasflow"),
        "scipy": metadata.version("scipy"),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", type=int, default=200, help="distinct cells to score")
    parser.add_argument("--batch-size", type=int, default=32, help="synthetic examples for the data proxies")
    parser.add_argument("--seed", type=int, default=0, help="seeds the sample, the weights and the batch")
    parser.add_argument("--proxies", nargs="+", default=list(PROXIES), choices=list(PROXIES))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: as in the docs)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    start = time.perf_counter()
    cells = sample_cells(args.archs, args.seed)
    print(f"scoring {len(cells)} NB201 cells with {', '.join(args.proxies)} (batch {args.batch_size})")
    rows = measure(cells, args.proxies, args.batch_size, args.seed)
    corr, secs = correlations(rows, args.proxies), timing(rows, args.proxies)
    reference = whole_table_params()
    total = time.perf_counter() - start
    table = markdown(corr, secs, rows, reference)
    print()
    print(table)
    print(f"\n{len(cells)} architectures, {total:.0f} s in total")

    result = {
        "settings": {
            "archs": args.archs,
            "batch_size": args.batch_size,
            "seed": args.seed,
            "proxies": args.proxies,
            "network": "NB201Space(channels=16, cells_per_stage=5).build(arch, None): official CIFAR-10 net",
            "data": "standard Gaussian 3x32x32 inputs, uniform labels in [0, 10), drawn from the seed",
        },
        "environment": environment(),
        "total_seconds": total,
        "correlations": corr,
        "seconds_per_arch": secs,
        "params_all_cells": reference,
        "markdown": table,
        "rows": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(finite_or_null(result), indent=1, allow_nan=False) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
