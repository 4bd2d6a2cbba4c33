"""``nasflow search``: run (or resume) a search."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import typer
from rich.console import Console

from nasflow import catalog
from nasflow.cli.render import (
    SearchProgress,
    output_console,
    print_json,
    study_summary,
    top_trials,
    trials_table,
)
from nasflow.config import build_executor, make_config, read_config_file, study_from_config

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
    executor: Annotated[
        str | None, Opt(help="auto (default), inline, process or ray (local Ray without --ray-address)")
    ] = None,
    ray_address: Annotated[str | None, Opt(help="Ray cluster to join: auto or HOST:PORT")] = None,
    trial_cpus: Annotated[float | None, Opt(help="CPUs each trial takes on Ray (default 1)")] = None,
    trial_gpus: Annotated[float | None, Opt(help="GPUs each trial takes on Ray (default 0)")] = None,
    max_retries: Annotated[
        int | None, Opt(help="runs of a trial whose worker died before it fails (default 2)")
    ] = None,
    pruner: Annotated[str | None, Opt(help="stop bad trials early: none, median or curve")] = None,
    latency_table: Annotated[
        str | None, Opt(help="predict latency_ms from this table (nasflow latency profile)")
    ] = None,
    latency_runtime: Annotated[
        str | None, Opt(help="measure latency_ms with eager (default) or onnxruntime")
    ] = None,
    latency_batch_size: Annotated[int | None, Opt(help="batch of latency measurements (default 1)")] = None,
    latency_threads: Annotated[int | None, Opt(help="threads of latency measurements (default 1)")] = None,
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
        "executor": executor,
        "ray_address": ray_address,
        "trial_cpus": trial_cpus,
        "trial_gpus": trial_gpus,
        "max_retries": max_retries,
        "pruner": pruner,
        "latency_table": latency_table,
        "latency_runtime": latency_runtime,
        "latency_batch_size": latency_batch_size,
        "latency_threads": latency_threads,
    }
    settings.update({k: v for k, v in flags.items() if v is not None})
    if not settings.get("name"):
        stamp = time.strftime("%Y%m%d-%H%M%S")
        cfg = make_config(**settings)  # resolves the default strategy, which depends on the objectives
        settings["name"] = f"{cfg.space}-{cfg.strategy}-{stamp}"
    cfg = make_config(**settings)
    study = study_from_config(cfg)
    console = Console(stderr=True, quiet=quiet or output == "json")
    console.print(
        f"study [bold]{study.name}[/] in {cfg.storage}: space {cfg.space}, strategy {cfg.strategy}, "
        f"evaluator {cfg.evaluator}, budget {cfg.budget if cfg.budget is not None else '-'} trials"
        + (f", {cfg.seconds:g} s" if cfg.seconds else "")
        + (f", pruner {cfg.pruner}" if cfg.pruner != "none" else "")
    )
    oneshot = None
    if cfg.strategy in catalog.ONESHOT:
        oneshot = _run_oneshot(study, cfg, console)
    else:
        with build_executor(cfg) as executor, SearchProgress(study, cfg.budget, console) as progress:
            study.optimize(
                budget=cfg.budget,
                seconds=cfg.seconds,
                executor=executor,
                callbacks=[progress],
                max_retries=cfg.max_retries,
            )
        if study.stopped:
            console.print("stopped by Ctrl-C: finished trials are saved; run the same command to resume")
    if output == "json":
        summary = study_summary(study)
        if oneshot is not None:
            summary["oneshot"] = oneshot
        print_json(summary)
        return
    top = top_trials(study)
    if not top:
        console.quiet = False
        console.print("no trial completed; see `nasflow show` for the errors")
        sys.exit(1)
    metrics = [o.metric for o in study.objectives] + [c.metric for c in study.constraints]
    output_console().print(trials_table(top, f"top {len(top)} architectures of {study.name}", metrics))
    if len(study.objectives) > 1:
        front = study.pareto_front()
        output_console().print(trials_table(front, f"Pareto front ({len(front)} architectures)", metrics))
    if not study.has_feasible_trial():
        bounds = ", ".join(str(c) for c in study.constraints)
        print(f"no completed trial satisfies the constraints ({bounds}); run more trials or relax them")
        sys.exit(1)
    best = study.best()
    print(f"best: trial {best.number} {best.arch_str}")
    if "latency_ms" in metrics:
        _print_remeasured(study)
    if oneshot is not None and "accuracy" in oneshot:
        accuracy = f"{oneshot['accuracy']:.2f}% with inherited weights"
        print(f"{oneshot['search']} ended on {oneshot['arch_str']} ({accuracy})")
    elif oneshot is not None:
        score = f"weight-sharing accuracy {oneshot['ws_score']:.2f}%"
        print(f"{oneshot['search']} derived {oneshot['arch_str']} ({score})")
        if oneshot["log"]:
            print(f"search log (architecture weights per epoch): {oneshot['log']}")
    print(f"show again with: nasflow show {study.name} --storage {cfg.storage}")


def _print_remeasured(study: Any) -> None:
    """Re-measure the latency of the front (or the best), so the bounds are checked on fresh numbers."""
    from rich.table import Table

    from nasflow.cli.render import fmt_number
    from nasflow.estimators.cost import remeasure_latency

    table = Table(title="latency re-measured (fresh, not cached or predicted)", title_justify="left")
    for column in ("#", "recorded ms", "re-measured ms", "constraints"):
        table.add_column(column, justify="right")
    rows = remeasure_latency(study)
    for row in rows:
        recorded = row["recorded_ms"]
        table.add_row(
            str(row["trial"]),
            "" if recorded is None else fmt_number(recorded),
            fmt_number(row["remeasured_ms"]),
            "met" if row["feasible"] else "VIOLATED",
        )
    output_console().print(table)
    if len(study.objectives) == 1 and study.constraints:
        holding = [row["trial"] for row in rows if row["feasible"]]
        if holding:
            print(f"best that meets the constraints when re-measured: trial {holding[0]}")
        else:
            print(f"none of the {len(rows)} best feasible trials met the constraints when re-measured")


def _run_oneshot(study: Any, cfg: Any, console: Console) -> dict[str, Any]:
    """Fit the study's one-shot search, then train its choice from scratch as the study's trial(s)."""
    from rich.progress import Progress

    from nasflow.morphism.base import MorphismSearch
    from nasflow.oneshot.run import run_oneshot
    from nasflow.tasks import BUILTIN_DATASETS, Task, load_task

    search = study.strategy.search
    if isinstance(search, MorphismSearch):
        return _run_morphism(study, search, cfg)
    task = None  # run_oneshot takes the training evaluator's task, or explains why there is none
    dataset = cfg.dataset or "digits"
    has_task = isinstance(getattr(study.evaluator, "task", None), Task)
    if not has_task and (cfg.data or dataset in BUILTIN_DATASETS):
        task = load_task(dataset, data=cfg.data)
    with Progress(console=console) as progress:
        bar = progress.add_task(f"{cfg.strategy} supernet", total=search.epochs)

        def advance(log: Any) -> None:
            progress.update(bar, completed=log.epoch)

        run = run_oneshot(study, search, task, budget=cfg.budget, callback=advance)
    result = run.result
    return {
        "search": result.search,
        "arch_str": result.arch_str,
        "ws_score": result.score,
        "epochs": len(result.epochs),
        "stopped_early": result.stopped_early,
        "seconds": result.seconds,
        "log": None if run.log_path is None else str(run.log_path),
    }


def _run_morphism(study: Any, search: Any, cfg: Any) -> dict[str, Any]:
    """Run a weight-inheritance search; every network it trains becomes a trial of the study."""
    from nasflow.errors import ConfigError
    from nasflow.space.macro import MacroSpace
    from nasflow.tasks import load_task

    if not isinstance(study.space, MacroSpace):
        raise ConfigError(f"{search.name} grows macro networks: run it with --space macro")
    search.seed = study.seed  # the study's seed drives the search, as for every other strategy
    result = search.fit(load_task(cfg.dataset or "digits", data=cfg.data), study=study)
    return {
        "search": search.name,
        "arch_str": study.space.format(result.best_arch),
        "accuracy": result.best_accuracy,
        "epochs": result.total_epochs,
        "seconds": result.seconds,
        "log": None,
    }
