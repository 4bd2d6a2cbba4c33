"""Build a tabular benchmark: train a uniform sample of a space's distinct networks from scratch.

The build is an ordinary nasflow study in a SQLite file next to the output (``FILE.db``): the
strategy proposes one representative per distinct network (canonical class) in a seeded random
order, a :class:`~nasflow.estimators.train.TrainEvaluator` trains it, and when the study holds the
requested number of trials its completed ones are written as a table with
:func:`~nasflow.benchmarks.table.save_table`. Running the same build again resumes it: finished
networks are never retrained, and a larger ``archs`` extends the same random order.

Sampling classes, not cells, follows NAS-Bench-201 (Dong & Yang, ICLR 2020), which counts 6,466
distinct networks among its 15,625 cells: sampling cells would over-represent networks that many
cells describe (e.g. those with dead edges).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nasflow.benchmarks.table import BenchmarkTable, save_table
from nasflow.errors import ConfigError, SearchExhausted
from nasflow.estimators.train import TrainEvaluator
from nasflow.space.architecture import Architecture
from nasflow.space.base import DecisionSpace
from nasflow.strategies.base import Strategy
from nasflow.study import Callback, Study
from nasflow.trial import FrozenTrial, TrialState

#: spaces are enumerated to find their distinct networks; larger ones are refused
MAX_ENUMERATE = 10**6
#: the study's name inside ``FILE.db``
STUDY_NAME = "bench-build"
#: table column -> evaluator metric, in table order; per-epoch validation accuracies follow
METRIC_COLUMNS: dict[str, str] = {
    "valid_acc": "accuracy",
    "test_acc": "test_accuracy",
    "val_loss": "val_loss",
    "test_loss": "test_loss",
    "train_loss": "train_loss",
    "params": "params",
    "flops": "flops",
    "train_seconds": "train_seconds",
}
EPOCH_COLUMN = "valid_acc_epoch_{}"

_REPRESENTATIVES: dict[tuple[type, str], list[Architecture]] = {}


def distinct_representatives(space: DecisionSpace) -> list[Architecture]:
    """One architecture per distinct network: the first of each canonical class in enumeration order.

    Raises:
        ConfigError: the space has more than ``MAX_ENUMERATE`` combinations of choices.
    """
    if space.size() > MAX_ENUMERATE:
        raise ConfigError(
            f"space {space.name!r} has {space.size():,} combinations; building a table enumerates the "
            f"space, which is limited to {MAX_ENUMERATE:,}"
        )
    # Enumerating NB201 takes about a second; built-in spaces are fully described by describe(), so
    # their result is kept per process. Plain DecisionSpaces may hide their rules in functions.
    key = (
        None if type(space) is DecisionSpace else (type(space), json.dumps(space.describe(), sort_keys=True))
    )
    if key is not None and key in _REPRESENTATIVES:
        return list(_REPRESENTATIVES[key])
    first: dict[str, Architecture] = {}
    for arch in space.enumerate():
        first.setdefault(space.canonical(arch), arch)
    result = list(first.values())
    if key is not None:
        if len(_REPRESENTATIVES) >= 4:
            _REPRESENTATIVES.pop(next(iter(_REPRESENTATIVES)))
        _REPRESENTATIVES[key] = result
    return list(result)


class DistinctClasses(Strategy):
    """Proposes each distinct network once, in a uniformly random order drawn from the study seed.

    The order is a permutation of all classes, so a longer build extends a shorter one with the same
    seed. The state is the set of classes already told; an evaluation cut off by an interruption was
    never told, so its class is proposed again on resume.
    """

    name = "distinct-classes"

    def __init__(self) -> None:
        pass

    def setup(self, space: Any, objectives: Any, seed: int | None) -> None:
        super().setup(space, objectives, seed)
        representatives = distinct_representatives(space)
        self._order = [representatives[int(i)] for i in self.rng.permutation(len(representatives))]
        self._position = {space.canonical(arch): i for i, arch in enumerate(self._order)}
        self._done: set[int] = set()
        self._pending: set[int] = set()
        self._cursor = 0

    def ask(self, n: int = 1) -> list[Architecture]:
        return [self._next() for _ in range(n)]

    def _next(self) -> Architecture:
        # Classes are taken in order and never given back in a session, so everything before the
        # cursor is taken; after load_state_dict the cursor restarts and skips the done ones.
        while self._cursor < len(self._order):
            i = self._cursor
            self._cursor += 1
            if i not in self._done and i not in self._pending:
                self._pending.add(i)
                return self._order[i]
        raise SearchExhausted(
            f"all {len(self._order):,} distinct networks of space {self.space.name!r} are built"
        )

    def tell(self, trial: FrozenTrial) -> None:
        position = self._position.get(trial.canonical)
        if position is not None:
            self._pending.discard(position)
            self._done.add(position)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "done": sorted(self._done)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._done = {int(i) for i in state["done"]}
        self._pending = set()
        self._cursor = 0


@dataclass
class BuildResult:
    """What a build produced."""

    table: BenchmarkTable
    path: Path
    study: Study
    failed: list[FrozenTrial]  # evaluations that failed (not in the table)

    @property
    def database(self) -> str:
        """The storage URL of the build's study."""
        return database_url(self.path)


def database_url(output: str | Path) -> str:
    """The SQLite URL of the study that builds ``output``: the same path plus ``.db``."""
    return f"sqlite:///{Path(output).resolve()}.db"


class TableBuild:
    """A resumable table build: the study in ``output + ".db"`` and the table it writes to ``output``.

    Args:
        output: the table file, ``.csv`` or ``.csv.gz``.
        space: a finite space (at most ``MAX_ENUMERATE`` combinations).
        evaluator: trains each network; must have ``report_test=True``.
        seed: draws the order of the networks and the per-network training seeds.

    Raises:
        ConfigError: bad settings, or the database holds a build with other settings.
    """

    def __init__(
        self, output: str | Path, space: DecisionSpace, evaluator: TrainEvaluator, seed: int = 0
    ) -> None:
        from nasflow.api import create_study

        self.path = Path(output)
        if not self.path.name.endswith((".csv", ".csv.gz")):
            raise ConfigError(f"output must be a .csv or .csv.gz file, got {str(self.path)!r}")
        if not isinstance(evaluator, TrainEvaluator) or not evaluator.report_test:
            raise ConfigError("a table build needs a TrainEvaluator with report_test=True (for test_acc)")
        self.evaluator = evaluator
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.database = database_url(self.path)
        try:
            self.study = create_study(
                space=space,
                strategy=DistinctClasses(),
                evaluator=evaluator,
                objectives=["accuracy:max"],
                storage=self.database,
                name=STUDY_NAME,
                seed=seed,
                load_if_exists=True,
            )
        except ConfigError as exc:
            if "already exists with other settings" not in str(exc):
                raise
            differences = str(exc).partition("other settings (")[2].rpartition("); use")[0]
            raise ConfigError(
                f"{self.database} holds a build with other settings ({differences}); rerun with the "
                "same settings to resume it, or write to another --output"
            ) from None

    def done(self) -> int:
        """Networks already built (finished trials, failed ones included)."""
        return len(self._counted())

    def run(
        self, archs: int, workers: int = 1, threads: int = 1, callbacks: Sequence[Callback] = ()
    ) -> BuildResult:
        """Train until ``archs`` networks are built (fewer if the space has fewer), then write the table.

        Args:
            archs: how many distinct networks the finished build holds; networks already built count.
            workers: networks trained in parallel (local processes).
            threads: torch threads per evaluation; fixed (default 1) so that results do not depend on
                the machine's core count.
            callbacks: called as ``callback(study, trial)`` after each finished trial.
        """
        for label, value in (("archs", archs), ("workers", workers), ("threads", threads)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{label} must be an integer >= 1, got {value!r}")
        if workers == 1:
            with _torch_threads(threads):
                self.study.optimize(budget=archs, callbacks=callbacks)
        else:
            from nasflow.execution import ProcessExecutor

            with ProcessExecutor(workers, threads_per_worker=threads) as executor:
                self.study.optimize(budget=archs, executor=executor, callbacks=callbacks)
        counted = self._counted()[:archs]
        table = trials_table(counted, self.evaluator.epochs, source=str(self.path))
        _save_atomically(table, self.path)
        failed = [t for t in counted if t.state is not TrialState.COMPLETE]
        return BuildResult(table, self.path, self.study, failed)

    def _counted(self) -> list[FrozenTrial]:
        return [t for t in self.study.trials() if t.state.finished and not t.interrupted]


def build_table(
    output: str | Path,
    archs: int,
    space: DecisionSpace,
    evaluator: TrainEvaluator,
    seed: int = 0,
    workers: int = 1,
    threads: int = 1,
    callbacks: Sequence[Callback] = (),
) -> BuildResult:
    """Train ``archs`` distinct networks of ``space`` (or resume doing so) and write their table.

    Columns: ``valid_acc``, ``test_acc`` (percent), ``val_loss``, ``test_loss``, ``train_loss``,
    ``params``, ``flops``, ``train_seconds`` and ``valid_acc_epoch_1`` .. ``valid_acc_epoch_E`` (the
    validation accuracy after each epoch of the same run). Failed evaluations get no row. See
    :class:`TableBuild` and :meth:`TableBuild.run` for the arguments.
    """
    return TableBuild(output, space, evaluator, seed).run(archs, workers, threads, callbacks)


def trials_table(trials: Sequence[FrozenTrial], epochs: int, source: str = "<build>") -> BenchmarkTable:
    """The table rows of the COMPLETE trials among ``trials``, in trial order."""
    columns = [*METRIC_COLUMNS, *(EPOCH_COLUMN.format(e) for e in range(1, epochs + 1))]
    rows: dict[str, list[float]] = {}
    for trial in trials:
        if trial.state is not TrialState.COMPLETE:
            continue
        values = [trial.metrics.get(metric, math.nan) for metric in METRIC_COLUMNS.values()]
        values += [trial.intermediate.get(e, {}).get("accuracy", math.nan) for e in range(1, epochs + 1)]
        rows[trial.arch_str] = values
    if not rows:
        raise ConfigError("no network was trained successfully, so there is no table to write")
    return BenchmarkTable(columns, rows, source=source)


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    # Inline evaluations run in this process; its thread count is restored afterwards.
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _save_atomically(table: BenchmarkTable, path: Path) -> None:
    # A build killed while writing must not leave a truncated table where the old one was.
    partial = path.with_name(f".partial-{path.name}")
    save_table(table, partial)
    partial.replace(path)


__all__ = [
    "EPOCH_COLUMN",
    "METRIC_COLUMNS",
    "BuildResult",
    "DistinctClasses",
    "TableBuild",
    "build_table",
    "database_url",
    "distinct_representatives",
    "trials_table",
]
