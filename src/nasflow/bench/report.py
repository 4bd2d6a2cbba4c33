"""Tables, CSV and plots of benchmark results."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nasflow.bench.harness import BenchResult

DEFAULT_CHECKPOINTS = (25, 50, 100, 200)


def checkpoints(budget: int, wanted: Sequence[int] = DEFAULT_CHECKPOINTS) -> list[int]:
    points = [b for b in wanted if b <= budget]
    return points if budget in points else [*points, budget]


def summary_rows(result: BenchResult, points: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """One row per strategy: mean/std of the report metric at each checkpoint, regret, overhead."""
    points = list(points or checkpoints(result.budget))
    rows = []
    for strategy in result.runs:
        curves = result.curves(strategy)
        row: dict[str, Any] = {"strategy": strategy, "seeds": len(curves)}
        for k in points:
            values = curves[:, k - 1]
            row[f"mean@{k}"] = float(np.nanmean(values))
            row[f"std@{k}"] = float(np.nanstd(values, ddof=1)) if len(values) > 1 else 0.0
            if result.oracle is not None:
                row[f"regret@{k}"] = result.oracle - row[f"mean@{k}"]
        runs = result.runs[strategy]
        row["ms_per_trial"] = float(np.mean([r.ms_per_trial for r in runs]))
        row["wall_seconds"] = float(np.mean([r.wall_seconds for r in runs]))
        rows.append(row)
    return rows


def markdown_table(result: BenchResult, points: Sequence[int] | None = None) -> str:
    points = list(points or checkpoints(result.budget))
    head = ["strategy", *[f"{k} queries" for k in points], "strategy ms / trial"]
    lines = ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1)]
    for row in summary_rows(result, points):
        cells = [f"{row[f'mean@{k}']:.2f} ± {row[f'std@{k}']:.2f}" for k in points]
        lines.append(f"| {row['strategy']} | " + " | ".join(cells) + f" | {row['ms_per_trial']:.2f} |")
    if result.oracle is not None:
        lines.append(
            "| oracle (best search value in table) | "
            + " | ".join(f"{result.oracle:.2f}" for _ in points)
            + " | |"
        )
    return "\n".join(lines)


def write_csv(result: BenchResult, path: str | Path) -> Path:
    """Per strategy and query count: mean, std and regret of the incumbent's report metric."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["strategy", "queries", "mean", "std", "regret", "seeds", "strategy_ms_per_trial"])
        for row in summary_rows(result):
            curves = result.curves(row["strategy"])
            means = np.nanmean(curves, axis=0)
            stds = np.nanstd(curves, axis=0, ddof=1) if len(curves) > 1 else np.zeros(curves.shape[1])
            for k in range(curves.shape[1]):
                regret = "" if result.oracle is None else f"{result.oracle - means[k]:.6g}"
                writer.writerow(
                    [
                        row["strategy"],
                        k + 1,
                        f"{means[k]:.6g}",
                        f"{stds[k]:.6g}",
                        regret,
                        len(curves),
                        f"{row['ms_per_trial']:.4g}",
                    ]
                )
    return path


def write_plot(result: BenchResult, path: str | Path, title: str | None = None) -> Path:
    """Mean ± std of the incumbent's report metric against queries (left) and regret, log scale (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    panels = 2 if result.oracle is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4.2), squeeze=False)
    queries = np.arange(1, result.budget + 1)
    for strategy in result.runs:
        curves = result.curves(strategy)
        mean = np.nanmean(curves, axis=0)
        std = np.nanstd(curves, axis=0, ddof=1) if len(curves) > 1 else np.zeros_like(mean)
        (line,) = axes[0][0].plot(queries, mean, label=strategy)
        axes[0][0].fill_between(queries, mean - std, mean + std, alpha=0.15, color=line.get_color())
        if result.oracle is not None:
            regret = np.maximum(result.oracle - mean, 1e-3)
            axes[0][1].plot(queries, regret, label=strategy, color=line.get_color())
    # Zoom on the part of the curves worth comparing: from the 10th query up to the oracle.
    late = [np.nanmean(result.curves(s), axis=0)[min(9, result.budget - 1) :] for s in result.runs]
    low = float(np.nanmin(np.concatenate(late))) if late else None
    if low is not None and np.isfinite(low):
        top = result.oracle if result.oracle is not None else float(np.nanmax(np.concatenate(late)))
        axes[0][0].set_ylim(low - 0.5, top + 0.5)
    axes[0][0].set_xlabel("queries")
    axes[0][0].set_ylabel("test value of best-by-validation architecture")
    if result.oracle is not None:
        axes[0][0].axhline(result.oracle, color="black", linestyle=":", label="oracle")
        axes[0][1].set_yscale("log")
        axes[0][1].set_xlabel("queries")
        axes[0][1].set_ylabel("regret to the oracle")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title or f"{result.benchmark} {result.dataset or ''}".strip())
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
