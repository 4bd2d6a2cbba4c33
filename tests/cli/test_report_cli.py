"""``nasflow report NAME``: a stored study becomes report.html plus PNGs; mistakes are one-line errors."""

from __future__ import annotations

import re

import pytest

from nasflow.cli.main import main


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'runs.db'}"
    code = main(
        [
            "search",
            "--space",
            "nb201",
            "--strategy",
            "random",
            "--evaluator",
            "tabular",
            "--dataset",
            "cifar10",
        ]
        + ["--budget", "12", "--seed", "0", "--storage", url, "--name", "t", "--quiet", "--output", "json"]
    )
    assert code == 0
    return url


@pytest.mark.slow  # the first report of the session pays for importing matplotlib and torch
def test_report_writes_the_page_and_its_figures_under_reports_by_default(
    capsys, db, tmp_path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    code, out, err = run(capsys, "report", "t", "--storage", db, "--top", "4")
    assert code == 0, err
    folder = tmp_path / "reports" / "t"
    assert out.strip() == f"report written to {(folder / 'report.html').resolve()}"
    text = (folder / "report.html").read_text()
    assert {p.stem for p in folder.glob("*.png")} >= {"trajectory", "distribution", "frequencies", "best"}
    assert "trials</th><td>12 (12 complete)" in text
    assert "nb201 (channels=16, cells_per_stage=5)" in text and "random" in text
    # the top table holds 4 rows of official NB201 strings
    table = text[text.index('id="top"') : text.index('id="pareto"')]
    assert len(re.findall(r"<tr><td class=\"num\">\d+</td>", table)) == 4
    assert table.count("<code>|") == 4


def test_output_dir_flag(capsys, db, tmp_path) -> None:
    code, out, _ = run(capsys, "report", "t", "--storage", db, "--output-dir", str(tmp_path / "r"))
    assert code == 0 and (tmp_path / "r" / "report.html").is_file()
    assert out.strip().endswith("report.html")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "error: no study named 'nope'; existing studies: 't'"),
        (["t", "--top", "0"], "error: --top must be at least 1, got 0"),
        (["t", "--output-dir", "{blocker}/sub"], "error: output folder"),
    ],
)
def test_mistakes_are_one_line_errors(capsys, db, tmp_path, args, message) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("")
    args = [a.replace("{blocker}", str(blocker)) for a in args]
    code, out, err = run(capsys, "report", *args, "--storage", db)
    assert code == 2 and out == ""
    assert err.startswith(message) and err.count("\n") == 1
