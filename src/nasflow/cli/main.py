"""The ``nasflow`` command: one module per verb, errors printed in one or two lines."""

from __future__ import annotations

import sys
import traceback

import typer

from nasflow.cli import bench, evaluate, export, latency, listing, report, search, show
from nasflow.errors import NasflowError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Neural Architecture Search for PyTorch.",
)
app.command("search")(search.search)
app.command("show")(show.show)
app.command("evaluate")(evaluate.evaluate)
app.command("list")(listing.list_components)
app.command("report")(report.report)
app.command("export")(export.export)
app.add_typer(bench.app, name="bench")
app.add_typer(latency.app, name="latency")

#: flags that take several values, written either space-separated or comma-separated
_MULTI_VALUE_FLAGS = ("--objectives", "--constraints")


def _join_multi_values(argv: list[str]) -> list[str]:
    """Turn ``--objectives a:max b:min`` into ``--objectives a:max,b:min`` (click takes one value)."""
    result: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        result.append(token)
        i += 1
        if token in _MULTI_VALUE_FLAGS:
            values = []
            while i < len(argv) and not argv[i].startswith("-"):
                values.append(argv[i])
                i += 1
            result.append(",".join(values))
    return result


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (2 for user mistakes, 130 for Ctrl-C)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = _join_multi_values([a for a in args if a != "--debug"])
    try:
        app(args=args, prog_name="nasflow", standalone_mode=False)
    except NasflowError as exc:
        if debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished trials are saved; run the same command to resume", file=sys.stderr)
        return 130
    except Exception as exc:  # click usage errors and the like
        import click

        if isinstance(exc, click.exceptions.Exit):
            return exc.exit_code
        if isinstance(exc, click.ClickException):
            exc.show()
            return exc.exit_code
        if isinstance(exc, click.exceptions.Abort):
            print("aborted", file=sys.stderr)
            return 130
        if debug:
            raise
        print(
            f"error: unexpected {type(exc).__name__}: {exc} (rerun with --debug for details)", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
