"""Search quality on the shipped NAS-Bench-201 12-epoch table: nasflow vs Optuna's TPE.

Protocol (as in NAS-Bench-201 / NATS-Bench): every strategy searches on the table's *validation*
accuracy; at each budget k we report the *test* accuracy of the architecture with the best validation
accuracy among the first k queries (ties: the first one found). Each seed runs once with the largest
budget, so the smaller budgets are prefixes of the same run. Repeated architectures count as queries
for every strategy alike.

Strategies:

* ``random``, ``evolution``: nasflow's built-in strategies with default settings, driven through the
  public API (``nf.create_study`` + ``study.optimize``), in-memory storage.
* ``tpe``: the peer, Optuna's default ``TPESampler(seed=seed)`` driven by Optuna itself, with one
  categorical parameter per NB201 edge and the same table lookup as objective.

Usage::

    python benchmarks/nb201_search.py                      # full run: 2 datasets x 3 strategies x 20 seeds
    python benchmarks/nb201_search.py --seeds 0-2 --datasets cifar10 --strategies random tpe

Prints markdown tables and writes ``benchmarks/results/nb201_search.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

import nasflow as nf
from nasflow.benchmarks.nb201 import NB201_DATASETS, load_nb201
from nasflow.space.nb201 import EDGE_NAMES, OPS, NB201Space
from nasflow.trial import TrialState

ROOT = Path(__file__).resolve().parent
DEFAULT_OUTPUT = ROOT / "results" / "nb201_search.json"
STRATEGIES = ("random", "evolution", "tpe")
LABELS = {
    "random": "nasflow random",
    "evolution": "nasflow evolution (regularized)",
    "tpe": "Optuna TPE (default)",
}

#: (validation accuracies, test accuracies) of the queries in order; NaN where a query failed
Trace = tuple[list[float], list[float]]


@dataclass
class RunResult:
    """One search of one strategy on one dataset with one seed."""

    seed: int
    seconds: float
    incumbent_test: dict[int, float]  # budget -> test accuracy of the best-by-validation so far
    incumbent_val: dict[int, float]
    best_arch: str  # the incumbent at the largest budget
    distinct: int  # different architecture strings among the queries (repeats waste budget)


@dataclass
class StrategyResult:
    runs: list[RunResult] = field(default_factory=list)


# -- the searches ---------------------------------------------------------------------------------
def run_nasflow(strategy: str, dataset: str, seed: int, budget: int) -> tuple[Trace, list[str], float]:
    """A nasflow search through the public API; returns the trace, arch strings and seconds."""
    start = time.perf_counter()
    study = nf.create_study(
        space="nb201",
        strategy=strategy,
        evaluator=nf.TabularEvaluator("nb201", dataset=dataset),
        seed=seed,
    )
    study.optimize(budget=budget)
    seconds = time.perf_counter() - start
    vals, tests, archs = [], [], []
    for trial in study.trials():
        complete = trial.state is TrialState.COMPLETE
        vals.append(trial.metrics["accuracy"] if complete else float("nan"))
        tests.append(trial.metrics["test_accuracy"] if complete else float("nan"))
        archs.append(trial.arch_str)
    return (vals, tests), archs, seconds


def run_optuna_tpe(dataset: str, seed: int, budget: int) -> tuple[Trace, list[str], float]:
    """Optuna's default TPE on six categorical edge choices, objective = table validation accuracy."""
    import optuna

    space = NB201Space()
    evaluator = nf.TabularEvaluator("nb201", dataset=dataset)
    vals: list[float] = []
    tests: list[float] = []
    archs: list[str] = []

    def objective(trial: optuna.Trial) -> float:
        choices = {edge: trial.suggest_categorical(edge, list(OPS)) for edge in EDGE_NAMES}
        arch_str = space.format(space.validate(choices))
        metrics = evaluator.lookup(arch_str)
        # Optuna runs trials sequentially here, so append order is query order.
        vals.append(metrics["accuracy"])
        tests.append(metrics["test_accuracy"])
        archs.append(arch_str)
        return metrics["accuracy"]

    start = time.perf_counter()
    # Defaults on purpose (the peer "as shipped"); they change between Optuna releases (e.g. Optuna 5
    # turned multivariate TPE on for single objectives), which is why the JSON records the version.
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=budget)
    seconds = time.perf_counter() - start
    return (vals, tests), archs, seconds


def incumbents(trace: Trace, archs: Sequence[str], budgets: Sequence[int]) -> tuple[dict, dict, str]:
    """Test and validation accuracy of the best-by-validation query within each budget prefix."""
    vals, tests = trace
    if len(vals) < max(budgets):
        raise RuntimeError(f"the run made {len(vals)} queries, fewer than the budget {max(budgets)}")
    inc_test: dict[int, float] = {}
    inc_val: dict[int, float] = {}
    best = -1
    wanted = set(budgets)
    for i, val in enumerate(vals[: max(budgets)]):
        # strict '>' keeps the first one found among equal validation accuracies
        if not np.isnan(val) and (best < 0 or val > vals[best]):
            best = i
        if i + 1 in wanted:
            inc_test[i + 1] = tests[best] if best >= 0 else float("nan")
            inc_val[i + 1] = vals[best] if best >= 0 else float("nan")
    return inc_test, inc_val, archs[best] if best >= 0 else ""


def oracle(dataset: str) -> dict[str, Any]:
    """The best-by-validation architecture of the whole table and its test accuracy.

    Several cells can share the best validation accuracy; all of them are reported so the reader can
    see whether the oracle depends on the tie-break (the first in table order is the headline).
    """
    table = load_nb201()
    val_column, test_column = NB201_DATASETS[dataset]
    val_at, test_at = table.column_index(val_column), table.column_index(test_column)
    rows = [(arch, table.values(arch)) for arch in table]
    top = max(v[val_at] for _, v in rows)  # type: ignore[index]
    tied = [(arch, v[test_at]) for arch, v in rows if v[val_at] == top]  # type: ignore[index]
    best_test = max(v[test_at] for _, v in rows)  # type: ignore[index]
    return {
        "arch_str": tied[0][0],
        "val": top,
        "test": tied[0][1],
        "tied_archs": len(tied),
        "tied_test_range": [min(t for _, t in tied), max(t for _, t in tied)],
        "best_test_in_table": best_test,
    }


# -- reporting -----------------------------------------------------------------------------------
def mean_std(values: Sequence[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=float)
    # sample standard deviation over seeds (ddof=1); 0 for a single seed
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


def summarize(result: StrategyResult, budgets: Sequence[int], top_val: float) -> dict[str, Any]:
    summary: dict[str, Any] = {"test": {}, "val": {}}
    for budget in budgets:
        for key, attr in (("test", "incumbent_test"), ("val", "incumbent_val")):
            mean, std = mean_std([getattr(run, attr)[budget] for run in result.runs])
            summary[key][str(budget)] = {"mean": mean, "std": std}
    mean, std = mean_std([run.seconds for run in result.runs])
    summary["seconds_per_run"] = {"mean": mean, "std": std}
    summary["distinct_archs"] = float(np.mean([run.distinct for run in result.runs]))
    # runs whose final incumbent reached the table's best validation accuracy (any tied cell)
    summary["runs_at_best_val"] = sum(run.incumbent_val[budgets[-1]] == top_val for run in result.runs)
    return summary


def mann_whitney(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Two-sided Mann-Whitney U p-value (runs of different strategies are independent samples)."""
    if len(a) < 2 or len(b) < 2:
        return None
    from scipy.stats import mannwhitneyu

    if np.allclose(a, a[0]) and np.allclose(b, a[0]):
        return 1.0
    return float(mannwhitneyu(a, b, alternative="two-sided").pvalue)


def markdown(
    dataset: str,
    results: dict[str, StrategyResult],
    budgets: Sequence[int],
    best: dict[str, Any],
) -> str:
    seeds = len(next(iter(results.values())).runs)
    summaries = {name: summarize(result, budgets, best["val"]) for name, result in results.items()}
    lines = [
        f"### {dataset}: test accuracy (%) of the best-by-validation architecture, "
        f"mean ± std over {seeds} seeds",
        "",
        "| strategy | " + " | ".join(f"{b} queries" for b in budgets) + " |",
        "| --- |" + " ---: |" * len(budgets),
    ]
    for name, summary in summaries.items():
        cells = [
            f"{summary['test'][str(b)]['mean']:.2f} ± {summary['test'][str(b)]['std']:.2f}" for b in budgets
        ]
        lines.append(f"| {LABELS[name]} | " + " | ".join(cells) + " |")
    lines.append(
        "| oracle (best validation in table) | " + " | ".join(f"{best['test']:.2f}" for _ in budgets) + " |"
    )
    if "tpe" in results:
        peer = results["tpe"]
        for name, result in results.items():
            if name == "tpe":
                continue
            cells = []
            for b in budgets:
                ours = [run.incumbent_test[b] for run in result.runs]
                theirs = [run.incumbent_test[b] for run in peer.runs]
                p = mann_whitney(ours, theirs)
                p_text = "" if p is None else " (p<0.01)" if p < 0.005 else f" (p={p:.2f})"
                cells.append(f"{np.mean(ours) - np.mean(theirs):+.2f}{p_text}")
            lines.append(f"| {name} − TPE (mean difference, Mann-Whitney p) | " + " | ".join(cells) + " |")
    horizon = budgets[-1]
    lines += [
        "",
        f"| strategy ({horizon} queries per run) | wall-clock s / run | distinct archs queried | "
        f"runs reaching the best validation accuracy |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, summary in summaries.items():
        sec = summary["seconds_per_run"]
        lines.append(
            f"| {LABELS[name]} | {sec['mean']:.3f} ± {sec['std']:.3f} | {summary['distinct_archs']:.1f} | "
            f"{summary['runs_at_best_val']} / {seeds} |"
        )
    lines.append("")
    ties = ""
    if best["tied_archs"] > 1:
        low, high = best["tied_test_range"]
        ties = (
            f"; {best['tied_archs']} cells tie on validation, their test accuracies span {low:.2f}–{high:.2f}"
        )
    lines.append(
        f"Oracle: `{best['arch_str']}` (validation {best['val']:.2f}, test {best['test']:.2f}{ties}; "
        f"the highest test accuracy anywhere in the table is {best['best_test_in_table']:.2f})."
    )
    return "\n".join(lines)


def versions() -> dict[str, str]:
    found = {}
    for package in ("nasflow", "optuna", "numpy", "torch", "scipy", "sqlalchemy"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    found["python"] = platform.python_version()
    return found


# -- command line --------------------------------------------------------------------------------
def parse_seeds(tokens: Sequence[str]) -> list[int]:
    """``0-19`` (inclusive range), ``0,3,5`` or ``0 3 5``."""
    seeds: list[int] = []
    for token in tokens:
        for part in token.split(","):
            if not part:
                continue
            if "-" in part[1:]:
                low, high = part.split("-", 1)
                seeds.extend(range(int(low), int(high) + 1))
            else:
                seeds.append(int(part))
    if not seeds:
        raise argparse.ArgumentTypeError("no seeds given")
    return seeds


def split_list(tokens: Sequence[str], cast: Callable[[str], Any] = str) -> list[Any]:
    return [cast(part) for token in tokens for part in token.split(",") if part]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", default=["0-19"], help="e.g. 0-19 or 0 1 2 (default: 0-19)")
    parser.add_argument(
        "--budgets", nargs="+", default=["25,50,100,200"], help="query budgets (default: 25 50 100 200)"
    )
    parser.add_argument(
        "--datasets", nargs="+", default=["cifar10,cifar100"], help="default: cifar10 cifar100"
    )
    parser.add_argument(
        "--strategies", nargs="+", default=[",".join(STRATEGIES)], help="random evolution tpe (default: all)"
    )
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help=f"JSON file (default: {DEFAULT_OUTPUT})"
    )
    args = parser.parse_args(argv)

    seeds = parse_seeds(args.seeds)
    budgets = sorted(set(split_list(args.budgets, int)))
    datasets = split_list(args.datasets)
    strategies = split_list(args.strategies)
    for name in strategies:
        if name not in STRATEGIES:
            parser.error(f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}")
    for name in datasets:
        if name not in NB201_DATASETS:
            parser.error(f"unknown dataset {name!r}; choose from {', '.join(NB201_DATASETS)}")
    if not budgets or budgets[0] < 1:
        parser.error("budgets must be positive integers")

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    load_nb201()  # the one-off table load must not be charged to the first run's wall-clock time

    horizon = budgets[-1]
    report: dict[str, Any] = {
        "benchmark": "nb201_search",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
        "settings": {"seeds": seeds, "budgets": budgets, "datasets": datasets, "strategies": strategies},
        "protocol": (
            "search on validation accuracy of the NB201 12-epoch table; report test accuracy of the "
            "best-by-validation architecture among the first k queries (ties: first found); "
            "mean and sample std (ddof=1) over seeds; one run per seed, smaller budgets are prefixes"
        ),
        "datasets": {},
    }
    sections = []
    total_start = time.perf_counter()
    for dataset in datasets:
        results: dict[str, StrategyResult] = {}
        for name in strategies:
            result = StrategyResult()
            for seed in seeds:
                if name == "tpe":
                    trace, archs, seconds = run_optuna_tpe(dataset, seed, horizon)
                else:
                    trace, archs, seconds = run_nasflow(name, dataset, seed, horizon)
                inc_test, inc_val, best_arch = incumbents(trace, archs, budgets)
                distinct = len(set(archs[:horizon]))
                result.runs.append(RunResult(seed, seconds, inc_test, inc_val, best_arch, distinct))
            results[name] = result
            print(
                f"[{dataset}] {name}: {len(seeds)} runs done ({time.perf_counter() - total_start:.0f} s)",
                flush=True,
            )
        best = oracle(dataset)
        sections.append(markdown(dataset, results, budgets, best))
        report["datasets"][dataset] = {
            "oracle": best,
            "strategies": {
                name: {
                    "label": LABELS[name],
                    "summary": summarize(result, budgets, best["val"]),
                    "runs": [
                        {
                            "seed": run.seed,
                            "seconds": run.seconds,
                            "test": {str(b): v for b, v in run.incumbent_test.items()},
                            "val": {str(b): v for b, v in run.incumbent_val.items()},
                            "best_arch": run.best_arch,
                            "distinct_archs": run.distinct,
                        }
                        for run in result.runs
                    ],
                }
                for name, result in results.items()
            },
        }
    report["total_seconds"] = time.perf_counter() - total_start

    print()
    print("\n\n".join(sections))
    print(f"\nTotal: {report['total_seconds']:.0f} s")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1) + "\n")
    print(f"Wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
