"""Evaluate architectures by looking up their precomputed results in a tabular benchmark."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from nasflow.benchmarks.digits import DIGITS_DATASETS, DIGITS_METRICS, load_nb201_digits, representative
from nasflow.benchmarks.nb201 import NB201_DATASETS, load_nb201
from nasflow.benchmarks.table import BenchmarkTable
from nasflow.errors import ConfigError, EvaluationError, UnknownNameError
from nasflow.estimators.base import EvalContext, Evaluator, Measurement
from nasflow.space.architecture import Architecture
from nasflow.space.base import DecisionSpace


@dataclass(frozen=True)
class _Benchmark:
    """How one built-in table plugs into the evaluator."""

    space: str  # the space whose ``format`` gives this table's arch strings
    load: Callable[[str | None], BenchmarkTable]  # must cache per process: workers call it per copy
    datasets: Mapping[str, tuple[str, str]]  # dataset -> (validation column, test column)
    index_column: str | None = None
    extra_metrics: Mapping[str, str] | None = None  # further metric name -> column
    # Tables of distinct networks hold one row per class: maps any member's string to its row's key.
    resolve: Callable[[str, str | None], str | None] | None = None


_BENCHMARKS: dict[str, _Benchmark] = {
    "nb201": _Benchmark(space="nb201", load=load_nb201, datasets=NB201_DATASETS, index_column="index"),
    "nb201-digits": _Benchmark(
        space="nb201-digits",
        load=load_nb201_digits,
        datasets=DIGITS_DATASETS,
        extra_metrics=DIGITS_METRICS,
        resolve=representative,
    ),
}


def benchmark_datasets(benchmark: str) -> tuple[str, ...]:
    """The datasets of a built-in tabular benchmark; the first is the evaluator's default."""
    spec = _BENCHMARKS.get(benchmark)
    if spec is None:
        raise UnknownNameError(
            f"unknown tabular benchmark {benchmark!r}; allowed: {', '.join(sorted(_BENCHMARKS))}"
        )
    return tuple(spec.datasets)


class TabularEvaluator(Evaluator):
    """Reads an architecture's accuracy from a tabular benchmark instead of training it.

    Metrics: ``accuracy`` (validation accuracy in %, the search signal), ``test_accuracy`` (test
    accuracy in %, for reporting only) and, where the table has one, the official ``index``;
    ``nb201-digits`` also gives ``params``, ``flops`` and ``train_seconds``.

    ``nb201-digits`` holds one row per distinct network (see :mod:`nasflow.benchmarks.digits`):
    any cell is looked up through its class's representative, and the study's space must be
    ``"nb201-digits"`` (the NB201 cells whose networks the table holds).

    Args:
        benchmark: built-in table name (``"nb201"`` or ``"nb201-digits"``).
        dataset: which dataset's columns to read, e.g. ``"cifar10"`` or ``"cifar100"`` for nb201,
            ``"digits"`` for nb201-digits; default: the benchmark's first dataset.
        path: optional copy of the table (for nb201-digits: a table built with ``nasflow bench
            build``) to read instead of the shipped one.
    """

    name = "tabular"

    def __init__(self, benchmark: str = "nb201", dataset: str | None = None, path: str | None = None) -> None:
        dataset = benchmark_datasets(benchmark)[0] if dataset is None else dataset
        spec = _BENCHMARKS[benchmark]
        if dataset not in spec.datasets:
            raise UnknownNameError(
                f"tabular benchmark {benchmark!r} has no dataset {dataset!r}; allowed: "
                f"{', '.join(spec.datasets)}"
            )
        self.benchmark = benchmark
        self.dataset = dataset
        self.path = None if path is None else str(path)
        self._spec = spec
        self._table: BenchmarkTable | None = None
        self._positions: tuple[int, int, int | None] = (0, 0, None)
        self._extra_positions: dict[str, int] = {}

    def setup(self, space: DecisionSpace) -> None:
        if space.name != self._spec.space:
            raise ConfigError(
                f"the tabular {self.benchmark} benchmark needs space {self._spec.space!r}, but the study's "
                f"space is {space.name!r}"
            )
        super().setup(space)
        # Loading now reports a missing or corrupt table before any trial starts.
        self._load()

    def evaluate(self, arch: Architecture, context: EvalContext) -> Measurement:
        space = getattr(self, "space", None)
        if space is None:
            raise ConfigError("TabularEvaluator.evaluate needs setup(space) to be called first")
        return Measurement(metrics=self.lookup(space.format(arch)), cost_seconds=0.0)

    def lookup(self, arch_str: str) -> dict[str, float]:
        """The metrics :meth:`evaluate` reports for the architecture string ``arch_str``."""
        table = self._table if self._table is not None else self._load()
        values = table.values(arch_str)
        if values is None and self._spec.resolve is not None:
            key = self._spec.resolve(arch_str, self.path)
            values = None if key is None else table.values(key)
            if values is None:
                raise EvaluationError(
                    f"architecture {arch_str!r}: its network is not among the {len(table):,} distinct "
                    f"networks of the {self.benchmark} table ({table.source}); search the space "
                    f"{self._spec.space!r}, which holds only those networks"
                )
        if values is None:
            raise EvaluationError(
                f"architecture {arch_str!r} is not in the {self.benchmark} table ({len(table):,} "
                f"architectures, {table.source}); it must be written in the benchmark's official "
                "arch string format"
            )
        val, test, index = self._positions
        metrics = {"accuracy": values[val], "test_accuracy": values[test]}
        if index is not None:
            metrics["index"] = values[index]
        for metric, position in self._extra_positions.items():
            metrics[metric] = values[position]
        return metrics

    def describe(self) -> dict[str, Any]:
        # Exactly the constructor's arguments, so a stored study can rebuild this evaluator.
        return {"name": self.name, "benchmark": self.benchmark, "dataset": self.dataset, "path": self.path}

    def __getstate__(self) -> dict[str, Any]:
        # Worker processes reload the table through the per-process cached loader instead of
        # receiving a pickled copy of all its rows with every task.
        state = self.__dict__.copy()
        state["_table"] = None
        return state

    def _load(self) -> BenchmarkTable:
        table = self._spec.load(self.path)
        val_column, test_column = self._spec.datasets[self.dataset]
        index_column = self._spec.index_column
        self._positions = (
            table.column_index(val_column),
            table.column_index(test_column),
            None if index_column is None else table.column_index(index_column),
        )
        self._extra_positions = {
            metric: table.column_index(column)
            for metric, column in (self._spec.extra_metrics or {}).items()
            if column in table.columns
        }
        self._table = table
        return table
