"""Morphism searches on digits: do inherited weights beat training the found network from scratch?

For each search (``hill-climb`` = NASH, ``neuroevolution``) with its default settings and each seed,
the script runs ``fit("digits")`` single-threaded and records wall time, epochs trained, and the best
network's validation and test accuracy with its inherited weights. It then trains that same
architecture from scratch (fresh seeded weights, one cosine cycle with the same optimiser settings)
twice: for its *lineage* epochs (the epochs its inherited weights accumulated from initialisation
through every ancestor) and for the search's *total* epochs (every network it trained).

Usage::

    python benchmarks/morphism_digits.py                      # both searches, seeds 0 1 2
    python benchmarks/morphism_digits.py --searches hill-climb --seeds 0

Prints a markdown table and writes ``benchmarks/results/morphism_digits.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

import nasflow as nf
from nasflow.morphism import HillClimb, MorphismSearch, Neuroevolution
from nasflow.morphism.base import Data, evaluate, seeded_network, train

ROOT = Path(__file__).resolve().parent
DEFAULT_OUTPUT = ROOT / "results" / "morphism_digits.json"
SEARCHES: dict[str, type[MorphismSearch]] = {"hill-climb": HillClimb, "neuroevolution": Neuroevolution}


def from_scratch(
    search: MorphismSearch, task: nf.Task, arch: nf.Architecture, epochs: int, seed: int
) -> dict:
    """Train ``arch`` from fresh weights for ``epochs`` with the search's optimiser settings."""
    data = Data.from_task(task, search.data_fraction, search.split_seed)
    network = seeded_network(search.space, arch, data, seed)
    start = time.perf_counter()
    curve = train(network, data, epochs, search.settings, seed)
    seconds = time.perf_counter() - start
    test_accuracy, _ = evaluate(network, torch.tensor(task.x_test), torch.tensor(task.y_test))
    return {"epochs": epochs, "val": curve[-1]["accuracy"], "test": test_accuracy, "seconds": seconds}


def run_one(name: str, seed: int, task: nf.Task) -> dict[str, Any]:
    search = SEARCHES[name](seed=seed)
    result = search.fit(task)
    best = result.best_record
    network = result.network(search.space, task)
    test_accuracy, _ = evaluate(network, torch.tensor(task.x_test), torch.tensor(task.y_test))
    scratch_seed = 10_000 + seed
    return {
        "search": name,
        "seed": seed,
        "settings": search.describe(),
        "seconds": result.seconds,
        "networks": len(result.history),
        "total_epochs": result.total_epochs,
        "best_arch": search.space.format(result.best_arch),
        "best_params": best["params"],
        "best_val": result.best_accuracy,
        "best_test": test_accuracy,
        "lineage_epochs": best["lineage_epochs"],
        "scratch_lineage": from_scratch(search, task, result.best_arch, best["lineage_epochs"], scratch_seed),
        "scratch_total": from_scratch(search, task, result.best_arch, result.total_epochs, scratch_seed),
        "history": result.history,
    }


COLUMNS = (
    ("time (s)", "seconds", ".0f"),
    ("networks", "networks", ".0f"),
    ("epochs", "total_epochs", ".0f"),
    ("best val %", "best_val", ".1f"),
    ("best test %", "best_test", ".1f"),
    ("lineage epochs", "lineage_epochs", ".0f"),
    ("scratch (lineage) val %", "lineage_val", ".1f"),
    ("scratch (lineage) test %", "lineage_test", ".1f"),
    ("scratch (total) val %", "total_val", ".1f"),
    ("scratch (total) test %", "total_test", ".1f"),
    ("params", "best_params", ".0f"),
)


def flat(row: dict[str, Any]) -> dict[str, float]:
    """The numbers of one run under the keys of :data:`COLUMNS`."""
    values = {key: float(row[key]) for _, key, _ in COLUMNS if key in row}
    for kind in ("lineage", "total"):
        values[f"{kind}_val"] = row[f"scratch_{kind}"]["val"]
        values[f"{kind}_test"] = row[f"scratch_{kind}"]["test"]
    return values


def summary(rows: list[dict[str, Any]]) -> list[str]:
    """A markdown table: one line per run, then the mean of each search."""
    lines = [
        "| search | seed | " + " | ".join(title for title, _, _ in COLUMNS) + " |",
        "|---|---|" + "---|" * len(COLUMNS),
    ]

    def line(label: str, seed: str, values: dict[str, float]) -> str:
        return f"| {label} | {seed} | " + " | ".join(f"{values[k]:{f}}" for _, k, f in COLUMNS) + " |"

    for row in rows:
        lines.append(line(row["search"], str(row["seed"]), flat(row)))
    for name in dict.fromkeys(r["search"] for r in rows):
        group = [flat(r) for r in rows if r["search"] == name]
        means = {key: statistics.mean(g[key] for g in group) for g in group[:1] for key in g}
        lines.append(line(f"**{name} mean**", "", means))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--searches", nargs="+", default=list(SEARCHES), choices=list(SEARCHES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    torch.set_num_threads(1)
    task = nf.load_task("digits")
    rows = []
    for name in args.searches:
        for seed in args.seeds:
            row = run_one(name, seed, task)
            rows.append(row)
            print(summary([row])[-2], flush=True)
    table = summary(rows)
    print("\n".join(table))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": 1},
        "command": "python benchmarks/morphism_digits.py "
        + " ".join([f"--searches {' '.join(args.searches)}", f"--seeds {' '.join(map(str, args.seeds))}"]),
        "table": table,
        "runs": rows,
    }
    args.output.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
