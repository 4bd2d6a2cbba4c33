"""The report's figures (matplotlib, without pyplot) and their PNG bytes.

Every function returns a :class:`~matplotlib.figure.Figure` of a fixed size; :func:`png_bytes`
renders it at :data:`DPI`, so a figure of ``w x h`` inches is exactly ``w*DPI x h*DPI`` pixels.
"""

from __future__ import annotations

import io
import itertools
import math
import textwrap
from collections.abc import Sequence

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from nasflow.objectives.spec import Objective
from nasflow.report.data import COST_METRICS, ChoiceFrequencies, HypervolumeCurve, Series
from nasflow.trial import FrozenTrial

DPI = 100
#: colours: all trials, the good or highlighted ones, infeasible ones
ALL_COLOR = "#4c72b0"
GOOD_COLOR = "#dd8452"
INFEASIBLE_COLOR = "#999999"
#: at most this many objectives are paired in the Pareto panels, and this many frequency panels drawn
MAX_PARETO_OBJECTIVES = 4
MAX_FREQUENCY_PANELS = 12
_TICK_CHARS = 14


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes at :data:`DPI` (its size in inches times DPI, exactly)."""
    buffer = io.BytesIO()
    # no bbox_inches="tight": the pixel size must stay what the figure size promises
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": "nasflow"})
    return buffer.getvalue()


def pixel_size(fig: Figure) -> tuple[int, int]:
    """``(width, height)`` in pixels of :func:`png_bytes` of ``fig``."""
    width, height = fig.get_size_inches()
    return round(width * DPI), round(height * DPI)


def _label(objective: Objective) -> str:
    return f"{objective.metric} ({'higher' if objective.direction == 'max' else 'lower'} is better)"


def _no_data(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#555555")
    ax.set_xticks([])
    ax.set_yticks([])


def _trajectory_panel(ax: Axes, series: Series | None, objective: Objective, xlabel: str) -> None:
    if series is None or not series.x:
        _no_data(ax, "no completed trial with times")
        return
    feasible = [i for i, ok in enumerate(series.feasible) if ok]
    infeasible = [i for i, ok in enumerate(series.feasible) if not ok]
    ax.scatter(
        [series.x[i] for i in feasible],
        [series.values[i] for i in feasible],
        s=14,
        color=ALL_COLOR,
        alpha=0.6,
        label="completed trial",
    )
    if infeasible:
        ax.scatter(
            [series.x[i] for i in infeasible],
            [series.values[i] for i in infeasible],
            s=14,
            facecolors="none",
            edgecolors=INFEASIBLE_COLOR,
            label="violates a constraint",
        )
    ax.step(series.x, series.best, where="post", color=GOOD_COLOR, linewidth=2, label="best so far")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(_label(objective))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def trajectory_figure(by_number: Series, by_time: Series | None, objective: Objective) -> Figure:
    """Best-so-far of the first objective against trial number (left) and wall-clock time (right)."""
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    _trajectory_panel(left, by_number, objective, "trial number")
    _trajectory_panel(right, by_time, objective, "seconds since the first trial started")
    return fig


def histogram_metrics(trials: Sequence[FrozenTrial], objectives: Sequence[Objective]) -> list[str]:
    """Metrics worth a histogram: the objectives, then costs (params, FLOPs, latency) when measured."""
    names = list(dict.fromkeys([*(o.metric for o in objectives), *COST_METRICS]))
    present = [n for n in names if any(_finite(t.metrics.get(n)) for t in trials)]
    return present[:4]


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def distribution_figure(trials: Sequence[FrozenTrial], metrics: Sequence[str]) -> Figure:
    """Histograms of ``metrics`` over ``trials`` (completed ones), one panel each."""
    panels = max(1, len(metrics))
    fig = Figure(figsize=(min(10, 3.6 * panels), 3.2), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    for ax, metric in zip(axes, metrics):
        values = [float(t.metrics[metric]) for t in trials if _finite(t.metrics.get(metric))]
        ax.hist(values, bins=min(30, max(5, len(values) // 3)), color=ALL_COLOR, alpha=0.8)
        ax.set_xlabel(metric)
        ax.set_ylabel("trials")
        ax.grid(alpha=0.3)
    if not metrics:
        _no_data(axes[0], "no completed trial")
    return fig


def pareto_figure(
    trials: Sequence[FrozenTrial], front: Sequence[FrozenTrial], objectives: Sequence[Objective]
) -> Figure:
    """Every completed trial on each pair of objectives, with the Pareto front highlighted.

    The front is the study's (non-dominated on all objectives, feasible only), so with more than two
    objectives a front member can look dominated in one 2-D panel.
    """
    shown = list(objectives[:MAX_PARETO_OBJECTIVES])
    pairs = list(itertools.combinations(range(len(shown)), 2))
    cols = min(3, len(pairs))
    rows = math.ceil(len(pairs) / cols)
    fig = Figure(figsize=(min(10, 4.2 * cols), 3.6 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    on_front = {t.number for t in front}
    for ax, (i, j) in zip(axes, pairs):
        for group, color, label, marker in (
            ([t for t in trials if t.feasible and t.number not in on_front], ALL_COLOR, "trial", "o"),
            ([t for t in trials if not t.feasible], INFEASIBLE_COLOR, "violates a constraint", "x"),
        ):
            if group:
                ax.scatter(
                    [_value(t, i) for t in group],
                    [_value(t, j) for t in group],
                    s=14,
                    color=color,
                    alpha=0.6,
                    marker=marker,
                    label=label,
                )
        if front:
            points = sorted((_value(t, i), _value(t, j)) for t in front)
            ax.scatter(
                *zip(*points), s=36, color=GOOD_COLOR, edgecolors="black", zorder=3, label="Pareto front"
            )
            if len(shown) == 2:
                ax.plot(*zip(*points), color=GOOD_COLOR, linewidth=1.2, zorder=2)
        ax.set_xlabel(_label(shown[i]))
        ax.set_ylabel(_label(shown[j]))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes[len(pairs) :]:
        ax.set_visible(False)
    return fig


def _value(trial: FrozenTrial, index: int) -> float:
    """Objective ``index`` of a completed trial (the callers pass completed trials only)."""
    assert trial.values is not None
    return trial.values[index]


def hypervolume_figure(curve: HypervolumeCurve) -> Figure:
    """Hypervolume of the feasible trials found so far against trial number."""
    fig = Figure(figsize=(6, 3.4), layout="constrained")
    ax = fig.add_subplot()
    ax.step(curve.numbers, curve.values, where="post", color=GOOD_COLOR, linewidth=2)
    ax.set_xlabel("trial number")
    ax.set_ylabel("hypervolume")
    ax.grid(alpha=0.3)
    return fig


def _tick(value: object) -> str:
    text = str(value)
    return text if len(text) <= _TICK_CHARS else text[: _TICK_CHARS - 1] + "…"


def frequency_groups(groups: Sequence[ChoiceFrequencies]) -> list[ChoiceFrequencies]:
    """The groups that get a panel: all, or the :data:`MAX_FREQUENCY_PANELS` that shift most."""
    if len(groups) <= MAX_FREQUENCY_PANELS:
        return list(groups)
    keep = sorted(range(len(groups)), key=lambda i: (-groups[i].shift, i))[:MAX_FREQUENCY_PANELS]
    return [groups[i] for i in sorted(keep)]


def frequency_figure(groups: Sequence[ChoiceFrequencies], good: int, total: int) -> Figure:
    """Grouped bars per decision (or pool of alike decisions): choice shares among good vs all trials."""
    groups = list(groups)
    cols = min(3, max(1, len(groups)))
    rows = max(1, math.ceil(len(groups) / cols))
    width = 10 if cols > 1 else max(5.0, min(10.0, 1.1 * max((len(g.choices) for g in groups), default=4)))
    fig = Figure(figsize=(width, 3.0 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, group in zip(axes, groups):
        positions = range(len(group.choices))
        ax.bar(
            [p - 0.2 for p in positions],
            group.all,
            width=0.4,
            color=ALL_COLOR,
            label=f"all completed ({total})",
        )
        ax.bar([p + 0.2 for p in positions], group.top, width=0.4, color=GOOD_COLOR, label=f"top {good}")
        ticks = [_tick(c) for c in group.choices]
        rotate = sum(len(t) for t in ticks) > 40
        ax.set_xticks(
            list(positions),
            ticks,
            rotation=30 if rotate else 0,
            ha="right" if rotate else "center",
            fontsize=8,
        )
        ax.set_ylabel("share")
        ax.set_title(textwrap.fill(group.label, 44), fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    if groups:  # one legend above the panels, where it never hides a bar
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside upper center", ncols=2, fontsize=8)
    for ax in axes[len(groups) :]:
        ax.set_visible(False)
    return fig


def robustness_figure(rows: Sequence[tuple[str, float, float]]) -> Figure:
    """Accuracy against severity, one line per perturbation."""
    fig = Figure(figsize=(6, 3.4), layout="constrained")
    ax = fig.add_subplot()
    for perturbation in dict.fromkeys(r[0] for r in rows):
        points = sorted((s, a) for p, s, a in rows if p == perturbation)
        ax.plot(*zip(*points), marker="o", label=perturbation)
    ax.set_xlabel("severity")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig
