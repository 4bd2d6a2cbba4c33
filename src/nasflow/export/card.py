"""The model card: what an exported model is, how it was made and how well it does, as JSON and Markdown.

The JSON schema (``card_version`` 1) is read by ``nasflow report`` and stored in the study's database;
its keys are documented in ``docs/export.md``. The Markdown file renders the same facts for people,
in the spirit of Mitchell et al., "Model Cards for Model Reporting" (2019).
"""

from __future__ import annotations

import importlib
import json
import math
import platform
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nasflow.export.diagram import draw_architecture

CARD_VERSION = 1
CARD_JSON = "model_card.json"
CARD_MARKDOWN = "model_card.md"

__all__ = [
    "CARD_JSON",
    "CARD_MARKDOWN",
    "CARD_VERSION",
    "draw_architecture",
    "render_markdown",
    "software_versions",
    "utc_timestamp",
    "write_card",
]


def utc_timestamp() -> str:
    """The current time as ISO-8601 UTC, to the second (e.g. ``2025-01-31T12:00:00+00:00``)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _version(module: str) -> str | None:
    try:
        return str(getattr(importlib.import_module(module), "__version__", None))
    except ImportError:
        return None


def software_versions() -> dict[str, str | None]:
    """Versions of Python, nasflow and the libraries the model was made and checked with."""
    return {
        "python": sys.version.split()[0],
        "nasflow": _version("nasflow"),
        "torch": _version("torch"),
        "numpy": _version("numpy"),
        "onnx": _version("onnx"),
        "onnxruntime": _version("onnxruntime"),
        "platform": platform.platform(),
    }


def write_card(card: Mapping[str, Any], directory: Path) -> tuple[Path, Path]:
    """Write ``model_card.json`` and ``model_card.md`` into ``directory``; returns their paths."""
    json_path, md_path = directory / CARD_JSON, directory / CARD_MARKDOWN
    json_path.write_text(json.dumps(card, indent=2, allow_nan=True) + "\n")
    md_path.write_text(render_markdown(card))
    return json_path, md_path


# -- Markdown --------------------------------------------------------------------------------------
def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and abs(value) < 10 ** (-digits):
            return f"{value:.2e}"
        return f"{value:,.{digits}f}"
    return str(value).replace("|", "\\|")


def _sci(value: Any) -> str:
    return f"{value:.2e}" if isinstance(value, (int, float)) and not isinstance(value, bool) else _fmt(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += [
        "| " + " | ".join(_fmt(cell) if not isinstance(cell, str) else cell for cell in row) + " |"
        for row in rows
    ]
    return lines + [""]


def _get(mapping: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(mapping, Mapping) or key not in mapping:
            return None
        mapping = mapping[key]
    return mapping


def render_markdown(card: Mapping[str, Any]) -> str:
    """The model card as Markdown: architecture and diagram, metrics, robustness, cost, training,
    exports, software and provenance. Missing entries print as a dash."""
    study, metrics, training = card.get("study") or {}, card.get("metrics") or {}, card.get("training") or {}
    task, arch = card.get("task") or {}, card.get("architecture") or {}
    lines = [f"# Model card: {card.get('model', '?')}", ""]
    lines += [
        f"Architecture found by the nasflow study **{_fmt(study.get('name'))}** (trial "
        f"{_fmt(study.get('trial_number'))}, space `{_fmt(study.get('space'))}`, strategy "
        f"`{_fmt(study.get('strategy'))}`), retrained on {_fmt(training.get('data'))} of the task "
        f"**{_fmt(task.get('name'))}** and tested on its held-out test split.",
        "",
        "## Architecture",
        "",
        f"`{arch.get('string', '—')}`",
        "",
        f"![architecture]({arch.get('diagram', 'architecture.png')})",
        "",
        "## Metrics",
        "",
    ]
    per_seed = metrics.get("test_accuracy_per_seed") or []
    accuracy = f"{_fmt(metrics.get('test_accuracy'))} ± {_fmt(metrics.get('test_accuracy_std'))}"
    lines += _table(
        ["metric", "value"],
        [
            [f"test accuracy (%), mean ± std over {len(per_seed)} seed(s)", accuracy],
            ["test accuracy per seed (%)", ", ".join(_fmt(v) for v in per_seed) or "—"],
            ["test accuracy of the exported model (%)", _fmt(metrics.get("exported_test_accuracy"))],
            ["test loss (exported model)", _fmt(metrics.get("test_loss"), 4)],
            ["validation accuracy during search (%)", _fmt(metrics.get("val_accuracy_search"))],
        ],
    )
    lines += ["## Robustness (exported model, test split)", ""]
    robustness = card.get("robustness") or []
    if robustness:
        lines += _table(
            ["perturbation", "severity", "accuracy (%)"],
            [
                [_fmt(r.get("perturbation")), _fmt(r.get("severity")), _fmt(r.get("accuracy"))]
                for r in robustness
            ],
        )
        lines += [
            "Severity: Gaussian noise std as a multiple of the training data's std; shift in pixels "
            "(mean over four directions, zero fill); occlusion side as a fraction of the image side.",
            "",
        ]
    else:
        lines += ["Not measured.", ""]
    transfer = card.get("transfer")
    if transfer:
        lines += ["## Transfer", ""]
        lines += _table(
            ["data", "test accuracy (%)", "classes", "train+val / test examples"],
            [
                [
                    _fmt(transfer.get("data")),
                    _fmt(transfer.get("test_accuracy")),
                    _fmt(transfer.get("num_classes")),
                    f"{_fmt(_get(transfer, 'sizes', 'train'))}+{_fmt(_get(transfer, 'sizes', 'val'))} / "
                    f"{_fmt(_get(transfer, 'sizes', 'test'))}",
                ]
            ],
        )
    lines += ["## Cost", ""]
    cost = card.get("cost") or {}
    latency = cost.get("latency_ms") or {}
    rows: list[list[Any]] = [
        ["parameters", _fmt(cost.get("params"))],
        ['MACs ("FLOPs")', _fmt(cost.get("flops"))],
    ]
    for runtime in ("eager", "onnxruntime"):
        entry = latency.get(runtime)
        if isinstance(entry, Mapping):
            rows.append(
                [
                    f"latency, {runtime} (ms, median; batch {_fmt(entry.get('batch_size'))}, "
                    f"{_fmt(entry.get('threads'))} thread(s))",
                    _fmt(entry.get("median_ms"), 3),
                ]
            )
        else:
            rows.append([f"latency, {runtime} (ms)", "—"])
    lines += _table(["cost", "value"], rows)
    lines += ["## Training", ""]
    lines += _table(
        ["setting", "value"],
        [
            [
                key,
                f"{training[key]:g}" if isinstance(training.get(key), float) else _fmt(training.get(key)),
            ]
            for key in (
                "data",
                "epochs",
                "batch_size",
                "lr",
                "optimizer",
                "momentum",
                "weight_decay",
                "label_smoothing",
                "seeds",
                "init_weights",
                "seconds",
                "settings_from",
            )
        ],
    )
    lines += ["## Exports", ""]
    exports = card.get("exports") or {}
    if exports:
        lines += _table(
            ["format", "file", "max abs diff", "same predictions", "test accuracy (%)"],
            [
                [
                    name,
                    f"`{_fmt(entry.get('file'))}`",
                    _sci(entry.get("max_abs_diff")),
                    _fmt(entry.get("same_predictions")),
                    _fmt(entry.get("test_accuracy")),
                ]
                for name, entry in exports.items()
            ],
        )
        lines += [
            "Each file was run in its own runtime on the test inputs and compared with the PyTorch model. "
            "Classify new data without nasflow: `python predict.py images.npy` (numpy + onnxruntime; "
            f"float32 images shaped (N, {', '.join(map(str, task.get('input_shape') or []))}), "
            "preprocessed like the task's arrays).",
            "",
        ]
    else:
        lines += ["No exported files.", ""]
    lines += ["## Task", ""]
    sizes = task.get("sizes") or {}
    lines += _table(
        ["task", "input shape", "classes", "train / val / test"],
        [
            [
                _fmt(task.get("name")),
                " x ".join(map(str, task.get("input_shape") or [])) or "—",
                _fmt(task.get("num_classes")),
                f"{_fmt(sizes.get('train'))} / {_fmt(sizes.get('val'))} / {_fmt(sizes.get('test'))}",
            ]
        ],
    )
    lines += ["## Provenance", ""]
    software = card.get("software") or {}
    lines += _table(
        ["item", "value"],
        [
            ["created", _fmt(card.get("created_at"))],
            ["study objectives", ", ".join(study.get("objectives") or []) or "—"],
            ["study constraints", ", ".join(study.get("constraints") or []) or "none"],
            ["study seed", _fmt(study.get("seed"))],
            *[[name, _fmt(version)] for name, version in software.items()],
        ],
    )
    notes = card.get("notes") or []
    if notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in notes] + [""]
    return "\n".join(lines)
