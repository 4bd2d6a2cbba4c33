"""The HTML report: sections, embedded PNGs, escaping, export cards, edge cases and output folders."""

from __future__ import annotations

import base64
import importlib.util
import io
from html.parser import HTMLParser

import matplotlib.image
import pytest

import nasflow as nf
from nasflow.errors import ConfigError
from nasflow.estimators.function import FunctionEvaluator
from nasflow.report import build_report
from nasflow.report.html import SECTIONS, fmt, fmt_seconds
from nasflow.space.base import DecisionSpace

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HAS_DRAWING = importlib.util.find_spec("nasflow.export.diagram") is not None
CARD = {
    "model": "best-0",
    "study": {"trial_number": 7},
    "architecture": {"string": "op=conv,width=8"},
    "metrics": {
        "test_accuracy": 0.9712,
        "test_accuracy_std": 0.0031,
        "test_accuracy_per_seed": [0.97, 0.9736],
    },
    "robustness": [
        {"perturbation": "gaussian_noise", "severity": 0.0, "accuracy": 0.9712},
        {"perturbation": "gaussian_noise", "severity": 0.5, "accuracy": 0.8123},
        {"perturbation": "shift", "severity": 1.0, "accuracy": 0.6543},
    ],
    "exports": {
        "onnx": {
            "file": "model.onnx",
            "max_abs_diff": 2.5e-06,
            "same_predictions": True,
            "test_accuracy": 0.9712,
        },
        "torchscript": {"file": "model.pt", "max_abs_diff": 0.0, "same_predictions": False},
    },
    "cost": {
        "params": 123456,
        "flops": 9876543,
        "latency_ms": {"eager": {"median_ms": 1.234, "p90_ms": 1.5}, "onnxruntime": {"median_ms": 0.4321}},
    },
    "files": {"dir": "exports/hand/best-0"},
}


class Page(HTMLParser):
    """Headings, images and visible text of a page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.headings: list[str] = []
        self.images: list[dict[str, str]] = []
        self.text: list[str] = []
        self._in: str | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append({k: v or "" for k, v in attrs})
        if tag in ("h2", "h3"):
            self._in = tag
            self.headings.append("")

    def handle_endtag(self, tag):
        if tag == self._in:
            self._in = None

    def handle_data(self, data):
        self.text.append(data)
        if self._in:
            self.headings[-1] += data

    @property
    def visible(self) -> str:
        return " ".join(" ".join(self.text).split())


def grid_study(name: str = "hand", space: DecisionSpace | None = None, objectives=None, **kwargs) -> nf.Study:
    return nf.create_study(
        space=space or DecisionSpace({"op": ["conv", "pool", "skip"], "width": [8, 16]}),
        strategy="grid",
        evaluator=FunctionEvaluator(lambda a: {"accuracy": 0.5}),
        objectives=objectives or ["accuracy:max", "params:min"],
        name=name,
        seed=0,
        **kwargs,
    )


def multi_objective_study() -> nf.Study:
    study = grid_study(constraints=["params<=300"])
    for op, width, accuracy, params in [
        ("conv", 16, 0.80, 320),
        ("pool", 8, 0.60, 50),
        ("conv", 8, 0.75, 200),
        ("pool", 16, 0.70, 100),
        ("skip", 16, 0.55, 20),
    ]:
        study.add_trial({"op": op, "width": width}, {"accuracy": accuracy, "params": params})
    study.add_trial({"op": "skip", "width": 8}, {"params": 1})  # failed: no accuracy
    return study


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    study = multi_objective_study()
    study.add_result("export", CARD)
    study.add_result(
        "export", {"model": "partial", "metrics": {"test_accuracy": "n/a"}, "exports": {"onnx": 3}}
    )
    out = tmp_path_factory.mktemp("report")
    path = build_report(study, out, top=3)
    return path, path.read_text(encoding="utf-8")


def test_every_section_heading_is_present(report) -> None:
    path, text = report
    assert path.name == "report.html"
    headings = Page(text).headings
    for i, (_, title) in enumerate(SECTIONS, 1):
        assert f"{i}. {title}" in headings
    assert "best-0" in headings and "partial" in headings  # one card per export


def test_images_are_embedded_pngs_of_the_stated_size_and_also_written_next_to_the_page(report) -> None:
    path, text = report
    images = Page(text).images
    expected = {"trajectory", "distribution", "pareto", "hypervolume", "frequencies", "export-0-robustness"}
    if HAS_DRAWING:
        expected.add("best")
    assert len(images) == len(expected)
    files = {p.stem: p.read_bytes() for p in path.parent.glob("*.png")}
    assert set(files) == expected
    for image in images:
        prefix = "data:image/png;base64,"
        assert image["src"].startswith(prefix) and image["alt"]
        png = base64.b64decode(image["src"][len(prefix) :], validate=True)
        assert png.startswith(PNG_SIGNATURE)
        pixels = matplotlib.image.imread(io.BytesIO(png), format="png")
        assert pixels.shape[:2] == (int(image["height"]), int(image["width"]))
        assert png in files.values()  # the same bytes as a file


def test_the_page_loads_nothing_from_elsewhere(report) -> None:
    _, text = report
    assert "http://" not in text and "https://" not in text
    assert "<script" not in text and "<link" not in text
    assert "Content-Security-Policy" in text and "img-src data:" in text


def test_top_table_lists_the_best_feasible_trials_in_order(report) -> None:
    _, text = report
    visible = Page(text).visible
    # rank, trial, architecture, accuracy, params, feasible: trial 2 (0.75), 3 (0.70), 1 (0.60)
    assert (
        "1 2 op=conv,width=8 0.75 200 yes 2 3 op=pool,width=16 0.7 100 yes 3 1 op=pool,width=8 0.6 50 yes"
        in visible
    )
    assert "trials 6 (5 complete, 1 failed)" in visible
    assert "1 failed, pruned or running trials are counted in the summary but not plotted" in visible


def test_export_section_shows_the_card_numbers(report) -> None:
    _, text = report
    visible = Page(text).visible
    assert "test accuracy 0.9712 ± 0.0031 (per seed: 0.97, 0.9736)" in visible
    assert "parameters 123,456 FLOPs 9,876,543 files exports/hand/best-0" in visible
    # robustness pivot: one row per perturbation, one column per severity
    assert "perturbation severity 0 severity 0.5 severity 1" in visible
    assert "gaussian_noise 0.9712 0.8123 —" in visible and "shift — — 0.6543" in visible
    assert "onnx model.onnx 2.5e-06 yes 0.9712" in visible
    assert "torchscript model.pt 0 no —" in visible
    assert "runtime median_ms p90_ms eager 1.234 1.5 onnxruntime 0.4321 —" in visible


def test_missing_or_malformed_card_fields_render_as_dashes(report) -> None:
    _, text = report
    visible = Page(text).visible
    partial = visible[visible.index("partial") :]
    assert partial.startswith("partial trial — architecture — test accuracy — parameters — FLOPs — files —")
    assert "No robustness results recorded." in partial
    assert "onnx — — — —" in partial and "No latency measured." in partial


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """A one-objective study whose name, choices and card hold markup."""
    space = DecisionSpace({"op": ["<b>x</b>", "y&z"]})
    study = grid_study('<script>alert("x")</script>', space=space, objectives=["accuracy:max"])
    study.add_trial({"op": "<b>x</b>"}, {"accuracy": 0.5})
    study.add_trial({"op": "y&z"}, {"accuracy": 0.7})
    out = tmp_path_factory.mktemp("single")
    return out, build_report(study, out).read_text()


def test_text_from_the_study_is_escaped(single) -> None:
    _, text = single
    assert "<script" not in text and "<b>" not in text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in text
    assert "op=&lt;b&gt;x&lt;/b&gt;" in text and "op=y&amp;z" in text
    page = Page(text)
    assert page.headings[0] == "1. Summary"
    assert 'Study <script>alert("x")</script>' in page.visible  # parsed back as plain text


def test_card_text_is_escaped(tmp_path) -> None:
    study = grid_study()
    study.add_result("export", {"model": "<i>m</i>", "files": {"dir": "a<b", "<k>": "<v>"}})
    text = build_report(study, tmp_path).read_text()
    assert "<i>" not in text and "<k>" not in text and "<v>" not in text
    assert "&lt;i&gt;m&lt;/i&gt;" in text and "a&lt;b" in text and "&lt;k&gt;: <code>&lt;v&gt;</code>" in text


def test_single_objective_study_has_a_note_instead_of_a_pareto_front(single) -> None:
    out, text = single
    visible = Page(text).visible
    assert "The study has a single objective (accuracy:max), so there is no Pareto front." in visible
    assert 'No model of this study has been exported yet. Run nasflow export \'<script>alert("x")' in visible
    assert not (out / "pareto.png").exists() and (out / "trajectory.png").exists()


def test_a_study_without_completed_trials_still_renders_with_a_clear_note(tmp_path) -> None:
    study = grid_study()
    study.add_trial({"op": "conv", "width": 8}, {"params": 10})
    text = build_report(study, tmp_path).read_text()
    page = Page(text)
    assert page.images == [] and len([h for h in page.headings if h[0].isdigit()]) == len(SECTIONS)
    assert "No trial has completed yet, so there is nothing to plot or rank." in page.visible
    assert "1 (1 failed)" in page.visible


def test_an_unwritable_output_dir_fails_before_any_work(tmp_path) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match="output folder .* is not writable.*--output-dir"):
        build_report(grid_study(), blocker / "sub")
    assert list(tmp_path.iterdir()) == [blocker]


def test_default_output_dir_is_reports_and_the_study_name(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = build_report(grid_study("my study/1"))
    assert path.resolve() == (tmp_path / "reports" / "my_study_1" / "report.html").resolve()


@pytest.mark.parametrize("top", [0, -1, 2.5, True])
def test_top_must_be_a_positive_integer(tmp_path, top) -> None:
    with pytest.raises(ConfigError, match="top must be a positive integer"):
        build_report(grid_study(), tmp_path, top=top)


def test_number_formatting() -> None:
    assert fmt(None) == "—" and fmt(True) == "yes" and fmt(False) == "no"
    assert fmt(123456) == "123,456" and fmt(0.971234) == "0.9712" and fmt(2.5e-6) == "2.5e-06"
    assert fmt(float("inf")) == "inf" and fmt("<x>") == "&lt;x&gt;"
    assert fmt_seconds(None) == "—" and fmt_seconds(1.5) == "1.5 s"
    assert fmt_seconds(125) == "2 min 5 s" and fmt_seconds(7380) == "2 h 3 min"
