"""Evaluate architectures by looking up their precomputed results in a tabular benchmark."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

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


_BENCHMARKS: dict[str, _Benchmark] = {
    "nb201": _Benchmark(space="nb201", load=load_nb201, datasets=NB201_DATASETS, index_column="index"),
}


class TabularEvaluator(Evaluator):
    """Reads an architecture's accuracy from a tabular benchmark instead of training it.

    Metrics: ``accuracy`` (validation accuracy in %, the search signal), ``test_accuracy`` (test
    accuracy in %, for reporting only) and, where the table has one, the official ``index``.

    Args:
        benchmark: built-in table name (``"nb201"``).
        dataset: which dataset's columns to read, e.g. ``"cifar10"`` or ``"cifar100"``.
        path: optional copy of the table to read instead of the shipped one.
    """

    name = "tabular"

    def __init__(self, benchmark: str = "nb201", dataset: str = "cifar10", path: str | None = None) -> None:
        spec = _BENCHMARKS.get(benchmark)
        if spec is None:
            raise UnknownNameError(
                f"unknown tabular benchmark {benchmark!r}; allowed: {', '.join(sorted(_BENCHMARKS))}"
            )
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
        self._table = table
        return table
