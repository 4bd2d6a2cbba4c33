"""Multi-objective search on NAS-Bench-201 CIFAR-10: hypervolume of nasflow's strategies vs Optuna's NSGA-II.

Settings (two-objective, one fixed reference point each):

* ``params``: ``accuracy:max`` (the table's 12-epoch CIFAR-10 validation accuracy, as the ``tabular``
  evaluator reports it) and ``params:min`` (trainable parameters of the official network);
* ``flops``: ``accuracy:max`` and ``flops:min`` (multiply-accumulates of one 3x32x32 forward pass,
  NAS-Bench-201's "FLOPs" convention, see ``nasflow.objectives.metrics.count_macs``).

The table has no cost columns, so they are computed exactly. The NB201 network (C=16, N=5, 10 classes,
32x32 input) is a fixed skeleton whose cell edges each hold an independent module, and each of the 15
cells sees one fixed width and resolution, so ``cost(cell) = cost(skeleton with every edge 'none') +
sum over the 6 edges of cost(op of the edge)``, where an op's cost is summed over the 15 cells and does
not depend on the edge. The per-op costs come from counting networks with one edge set (and are the
same for every edge); the formula is checked against direct counts of 20 random cells each run (and in
``tests/strategies/test_multiobjective.py`` on a smaller network).

Protocol: every strategy runs one in-memory study per seed with the largest budget through the public
API (``nf.create_study`` + ``study.optimize``); the smaller budgets are prefixes. After each trial the
hypervolume of the feasible completed trials so far is computed (``hypervolume_trajectory``) with the
setting's fixed reference point: the nadir of the *true* Pareto front of all 15,625 cells minus 10% of
the front's range on each objective. The hypervolume of that true front is reported too, so every
number can be read as a share of the best possible. Overhead is the time the strategy itself spends in
``ask`` and ``tell`` (``nasflow.bench.timing.TimedStrategy``) per trial.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/hypervolume_nb201.py                 # 20 seeds, both settings
    OMP_NUM_THREADS=1 python benchmarks/hypervolume_nb201.py --seeds 100-109 --output-dir /tmp/tune \\
        --strategies nsga2 "nsga2-p10=nsga2:population_size=10" optuna-nsga2

A strategy is ``NAME`` (registered, default settings) or ``LABEL=NAME:key=value,key=value``.
Writes ``hypervolume.json``, ``hypervolume.csv`` and ``hypervolume.png`` to the output directory
(default ``benchmarks/results/hypervolume/``) and prints markdown tables.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

import nasflow as nf
from nasflow.bench.timing import TimedStrategy
from nasflow.benchmarks.nb201 import load_nb201
from nasflow.estimators.base import EvalContext, Measurement
from nasflow.estimators.tabular import TabularEvaluator
from nasflow.objectives.hypervolume import hypervolume, hypervolume_trajectory, nadir_reference
from nasflow.objectives.spec import Objective
from nasflow.space.architecture import Architecture
from nasflow.space.nb201 import EDGE_NAMES, OPS, NB201Space

ROOT = Path(__file__).resolve().parent
DEFAULT_OUTPUT = ROOT / "results" / "hypervolume"
DEFAULT_STRATEGIES = (
    "nsga2",
    "mo-evolution",
    "monas",
    "evolution",
    "optuna-nsga2",
    "optuna-nsga2-p20",
    "random",
)
#: labels that are not plain registry names
PRESETS = {"optuna-nsga2-p20": ("optuna-nsga2", {"population_size": 20})}
SETTINGS = {"params": ["accuracy:max", "params:min"], "flops": ["accuracy:max", "flops:min"]}
PEER = "optuna-nsga2"
REFERENCE_MARGIN = 0.1


# -- exact cost model -----------------------------------------------------------------------------
@dataclass(frozen=True)
class CostModel:
    """Parameters and MACs of an NB201 network as skeleton + one term per cell edge."""

    base_params: int
    base_macs: int
    op_params: dict[str, int]  # op -> parameters it adds on one edge, summed over all cells
    op_macs: dict[str, int]

    def __call__(self, arch: Architecture) -> tuple[int, int]:
        ops = [str(arch[name]) for name in EDGE_NAMES]
        params = self.base_params + sum(self.op_params[op] for op in ops)
        macs = self.base_macs + sum(self.op_macs[op] for op in ops)
        return params, macs


def _count(space: NB201Space, arch: Architecture, input_shape: tuple[int, int, int]) -> tuple[int, int]:
    from nasflow.objectives.metrics import count_macs, count_parameters

    network = space.build(arch)
    return count_parameters(network), count_macs(network, input_shape)


def build_cost_model(space: NB201Space, input_shape: tuple[int, int, int] = (3, 32, 32)) -> CostModel:
    """Count the skeleton (every edge ``none``) and, per op, one network with a single edge set."""
    empty = Architecture({name: "none" for name in EDGE_NAMES})
    base_params, base_macs = _count(space, empty, input_shape)
    op_params, op_macs = {}, {}
    for op in OPS:
        params, macs = _count(space, empty.replace(**{EDGE_NAMES[0]: op}), input_shape)
        op_params[op], op_macs[op] = params - base_params, macs - base_macs
    return CostModel(base_params, base_macs, op_params, op_macs)


def verify_cost_model(
    model: CostModel,
    space: NB201Space,
    archs: Sequence[Architecture],
    input_shape: tuple[int, int, int] = (3, 32, 32),
) -> None:
    """Assert that the additive formula equals direct counts of the built networks."""
    for arch in archs:
        direct = _count(space, arch, input_shape)
        assert model(arch) == direct, f"{space.format(arch)}: formula {model(arch)} != counted {direct}"


class CostedTabular(TabularEvaluator):
    """The NB201 tabular evaluator plus exact ``params`` and ``flops`` (MACs) from a cost model."""

    def __init__(self, costs: CostModel, dataset: str = "cifar10") -> None:
        super().__init__("nb201", dataset=dataset)
        self.costs = costs

    def evaluate(self, arch: Architecture, context: EvalContext) -> Measurement:
        measured = super().evaluate(arch, context)
        params, macs = self.costs(arch)
        return Measurement({**measured.metrics, "params": params, "flops": macs}, measured.cost_seconds)


# -- the true front and the fixed reference -------------------------------------------------------
def true_front(costs: CostModel, cost_metric: str) -> list[tuple[float, float]]:
    """Oriented (accuracy, -cost) points of the Pareto front of the whole table."""
    table = load_nb201()
    space = NB201Space()
    accuracy_at = table.column_index("cifar10-val")
    points = []
    for arch_str in table:
        arch = space.parse(arch_str)
        params, macs = costs(arch)
        values = table.values(arch_str)
        assert values is not None
        points.append((float(values[accuracy_at]), -float(params if cost_metric == "params" else macs)))
    # 2-D front: sweep from the cheapest up (the most accurate first among equal costs) and keep each
    # point that is more accurate than everything cheaper or as cheap
    front: list[tuple[float, float]] = []
    for accuracy, cost in sorted(points, key=lambda p: (-p[1], -p[0])):
        if not front or accuracy > front[-1][0]:
            front.append((accuracy, cost))
    return front


# -- runs -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    label: str
    strategy: str
    options: dict[str, Any]
    setting: str
    seed: int
    budget: int
    reference: tuple[float, ...]  # in the objectives' own units
    costs: CostModel


def run(job: Job) -> dict[str, Any]:
    objectives = SETTINGS[job.setting]
    timed = TimedStrategy(nf.get_strategy(job.strategy, **job.options))
    study = nf.create_study(
        space="nb201",
        strategy=timed,
        evaluator=CostedTabular(job.costs),
        objectives=objectives,
        seed=job.seed,
    )
    start = time.perf_counter()
    study.optimize(budget=job.budget)
    wall = time.perf_counter() - start
    trials = study.trials()
    trajectory = hypervolume_trajectory(trials, [Objective.parse(o) for o in objectives], job.reference)
    return {
        "label": job.label,
        "setting": job.setting,
        "seed": job.seed,
        "trajectory": trajectory,
        "strategy_ms_per_trial": 1000.0 * timed.seconds / len(trials),
        "wall_seconds": wall,
        "distinct": len({t.arch_str for t in trials}),
        "front_size": len(study.pareto_front()),
    }


# -- reporting ------------------------------------------------------------------------------------
def mean_std(values: Sequence[float]) -> tuple[float, float]:
    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


def mann_whitney(a: Sequence[float], b: Sequence[float]) -> float | None:
    if len(a) < 2 or len(b) < 2:
        return None
    from scipy.stats import mannwhitneyu  # type: ignore[import-untyped]

    if np.allclose(a, a[0]) and np.allclose(b, a[0]):
        return 1.0
    return float(mannwhitneyu(a, b, alternative="two-sided").pvalue)


def summarize(
    runs: dict[str, list[dict[str, Any]]], budgets: Sequence[int], optimum: float
) -> dict[str, dict[str, Any]]:
    summary: dict[str, dict[str, Any]] = {}
    for label, items in runs.items():
        entry: dict[str, Any] = {"hv": {}, "share_of_optimum": {}, "vs_peer": {}}
        for budget in budgets:
            finals = [r["trajectory"][budget - 1] for r in items]
            mean, std = mean_std(finals)
            entry["hv"][str(budget)] = {"mean": mean, "std": std}
            entry["share_of_optimum"][str(budget)] = mean / optimum
            if PEER in runs:
                peer = [r["trajectory"][budget - 1] for r in runs[PEER]]
                entry["vs_peer"][str(budget)] = {
                    "ratio": mean / float(np.mean(peer)),
                    "p_value": mann_whitney(finals, peer),
                }
        entry["strategy_ms_per_trial"] = mean_std([r["strategy_ms_per_trial"] for r in items])
        entry["wall_seconds"] = mean_std([r["wall_seconds"] for r in items])
        entry["distinct"] = float(np.mean([r["distinct"] for r in items]))
        entry["front_size"] = float(np.mean([r["front_size"] for r in items]))
        summary[label] = entry
    return summary


def markdown(setting: str, summary: dict[str, dict[str, Any]], budgets: Sequence[int], seeds: int) -> str:
    lines = [
        f"### {' vs '.join(SETTINGS[setting])}: hypervolume, mean ± std over {seeds} seeds "
        f"(share of the true front's; ratio to {PEER}, Mann-Whitney p)",
        "",
        "| strategy | " + " | ".join(f"{b} trials" for b in budgets) + " | ms/trial | distinct | front |",
        "| --- |" + " ---: |" * (len(budgets) + 3),
    ]
    for label, entry in summary.items():
        cells = []
        for b in budgets:
            hv = entry["hv"][str(b)]
            cell = f"{hv['mean']:.4g} ± {hv['std']:.2g} ({100 * entry['share_of_optimum'][str(b)]:.2f}%"
            peer = entry["vs_peer"].get(str(b))
            if peer is not None and label != PEER:
                p = peer["p_value"]
                p_text = "" if p is None else "p<0.01" if p < 0.005 else f"p={p:.2f}"
                cell += f"; ×{peer['ratio']:.4f}, {p_text}"
            cells.append(cell + ")")
        ms = entry["strategy_ms_per_trial"]
        lines.append(
            f"| {label} | " + " | ".join(cells) + f" | {ms[0]:.2f} | {entry['distinct']:.1f} | "
            f"{entry['front_size']:.1f} |"
        )
    return "\n".join(lines)


def write_csv(path: Path, summaries: dict[str, dict[str, dict[str, Any]]], budgets: Sequence[int]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "setting",
                "strategy",
                "budget",
                "hv_mean",
                "hv_std",
                "share_of_optimum",
                f"ratio_to_{PEER}",
                "p_value",
                "strategy_ms_per_trial",
            ]
        )
        for setting, summary in summaries.items():
            for label, entry in summary.items():
                for b in budgets:
                    peer = entry["vs_peer"].get(str(b), {})
                    writer.writerow(
                        [
                            setting,
                            label,
                            b,
                            f"{entry['hv'][str(b)]['mean']:.6g}",
                            f"{entry['hv'][str(b)]['std']:.6g}",
                            f"{entry['share_of_optimum'][str(b)]:.6f}",
                            "" if not peer else f"{peer['ratio']:.6f}",
                            "" if not peer or peer["p_value"] is None else f"{peer['p_value']:.4g}",
                            f"{entry['strategy_ms_per_trial'][0]:.3f}",
                        ]
                    )


def write_plot(
    path: Path, runs: dict[str, dict[str, list[dict[str, Any]]]], optima: dict[str, float]
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs), figsize=(6.5 * len(runs), 4.5), squeeze=False)
    for axis, (setting, by_label) in zip(axes[0], runs.items()):
        for label, items in by_label.items():
            curves = np.array([r["trajectory"] for r in items]) / optima[setting]
            mean = curves.mean(axis=0)
            std = curves.std(axis=0, ddof=1) if len(curves) > 1 else np.zeros_like(mean)
            trials = np.arange(1, len(mean) + 1)
            (line,) = axis.plot(trials, mean, label=label)
            axis.fill_between(trials, mean - std, mean + std, alpha=0.07, color=line.get_color())
        axis.set_ylim(0.6, 1.0)  # the first trials sit lower; the comparison is in the last 80%
        axis.set_xlabel("trials")
        axis.set_ylabel("hypervolume / hypervolume of the true front")
        axis.set_title(" vs ".join(SETTINGS[setting]))
        axis.legend(fontsize=8)
    fig.suptitle("NAS-Bench-201 CIFAR-10, mean ± std over seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def versions() -> dict[str, str]:
    found = {}
    for package in ("nasflow", "optuna", "numpy", "torch"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    found["python"] = platform.python_version()
    return found


# -- command line ---------------------------------------------------------------------------------
def parse_seeds(tokens: Sequence[str]) -> list[int]:
    """``0-19`` (inclusive range), ``0,3,5`` or ``0 3 5``."""
    seeds: list[int] = []
    for token in tokens:
        for part in filter(None, token.split(",")):
            if "-" in part[1:]:
                low, high = part.split("-", 1)
                seeds.extend(range(int(low), int(high) + 1))
            else:
                seeds.append(int(part))
    return seeds


def parse_strategy(text: str) -> tuple[str, str, dict[str, Any]]:
    """``NAME`` or ``LABEL=NAME:key=value,key=value`` -> (label, registry name, options)."""
    if text in PRESETS:
        return text, *PRESETS[text]
    named = "=" in text.split(":", 1)[0]  # LABEL=... (an '=' after ':' belongs to an option)
    label, name = text.split("=", 1) if named else (text, text)
    name, _, rest = name.partition(":")
    options: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value  # a bare word such as crowding or exact
    return label, name, options


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", default=["0-19"], help="e.g. 0-19 (default) or 0 1 2")
    parser.add_argument("--budgets", default="25,50,100,150,200", help="comma-separated trial budgets")
    parser.add_argument("--settings", default="params,flops", help="params, flops or both (default)")
    parser.add_argument("--strategies", nargs="+", default=list(DEFAULT_STRATEGIES))
    parser.add_argument("--workers", type=int, default=2, help="parallel processes (default 2)")
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)

    seeds = parse_seeds(args.seeds)
    budgets = sorted({int(b) for b in args.budgets.split(",") if b})
    settings = [s for s in args.settings.split(",") if s]
    strategies = [parse_strategy(s) for s in args.strategies]
    horizon = budgets[-1]

    total = time.perf_counter()
    space = NB201Space()
    costs = build_cost_model(space)
    rng = np.random.default_rng(2024)
    checked = [space.sample(rng) for _ in range(20)]
    verify_cost_model(costs, space, checked)
    print(f"cost model verified on {len(checked)} random cells: {costs}", flush=True)

    references: dict[str, tuple[float, ...]] = {}
    optima: dict[str, float] = {}
    fronts: dict[str, list[tuple[float, float]]] = {}
    for setting in settings:
        objectives = [Objective.parse(o) for o in SETTINGS[setting]]
        front = true_front(costs, setting)
        oriented_ref = nadir_reference(front, REFERENCE_MARGIN)
        references[setting] = tuple(o.oriented(r) for o, r in zip(objectives, oriented_ref))
        optima[setting] = hypervolume(front, oriented_ref)
        fronts[setting] = front
        print(
            f"[{setting}] true front: {len(front)} points, reference {references[setting]}, "
            f"hypervolume {optima[setting]:.6g}",
            flush=True,
        )

    jobs = [
        Job(label, name, options, setting, seed, horizon, references[setting], costs)
        for setting in settings
        for label, name, options in strategies
        for seed in seeds
    ]
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        s: {label: [] for label, _, _ in strategies} for s in settings
    }
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for done, result in enumerate(pool.map(run, jobs, chunksize=1), start=1):
            runs[result["setting"]][result["label"]].append(result)
            if done % len(seeds) == 0:
                print(f"{done}/{len(jobs)} runs ({time.perf_counter() - total:.0f} s)", flush=True)

    summaries = {s: summarize(runs[s], budgets, optima[s]) for s in settings}
    sections = [markdown(s, summaries[s], budgets, len(seeds)) for s in settings]
    print("\n" + "\n\n".join(sections))

    args.output_dir.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "hypervolume_nb201",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
        "machine": {"cpus": os.cpu_count(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS")},
        "settings": {
            "seeds": seeds,
            "budgets": budgets,
            "strategies": {label: {"name": name, "options": opts} for label, name, opts in strategies},
            "objectives": {s: SETTINGS[s] for s in settings},
            "workers": args.workers,
        },
        "cost_model": {
            "base_params": costs.base_params,
            "base_macs": costs.base_macs,
            "op_params": costs.op_params,
            "op_macs": costs.op_macs,
            "verified_on": [space.format(a) for a in checked],
        },
        "reference": {s: list(references[s]) for s in settings},
        "true_front": {s: [[a, -c] for a, c in fronts[s]] for s in settings},
        "optimum_hv": optima,
        "summary": summaries,
        "runs": {
            s: {
                label: [
                    {
                        "seed": r["seed"],
                        "hv": {str(b): r["trajectory"][b - 1] for b in budgets},
                        "strategy_ms_per_trial": r["strategy_ms_per_trial"],
                        "distinct": r["distinct"],
                    }
                    for r in items
                ]
                for label, items in runs[s].items()
            }
            for s in settings
        },
        "total_seconds": time.perf_counter() - total,
    }
    (args.output_dir / "hypervolume.json").write_text(json.dumps(report, indent=1) + "\n")
    write_csv(args.output_dir / "hypervolume.csv", summaries, budgets)
    write_plot(args.output_dir / "hypervolume.png", runs, optima)
    print(f"\nTotal {report['total_seconds']:.0f} s; wrote {args.output_dir}/hypervolume.{{json,csv,png}}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
