"""``nasflow report NAME``: write an HTML report with plots of a stored study."""

from __future__ import annotations

from typing import Annotated

import typer

from nasflow.api import load_study
from nasflow.errors import ConfigError


def report(
    name: Annotated[str, typer.Argument(help="study name")],
    storage: Annotated[str, typer.Option(help="database URL")] = "sqlite:///nasflow.db",
    output_dir: Annotated[
        str | None, typer.Option("--output-dir", help="where to write (default reports/NAME)")
    ] = None,
    top: Annotated[int, typer.Option(help="rows of the top-architectures table")] = 10,
) -> None:
    """Write report.html (self-contained, plots embedded) and its PNG figures for a stored study."""
    if top < 1:
        raise ConfigError(f"--top must be at least 1, got {top}")
    # matplotlib is imported only by this verb, so the other commands start quickly
    from nasflow.report import build_report

    path = build_report(load_study(name, storage), output_dir, top)
    print(f"report written to {path}")
