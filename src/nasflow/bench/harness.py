"""Run search strategies side by side with the published tabular-benchmark protocol.

Protocol (NAS-Bench-201 / NATS-Bench): each strategy searches on the validation metric; after k
queries we report the test metric of the architecture with the best validation value seen so far
(ties: the first found). Every evaluation counts as a query, repeats included. Seeds run in parallel
local processes; each run is an ordinary in-memory study, so the harness measures what users get.
"""

from __future__ import annotations

import math
import multiprocessing
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nasflow import catalog
from nasflow.bench.timing import TimedStrategy
from nasflow.errors import ConfigError
from nasflow.estimators.base import Evaluator
from nasflow.space.base import DecisionSpace


@dataclass
class RunTrace:
    """The queries of one run: search metric and report metric per query (NaN where a query failed)."""

    strategy: str
    seed: int
    search: list[float]
    report: list[float]
    strategy_seconds: float
    wall_seconds: float

    def incumbent_report(self) -> np.ndarray:
        """Report metric of the best-by-search architecture after each query (NaN before the first)."""
        result = np.full(len(self.search), math.nan)
        best, value = -math.inf, math.nan
        for i, (s, r) in enumerate(zip(self.search, self.report)):
            if not math.isnan(s) and s > best:
                best, value = s, r
            result[i] = value
        return result

    @property
    def ms_per_trial(self) -> float:
        return 1000.0 * self.strategy_seconds / max(1, len(self.search))


@dataclass
class BenchResult:
    """All runs of a benchmark, plus the oracle (best-by-search in the whole table) when known."""

    benchmark: str
    dataset: str | None
    budget: int
    runs: dict[str, list[RunTrace]] = field(default_factory=dict)
    oracle: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def curves(self, strategy: str) -> np.ndarray:
        """``seeds x budget`` incumbent report values of one strategy."""
        return np.stack([run.incumbent_report() for run in self.runs[strategy]])


@dataclass(frozen=True)
class _Job:
    strategy: str
    options: dict[str, Any]
    seed: int
    budget: int
    space: DecisionSpace | None
    space_name: str
    evaluator: Evaluator
    search_metric: str
    report_metric: str


def _run(job: _Job) -> RunTrace:
    from nasflow.api import create_study

    timed = TimedStrategy(catalog.get_strategy(job.strategy, **job.options))
    space = job.space if job.space is not None else catalog.get_space(job.space_name)
    study = create_study(
        space=space,
        strategy=timed,
        evaluator=job.evaluator,
        objectives=[f"{job.search_metric}:max"],
        seed=job.seed,
    )
    start = time.perf_counter()
    study.optimize(budget=job.budget)
    wall = time.perf_counter() - start
    search, report = [], []
    for trial in study.trials():
        search.append(float(trial.metrics.get(job.search_metric, math.nan)))
        report.append(float(trial.metrics.get(job.report_metric, math.nan)))
    return RunTrace(job.strategy, job.seed, search, report, timed.seconds, wall)


def tabular_oracle(benchmark: str, dataset: str) -> float:
    """Report value of the architecture with the best search value in the whole table."""
    if benchmark == "nb201":
        from nasflow.benchmarks.nb201 import NB201_DATASETS as datasets
        from nasflow.benchmarks.nb201 import load_nb201 as load
    elif benchmark == "nb201-digits":
        from nasflow.benchmarks.digits import DIGITS_DATASETS as datasets
        from nasflow.benchmarks.digits import load_nb201_digits as load
    else:
        raise ConfigError(f"no oracle is known for benchmark {benchmark!r}; allowed: nb201, nb201-digits")
    table = load()
    val_column, test_column = datasets[dataset]
    val, test = table.column(val_column), table.column(test_column)
    return float(test[int(np.argmax(val))])  # argmax takes the first of ties, in table order


def run_bench(
    strategies: Sequence[str],
    seeds: Sequence[int] | int = 20,
    budget: int = 200,
    benchmark: str = "nb201",
    dataset: str = "cifar10",
    evaluator: Evaluator | None = None,
    space: DecisionSpace | None = None,
    search_metric: str = "accuracy",
    report_metric: str = "test_accuracy",
    strategy_options: dict[str, dict[str, Any]] | None = None,
    workers: int = 2,
    oracle: float | None = None,
) -> BenchResult:
    """Run every strategy for every seed and collect the query traces.

    Args:
        strategies: registered strategy names.
        seeds: a list of seeds, or how many (0..n-1).
        budget: queries per run.
        benchmark, dataset: a registered tabular benchmark and its data set (used when no
            ``evaluator`` is given).
        evaluator: any evaluator instead, e.g. a user's FunctionEvaluator returning ``search_metric``
            and ``report_metric`` (it must be picklable when ``workers > 1``).
        space: the space to search (default: the benchmark's own space).
        strategy_options: per-strategy settings, ``{"evolution": {"population_size": 20}}``.
        workers: parallel processes (seeds and strategies are spread over them).
        oracle: the best achievable report value, if known (computed for tabular benchmarks).
    """
    for name in strategies:
        catalog.STRATEGIES.entry(name)  # unknown names fail before any work starts
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    label = "custom" if evaluator is not None else benchmark
    if not seed_list or budget < 1:
        raise ConfigError("the benchmark needs at least one seed and a budget of at least 1")
    if evaluator is None:
        evaluator = catalog.get_evaluator("tabular", benchmark=benchmark, dataset=dataset)
        if oracle is None:
            oracle = tabular_oracle(benchmark, dataset)
    options = strategy_options or {}
    jobs = [
        _Job(
            name,
            options.get(name, {}),
            seed,
            budget,
            space,
            benchmark,
            evaluator,
            search_metric,
            report_metric,
        )
        for name in strategies
        for seed in seed_list
    ]
    if workers > 1:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            traces = list(pool.map(_run, jobs))
    else:
        traces = [_run(job) for job in jobs]
    result = BenchResult(
        benchmark=label,
        dataset=dataset if label != "custom" else None,
        budget=budget,
        oracle=oracle,
        settings={"seeds": seed_list, "strategy_options": options, "workers": workers},
    )
    for trace in traces:
        result.runs.setdefault(trace.strategy, []).append(trace)
    return result
