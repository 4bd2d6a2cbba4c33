"""``nasflow list spaces|strategies|evaluators|benchmarks|pruners|datasets``."""

from __future__ import annotations

from typing import Annotated

import typer

from nasflow import catalog
from nasflow.errors import UnknownNameError

KINDS = ("spaces", "strategies", "evaluators", "benchmarks", "pruners", "datasets")


def list_components(kind: Annotated[str, typer.Argument(help=" | ".join(KINDS))]) -> None:
    """List the registered components of one kind."""
    registries = {
        "spaces": catalog.SPACES,
        "strategies": catalog.STRATEGIES,
        "evaluators": catalog.EVALUATORS,
        "benchmarks": catalog.BENCHMARKS,
        "pruners": catalog.PRUNERS,
    }
    if kind == "datasets":
        from nasflow.tasks import BUILTIN_DATASETS

        for name, summary in BUILTIN_DATASETS.items():
            print(f"{name:12} {summary}")
        print(f"{'(your data)':12} --data FILE.npz (arrays X, y) or --data FOLDER (one sub-folder per class)")
        return
    if kind not in registries:
        raise UnknownNameError(f"cannot list {kind!r}; allowed: {', '.join(KINDS)}")
    for entry in registries[kind].entries():
        print(f"{entry.name:12} {entry.summary}")
    if kind == "strategies":
        # one-shot searches are run by `nasflow search --strategy NAME` too, but train a supernet
        for entry in catalog.ONESHOT.entries():
            print(f"{entry.name:12} (one-shot) {entry.summary}")
