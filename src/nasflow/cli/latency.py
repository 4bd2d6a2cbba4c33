"""``nasflow latency``: profile a latency look-up table for a block-wise space, and check it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from nasflow.errors import ConfigError

Opt = typer.Option
app = typer.Typer(help="Latency look-up tables (nn-Meter style) for block-wise spaces.", no_args_is_help=True)


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(part) for part in text.replace("x", ",").split(",") if part.strip())
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise ConfigError(f"--input-shape must be positive sizes such as 1,8,8, got {text!r}")
    return shape


def _parse_options(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        options = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"--space-options must be a JSON object such as '{{\"max_depth\": 2}}': {exc}"
        ) from None
    if not isinstance(options, dict):
        raise ConfigError(f"--space-options must be a JSON object, got {text!r}")
    return options


@contextmanager
def _progress(quiet: bool) -> Iterator[Any]:
    """A rich progress bar on standard error; yields ``update(phase, done, total)``."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True, quiet=quiet)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True, disable=quiet) as bar:
        tasks: dict[str, Any] = {}

        def update(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done)

        yield update


def _settings_text(settings: dict[str, Any]) -> str:
    threads = settings["threads"]
    return (
        f"{settings['device']} ({settings['runtime']}, batch {settings['batch_size']}, "
        f"{threads} thread{'s' if threads != 1 else ''})"
    )


@app.command("profile")
def profile(
    output: Annotated[str, Opt(help="the table file to write (JSON)")],
    space: Annotated[str, Opt(help="a block-wise search space, e.g. chain")] = "chain",
    space_options: Annotated[
        str | None, Opt(help="the space's options as JSON, e.g. '{\"max_depth\": 2}'")
    ] = None,
    device: Annotated[str, Opt(help="cpu or cuda[:N]")] = "cpu",
    runtime: Annotated[str, Opt(help="eager or onnxruntime")] = "eager",
    batch_size: Annotated[int, Opt(help="examples per forward pass")] = 1,
    threads: Annotated[int, Opt(help="intra-op threads")] = 1,
    calibration: Annotated[int, Opt(help="whole networks measured to fit the overhead")] = 30,
    input_shape: Annotated[str, Opt(help="C,H,W of one example (digits: 1,8,8)")] = "1,8,8",
    num_classes: Annotated[int, Opt(help="classes of the classifier head")] = 10,
    warmup: Annotated[int, Opt(help="untimed calls before each measurement")] = 10,
    repeats: Annotated[int, Opt(help="timed repeats per measurement")] = 30,
    passes: Annotated[int, Opt(help="passes over blocks and networks; each keeps its lowest median")] = 2,
    seed: Annotated[int, Opt(help="seed of the calibration sample")] = 0,
    quiet: Annotated[bool, Opt("--quiet", help="no progress bar")] = False,
) -> None:
    """Measure every block the space can contain, fit the network overhead, and write the table."""
    from nasflow import catalog
    from nasflow.objectives.latency_predictor import profile_blocks, require_blockwise

    space_obj = require_blockwise(catalog.get_space(space, **_parse_options(space_options)))
    start = time.perf_counter()
    with _progress(quiet) as update:
        table = profile_blocks(
            space_obj,
            _parse_shape(input_shape),
            num_classes,
            device=device,
            runtime=runtime,
            batch_size=batch_size,
            threads=threads,
            calibration=calibration,
            seed=seed,
            warmup=warmup,
            repeats=repeats,
            passes=passes,
            progress=update,
        )
    path = table.save(output)
    seconds = time.perf_counter() - start
    print(
        f"profiled {len(table.blocks)} blocks and {len(table.calibration)} calibration networks of {space} "
        f"on {_settings_text(table.settings)} in {seconds:.0f} s"
    )
    print(f"fit: network latency = {table.a:.4f} x sum of block latencies {table.b:+.4f} ms")
    print(f"wrote {path}")


@app.command("check")
def check(
    table: Annotated[str, Opt(help="a table written by nasflow latency profile")],
    samples: Annotated[int, Opt(help="held-out architectures to measure")] = 50,
    seed: Annotated[int, Opt(help="seed of the held-out sample (calibration networks are skipped)")] = 0,
    passes: Annotated[int | None, Opt(help="passes over the sample (default: the table's)")] = None,
    output_json: Annotated[
        str | None, Opt(help="also write the results, per architecture, to this JSON file")
    ] = None,
    quiet: Annotated[bool, Opt("--quiet", help="no progress bar")] = False,
) -> None:
    """Measure held-out architectures (never the calibration ones) and compare with the predictions."""
    from nasflow.objectives.latency_predictor import LatencyPredictor, LatencyTable
    from nasflow.objectives.latency_predictor import check as check_predictor

    loaded = LatencyTable.load(table)
    loaded.require_this_machine()
    predictor = LatencyPredictor(loaded)
    with _progress(quiet) as update:
        result = check_predictor(predictor, n=samples, seed=seed, passes=passes, progress=update)
    if output_json:
        path = Path(output_json)
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {"table": table, "settings": loaded.settings, "seed": seed, **result.to_dict()}
        path.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    space_name = loaded.space.get("name")
    where = _settings_text(loaded.settings)
    print(f"held-out check of {table}: {result.samples} {space_name} networks on {where}")
    header = ("within ±10%", "within ±5%", "RMSE (ms)", "Spearman", "max error", "mean error")
    cells = (
        f"{100 * result.within_10:.1f}%",
        f"{100 * result.within_5:.1f}%",
        f"{result.rmse_ms:.4f}",
        f"{result.spearman:.3f}",
        f"{100 * result.max_error:.1f}%",
        f"{100 * result.mean_error:.1f}%",
    )
    widths = [max(len(h), len(c)) for h, c in zip(header, cells)]
    print("| " + " | ".join(h.rjust(w) for h, w in zip(header, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    print("| " + " | ".join(c.rjust(w) for c, w in zip(cells, widths)) + " |")
    if output_json:
        print(f"wrote {output_json}")
