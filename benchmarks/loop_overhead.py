"""Per-trial overhead of nasflow's study loop with the (near-free) tabular NB201 evaluator.

For each strategy and storage backend, one ``study.optimize(budget=N)`` call on a fresh study is
timed; the per-trial cost is its wall-clock time divided by N (median of several repeats, each on a
new study; SQLite repeats use a new database file in a temp dir). Study creation, the one-off table
load and the first SQLAlchemy import are done before timing. For context, the raw
``TabularEvaluator.evaluate()`` time per call is measured on the same architectures the loop sees.

Targets (issue): <= 2 ms per trial in memory, <= 10 ms per trial with SQLite. When a target is
missed, or with ``--profile``, the script prints cProfile's top hot spots of one extra run.

Usage::

    python benchmarks/loop_overhead.py                       # 1,000 trials, 3 repeats, random + evolution
    python benchmarks/loop_overhead.py --trials 200 --repeats 1 --profile

Prints a markdown table and writes ``benchmarks/results/loop_overhead.json``.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import json
import platform
import pstats
import statistics
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

import nasflow as nf
from nasflow.benchmarks.nb201 import load_nb201
from nasflow.estimators.base import EvalContext
from nasflow.space.nb201 import NB201Space

ROOT = Path(__file__).resolve().parent
DEFAULT_OUTPUT = ROOT / "results" / "loop_overhead.json"
BACKENDS = ("memory", "sqlite")
TARGET_MS = {"memory": 2.0, "sqlite": 10.0}


def make_study(strategy: str, backend: str, folder: Path, tag: str) -> nf.Study:
    storage = None if backend == "memory" else f"sqlite:///{folder / f'{tag}.db'}"
    return nf.create_study(
        space="nb201",
        strategy=strategy,
        evaluator=nf.TabularEvaluator("nb201", dataset="cifar10"),
        storage=storage,
        name=tag,
        seed=0,
    )


def time_loop(strategy: str, backend: str, trials: int, folder: Path, tag: str) -> float:
    """Seconds of one optimize(budget=trials) on a fresh study (creation not timed)."""
    study = make_study(strategy, backend, folder, tag)
    start = time.perf_counter()
    study.optimize(budget=trials)
    elapsed = time.perf_counter() - start
    done = len(study.trials())
    if done != trials:
        raise RuntimeError(f"{strategy}/{backend}: expected {trials} trials, the study holds {done}")
    return elapsed


def time_evaluate(trials: int, repeats: int) -> float:
    """Median seconds per ``evaluate()`` call over ``trials`` random NB201 cells."""
    space = NB201Space()
    evaluator = nf.TabularEvaluator("nb201", dataset="cifar10")
    evaluator.setup(space)
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(trials)]
    contexts = [EvalContext(trial_number=i, seed=i) for i in range(trials)]
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for arch, context in zip(archs, contexts, strict=True):
            evaluator.evaluate(arch, context)
        runs.append((time.perf_counter() - start) / trials)
    return statistics.median(runs)


def profile_loop(strategy: str, backend: str, trials: int, folder: Path, top: int) -> str:
    """cProfile's top functions (own time and cumulative) for one more optimize run."""
    study = make_study(strategy, backend, folder, f"profile-{strategy}-{backend}")
    profiler = cProfile.Profile()
    profiler.enable()
    study.optimize(budget=trials)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs()
    out.write(f"--- {strategy} / {backend}: {trials} trials, sorted by own time ---\n")
    stats.sort_stats("tottime").print_stats(top)
    out.write(f"--- {strategy} / {backend}: sorted by cumulative time ---\n")
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def versions() -> dict[str, str]:
    found = {}
    for package in ("nasflow", "numpy", "sqlalchemy", "torch", "optuna"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    found["python"] = platform.python_version()
    import sqlite3

    found["sqlite"] = sqlite3.sqlite_version
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000, help="trials per timed run (default: 1000)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per setting; the median is kept")
    parser.add_argument("--strategies", nargs="+", default=["random", "evolution"])
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--profile", action="store_true", help="profile every setting, not only misses")
    parser.add_argument("--top", type=int, default=15, help="functions shown per profile (default: 15)")
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help=f"JSON file (default: {DEFAULT_OUTPUT})"
    )
    args = parser.parse_args(argv)
    if args.trials < 1 or args.repeats < 1:
        parser.error("--trials and --repeats must be positive")

    # One-off costs that a long search pays once are kept out of the per-trial numbers.
    load_nb201()
    results: list[dict[str, Any]] = []
    profiles: list[str] = []
    with tempfile.TemporaryDirectory(prefix="nasflow-overhead-") as tmp:
        folder = Path(tmp)
        if "sqlite" in args.backends:
            make_study("random", "sqlite", folder, "warmup")  # imports SQLAlchemy, builds its caches
        evaluate_s = time_evaluate(args.trials, args.repeats)
        for strategy in args.strategies:
            for backend in args.backends:
                runs = [
                    time_loop(strategy, backend, args.trials, folder, f"{strategy}-{backend}-{i}")
                    for i in range(args.repeats)
                ]
                per_trial_ms = statistics.median(runs) / args.trials * 1e3
                target = TARGET_MS[backend]
                row = {
                    "strategy": strategy,
                    "storage": backend,
                    "trials": args.trials,
                    "repeats_s": runs,
                    "ms_per_trial": per_trial_ms,
                    "loop_ms_per_trial": per_trial_ms - evaluate_s * 1e3,
                    "target_ms": target,
                    "meets_target": per_trial_ms <= target,
                }
                results.append(row)
                print(f"{strategy:>10} / {backend:<6}: {per_trial_ms:.3f} ms per trial", flush=True)
                if args.profile or not row["meets_target"]:
                    profiles.append(profile_loop(strategy, backend, args.trials, folder, args.top))

    lines = [
        "",
        f"Per-trial cost of study.optimize() with the tabular NB201 evaluator, {args.trials:,} trials, "
        f"median of {args.repeats}",
        "",
        "| strategy | storage | ms / trial | of which loop (ms) | target (ms) | meets target |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for row in results:
        lines.append(
            f"| {row['strategy']} | {row['storage']} | {row['ms_per_trial']:.3f} | "
            f"{row['loop_ms_per_trial']:.3f} | ≤ {row['target_ms']:g} | "
            f"{'yes' if row['meets_target'] else 'NO'} |"
        )
    lines += [
        "",
        f"Raw TabularEvaluator.evaluate(): {evaluate_s * 1e6:.1f} µs per call (median of {args.repeats}).",
    ]
    print("\n".join(lines))
    for text in profiles:
        print()
        print(text)

    report = {
        "benchmark": "loop_overhead",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
        "settings": {
            "trials": args.trials,
            "repeats": args.repeats,
            "strategies": args.strategies,
            "backends": args.backends,
            "evaluator": "TabularEvaluator('nb201', dataset='cifar10')",
        },
        "evaluate_us_per_call": evaluate_s * 1e6,
        "results": results,
        "profiles": profiles,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1) + "\n")
    print(f"Wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
