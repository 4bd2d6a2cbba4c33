"""The report's latency-measurement section: settings, spread within a measurement, repeated measurement."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

import nasflow as nf
from nasflow.estimators.cost import CostEvaluator
from nasflow.estimators.function import FunctionEvaluator
from nasflow.report import build_report
from nasflow.report.data import cost_description, gather, latency_stability
from nasflow.report.html import SECTIONS, render_html, report_sections
from nasflow.space.base import DecisionSpace
from nasflow.strategies.grid import GridSearch

SPACE = {"op": ["conv", "pool", "skip"]}
#: what the evaluator "measures" for each op: accuracy, latency_ms (fastest repeat), latency_spread
MEASURED = {
    "conv": {"accuracy": 0.9, "latency_ms": 2.0, "latency_spread": 0.10},
    "pool": {"accuracy": 0.7, "latency_ms": 1.0, "latency_spread": 0.30},
    "skip": {"accuracy": 0.5, "latency_ms": 0.5, "latency_spread": 0.04},
}
#: rows as nasflow.estimators.cost.remeasure_latency writes them, split over two stored results:
#: differences 5 %, 25 % and 4 %, so 2 of 3 lie within 10 % and the largest is 25 %
REMEASURED = [
    {
        "source": "measured",
        "runtime": "eager",
        "rows": [
            {"trial": 0, "recorded_ms": 2.0, "remeasured_ms": 2.1, "feasible": True},
            {"trial": 1, "recorded_ms": 1.0, "remeasured_ms": 1.25, "feasible": True},
        ],
    },
    {
        "source": "measured",
        "runtime": "eager",
        "rows": [{"trial": 2, "recorded_ms": 0.5, "remeasured_ms": 0.48, "feasible": False}],
    },
]


class Page(HTMLParser):
    """The h2/h3 headings and the visible text of a page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.headings: list[str] = []
        self.text: list[str] = []
        self._in: str | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
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


def measure(arch) -> dict[str, float]:
    return MEASURED[arch["op"]]


def latency_study(remeasured=REMEASURED, evaluator=None) -> nf.Study:
    """Three trials (conv, pool, skip in grid order) with measured latency, plus stored re-measurements."""
    study = nf.create_study(
        space=DecisionSpace(SPACE),
        strategy=GridSearch(shuffle=False),
        evaluator=evaluator or FunctionEvaluator(measure),
        objectives=["accuracy:max", "latency_ms:min"],
        name="lat",
        seed=0,
    )
    study.optimize(budget=3)
    for payload in remeasured:
        study.add_result("remeasured_latency", payload)
    return study


@pytest.fixture(scope="module")
def data():
    return gather(latency_study())


def test_spread_statistics_are_the_median_and_max_over_measured_trials(data) -> None:
    latency = data.latency
    assert [t.arch["op"] for t in data.trials] == ["conv", "pool", "skip"]
    assert latency.spread_trials == 3
    assert latency.spread_median == pytest.approx(0.10)  # median of 0.10, 0.30, 0.04
    assert latency.spread_max == pytest.approx(0.30) and latency.spread_max_trial == 1
    assert latency.settings == () and latency.source is None  # the function reported latency itself


def test_every_row_of_every_stored_remeasurement_is_compared(data) -> None:
    latency = data.latency
    assert latency.results == 2 and latency.predicted_results == 0
    rows = latency.remeasurements
    assert [(r.trial, r.arch_str, r.recorded_ms, r.remeasured_ms, r.feasible) for r in rows] == [
        (0, "op=conv", 2.0, 2.1, True),
        (1, "op=pool", 1.0, 1.25, True),
        (2, "op=skip", 0.5, 0.48, False),
    ]
    assert [r.difference for r in rows] == pytest.approx([0.05, 0.25, 0.04])
    assert len(latency.compared) == 3 and latency.within() == 2
    assert latency.max_difference == pytest.approx(0.25)
    assert latency.within(0.30) == 3 and latency.within(0.04) == 0  # strictly less than the tolerance


def test_rendered_section_shows_the_numbers(data) -> None:
    page = Page(render_html(data, {}))
    assert "6. Latency measurement" in page.headings  # right after the Pareto front
    assert page.headings.index("5. Pareto front") + 1 == page.headings.index("6. Latency measurement")
    assert {"Settings", "Within one measurement", "Repeated measurement"} <= set(page.headings)
    assert "9. Exported models" in page.headings  # later sections move down by one
    visible = page.visible
    assert "Over 3 measured trials: median spread 10.0 %, largest 30.0 % (trial 1)." in visible
    assert "(p90 − p10) / median of its timed repeats" in visible
    assert (
        "trial architecture recorded ms re-measured ms difference constraints "
        "0 op=conv 2 2.1 5.0 % met 1 op=pool 1 1.25 25.0 % met 2 op=skip 0.5 0.48 4.0 % violated"
    ) in visible
    assert "2 of 3 re-measurements within 10 % of the recorded latency (max 25.0 %)." in visible
    assert "Rows of all 2 stored re-measurements, oldest first." in visible
    assert "do not record how latency was measured" in visible
    assert "fastest timed repeat" not in visible  # the function's latency may be anything


def test_the_written_report_links_the_section(tmp_path) -> None:
    study = latency_study()
    text = build_report(study, tmp_path).read_text(encoding="utf-8")
    assert '<a href="#latency">Latency measurement</a>' in text and '<section id="latency">' in text


def test_without_a_remeasurement_the_section_says_how_to_get_one() -> None:
    data = gather(latency_study(remeasured=[]))
    assert data.latency is not None and data.latency.remeasurements == () and data.latency.results == 0
    visible = Page(render_html(data, {})).visible
    assert "No re-measurement is stored." in visible
    assert "nasflow.estimators.cost.remeasure_latency(study)" in visible
    assert "re-measurements within" not in visible


def test_a_study_without_latency_has_no_section() -> None:
    study = nf.create_study(
        space=DecisionSpace(SPACE),
        strategy="grid",
        evaluator=FunctionEvaluator(lambda a: {"accuracy": MEASURED[a["op"]]["accuracy"]}),
        name="plain",
        seed=0,
    )
    study.optimize(budget=2)
    data = gather(study)
    assert data.latency is None and report_sections(data) == list(SECTIONS)
    page = Page(render_html(data, {}))
    assert "Latency measurement" not in " ".join(page.headings) and 'id="latency"' not in render_html(
        data, {}
    )
    assert len([h for h in page.headings if h[0].isdigit()]) == len(SECTIONS)


def test_latency_without_spread_or_measuring_settings_counts_as_predicted() -> None:
    # a table (or a phone) reporting latency_ms: nothing says it was measured here, so no section
    study = nf.create_study(
        space=DecisionSpace(SPACE),
        strategy="grid",
        evaluator=FunctionEvaluator(lambda a: {"accuracy": 0.5, "latency_ms": 1.0}),
        objectives=["accuracy:max", "latency_ms:min"],
        name="table",
        seed=0,
    )
    study.optimize(budget=2)
    assert gather(study).latency is None


def cost_evaluator(**kwargs) -> CostEvaluator:
    return CostEvaluator(FunctionEvaluator(measure), input_shape=(1, 8, 8), num_classes=10, **kwargs)


def test_settings_of_a_stored_cost_evaluator_are_shown() -> None:
    # a CostEvaluator asked only for latency_ms stores no latency_spread, but its settings say it measures
    study = nf.create_study(
        space=DecisionSpace(SPACE),
        strategy="grid",
        evaluator=cost_evaluator(batch_size=4, threads=2, repeats=50),
        objectives=["accuracy:max", "latency_ms:min"],
        name="cost",
        seed=0,
    )
    for op in SPACE["op"]:  # recorded as measured elsewhere: nothing is measured here
        study.add_trial({"op": op}, {"accuracy": 0.5, "latency_ms": MEASURED[op]["latency_ms"]})
    for payload in REMEASURED:
        study.add_result("remeasured_latency", payload)
    data = gather(study)
    latency = data.latency
    assert dict(latency.settings) == {
        "runtime": "eager",
        "device": "cpu",
        "batch size": 4,
        "threads": 2,
        "warm-up calls": 10,
        "timed repeats (at least)": 50,
        "latency source": "measured",
    }
    assert latency.source == "measured" and latency.spread_trials == 0 and latency.spread_median is None
    visible = Page(render_html(data, {})).visible
    assert (
        "runtime eager device cpu batch size 4 threads 2 warm-up calls 10 timed repeats (at least) 50"
        in visible
    )
    assert "No trial recorded latency_spread . To record it" in visible
    assert "Both values are a measurement's fastest timed repeat" in visible
    assert "2 of 3 re-measurements within 10 % of the recorded latency (max 25.0 %)." in visible


def test_a_predicted_latency_setting_with_no_spread_gives_no_section() -> None:
    trial_metrics = {"accuracy": 0.5, "latency_ms": 1.0}
    study = nf.create_study(DecisionSpace(SPACE), "grid", FunctionEvaluator(measure), name="p", seed=0)
    trial = study.add_trial({"op": "conv"}, trial_metrics)
    predicted = {"evaluator": {**cost_evaluator().describe(), "latency_source": "predicted"}}
    measured = {"evaluator": {"name": "wrapper", "inner": [cost_evaluator().describe()]}}
    assert latency_stability([trial], [], predicted) is None
    assert latency_stability([trial], [], measured) is not None  # found nested in another description
    assert cost_description(measured["evaluator"])["name"] == "cost"
    assert cost_description({"name": "train", "inner": {"name": "tabular"}}) is None


def test_malformed_rows_are_skipped_or_left_uncompared() -> None:
    study = nf.create_study(DecisionSpace(SPACE), "grid", FunctionEvaluator(measure), name="m", seed=0)
    trial = study.add_trial({"op": "conv"}, {"accuracy": 0.5, "latency_ms": 1.0, "latency_spread": 0.2})
    payloads = [
        {"source": "predicted", "rows": [{"trial": 0, "recorded_ms": 1.0, "remeasured_ms": 1.08}]},
        {"rows": [{"trial": "x"}, "junk", {"trial": 7, "recorded_ms": None, "remeasured_ms": 1.0}]},
        {"rows": [{"trial": 0, "recorded_ms": 0.0, "remeasured_ms": 1.0, "feasible": "yes"}]},
        {"rows": "not a list"},
    ]
    latency = latency_stability([trial], payloads)
    assert latency.results == 4 and latency.predicted_results == 1
    assert [(r.trial, r.arch_str, r.feasible) for r in latency.remeasurements] == [
        (0, "op=conv", None),
        (7, None, None),  # not a trial of the study
        (0, "op=conv", None),
    ]
    assert [r.difference for r in latency.remeasurements] == pytest.approx([0.08, None, None])
    assert len(latency.compared) == 1 and latency.within() == 1
    data = gather(study)
    data.latency = latency
    visible = Page(render_html(data, {})).visible
    assert "1 of 1 re-measurements within 10 % of the recorded latency (max 8.0 %)." in visible
    assert "compare a latency predicted from a look-up table with a measurement" in visible
    assert "2 rows lack a recorded or re-measured value." in visible
