"""``nasflow export NAME``: retrain the chosen architectures, validate them and ship ONNX + TorchScript."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from nasflow.api import load_study
from nasflow.cli.render import fmt_number, output_console, print_json
from nasflow.errors import ConfigError

Opt = typer.Option


def _check_cell(entry: Any) -> str:
    if not isinstance(entry, dict):
        return "-"
    verdict = "ok" if entry.get("same_predictions") else "MISMATCH"
    return f"{verdict} (max diff {entry.get('max_abs_diff', float('nan')):.1e})"


def _latency_cell(cost: dict[str, Any]) -> str:
    latency = cost.get("latency_ms") or {}
    parts = [
        f"{runtime} {entry['median_ms']:.3f}"
        for runtime, entry in latency.items()
        if isinstance(entry, dict) and "median_ms" in entry
    ]
    return ", ".join(parts) or "-"


def export(
    name: Annotated[str, typer.Argument(help="study name")],
    storage: Annotated[str, Opt(help="database URL")] = "sqlite:///nasflow.db",
    top: Annotated[int | None, Opt(help="export the best K distinct architectures (default 1)")] = None,
    pareto: Annotated[bool, Opt("--pareto", help="export the Pareto front")] = False,
    trial: Annotated[int | None, Opt(help="export this trial number")] = None,
    retrain_epochs: Annotated[int | None, Opt(help="training epochs (default: the study's)")] = None,
    seeds: Annotated[int, Opt(help="models trained with different seeds (mean ± std)")] = 1,
    format: Annotated[str, Opt("--format", help="onnx,torchscript (comma-separated)")] = "onnx,torchscript",
    output_dir: Annotated[str | None, Opt(help="folder for the models (default exports/NAME)")] = None,
    robustness: Annotated[bool, Opt(help="accuracy under noise, shifts and occlusion")] = True,
    transfer_data: Annotated[str | None, Opt(help="also train on this .npz or image folder")] = None,
    init_weights: Annotated[str | None, Opt(help="fine-tune from this state dict (.pt)")] = None,
    fine_tune: Annotated[
        bool, Opt("--fine-tune", help="fine-tune from the weights inherited in a one-shot search")
    ] = False,
    task: Annotated[str | None, Opt(help="task for studies that trained nothing (default digits)")] = None,
    latency: Annotated[bool, Opt(help="measure latency (eager and ONNX Runtime)")] = True,
    output: Annotated[str, Opt(help="text or json (the model cards)")] = "text",
    quiet: Annotated[bool, Opt("--quiet", help="no progress messages")] = False,
) -> None:
    """Retrain the best architecture(s) of a study on train+val, test, and export ONNX + TorchScript."""
    if output not in ("text", "json"):
        raise ConfigError(f"--output must be text or json, got {output!r}")
    study = load_study(name, storage)
    console = Console(stderr=True, quiet=quiet or output == "json")
    results = study.export(
        top=1 if top is None else top,
        pareto=pareto,
        trial=trial,
        retrain_epochs=retrain_epochs,
        seeds=seeds,
        formats=format,
        output_dir=output_dir,
        robustness=robustness,
        transfer_data=transfer_data,
        init_weights=init_weights,
        fine_tune=fine_tune,
        task=task,
        latency=latency,
        progress=lambda message: console.print(message, markup=False, highlight=False),
    )
    if output == "json":
        print_json([r.card for r in results])
        return
    table = Table(title=f"exported models of {study.name}", title_justify="left")
    for column in ("model", "test accuracy %", "ONNX", "TorchScript", "params", "latency ms", "folder"):
        table.add_column(column, no_wrap=column == "folder")
    for result in results:
        card = result.card
        metrics, exports, cost = card["metrics"], card["exports"], card["cost"]
        accuracy = f"{metrics['test_accuracy']:.2f}"
        if len(metrics["test_accuracy_per_seed"]) > 1:
            accuracy += f" ± {metrics['test_accuracy_std']:.2f}"
        table.add_row(
            result.model,
            accuracy,
            _check_cell(exports.get("onnx")),
            _check_cell(exports.get("torchscript")),
            fmt_number(cost["params"]),
            _latency_cell(cost),
            str(result.directory),
        )
    out = output_console()
    out.print(table)
    for result in results:
        print(f"model card: {result.card_path}")
