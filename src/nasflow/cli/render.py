"""Tables, progress and JSON shapes shared by the CLI verbs."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from nasflow.study import Study
from nasflow.trial import FrozenTrial, TrialState

#: metrics shown in tables when present, in this order
_SHOWN_METRICS = (
    "accuracy",
    "test_accuracy",
    "params",
    "flops",
    "latency_ms",
    "peak_memory_mb",
    "train_seconds",
)


def fmt_number(value: float) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if float(value).is_integer() and abs(value) >= 1000:
        return f"{int(value):,}"
    return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"


def output_console() -> Console:
    """Standard output; wide when it is a file or pipe so architecture strings stay on one line."""
    console = Console()
    return console if console.is_terminal else Console(width=220)


def trials_table(trials: Sequence[FrozenTrial], title: str, objectives: Sequence[str] = ()) -> Table:
    """Objective metrics first, then the usual ones (accuracy, params, FLOPs, seconds) when present."""
    keys = list(dict.fromkeys([*objectives, *_SHOWN_METRICS]))
    keys = [k for k in keys if any(k in t.metrics for t in trials)]
    table = Table(title=title, title_justify="left")
    retried = any(t.attempts > 1 for t in trials)  # a worker died: say how often each trial ran
    table.add_column("#", justify="right")
    table.add_column("state")
    for key in keys:
        table.add_column(key, justify="right")
    if retried:
        table.add_column("runs", justify="right")
    table.add_column("architecture", no_wrap=True)
    for trial in trials:
        cells = [fmt_number(trial.metrics[k]) if k in trial.metrics else "" for k in keys]
        if retried:
            cells.append(str(trial.attempts))
        state = trial.state.value if trial.feasible else f"{trial.state.value} (infeasible)"
        table.add_row(str(trial.number), state, *cells, trial.arch_str)
    return table


def top_trials(study: Study, k: int = 10) -> list[FrozenTrial]:
    """Completed trials best-first on the first objective (feasible ones first)."""
    first = study.objectives[0]
    done = [t for t in study.trials([TrialState.COMPLETE]) if t.values is not None]
    return sorted(done, key=lambda t: (t.violation, -first.oriented(t.values[0]), t.number))[:k]  # type: ignore[index]


def study_summary(study: Study) -> dict[str, Any]:
    """The JSON object printed by ``--output json``."""
    trials = study.trials()
    counts = {state.value: sum(1 for t in trials if t.state is state) for state in TrialState}
    completed = [t for t in trials if t.state is TrialState.COMPLETE and t.values is not None]
    return {
        "name": study.name,
        "space": study.space.name if study.space is not None else None,
        "objectives": [str(o) for o in study.objectives],
        "constraints": [str(c) for c in study.constraints],
        "seed": study.seed,
        "n_trials": len(trials),
        "states": counts,
        "best": study.best().to_dict() if completed and study.has_feasible_trial() else None,
        "pareto_front": [t.to_dict() for t in study.pareto_front()],
    }


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, allow_nan=True))


class SearchProgress:
    """A rich progress bar: trials done, best so far, ETA. Used as a study callback."""

    def __init__(self, study: Study, total: int | None, console: Console) -> None:
        self.study = study
        self.first = study.objectives[0]
        self.best: float | None = None
        self.failed = 0
        self.screened = 0
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("best {task.fields[best]}"),
            TextColumn("{task.fields[failed]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
        )
        done = sum(1 for t in study.trials() if t.state.finished and not t.interrupted and not t.screened)
        for trial in study.trials([TrialState.COMPLETE]):
            self._track(trial)
        self.task = self.progress.add_task(
            study.name, total=total, completed=done, best=self._best_text(), failed=""
        )

    def _track(self, trial: FrozenTrial) -> None:
        if trial.values is not None and trial.feasible:
            value = trial.values[0]
            if self.best is None or self.first.oriented(value) > self.first.oriented(self.best):
                self.best = value
        elif trial.state is TrialState.FAILED:
            self.failed += 1

    def _best_text(self) -> str:
        return "-" if self.best is None else f"{self.first.metric}={fmt_number(self.best)}"

    def __call__(self, study: Study, trial: FrozenTrial) -> None:
        self._track(trial)
        self.screened += trial.screened
        notes = [
            f"{self.failed} failed" if self.failed else "",
            f"{self.screened} screened" if self.screened else "",
        ]
        advance = 0 if trial.screened else 1  # screened trials do not count towards the budget
        self.progress.update(
            self.task, advance=advance, best=self._best_text(), failed=", ".join(n for n in notes if n)
        )

    def __enter__(self) -> SearchProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()
