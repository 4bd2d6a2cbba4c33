"""Drawings of an architecture for model cards and reports.

Cell spaces are drawn as the cell's DAG (NB201: 4 nodes, an operation per edge; DARTS: the normal and
the reduction cell), the macro space as its chain of layers, other spaces that build networks as the
chain of the network's top-level modules, and spaces that cannot build as a table of the decisions.
Figures are made without pyplot, so drawing never touches a global figure or GUI backend.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from nasflow.space.architecture import Architecture
from nasflow.space.base import DecisionSpace

#: short labels and colours of cell operations (NB201 and DARTS names)
_OP_STYLE: dict[str, tuple[str, str]] = {
    "none": ("none", "#bbbbbb"),
    "skip_connect": ("skip", "#2ca02c"),
    "nor_conv_1x1": ("conv 1x1", "#1f77b4"),
    "nor_conv_3x3": ("conv 3x3", "#d62728"),
    "avg_pool_3x3": ("avg pool 3x3", "#9467bd"),
    "max_pool_3x3": ("max pool 3x3", "#8c564b"),
    "sep_conv_3x3": ("sep conv 3x3", "#d62728"),
    "sep_conv_5x5": ("sep conv 5x5", "#ff7f0e"),
    "dil_conv_3x3": ("dil conv 3x3", "#1f77b4"),
    "dil_conv_5x5": ("dil conv 5x5", "#17becf"),
}
_CHAIN_PER_ROW = 6


def draw_architecture(
    space: DecisionSpace,
    arch: Architecture,
    path: str | os.PathLike[str] | None = None,
    task: Any = None,
) -> Figure:
    """Draw ``arch`` of ``space``; saved as PNG to ``path`` when given.

    Works for every space: NB201-style cells (``nb201``, ``nb201-digits``) and DARTS cells as DAGs,
    ``macro`` as a chain of layers, any other space that builds a network (for ``task``, or its default
    input) as a chain of the network's top-level modules, and otherwise a table of the decisions.
    """
    from nasflow.space.darts import DartsSpace
    from nasflow.space.macro import MacroSpace
    from nasflow.space.nb201 import NB201Space

    arch = space.validate(arch)
    if isinstance(space, NB201Space):
        figure = _nb201_figure(space, arch)
    elif isinstance(space, DartsSpace):
        figure = _darts_figure(space, arch)
    elif isinstance(space, MacroSpace):
        figure = _macro_figure(space, arch)
    else:
        figure = _module_figure(space, arch, task) or _table_figure(space, arch)
    if path is not None:
        figure.savefig(os.fspath(path), format="png", dpi=100)
    return figure


# -- DAGs ------------------------------------------------------------------------------------------
def _draw_dag(
    ax: Any,
    positions: dict[str, tuple[float, float]],
    edges: Sequence[tuple[str, str, str | None, float, float]],
    title: str,
    equal_aspect: bool = True,
) -> None:
    """Nodes as boxes at ``positions``; edges ``(source, target, op or None, curvature, label_at)``.

    An edge's label sits ``label_at`` of the way along its curve (0.5: the middle).
    """
    for source, target, op, rad, label_at in edges:
        label, colour = _OP_STYLE.get(op, (op, "#444444")) if op is not None else ("", "#888888")
        dashed = op == "none" or op is None
        arrow = FancyArrowPatch(
            positions[source],
            positions[target],
            connectionstyle=f"arc3,rad={rad}",
            arrowstyle="-|>",
            mutation_scale=14,
            linewidth=1.2 if op is None else 2.0,
            linestyle="--" if dashed else "-",
            color=colour,
            shrinkA=16,
            shrinkB=16,
            zorder=1,
        )
        ax.add_patch(arrow)
        if label:
            (x0, y0), (x1, y1) = positions[source], positions[target]
            # arc3 is a quadratic Bezier curve whose control point sits rad x the chord's length from
            # the chord's middle, perpendicular to it (to the right of the source->target direction)
            cx, cy = (x0 + x1) / 2 + rad * (y1 - y0), (y0 + y1) / 2 - rad * (x1 - x0)
            t = label_at
            mx = (1 - t) ** 2 * x0 + 2 * t * (1 - t) * cx + t**2 * x1
            my = (1 - t) ** 2 * y0 + 2 * t * (1 - t) * cy + t**2 * y1
            ax.text(
                mx,
                my,
                label,
                ha="center",
                va="center",
                fontsize=8,
                color=colour,
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.9},
                zorder=3,
            )
    for name, (x, y) in positions.items():
        half = 0.1 + 0.06 * len(name)
        ax.add_patch(
            FancyBboxPatch(
                (x - half, y - 0.16),
                2 * half,
                0.32,
                boxstyle="round,pad=0.02",
                fc="#f2f2f2",
                ec="#333333",
                zorder=2,
            )
        )
        ax.text(x, y, name, ha="center", va="center", fontsize=9, zorder=4)
    xs = [p[0] for p in positions.values()]
    ys = [p[1] for p in positions.values()]
    # an arc bulges by |rad|/2 of its chord's length; keep the whole curve and its label in view
    bulge = max(
        (abs(rad) / 2 * _distance(positions[s], positions[t]) for s, t, _, rad, _ in edges), default=0.0
    )
    ax.set_xlim(min(xs) - 0.7, max(xs) + 0.7)
    ax.set_ylim(min(ys) - bulge - 0.5, max(ys) + bulge + 0.5)
    if equal_aspect:
        ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title, fontsize=10)


def _distance(a: tuple[float, float], b: tuple[float, float]) -> float:
    return float(((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2) ** 0.5)


def _nb201_figure(space: Any, arch: Architecture) -> Figure:
    from nasflow.space.nb201 import EDGE_NAMES, EDGES

    # nodes on a line; edges that skip a node arc above (into node 2 and 3 from 0) or below (1 -> 3)
    positions = {"0 (in)": (0.0, 0.0), "1": (2.2, 0.0), "2": (4.4, 0.0), "3 (out)": (6.6, 0.0)}
    names = list(positions)
    curvature = {(1, 0): 0.0, (2, 0): -0.45, (2, 1): 0.0, (3, 0): -0.5, (3, 1): 0.45, (3, 2): 0.0}
    edges = [
        (names[src], names[dst], str(arch[key]), curvature[(dst, src)], 0.5)
        for (dst, src), key in zip(EDGES, EDGE_NAMES)
    ]
    figure = Figure(figsize=(6.4, 4.0))
    ax = figure.add_subplot()
    _draw_dag(ax, positions, edges, f"{space.name} cell")
    figure.text(
        0.5,
        0.04,
        f"{space.channels} channels in stage 1 (x2 per reduction), {space.cells_per_stage} cell(s) per stage",
        ha="center",
        fontsize=8,
        color="#555555",
    )
    return figure


def _darts_figure(space: Any, arch: Architecture) -> Figure:
    genotype = space.genotype(arch)
    figure = Figure(figsize=(11.0, 5.6))
    for column, cell in enumerate(("normal", "reduce")):
        ax = figure.add_subplot(1, 2, column + 1)
        pairs = genotype[cell]
        nodes = len(pairs) // 2
        # inputs on the left, the intermediate nodes in a column, their concatenation on the right;
        # labels sit near the target node, where the two incoming edges of a node are far apart
        positions: dict[str, tuple[float, float]] = {"c_{k-2}": (0.0, 1.2), "c_{k-1}": (0.0, -1.2)}
        for i in range(nodes):
            positions[str(i)] = (4.0, 1.6 * ((nodes - 1) / 2 - i))
        positions["c_{k}"] = (6.5, 0.0)
        names = list(positions)
        edges: list[tuple[str, str, str | None, float, float]] = []
        for index, (op, source) in enumerate(pairs):
            # an edge between intermediate nodes runs down the column: bulge it to the right
            within = source >= 2
            edges.append(
                (names[source], str(index // 2), op, -0.35 if within else 0.0, 0.5 if within else 0.72)
            )
        edges += [(str(i), "c_{k}", None, 0.0, 0.5) for i in range(nodes)]
        _draw_dag(ax, positions, edges, f"{cell} cell", equal_aspect=False)
    figure.text(
        0.5,
        0.02,
        f"DARTS network: {space.layers} cells, {space.channels} initial channels; c_{{k}} concatenates "
        "the intermediate nodes",
        ha="center",
        fontsize=8,
        color="#555555",
    )
    return figure


# -- chains ----------------------------------------------------------------------------------------
def _chain_figure(labels: Sequence[str], title: str) -> Figure:
    """Boxes joined by arrows, ``_CHAIN_PER_ROW`` per row, read left to right, top to bottom."""
    rows = max(1, -(-len(labels) // _CHAIN_PER_ROW))
    figure = Figure(figsize=(11.0, 1.0 + 1.4 * rows))
    ax = figure.add_axes((0.01, 0.01, 0.98, 0.98 - 0.35 / (1.0 + 1.4 * rows)))
    width, height, gap = 1.5, 0.8, 0.45
    centres = []
    for index, label in enumerate(labels):
        row, col = divmod(index, _CHAIN_PER_ROW)
        x, y = col * (width + gap), -row * (height + 0.6)
        centres.append((x + width / 2, y + height / 2))
        ax.add_patch(
            FancyBboxPatch((x, y), width, height, boxstyle="round,pad=0.03", fc="#eef3fa", ec="#335577")
        )
        ax.text(x + width / 2, y + height / 2, label, ha="center", va="center", fontsize=8)
    for (x0, y0), (x1, y1) in zip(centres, centres[1:]):
        start, end = (
            ((x0 + width / 2, y0), (x1 - width / 2, y1))
            if y0 == y1
            else ((x0, y0 - height / 2), (x1, y1 + height / 2))
        )
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, color="#335577"))
    ax.set_xlim(-0.2, _CHAIN_PER_ROW * (width + gap))
    ax.set_ylim(-(rows - 1) * (height + 0.6) - 0.2, height + 0.2)
    ax.axis("off")
    figure.suptitle(title, fontsize=10)
    return figure


def _macro_figure(space: Any, arch: Architecture) -> Figure:
    labels = [f"stem\nconv 3x3\n{space.stem_channels} ch"]
    layers = {layer.slot: layer for layer in space.layers(arch)}
    for slot in range(space.max_layers + 1):
        if slot in space.reduce_at:
            labels.append("max pool\n2x2")
        layer = layers.get(slot)
        if layer is not None:
            labels.append(f"{layer.op}\n{layer.width} ch" + ("\n+ shortcut" if layer.skip else ""))
    labels += ["global\navg pool", "linear\n(classes)"]
    return _chain_figure(labels, f"macro network: {space.format(arch)}")


def _module_figure(space: DecisionSpace, arch: Architecture, task: Any) -> Figure | None:
    """The chain of the built network's top-level modules, or None when the space cannot build."""
    try:
        from torch import nn

        model = space.build(arch, task)
    except Exception:  # a space without networks, or one that needs a task: fall back to the table
        return None
    if not isinstance(model, nn.Module):
        return None
    children = list(model.named_children())
    while len(children) == 1 and list(children[0][1].named_children()):
        children = list(children[0][1].named_children())  # a lone container: show what it holds
    if not children:
        children = [(type(model).__name__, model)]
    labels = []
    for name, module in children:
        parameters = list(module.parameters())
        if any(isinstance(p, nn.parameter.UninitializedParameter) for p in parameters):
            size = "lazy params"  # shapes are known only after a first forward pass
        else:
            size = f"{sum(p.numel() for p in parameters):,} params"
        labels.append(f"{name}\n{type(module).__name__}\n{size}")
    text = space.format(arch)
    text = text if len(text) <= 100 else text[:97] + "..."
    return _chain_figure(labels, f"{space.name} network ({type(model).__name__}): {text}")


def _table_figure(space: DecisionSpace, arch: Architecture) -> Figure:
    rows = [(key, str(arch[key])) for key in space.decisions()]
    figure = Figure(figsize=(6.0, 0.8 + 0.3 * len(rows)))
    ax = figure.add_subplot()
    ax.axis("off")
    table = ax.table(cellText=rows, colLabels=["decision", "value"], loc="center", cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    table.scale(1.0, 1.3)
    ax.set_title(f"{space.name} architecture (this space builds no network to draw)", fontsize=10)
    return figure
