"""One-shot searches on digits (NB201 cells, 8 channels, one cell per stage): what do they find?

Protocol: each registered one-shot search runs with its default settings, once per seed, on the
digits task with ``NB201Space(channels=8, cells_per_stage=1)`` (the space ``nasflow search`` uses on
digits). Its derived architecture is then trained from scratch with ``TrainEvaluator`` (default
settings: 10 epochs, seed 0) and evaluated on the validation split and, with the same training, on
the held-out test split. The search itself never sees the test split. As a reference, ``--random``
architectures drawn uniformly (seed 0) are trained the same way.

One more DARTS run with ``--long`` epochs (100, seed 0) shows whether DARTS drifts towards
parameter-free operations when it trains longer, as it does on CIFAR-10.

When the ``nb201-digits`` table (``nasflow.benchmarks.digits``) is shipped and holds the derived
network, its tabulated validation/test accuracy is reported too.

Reported per search (mean and per seed): test and validation accuracy from scratch, the number of
skip connections / pools / parameter-free operations (``none``, ``skip_connect``, ``avg_pool_3x3``)
in the derived cell, its parameters, weight-sharing score, epochs run and wall/CPU time of the
search. Runs already in the output file are kept (``--fresh`` starts over), so an interrupted run can
be resumed.

Usage::

    python benchmarks/oneshot_digits.py       # 7 searches x 5 seeds + 100-epoch DARTS, ~1 h CPU
    python benchmarks/oneshot_digits.py --searches darts gdas --seeds 0-1

Prints a markdown table and writes ``benchmarks/results/oneshot_digits.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nasflow import catalog
from nasflow.estimators.base import EvalContext
from nasflow.estimators.train import TrainEvaluator
from nasflow.space.architecture import Architecture
from nasflow.space.nb201 import NB201Space
from nasflow.tasks import Task, load_task

ROOT = Path(__file__).resolve().parent
DEFAULT_OUTPUT = ROOT / "results" / "oneshot_digits.json"
SEARCHES = ("darts", "darts+", "fairdarts", "gdas", "enas", "spos", "rsws")
PARAMETER_FREE = ("none", "skip_connect", "avg_pool_3x3")
SPACE = NB201Space(channels=8, cells_per_stage=1)


def parse_seeds(text: str) -> list[int]:
    if "-" in text:
        low, high = text.split("-")
        return list(range(int(low), int(high) + 1))
    return [int(s) for s in text.split(",")]


class FromScratch:
    """Validation and test accuracy of an architecture trained from scratch (default TrainEvaluator)."""

    def __init__(self, task: Task) -> None:
        self.val = TrainEvaluator(task)
        # the same training (same seed, same data) read out on the test split
        self.test = TrainEvaluator(dataclasses.replace(task, x_val=task.x_test, y_val=task.y_test))
        self.val.setup(SPACE)
        self.test.setup(SPACE)

    def __call__(self, arch: Architecture) -> dict[str, float]:
        context = EvalContext(seed=0)
        val = self.val.evaluate(arch, context).metrics
        test = self.test.evaluate(arch, context).metrics
        return {"val_accuracy": val["accuracy"], "test_accuracy": test["accuracy"], "params": val["params"]}


def table_lookup(arch_str: str) -> dict[str, float] | None:
    """The nb201-digits table's accuracies for the network, if the table is shipped and holds it."""
    try:
        from nasflow.benchmarks.digits import load_nb201_digits, representative

        key = representative(arch_str)
        if key is None:
            return None
        row = load_nb201_digits().row(key)
        return {"table_val_accuracy": float(row["valid_acc"]), "table_test_accuracy": float(row["test_acc"])}
    except Exception:  # noqa: BLE001 - the table is optional; any problem means "not available"
        return None


def cell_counts(arch: Architecture) -> dict[str, int]:
    values = list(arch.values())
    return {
        "skip_connections": values.count("skip_connect"),
        "pools": values.count("avg_pool_3x3"),
        "parameter_free": sum(values.count(op) for op in PARAMETER_FREE),
    }


def run_search(name: str, seed: int, task: Task, scratch: FromScratch, **options: Any) -> dict[str, Any]:
    search = catalog.get_oneshot(name, space=SPACE, seed=seed, **options)
    wall, cpu = time.perf_counter(), time.process_time()
    result = search.fit(task)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    arch = result.arch
    record: dict[str, Any] = {
        "search": name,
        "seed": seed,
        "arch": result.arch_str,
        "ws_score": result.score,
        "epochs_run": len(result.epochs),
        "stopped_early": result.stopped_early,
        "search_wall_s": wall,
        "search_cpu_s": cpu,
        **cell_counts(arch),
        **scratch(arch),
    }
    record.update(table_lookup(result.arch_str) or {})
    return record


def run_random(count: int, task: Task, scratch: FromScratch) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(count):
        arch = SPACE.sample(rng)
        rows.append({"arch": SPACE.format(arch), **cell_counts(arch), **scratch(arch)})
    return rows


def _mean(rows: list[dict[str, Any]], key: str, digits: int = 2) -> str:
    values = [r[key] for r in rows if key in r]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "| search | test acc % (scratch) | val acc % (scratch) | params | ws score % | skips | pools | "
        "param-free ops | epochs | search wall s | search CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in SEARCHES:
        rows = [r for r in results["runs"] if r["search"] == name]
        if not rows:
            continue
        lines.append(
            f"| {name} | {_mean(rows, 'test_accuracy')} | {_mean(rows, 'val_accuracy')} | "
            f"{_mean(rows, 'params', 0)} | {_mean(rows, 'ws_score')} | "
            f"{_mean(rows, 'skip_connections')} | {_mean(rows, 'pools')} | "
            f"{_mean(rows, 'parameter_free')} | {_mean(rows, 'epochs_run')} | "
            f"{_mean(rows, 'search_wall_s')} | {_mean(rows, 'search_cpu_s')} |"
        )
    random_rows = results.get("random", [])
    if random_rows:
        lines.append(
            f"| random archs (n={len(random_rows)}) | {_mean(random_rows, 'test_accuracy')} | "
            f"{_mean(random_rows, 'val_accuracy')} | {_mean(random_rows, 'params', 0)} | - | "
            f"{_mean(random_rows, 'skip_connections')} | "
            f"{_mean(random_rows, 'pools')} | {_mean(random_rows, 'parameter_free')} | - | - | - |"
        )
    long = results.get("long_darts")
    if long:
        lines.append(
            f"| darts, {long['epochs_run']} epochs (seed 0) | {long['test_accuracy']:.2f} | "
            f"{long['val_accuracy']:.2f} | {long['params']:.0f} | {long['ws_score']:.2f} | "
            f"{long['skip_connections']} | {long['pools']} | {long['parameter_free']} | "
            f"{long['epochs_run']} | {long['search_wall_s']:.0f} | {long['search_cpu_s']:.0f} |"
        )
    lines += [
        "",
        "| search | seed | derived architecture | test % | skips | epochs | stopped early |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sorted(results["runs"], key=lambda r: (SEARCHES.index(r["search"]), r["seed"])):
        stopped = r["stopped_early"] or ""
        arch = r["arch"].replace("|", "\\|")  # a bare | would end the table cell
        lines.append(
            f"| {r['search']} | {r['seed']} | `{arch}` | {r['test_accuracy']:.2f} | "
            f"{r['skip_connections']} | {r['epochs_run']} | {stopped} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--searches", nargs="+", default=list(SEARCHES), choices=SEARCHES)
    parser.add_argument("--seeds", default="0-4", help="e.g. 0-4 or 0,3")
    parser.add_argument("--random", type=int, default=10, help="random architectures trained as a reference")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--fresh", action="store_true", help="ignore runs already in the output file")
    parser.add_argument("--report", action="store_true", help="only print the table of the output file")
    parser.add_argument(
        "--long", type=int, default=100, help="epochs of one extra DARTS run (seed 0) probing for collapse"
    )
    args = parser.parse_args()
    if args.report:
        print(markdown(json.loads(args.output.read_text())))
        return
    torch.set_num_threads(1)

    results: dict[str, Any] = {"runs": [], "random": []}
    if args.output.is_file() and not args.fresh:
        results = json.loads(args.output.read_text())
    results["machine"] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    results["space"] = SPACE.describe()
    task = load_task("digits")
    scratch = FromScratch(task)

    def save() -> None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=1))

    if args.random and len(results.get("random", [])) < args.random:
        results["random"] = run_random(args.random, task, scratch)
        save()
    done = {(r["search"], r["seed"]) for r in results["runs"]}
    for seed in parse_seeds(args.seeds):
        for name in args.searches:
            if (name, seed) in done:
                continue
            record = run_search(name, seed, task, scratch)
            results["runs"].append(record)
            save()
            print(
                f"{name} seed {seed}: {record['arch']} test {record['test_accuracy']:.2f}% "
                f"skips {record['skip_connections']} ({record['search_wall_s']:.0f} s wall, "
                f"{record['search_cpu_s']:.0f} s CPU)",
                flush=True,
            )
    if args.long and results.get("long_darts", {}).get("epochs_run") != args.long:
        results["long_darts"] = run_search("darts", 0, task, scratch, epochs=args.long)
        save()
    print(markdown(results))


if __name__ == "__main__":
    main()
