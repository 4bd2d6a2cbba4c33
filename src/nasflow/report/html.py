"""Assemble the study report: one self-contained HTML page plus its figures as PNG files.

The page embeds every image as a ``data:`` URI and its style inline, runs no script and loads
nothing from elsewhere (a Content-Security-Policy says so to the browser), so it opens from
``file://`` on any machine and can be mailed or archived as one file.
"""

from __future__ import annotations

import base64
import functools
import math
import shlex
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from nasflow import __version__
from nasflow.errors import ConfigError, NasflowError
from nasflow.output_dirs import prepare_output_dir, study_folder
from nasflow.report import plots
from nasflow.report.data import (
    STABLE_WITHIN,
    LatencyStability,
    ReportData,
    as_number,
    gather,
    lookup,
    observed_decisions,
    robustness_rows,
)
from nasflow.space.base import DecisionSpace
from nasflow.study import Study
from nasflow.trial import FrozenTrial, TrialState

REPORT_FILE = "report.html"
#: metrics shown first in the top-architectures table, after the objectives, when present
_PREFERRED_METRICS = ("test_accuracy", "params", "flops", "latency_ms", "train_seconds")
_MAX_METRIC_COLUMNS = 8
_MAX_FRONT_ROWS = 30
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
       max-width: 1100px; margin: 0 auto; padding: 1.5em; line-height: 1.45; }
h1 { margin-bottom: 0.1em; }
h2 { border-bottom: 2px solid #4c72b0; padding-bottom: 0.2em; margin-top: 2em; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #d0d0d0; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #eef2f8; }
tr:nth-child(even) td { background: #fafafa; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.kv th { width: 11em; }
code { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.9em; word-break: break-all; }
img { max-width: 100%; height: auto; display: block; margin: 0.8em 0; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 0.5em 0.8em; }
.caption { color: #555; font-size: 0.9em; }
.card { border: 1px solid #d0d0d0; border-radius: 6px; padding: 0.2em 1em 0.8em; margin: 1em 0; }
footer { color: #777; font-size: 0.85em; margin-top: 3em; }
"""
SECTIONS = (
    ("summary", "Summary"),
    ("trajectory", "Search trajectory"),
    ("distribution", "Distribution of results"),
    ("top", "Top architectures"),
    ("pareto", "Pareto front"),
    ("frequencies", "Operation frequencies"),
    ("best", "Best architecture"),
    ("exports", "Exported models"),
)
#: shown after the Pareto front only when the study's trials hold measured latency
LATENCY_SECTION = ("latency", "Latency measurement")


@dataclass(frozen=True)
class Image:
    """One rendered figure: its file stem, alternative text, PNG bytes and pixel size."""

    name: str
    alt: str
    png: bytes
    width: int
    height: int

    @classmethod
    def from_figure(cls, name: str, alt: str, fig: Figure) -> Image:
        width, height = plots.pixel_size(fig)
        return cls(name, alt, plots.png_bytes(fig), width, height)

    def tag(self) -> str:
        data = base64.b64encode(self.png).decode("ascii")
        return (
            f'<img src="data:image/png;base64,{data}" alt="{escape(self.alt)}" '
            f'width="{self.width}" height="{self.height}">'
        )


# -- text formatting --------------------------------------------------------------------------
def fmt(value: Any) -> str:
    """A number as people read it (``12,345``, ``0.9712``), ``—`` for missing; always HTML-escaped."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    number = as_number(value)
    if number is None:
        return escape(str(value))
    if not math.isfinite(number):
        return str(number)
    if number.is_integer() and abs(number) >= 1000:
        return f"{int(number):,}"
    return f"{number:.4g}" if abs(number) < 1000 else f"{number:,.0f}"


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.3g} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {seconds % 60:.0f} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


def _code(text: Any) -> str:
    return f"<code>{escape(str(text))}</code>" if text not in (None, "") else "—"


def _note(text: str) -> str:
    return f'<p class="note">{text}</p>'


def _caption(text: str) -> str:
    return f'<p class="caption">{text}</p>'


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[bool] = ()) -> str:
    """A table from already-escaped cells; ``numeric[i]`` right-aligns column ``i``."""
    header = "".join(f"<th>{h}</th>" for h in head)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{c}</td>' if i < len(numeric) and numeric[i] else f"<td>{c}</td>"
            for i, c in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _key_values(rows: Sequence[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{escape(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="kv"><tbody>{body}</tbody></table>'


def _metrics_text(metrics: Mapping[str, float]) -> str:
    return ", ".join(f"{escape(k)} {fmt(v)}" for k, v in metrics.items()) or "—"


# -- sections ---------------------------------------------------------------------------------
def _summary(data: ReportData) -> str:
    s = data.summary
    counts = ", ".join(
        f"{s.counts.get(state.value, 0)} {state.value.lower()}"
        for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAILED, TrialState.RUNNING)
        if s.counts.get(state.value, 0)
    )
    n_trials = sum(s.counts.values())
    best = "—"
    if s.best is not None:
        best = f"#{s.best.number} {_code(s.best.arch_str)}<br>{_metrics_text(s.best.metrics)}"
    elif s.best_note:
        best = escape(s.best_note)
    rows = [
        ("study", escape(s.name)),
        ("search space", escape(s.space)),
        ("strategy", escape(s.strategy)),
        ("evaluator", escape(s.evaluator)),
        ("objectives", escape(", ".join(s.objectives))),
        ("constraints", escape(", ".join(s.constraints)) or "none"),
        ("seed", escape(str(s.seed))),
        ("trials", f"{n_trials}" + (f" ({escape(counts)})" if counts else "")),
        ("trial time", f"total {fmt_seconds(s.total_seconds)}, mean {fmt_seconds(s.mean_seconds)} per trial"),
        (
            "wall-clock time",
            f"{fmt_seconds(s.wall_seconds)} from the first trial's start to the last one's end",
        ),
        ("best trial", best),
    ]
    parts = [_key_values(rows)]
    if not data.completed:
        parts.append(
            _note(
                "No trial has completed yet, so there is nothing to plot or rank. Run (or resume) the "
                f"search, e.g. <code>nasflow search --name {escape(shlex.quote(s.name))} ...</code>, and "
                "build the report again."
            )
        )
    if s.failures:
        items = "".join(
            f"<li>trial {t.number} ({t.state.value.lower()}): {escape(t.error or '')}</li>"
            for t in s.failures
        )
        parts.append(f"<p>Latest failed or pruned trials:</p><ul>{items}</ul>")
    return "".join(parts)


def _not_plotted(data: ReportData) -> str:
    others = len(data.trials) - len(data.completed)
    return (
        f" {others} failed, pruned or running trials are counted in the summary but not plotted."
        if others
        else ""
    )


def _trajectory(data: ReportData, images: Mapping[str, Image]) -> str:
    if "trajectory" not in images:
        return _note("No completed trial yet.")
    metric = escape(data.first.metric)
    return images["trajectory"].tag() + _caption(
        f"Dots: the {metric} of each completed trial (hollow grey: violates a constraint). Line: the best "
        f"feasible {metric} so far, against trial number (left) and against seconds from the first "
        f"trial's start to each trial's end (right).{_not_plotted(data)}"
    )


def _distribution(data: ReportData, images: Mapping[str, Image]) -> str:
    if "distribution" not in images:
        return _note("No completed trial yet.")
    return images["distribution"].tag() + _caption(
        f"Histograms over the {len(data.completed)} completed trials.{_not_plotted(data)}"
    )


def _metric_columns(data: ReportData) -> list[str]:
    objectives = [o.metric for o in data.objectives]
    seen = dict.fromkeys(k for t in data.top for k in t.metrics)
    preferred = [m for m in _PREFERRED_METRICS if m in seen]
    rest = sorted(k for k in seen if k not in preferred)
    return [m for m in dict.fromkeys([*preferred, *rest]) if m not in objectives][:_MAX_METRIC_COLUMNS]


def _feasibility(trial: FrozenTrial) -> str:
    return "yes" if trial.feasible else f"no (violation {fmt(trial.violation)})"


def _top(data: ReportData) -> str:
    if not data.top:
        return _note("No completed trial yet.")
    objectives = [o.metric for o in data.objectives]
    others = _metric_columns(data)
    head = ["rank", "trial", "architecture", *(escape(str(o)) for o in data.objectives), *map(escape, others)]
    head.append("feasible")
    rows = []
    for rank, trial in enumerate(data.top, 1):
        values = [fmt(trial.metrics.get(m)) for m in [*objectives, *others]]
        rows.append([str(rank), str(trial.number), _code(trial.arch_str), *values, _feasibility(trial)])
    numeric = [True, True, False, *([True] * (len(objectives) + len(others)))]
    return _table(head, rows, numeric) + _caption(
        f"The {len(data.top)} best of {len(data.completed)} completed trials: trials that satisfy the "
        f"constraints first, then by {escape(str(data.first))}."
    )


def _pareto(data: ReportData, images: Mapping[str, Image]) -> str:
    if len(data.objectives) < 2:
        return _note(
            f"The study has a single objective ({escape(str(data.first))}), so there is no Pareto front. "
            "Search with two or more, e.g. <code>--objectives accuracy:max params:min</code>, "
            "to trade them off."
        )
    if "pareto" not in images:
        return _note("No completed trial yet.")
    parts = [images["pareto"].tag()]
    extra = len(data.objectives) - plots.MAX_PARETO_OBJECTIVES
    parts.append(
        _caption(
            "Every completed trial on each pair of objectives; highlighted: the Pareto front over all "
            "objectives (feasible trials no other feasible trial dominates)."
            + (f" The last {extra} objectives are not paired." if extra > 0 else "")
        )
    )
    objectives = [o.metric for o in data.objectives]
    rows = [
        [str(t.number), _code(t.arch_str), *(fmt(t.metrics.get(m)) for m in objectives)]
        for t in data.front[:_MAX_FRONT_ROWS]
    ]
    head = ["trial", "architecture", *(escape(str(o)) for o in data.objectives)]
    parts.append(_table(head, rows, [True, False, *([True] * len(objectives))]))
    if len(data.front) > _MAX_FRONT_ROWS:
        parts.append(_caption(f"The first {_MAX_FRONT_ROWS} of {len(data.front)} front members are listed."))
    if "hypervolume" in images and data.hypervolume is not None:
        reference = ", ".join(
            f"{escape(o.metric)} {fmt(r)}" for o, r in zip(data.objectives, data.hypervolume.reference)
        )
        parts.append(images["hypervolume"].tag())
        parts.append(
            _caption(
                "Hypervolume of the feasible trials found so far (the objective space they dominate, "
                f"bounded by the reference point {reference})."
            )
        )
    elif data.hypervolume_note:
        parts.append(_caption(escape(data.hypervolume_note) + "; the hypervolume panel is left out."))
    return "".join(parts)


def _frequencies(data: ReportData, images: Mapping[str, Image]) -> str:
    if "frequencies" not in images:
        return _note("No completed trial yet.")
    shown = len(plots.frequency_groups(data.frequencies))
    limited = (
        f" {shown} of {len(data.frequencies)} decision groups are shown: those whose shares differ most "
        "between the top and all trials."
        if shown < len(data.frequencies)
        else ""
    )
    return images["frequencies"].tag() + _caption(
        f"Share of each choice among the top {data.good_trials} of {len(data.completed)} completed trials "
        "(the top quartile, ranked as in the table above) and among all completed trials. Decisions "
        f"that offer the same choices are pooled, counting every decision of the pool.{limited}"
    )


def _best(data: ReportData, images: Mapping[str, Image]) -> str:
    best = data.summary.best
    if best is None:
        return _note(escape(data.summary.best_note or "No best trial."))
    if "best" not in images:
        return _note(
            f"Trial {best.number}: {_code(best.arch_str)}. No drawing: it needs nasflow.export.diagram, "
            "which is not available."
        )
    return images["best"].tag() + _caption(f"Trial {best.number}: {_code(best.arch_str)}")


def _accuracy_text(card: Mapping[str, Any]) -> str:
    mean = as_number(lookup(card, "metrics.test_accuracy"))
    std = as_number(lookup(card, "metrics.test_accuracy_std"))
    if mean is None:
        return "—"
    text = fmt(mean) + (f" ± {fmt(std)}" if std is not None else "")
    seeds = lookup(card, "metrics.test_accuracy_per_seed")
    if isinstance(seeds, Sequence) and not isinstance(seeds, str) and seeds:
        text += f" (per seed: {', '.join(fmt(s) for s in seeds)})"
    return text


def _files_text(card: Mapping[str, Any]) -> str:
    files = card.get("files")
    if not isinstance(files, Mapping):
        return "—"
    parts = [_code(files["dir"])] if "dir" in files else []
    parts += [f"{escape(str(k))}: {_code(v)}" for k, v in files.items() if k != "dir"]
    return "<br>".join(parts) or "—"


def _robustness_table(rows: Sequence[tuple[str, float, float]]) -> str:
    severities = sorted(dict.fromkeys(s for _, s, _ in rows))
    values = {(p, s): a for p, s, a in rows}
    body = [
        [escape(p), *(fmt(values.get((p, s))) for s in severities)] for p in dict.fromkeys(r[0] for r in rows)
    ]
    head = ["perturbation", *(f"severity {fmt(s)}" for s in severities)]
    return _table(head, body, [False, *([True] * len(severities))])


def _exports_table(card: Mapping[str, Any]) -> str:
    exports = card.get("exports")
    if not isinstance(exports, Mapping) or not exports:
        return "<p>No exported files recorded.</p>"
    rows = []
    for fmt_name, entry in exports.items():
        entry = entry if isinstance(entry, Mapping) else {}
        rows.append(
            [
                escape(str(fmt_name)),
                _code(entry.get("file")),
                fmt(entry.get("max_abs_diff")),
                fmt(entry.get("same_predictions")),
                fmt(entry.get("test_accuracy")),
            ]
        )
    head = ["format", "file", "max abs diff vs PyTorch", "same predictions", "test accuracy"]
    return _table(head, rows, [False, False, True, False, True])


def _latency_table(card: Mapping[str, Any]) -> str:
    latency = lookup(card, "cost.latency_ms")
    if not isinstance(latency, Mapping) or not latency:
        return "<p>No latency measured.</p>"
    runtimes = {str(k): v for k, v in latency.items()}
    keys = list(dict.fromkeys(k for v in runtimes.values() if isinstance(v, Mapping) for k in v))
    keys.sort(key=lambda k: k != "median_ms")  # the headline number first; stable otherwise
    rows = []
    for runtime, stats in runtimes.items():
        if isinstance(stats, Mapping):
            rows.append([escape(runtime), *(fmt(stats.get(k)) for k in keys)])
        else:  # a bare number: the runtime's median
            rows.append([escape(runtime), fmt(stats), *(["—"] * (len(keys) - 1))])
    head = ["runtime", *(escape(k) for k in keys)] if keys else ["runtime", "latency (ms)"]
    return _table(head, rows, [False, *([True] * max(1, len(keys)))])


def _card(index: int, card: Mapping[str, Any], images: Mapping[str, Image]) -> str:
    title = card.get("model") or f"model {index + 1}"
    rows = [
        ("trial", fmt(lookup(card, "study.trial_number"))),
        ("architecture", _code(lookup(card, "architecture.string"))),
        ("test accuracy", _accuracy_text(card)),
        ("parameters", fmt(lookup(card, "cost.params"))),
        ("FLOPs", fmt(lookup(card, "cost.flops"))),
        ("files", _files_text(card)),
    ]
    parts = [f'<div class="card"><h3>{escape(str(title))}</h3>', _key_values(rows), "<h4>Robustness</h4>"]
    robustness = robustness_rows(card)
    if robustness:
        parts.append(_robustness_table(robustness))
        if f"export-{index}-robustness" in images:
            parts.append(images[f"export-{index}-robustness"].tag())
    else:
        parts.append("<p>No robustness results recorded.</p>")
    parts += ["<h4>Exported formats</h4>", _exports_table(card), "<h4>Latency</h4>", _latency_table(card)]
    parts.append("</div>")
    return "".join(parts)


def _exports(data: ReportData, images: Mapping[str, Image]) -> str:
    if not data.cards:
        return _note(
            "No model of this study has been exported yet. Run "
            f"<code>nasflow export {escape(shlex.quote(data.summary.name))}</code> to retrain the best "
            "architectures, validate them, export ONNX and TorchScript files and keep their model cards here."
        )
    return "".join(_card(i, card, images) for i, card in enumerate(data.cards))


def _percent(fraction: float | None) -> str:
    return "—" if fraction is None else f"{fraction * 100:.1f} %"


def _latency_settings(latency: LatencyStability) -> str:
    if not latency.settings:
        return _caption(
            "The study's settings do not record how latency was measured: its evaluator reported "
            "<code>latency_ms</code> itself."
        )
    return _key_values([(label, fmt(value)) for label, value in latency.settings])


def _latency_spread(latency: LatencyStability) -> str:
    meaning = (
        "Spread of one measurement: (p90 − p10) / median of its timed repeats, the relative width of "
        "the middle 80 % of them."
    )
    if latency.spread_median is None:
        return _caption(meaning) + _note(
            "No trial recorded <code>latency_spread</code>. To record it, search with "
            '<code>nf.CostEvaluator(inner, metrics=["latency_ms", "latency_spread"])</code> as the '
            "evaluator."
        )
    return _caption(meaning) + (
        f"<p>Over {latency.spread_trials} measured trials: median spread "
        f"{_percent(latency.spread_median)}, largest {_percent(latency.spread_max)} "
        f"(trial {latency.spread_max_trial}).</p>"
    )


def _latency_repeats(latency: LatencyStability) -> str:
    if not latency.remeasurements:
        return _note(
            "No re-measurement is stored. A <code>nasflow search</code> whose objectives or constraints "
            "name <code>latency_ms</code> re-measures the Pareto front (or the best trial) at its end; for "
            "a stored study, call <code>nasflow.estimators.cost.remeasure_latency(study)</code> on it and "
            "build the report again."
        )
    rows = [
        [
            str(r.trial),
            _code(r.arch_str),
            fmt(r.recorded_ms),
            fmt(r.remeasured_ms),
            _percent(r.difference),
            "—" if r.feasible is None else ("met" if r.feasible else "violated"),
        ]
        for r in latency.remeasurements
    ]
    head = ["trial", "architecture", "recorded ms", "re-measured ms", "difference", "constraints"]
    parts = [_table(head, rows, [True, False, True, True, True, False])]
    compared = len(latency.compared)
    limit = f"{STABLE_WITHIN * 100:.0f} %"
    parts.append(
        f"<p><strong>{latency.within()} of {compared} re-measurements within {limit} of the recorded "
        f"latency (max {_percent(latency.max_difference)}).</strong></p>"
    )
    notes = [
        "Difference: |re-measured − recorded| / recorded. A re-measurement is a fresh measurement after "
        "the search, with no cache."
    ]
    if latency.source == "measured":
        notes.append(
            "Both values are a measurement's fastest timed repeat, which nasflow uses as latency_ms."
        )
    if latency.results > 1:
        notes.append(f"Rows of all {latency.results} stored re-measurements, oldest first.")
    if latency.predicted_results:
        notes.append(
            f"{latency.predicted_results} of them compare a latency predicted from a look-up table with a "
            "measurement, not two measurements."
        )
    if compared < len(latency.remeasurements):
        notes.append(f"{len(latency.remeasurements) - compared} rows lack a recorded or re-measured value.")
    parts.append(_caption(" ".join(notes)))
    return "".join(parts)


def _latency(data: ReportData) -> str:
    latency = data.latency
    if latency is None:  # the section is left out then; kept total for direct callers
        return _note("The study's trials hold no measured latency.")
    return "".join(
        [
            "<h3>Settings</h3>",
            _latency_settings(latency),
            "<h3>Within one measurement</h3>",
            _latency_spread(latency),
            "<h3>Repeated measurement</h3>",
            _latency_repeats(latency),
        ]
    )


def report_sections(data: ReportData) -> list[tuple[str, str]]:
    """The (key, title) of the sections ``data`` gets, in page order."""
    sections = list(SECTIONS)
    if data.latency is not None:
        sections.insert([key for key, _ in sections].index("pareto") + 1, LATENCY_SECTION)
    return sections


# -- figures and page -------------------------------------------------------------------------
def render_figures(data: ReportData, only: Collection[str] | None = None) -> dict[str, Image]:
    """Every figure the data supports (or those named in ``only``), by file stem.

    Sections without data get none. Figures are drawn only when wanted: ``nasflow show --plot`` asks
    for three of them, and the architecture drawing alone loads torch.
    """
    figures: list[tuple[str, str, Callable[[], Figure]]] = []
    if data.completed:
        metrics = plots.histogram_metrics(data.completed, data.objectives)
        figures += [
            (
                "trajectory",
                f"best {data.first.metric} so far against trial number and time",
                lambda: plots.trajectory_figure(data.by_number, data.by_time, data.first),
            ),
            (
                "distribution",
                f"histograms of {', '.join(metrics)}",
                lambda: plots.distribution_figure(data.completed, metrics),
            ),
        ]
        if len(data.objectives) >= 2:
            figures.append(
                (
                    "pareto",
                    "objectives of every trial with the Pareto front",
                    lambda: plots.pareto_figure(data.completed, data.front, data.objectives),
                )
            )
        curve = data.hypervolume
        if curve is not None:
            figures.append(
                ("hypervolume", "hypervolume against trial number", lambda: plots.hypervolume_figure(curve))
            )
        figures.append(
            (
                "frequencies",
                "choice shares among the top trials and all trials",
                lambda: plots.frequency_figure(
                    plots.frequency_groups(data.frequencies), data.good_trials, len(data.completed)
                ),
            )
        )
    best = data.summary.best
    if best is not None:
        figures.append(("best", f"drawing of trial {best.number}", lambda: _drawing(data, best)))
    for i, card in enumerate(data.cards):
        rows = robustness_rows(card)
        if rows:
            figures.append(
                (
                    f"export-{i}-robustness",
                    "accuracy against perturbation severity",
                    functools.partial(plots.robustness_figure, rows),
                )
            )
    return {
        name: Image.from_figure(name, alt, draw())
        for name, alt, draw in figures
        if only is None or name in only
    }


def _drawing(data: ReportData, trial: FrozenTrial) -> Figure:
    """The drawing of ``trial``'s network or cell (the same as in its model card)."""
    from nasflow.export.diagram import draw_architecture  # loads torch; only needed here

    # a stored study whose space cannot be rebuilt is drawn as the table of its decisions
    space = data.space or DecisionSpace(observed_decisions(data.trials), name=data.summary.space)
    try:
        return draw_architecture(space, trial.arch)
    except NasflowError:  # the stored architecture no longer fits the rebuilt space
        return draw_architecture(DecisionSpace(observed_decisions(data.trials), name=space.name), trial.arch)


def render_html(data: ReportData, images: Mapping[str, Image]) -> str:
    """The whole page as a string."""
    bodies = {
        "summary": _summary(data),
        "trajectory": _trajectory(data, images),
        "distribution": _distribution(data, images),
        "top": _top(data),
        "pareto": _pareto(data, images),
        "frequencies": _frequencies(data, images),
        "best": _best(data, images),
        "exports": _exports(data, images),
    }
    present = report_sections(data)
    if data.latency is not None:
        bodies["latency"] = _latency(data)
    nav = "".join(f'<a href="#{key}">{escape(title)}</a>' for key, title in present)
    sections = "".join(
        f'<section id="{key}"><h2>{i}. {escape(title)}</h2>{bodies[key]}</section>'
        for i, (key, title) in enumerate(present, 1)
    )
    name = escape(data.summary.name)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>nasflow report: {name}</title><style>{_STYLE}</style></head>\n"
        f"<body><header><h1>Study {name}</h1><nav>{nav}</nav></header>\n{sections}\n"
        f"<footer>Written by nasflow {escape(__version__)} on {stamp}.</footer></body></html>\n"
    )


def build_report(study: Study, output_dir: str | Path | None = None, top: int = 10) -> Path:
    """Write ``report.html`` and its figures (PNG) for ``study``; returns the HTML file's path.

    Args:
        study: the study, e.g. from :func:`nasflow.load_study`.
        output_dir: where to write; default ``reports/<study name>/`` under the current directory.
        top: rows of the top-architectures table.

    Raises:
        ConfigError: ``top`` is not a positive integer, or ``output_dir`` cannot be written.
    """
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ConfigError(
            f"top must be a positive integer (rows of the top-architectures table), got {top!r}"
        )
    directory = prepare_output_dir(
        output_dir if output_dir is not None else study_folder("reports", study.name)
    )
    data = gather(study, top=top)
    images = render_figures(data)
    for image in images.values():
        (directory / f"{image.name}.png").write_bytes(image.png)
    path = directory / REPORT_FILE
    path.write_text(render_html(data, images), encoding="utf-8")
    return path


#: the figures ``nasflow show NAME --plot`` writes, when the study supports them
SHOW_PLOTS = ("trajectory", "pareto", "hypervolume")


def write_plots(
    study: Study, output_dir: str | Path | None = None, names: Sequence[str] = SHOW_PLOTS
) -> list[Path]:
    """Write the figures ``names`` of the report as PNGs (default ``plots/<study name>/``); their paths.

    A study with one objective has no Pareto front or hypervolume figure, one with no completed
    trial has none at all.
    """
    directory = prepare_output_dir(
        output_dir if output_dir is not None else study_folder("plots", study.name), "--plot-dir"
    )
    images = render_figures(gather(study), only=names)
    paths = []
    for name in names:
        if name in images:
            path = directory / f"{name}.png"
            path.write_bytes(images[name].png)
            paths.append(path)
    return paths
