"""``nasflow search``: run (or resume) a search."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import typer
from rich.console import Console

from nasflow.cli.render import (
    SearchProgress,
    output_console,
    print_json,
    study_summary,
    top_trials,
    trials_table,
)
from nasflow.config import make_config, read_config_file, study_from_config

Opt = typer.Option


def search(
    space: Annotated[str | None, Opt(help="search space (nasflow list spaces)")] = None,
    strategy: Annotated[str | None, Opt(help="search strategy (nasflow list strategies)")] = None,
    evaluator: Annotated[str | None, Opt(help="train or tabular")] = None,
    dataset: Annotated[str | None, Opt(help="digits (train) or cifar10/cifar100 (tabular)")] = None,
    data: Annotated[str | None, Opt(help="your data: a .npz with X and y, or an image folder")] = None,
    budget: Annotated[int | None, Opt(help="total trials of the study (default 30)")] = None,
    seconds: Annotated[float | None, Opt(help="stop starting trials after this many seconds")] = None,
    objectives: Annotated[str | None, Opt(help="e.g. accuracy:max params:min")] = None,
    constraints: Annotated[str | None, Opt(help="e.g. params<=2e5")] = None,
    storage: Annotated[str | None, Opt(help="database URL (default sqlite:///nasflow.db)")] = None,
    name: Annotated[str | None, Opt(help="study name; an existing name is resumed")] = None,
    seed: Annotated[int | None, Opt(help="random seed (default 0)")] = None,
    workers: Annotated[int | None, Opt(help="evaluations in parallel (local processes)")] = None,
    config: Annotated[str | None, Opt("--config", help="YAML file with these settings")] = None,
    output: Annotated[str, Opt(help="text or json")] = "text",
    quiet: Annotated[bool, Opt("--quiet", help="no progress bar")] = False,
) -> None:
    """Search for architectures; the default trains NB201 cells on the digits data (a few minutes)."""
    if output not in ("text", "json"):
        raise typer.BadParameter(f"--output must be text or json, got {output!r}")
    settings: dict[str, Any] = read_config_file(config) if config else {}
    flags = {
        "space": space,
        "strategy": strategy,
        "evaluator": evaluator,
        "dataset": dataset,
        "data": data,
        "budget": budget,
        "seconds": seconds,
        "objectives": objectives,
        "constraints": constraints,
        "storage": storage,
        "name": name,
        "seed": seed,
        "workers": workers,
    }
    settings.update({k: v for k, v in flags.items() if v is not None})
    if not settings.get("name"):
        stamp = time.strftime("%Y%m%d-%H%M%S")
        settings["name"] = f"{settings.get('space', 'nb201')}-{settings.get('strategy', 'evolution')}-{stamp}"
    cfg = make_config(**settings)
    study = study_from_config(cfg)
    console = Console(stderr=True, quiet=quiet or output == "json")
    console.print(
        f"study [bold]{study.name}[/] in {cfg.storage}: space {cfg.space}, strategy {cfg.strategy}, "
        f"evaluator {cfg.evaluator}, budget {cfg.budget if cfg.budget is not None else '-'} trials"
        + (f", {cfg.seconds:g} s" if cfg.seconds else "")
    )
    with SearchProgress(study, cfg.budget, console) as progress:
        study.optimize(budget=cfg.budget, seconds=cfg.seconds, workers=cfg.workers, callbacks=[progress])
    if output == "json":
        print_json(study_summary(study))
        return
    top = top_trials(study)
    if not top:
        console.quiet = False
        console.print("no trial completed; see `nasflow show` for the errors")
        sys.exit(1)
    metrics = [o.metric for o in study.objectives]
    output_console().print(trials_table(top, f"top {len(top)} architectures of {study.name}", metrics))
    best = study.best()
    print(f"best: trial {best.number} {best.arch_str}")
    print(f"show again with: nasflow show {study.name} --storage {cfg.storage}")
