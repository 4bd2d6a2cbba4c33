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
    dataset: Annotated[str, Opt(help="the benchmark's data set, e.g. cifar10 or cifar100")] = "cifar10",
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
