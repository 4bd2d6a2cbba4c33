"""``nasflow bench``: strategies side by side on a tabular benchmark, with CSV and PNG output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from nasflow.bench.harness import run_bench
from nasflow.bench.report import markdown_table, summary_rows, write_csv, write_plot
from nasflow.errors import ConfigError

Opt = typer.Option
app = typer.Typer(help="Benchmark search strategies on a tabular benchmark.")


@app.callback(invoke_without_command=True)
def bench(
    ctx: typer.Context,
    benchmark: Annotated[str, Opt(help="registered tabular benchmark")] = "nb201",
    dataset: Annotated[
        str | None, Opt(help="the benchmark's data set, e.g. cifar10 (default: the benchmark's first)")
    ] = None,
    strategies: Annotated[str, Opt(help="comma-separated strategy names")] = "random,evolution,tpe",
    seeds: Annotated[int, Opt(help="runs per strategy (seeds 0..N-1)")] = 20,
    budget: Annotated[int, Opt(help="queries per run")] = 200,
    workers: Annotated[int, Opt(help="parallel processes")] = 2,
    output_dir: Annotated[str, Opt(help="folder for the CSV, PNG and JSON")] = "bench_results",
    output: Annotated[str, Opt(help="text or json")] = "text",
) -> None:
    """Run each strategy SEEDS times for BUDGET queries; report the test value of the best-by-validation
    architecture (mean ± std), regret to the oracle and each strategy's own overhead."""
    if ctx.invoked_subcommand is not None:
        return
    names = [s.strip() for s in strategies.split(",") if s.strip()]
    if not names:
        raise ConfigError("--strategies needs at least one strategy name")
    if output not in ("text", "json"):
        raise typer.BadParameter(f"--output must be text or json, got {output!r}")
    if dataset is None:
        from nasflow.estimators.tabular import benchmark_datasets

        dataset = benchmark_datasets(benchmark)[0]
    result = run_bench(
        names, seeds=seeds, budget=budget, benchmark=benchmark, dataset=dataset, workers=workers
    )
    folder = Path(output_dir)
    stem = f"{benchmark}-{dataset}"
    csv_path = write_csv(result, folder / f"{stem}.csv")
    png_path = write_plot(result, folder / f"{stem}.png")
    summary = {
        "benchmark": benchmark,
        "dataset": dataset,
        "budget": budget,
        "seeds": seeds,
        "oracle": result.oracle,
        "strategies": summary_rows(result),
        "csv": str(csv_path),
        "png": str(png_path),
    }
    (folder / f"{stem}.json").write_text(json.dumps(summary, indent=2))
    if output == "json":
        print(json.dumps(summary, indent=2))
        return
    print(f"{benchmark} {dataset}: test value of the best-by-validation architecture, {seeds} seeds")
    print(markdown_table(result))
    print(f"wrote {csv_path}, {png_path}")


@app.command("build")
def build(
    output: Annotated[str, Opt(help="table file to write (.csv or .csv.gz); the study goes to FILE.db")],
    space: Annotated[str, Opt(help="search space (finite; nasflow list spaces)")] = "nb201",
    task: Annotated[str, Opt(help="built-in dataset to train on")] = "digits",
    data: Annotated[str | None, Opt(help="your data: a .npz with X and y, or an image folder")] = None,
    archs: Annotated[int, Opt(help="distinct networks in the finished table")] = 500,
    epochs: Annotated[int, Opt(help="training epochs per network")] = 10,
    channels: Annotated[int | None, Opt(help="nb201: first-stage width (default 8)")] = None,
    cells_per_stage: Annotated[int | None, Opt(help="nb201: cells per stage (default 1)")] = None,
    data_fraction: Annotated[float, Opt(help="share of the training split used")] = 1.0,
    seed: Annotated[int, Opt(help="draws the networks and their training seeds")] = 0,
    workers: Annotated[int, Opt(help="networks trained in parallel (local processes)")] = 1,
    threads: Annotated[int, Opt(help="torch threads per network")] = 1,
    quiet: Annotated[bool, Opt("--quiet", help="no progress bar")] = False,
) -> None:
    """Train ARCHS distinct networks from scratch and write them as a tabular benchmark.

    Resumable: run the same command again after an interruption, or with a larger --archs to extend.
    """
    from rich.console import Console

    from nasflow import catalog
    from nasflow.benchmarks.build import TableBuild
    from nasflow.cli.render import SearchProgress
    from nasflow.config import DIGITS_NB201
    from nasflow.estimators.train import TrainEvaluator

    space_options: dict[str, int] = dict(DIGITS_NB201) if space == "nb201" else {}
    for key, value in (("channels", channels), ("cells_per_stage", cells_per_stage)):
        if value is not None:
            space_options[key] = value
    space_obj = catalog.get_space(space, **space_options)
    evaluator = TrainEvaluator(task, data=data, epochs=epochs, data_fraction=data_fraction, report_test=True)
    table_build = TableBuild(output, space_obj, evaluator, seed=seed)
    console = Console(stderr=True, quiet=quiet)
    already = table_build.done()
    console.print(
        f"building {output}: {archs} distinct {space} networks, {epochs} epochs on {data or task}, "
        f"{workers} worker(s); {already} already built, study in {table_build.database}"
    )
    with SearchProgress(table_build.study, archs, console) as progress:
        result = table_build.run(archs, workers=workers, threads=threads, callbacks=[progress])
    accuracy = result.table.column("valid_acc")
    span = f"valid_acc {accuracy.min():.2f}-{accuracy.max():.2f}"
    print(f"wrote {result.path}: {len(result.table)} networks, {span}")
    if result.failed:
        where = f"nasflow show {result.study.name} --storage {table_build.database}"
        print(f"{len(result.failed)} network(s) failed to train and have no row; see `{where}`")
