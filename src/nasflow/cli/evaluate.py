"""``nasflow evaluate ARCH``: measure one architecture, given as the space's text form."""

from __future__ import annotations

from typing import Annotated

import typer

from nasflow.cli.render import fmt_number, print_json
from nasflow.config import build_components, make_config
from nasflow.estimators.base import EvalContext

Opt = typer.Option


def evaluate(
    arch: Annotated[str, typer.Argument(help="architecture string, e.g. an official NB201 cell string")],
    space: Annotated[str, Opt(help="search space")] = "nb201",
    evaluator: Annotated[str, Opt(help="train or tabular")] = "train",
    dataset: Annotated[str | None, Opt(help="digits (train) or cifar10/cifar100 (tabular)")] = None,
    data: Annotated[str | None, Opt(help="your data: a .npz with X and y, or an image folder")] = None,
    seed: Annotated[int, Opt(help="seed of weight initialisation and data order")] = 0,
    output: Annotated[str, Opt(help="text or json")] = "text",
) -> None:
    """Evaluate one architecture with the same settings a search would use."""
    if output not in ("text", "json"):
        raise typer.BadParameter(f"--output must be text or json, got {output!r}")
    config = make_config(space=space, evaluator=evaluator, dataset=dataset, data=data, seed=seed)
    components = build_components(config)
    search_space, measure = components["space"], components["evaluator"]
    parsed = search_space.parse(arch)
    measure.setup(search_space)
    measurement = measure.evaluate(parsed, EvalContext(seed=seed))
    if output == "json":
        print_json({"arch_str": search_space.format(parsed), "metrics": measurement.metrics})
        return
    print(search_space.format(parsed))
    for name, value in measurement.metrics.items():
        print(f"  {name:14} {fmt_number(value)}")
