"""``nasflow show NAME``: the trials, the best architecture and a summary of a stored study."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from nasflow.api import load_study
from nasflow.cli.render import output_console, print_json, study_summary, top_trials, trials_table


def show(
    name: Annotated[str, typer.Argument(help="study name")],
    storage: Annotated[str, typer.Option(help="database URL")] = "sqlite:///nasflow.db",
    output: Annotated[str, typer.Option(help="text or json")] = "text",
    all_trials: Annotated[bool, typer.Option("--all", help="every trial, in order, not the top 20")] = False,
    plot: Annotated[
        bool, typer.Option("--plot", help="write PNGs: trajectory, and Pareto front + hypervolume")
    ] = False,
    plot_dir: Annotated[str | None, typer.Option(help="folder for --plot (default plots/NAME)")] = None,
) -> None:
    """Show a stored study."""
    if output not in ("text", "json"):
        raise typer.BadParameter(f"--output must be text or json, got {output!r}")
    study = load_study(name, storage)
    if plot:
        from nasflow.report.html import write_plots  # matplotlib loads only when asked

        for path in write_plots(study, plot_dir):
            print(f"plot written to {path}", file=sys.stderr)
    summary = study_summary(study)
    if output == "json":
        summary["trials"] = [t.to_dict() for t in study.trials()]
        print_json(summary)
        return
    console = output_console()
    metrics = [o.metric for o in study.objectives]
    trials = study.trials() if all_trials else top_trials(study, 20)
    console.print(trials_table(trials, f"{'all trials' if all_trials else 'top trials'} of {name}", metrics))
    states = ", ".join(f"{n} {s.lower()}" for s, n in summary["states"].items() if n)
    console.print(
        f"{summary['n_trials']} trials ({states or 'none'}); objectives {', '.join(summary['objectives'])}"
    )
    failed = [t for t in study.trials() if t.error]
    for trial in failed[-3:]:
        console.print(f"trial {trial.number} {trial.state.value.lower()}: {trial.error}", markup=False)
    if summary["best"] is not None:
        best = summary["best"]
        console.print(f"best: trial {best['number']} {best['arch_str']}", markup=False)
    if len(study.objectives) > 1:
        console.print(trials_table(study.pareto_front(), "Pareto front", metrics))
