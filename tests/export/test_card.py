"""Architecture drawings for every built-in space and a custom one; the Markdown card and its gaps."""

from __future__ import annotations

from typing import Any

import matplotlib.image
import numpy as np
import pytest
from torch import nn

from nasflow import catalog
from nasflow.export.card import draw_architecture, render_markdown, software_versions, write_card
from nasflow.space.architecture import Architecture
from nasflow.space.base import DecisionSpace


def _png_size(path) -> tuple[int, int]:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    return image.shape[1], image.shape[0]


@pytest.mark.parametrize("name", catalog.list_spaces())
def test_every_registered_space_is_drawn(name, digits, tmp_path) -> None:
    space = catalog.get_space(name)
    arch = space.sample(np.random.default_rng(0))
    figure = draw_architecture(space, arch, tmp_path / "a.png", task=digits)
    width, height = figure.get_size_inches() * 100
    assert _png_size(tmp_path / "a.png") == (round(width), round(height))


def test_an_nb201_cell_is_drawn_as_its_dag(space, cells, tmp_path) -> None:
    figure = draw_architecture(space, space.parse(cells["cell"]))
    texts = [t.get_text() for t in figure.axes[0].texts]
    # four nodes and one label per edge, in the short op names
    assert {"0 (in)", "1", "2", "3 (out)"} <= set(texts)
    assert sorted(t for t in texts if t not in {"0 (in)", "1", "2", "3 (out)"}) == sorted(
        ["conv 3x3", "conv 1x1", "avg pool 3x3", "skip", "none", "conv 3x3"]
    )


def test_darts_cells_are_both_drawn() -> None:
    from nasflow.space.darts import DARTS_V2, DartsSpace

    space = DartsSpace(channels=8, layers=3)
    figure = draw_architecture(space, space.parse(DARTS_V2))
    assert [ax.get_title() for ax in figure.axes] == ["normal cell", "reduce cell"]
    normal = [t.get_text() for t in figure.axes[0].texts]
    assert (
        normal.count("sep conv 3x3") == 5 and normal.count("skip") == 2 and normal.count("dil conv 3x3") == 1
    )


class _Stacked(DecisionSpace):
    """A custom space whose networks are a stem, ``depth`` blocks and a head."""

    def __init__(self) -> None:
        super().__init__({"depth": [1, 2]}, name="stacked")

    def build(self, arch: Architecture, task: Any = None) -> nn.Module:
        blocks = [nn.Conv2d(4, 4, 3, padding=1) for _ in range(int(arch["depth"]))]
        return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), *blocks, nn.Flatten(), nn.LazyLinear(10))


def test_other_spaces_are_drawn_as_their_modules_or_a_table(tmp_path) -> None:
    stacked = _Stacked()
    figure = draw_architecture(stacked, stacked.parse("depth=2"))
    labels = [t.get_text() for t in figure.axes[0].texts]
    assert labels[:3] == ["0\nConv2d\n40 params", "1\nConv2d\n148 params", "2\nConv2d\n148 params"]
    assert labels[3:] == ["3\nFlatten\n0 params", "4\nLazyLinear\nlazy params"]
    plain = DecisionSpace({"width": [8, 16], "act": ["relu", "gelu"]})
    figure = draw_architecture(plain, plain.parse("width=16,act=gelu"), tmp_path / "t.png")
    cells = {cell.get_text().get_text() for cell in figure.axes[0].tables[0].get_celld().values()}
    assert {"decision", "value", "width", "16", "act", "gelu"} <= cells
    assert _png_size(tmp_path / "t.png")[0] > 0


def test_markdown_renders_a_partial_card_with_dashes(tmp_path) -> None:
    card = {
        "model": "trial-3",
        "architecture": {"string": "|skip_connect~0|+|none~0|none~1|+|...|"},
        "metrics": {"test_accuracy": 97.25, "test_accuracy_std": 0.5, "test_accuracy_per_seed": [97.0, 97.5]},
        "robustness": [{"perturbation": "shift", "severity": 1.0, "accuracy": 60.0}],
        "exports": {
            "onnx": {
                "file": "model.onnx",
                "max_abs_diff": 1e-6,
                "same_predictions": True,
                "test_accuracy": 97.0,
            }
        },
    }
    text = render_markdown(card)
    assert text.startswith("# Model card: trial-3")
    assert "| test accuracy (%), mean ± std over 2 seed(s) | 97.25 ± 0.50 |" in text
    assert "| shift | 1.00 | 60.00 |" in text
    assert "| onnx | `model.onnx` | 1.00e-06 | yes | 97.00 |" in text
    assert "| parameters | — |" in text and "| latency, eager (ms) | — |" in text
    json_path, md_path = write_card(card, tmp_path)
    assert md_path.read_text() == text and json_path.read_text().startswith("{")


def test_software_versions_name_the_libraries() -> None:
    versions = software_versions()
    assert set(versions) == {"python", "nasflow", "torch", "numpy", "onnx", "onnxruntime", "platform"}
    assert versions["nasflow"] and versions["torch"] and versions["python"].count(".") == 2
