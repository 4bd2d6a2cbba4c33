"""The report in a real browser: headless Chromium shows no console error and decodes every image.

CI installs Debian's ``chromium`` (see ``.ci/run``), so there a missing browser fails the test; on a
developer machine without it (``CI`` unset) the test is skipped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html import unescape
from pathlib import Path

import pytest

import nasflow as nf
from nasflow.estimators.function import FunctionEvaluator
from nasflow.report import build_report
from nasflow.space.base import DecisionSpace

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: appended to a copy of the page: on load, record for every image whether it decoded and its size
PROBE = (
    "<script>window.addEventListener('load', function () {"
    "document.body.setAttribute('data-images', JSON.stringify(Array.from(document.images).map("
    "function (i) { return [i.complete && i.naturalWidth > 0, i.naturalWidth, i.naturalHeight]; })));"
    "});</script>"
)
pytestmark = pytest.mark.slow  # two browser starts and a report

#: what Chromium logs for messages on the page's console (errors, CSP violations, uncaught exceptions)
CONSOLE = re.compile(r"CONSOLE|Uncaught|Refused to", re.IGNORECASE)


def browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI"):
        pytest.fail("headless Chromium is required in CI (.ci/run installs Debian's chromium package)")
    pytest.skip("no chromium on this machine (CI installs it)")


@pytest.fixture(scope="module")
def chromium() -> str:
    return browser()


def open_page(chromium: str, page: Path, profile: Path) -> tuple[str, str]:
    """Load ``page`` in headless Chromium; returns the DOM after loading and the browser's log."""
    command = [
        chromium,
        "--headless",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",  # a private profile: parallel browsers do not share a lock
        "--enable-logging=stderr",
        "--v=0",
        "--dump-dom",
        page.resolve().as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, done.stderr


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    study = nf.create_study(
        space=DecisionSpace({"op": ["conv", "pool", "skip"], "width": [8, 16]}),
        strategy="grid",
        evaluator=FunctionEvaluator(lambda a: {"accuracy": 0.5}),
        objectives=["accuracy:max", "params:min"],
        name="browser",
        seed=0,
    )
    for op, width, accuracy, params in [("conv", 16, 0.8, 320), ("pool", 8, 0.6, 50), ("conv", 8, 0.75, 200)]:
        study.add_trial({"op": op, "width": width}, {"accuracy": accuracy, "params": params})
    rows = [{"perturbation": "noise", "severity": s, "accuracy": 0.9 - s / 10} for s in (0, 1, 2)]
    study.add_result("export", {"model": "m", "robustness": rows})
    return build_report(study, tmp_path_factory.mktemp("browser"))


def test_the_page_shows_no_console_error_in_chromium(chromium, report, tmp_path) -> None:
    dom, log = open_page(chromium, report, tmp_path / "profile")
    assert "1. Summary" in dom and "8. Exported models" in dom
    # the page runs no script, so any console line is an error: e.g. a blocked external image
    assert not [line for line in log.splitlines() if CONSOLE.search(line)]


def test_every_image_decodes_in_chromium(chromium, report, tmp_path) -> None:
    text = report.read_text(encoding="utf-8")
    expected = re.findall(r'<img [^>]*width="(\d+)" height="(\d+)"', text)
    assert len(expected) >= 5
    # the probe is a script, which the page's own policy forbids: allow inline scripts in the copy only
    probe = text.replace("default-src 'none';", "default-src 'none'; script-src 'unsafe-inline';")
    probe = probe.replace("</body>", PROBE + "</body>")
    copy = report.with_name("probe.html")
    copy.write_text(probe, encoding="utf-8")
    dom, log = open_page(chromium, copy, tmp_path / "profile")
    found = re.search(r'data-images="([^"]*)"', dom)
    assert found is not None, f"the probe did not run; browser log: {log[-2000:]}"
    images = json.loads(unescape(found.group(1)))
    assert [ok for ok, _, _ in images] == [True] * len(expected)
    assert [(str(w), str(h)) for _, w, h in images] == expected  # decoded at the size the tags state
    assert not [line for line in log.splitlines() if CONSOLE.search(line)]
