"""``nasflow bench build``: resumable table builds, and the shipped nb201-digits table built with it."""

from __future__ import annotations

import gzip
import hashlib
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import nasflow as nf
from nasflow.bench.harness import run_bench, tabular_oracle
from nasflow.benchmarks import digits
from nasflow.benchmarks.build import (
    DistinctClasses,
    TableBuild,
    build_table,
    database_url,
    distinct_representatives,
)
from nasflow.benchmarks.table import BenchmarkTable, load_table, save_table
from nasflow.cli.main import main
from nasflow.errors import BenchmarkDataError, ConfigError, EvaluationError, SearchExhausted
from nasflow.estimators.base import EvalContext
from nasflow.estimators.tabular import TabularEvaluator
from nasflow.estimators.train import TrainEvaluator
from nasflow.space.architecture import Architecture
from nasflow.space.nb201 import NB201Space
from nasflow.storage import open_store
from nasflow.testing.spaces import check_space
from nasflow.trial import INTERRUPTED, FrozenTrial, TrialState

# Tiny settings: a 4-channel cell trained for 2 epochs on a fifth of the digits training split.
EPOCHS = 2
COLUMNS = (
    "valid_acc",
    "test_acc",
    "val_loss",
    "test_loss",
    "train_loss",
    "params",
    "flops",
    "train_seconds",
    "valid_acc_epoch_1",
    "valid_acc_epoch_2",
)
TINY_FLAGS = ["--epochs", str(EPOCHS), "--channels", "4", "--data-fraction", "0.2", "--quiet"]


def _space() -> NB201Space:
    return NB201Space(channels=4, cells_per_stage=1)


def _evaluator(**options: object) -> TrainEvaluator:
    return TrainEvaluator("digits", epochs=EPOCHS, data_fraction=0.2, report_test=True, **options)  # type: ignore[arg-type]


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    # Tiny networks train fastest on one thread, and extra threads only fight on a busy machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two networks, then extended to four by a second run (the resume path)."""
    output = tmp_path_factory.mktemp("build") / "tiny.csv.gz"
    first = build_table(output, 2, _space(), _evaluator())
    assert len(first.table) == 2
    build_table(output, 4, _space(), _evaluator())
    return output


# -- distinct networks --------------------------------------------------------------------------
def test_representatives_are_the_first_member_of_each_class() -> None:
    # key a*b: class 0 = {a=0 or b=0} (first member (0,0)), class 1 = {(1,1)}, class 2 = {(2,1)}
    space = nf.DecisionSpace({"a": [0, 1, 2], "b": [0, 1]}, canonical=lambda arch: arch["a"] * arch["b"])
    assert distinct_representatives(space) == [
        Architecture({"a": 0, "b": 0}),
        Architecture({"a": 1, "b": 1}),
        Architecture({"a": 2, "b": 1}),
    ]


def test_nb201_has_6466_distinct_networks() -> None:
    space = NB201Space()
    representatives = distinct_representatives(space)
    assert len(representatives) == 6466
    assert len({space.canonical(a) for a in representatives}) == 6466
    # the all-none cell is the first cell of all, so it represents the all-zero network
    assert space.format(representatives[0]) == "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"


def test_too_large_space_is_refused() -> None:
    space = nf.DecisionSpace({f"d{i}": list(range(10)) for i in range(7)})
    with pytest.raises(ConfigError, match="limited to 1,000,000"):
        distinct_representatives(space)


def _told(space: nf.DecisionSpace, arch: Architecture, number: int) -> FrozenTrial:
    return FrozenTrial(
        number=number,
        arch=arch,
        arch_str=space.format(arch),
        canonical=space.canonical(arch),
        state=TrialState.COMPLETE,
        metrics={"accuracy": 1.0},
        values=(1.0,),
    )


def test_distinct_classes_order_is_a_seeded_permutation_that_resumes() -> None:
    space = nf.DecisionSpace({"a": [0, 1, 2], "b": [0, 1]}, canonical=lambda arch: arch["a"] * arch["b"])
    strategy = DistinctClasses()
    strategy.setup(space, [], seed=3)
    order = strategy.ask(3)
    assert sorted(map(space.canonical, order)) == ["0", "1", "2"]
    with pytest.raises(SearchExhausted):
        strategy.ask(1)
    again = DistinctClasses()
    again.setup(space, [], seed=3)
    assert again.ask(3) == order
    # Told: the first; asked but never told (cut off): the second. A resumed copy proposes the
    # second again, then the third.
    resumed = DistinctClasses()
    resumed.setup(space, [], seed=3)
    first, _ = resumed.ask(2)
    resumed.tell(_told(space, first, 0))
    continued = DistinctClasses()
    continued.setup(space, [], seed=3)
    continued.load_state_dict(resumed.state_dict())
    assert continued.ask(2) == order[1:]


# -- building -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_built_table_equals_the_study_trials(built: Path) -> None:
    table = load_table(built)
    assert table.columns == COLUMNS
    n_val = len(_evaluator().task.y_val)
    study = nf.load_study("bench-build", database_url(built))
    trials = study.trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert list(table) == [t.arch_str for t in trials]
    for trial in trials:
        row = table.row(trial.arch_str)
        assert row["valid_acc"] == trial.metrics["accuracy"]
        assert row["test_acc"] == trial.metrics["test_accuracy"]
        assert row["params"] == trial.metrics["params"]
        assert [row["valid_acc_epoch_1"], row["valid_acc_epoch_2"]] == [
            trial.intermediate[1]["accuracy"],
            trial.intermediate[2]["accuracy"],
        ]
        assert row["valid_acc_epoch_2"] == row["valid_acc"]  # the last epoch is the final result
        # accuracies count whole examples of the validation split
        correct = row["valid_acc"] * n_val / 100
        assert correct == pytest.approx(round(correct), abs=1e-9)


@pytest.mark.slow
def test_rows_are_distinct_class_representatives(built: Path) -> None:
    space = _space()
    representatives = {space.format(a) for a in distinct_representatives(space)}
    table = load_table(built)
    assert set(table) <= representatives
    assert len({space.canonical(space.parse(s)) for s in table}) == len(table)


@pytest.mark.slow
def test_resume_does_not_retrain_and_matches_an_uninterrupted_build(built: Path, tmp_path: Path) -> None:
    # The fixture built 2 networks, then 4: the store holds 4 trials, not 2 + 4.
    store = open_store(database_url(built))
    study_id = store.load_study("bench-build").study_id
    assert [t.number for t in store.get_trials(study_id)] == [0, 1, 2, 3]
    # Training is deterministic, so one run of 4 gives the same rows (bar the timings).
    fresh = build_table(tmp_path / "fresh.csv", 4, _space(), _evaluator()).table
    resumed = load_table(built)
    assert list(fresh) == list(resumed)
    for arch_str in fresh:
        a, b = fresh.row(arch_str), resumed.row(arch_str)
        a.pop("train_seconds"), b.pop("train_seconds")
        assert a == b


class _InterruptedAt(TrainEvaluator):
    """Stops the whole build (like Ctrl-C) when it is asked to train trial ``stop_at``."""

    stop_at = -1

    def evaluate(self, arch: Architecture, context: EvalContext) -> object:  # type: ignore[override]
        if context.trial_number == self.stop_at:
            raise KeyboardInterrupt
        return super().evaluate(arch, context)


@pytest.mark.slow
def test_a_network_cut_off_by_an_interruption_is_trained_on_resume(tmp_path: Path) -> None:
    output = tmp_path / "cut.csv"
    stopping = _InterruptedAt("digits", epochs=EPOCHS, data_fraction=0.2, report_test=True)
    stopping.stop_at = 1
    with pytest.raises(KeyboardInterrupt):
        build_table(output, 3, _space(), stopping)
    assert not output.exists()
    result = build_table(output, 3, _space(), _evaluator())
    trials = result.study.trials()
    assert [t.error == INTERRUPTED for t in trials] == [False, True, False, False]
    assert trials[2].arch_str == trials[1].arch_str  # the cut-off network came back first
    assert list(result.table) == [trials[0].arch_str, trials[2].arch_str, trials[3].arch_str]


@pytest.mark.slow
def test_resume_with_other_settings_is_refused(built: Path) -> None:
    with pytest.raises(ConfigError, match="holds a build with other settings.*epochs"):
        TableBuild(built, _space(), TrainEvaluator("digits", epochs=3, data_fraction=0.2, report_test=True))


@pytest.mark.parametrize(
    ("output", "evaluator", "archs", "message"),
    [
        ("table.txt", _evaluator(), 1, r"\.csv or \.csv\.gz"),
        ("table.csv", TrainEvaluator("digits", epochs=1), 1, "report_test=True"),
        ("table.csv", _evaluator(), 0, "archs must be an integer >= 1"),
    ],
)
def test_bad_settings_are_refused(
    tmp_path: Path, output: str, evaluator: TrainEvaluator, archs: int, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        build_table(tmp_path / output, archs, _space(), evaluator)


@pytest.mark.slow
def test_corrupt_or_duplicate_tables_are_rejected(built: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.csv.gz"
    truncated.write_bytes(built.read_bytes()[:-20])
    with pytest.raises(BenchmarkDataError, match="truncated or corrupt gzip"):
        load_table(truncated)
    with pytest.raises(BenchmarkDataError, match="truncated or corrupt gzip"):
        digits.load_nb201_digits(truncated)
    # two members of one class: the all-none cell, and the same with a conv on a dead edge
    rows = {
        "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|": [10.0, 11.0],
        "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|": [12.0, 13.0],
    }
    duplicate = save_table(BenchmarkTable(["valid_acc", "test_acc"], rows), tmp_path / "dup.csv")
    with pytest.raises(BenchmarkDataError, match="describe the same network"):
        digits.load_nb201_digits(duplicate)
    with pytest.raises(BenchmarkDataError, match="describe the same network"):
        digits.NB201DigitsSpace(path=str(duplicate))


def test_report_test_does_not_change_training() -> None:
    space = _space()
    arch = space.sample(np.random.default_rng(0))
    plain, with_test = (
        TrainEvaluator("digits", epochs=1, data_fraction=0.2, report_test=flag) for flag in (False, True)
    )
    for evaluator in (plain, with_test):
        evaluator.setup(space)
    a = plain.evaluate(arch, EvalContext(seed=5)).metrics
    b = with_test.evaluate(arch, EvalContext(seed=5)).metrics
    assert {k: v for k, v in b.items() if k not in ("test_accuracy", "test_loss", "train_seconds")} == {
        k: v for k, v in a.items() if k != "train_seconds"
    }
    n_test = len(with_test.task.y_test)
    assert b["test_accuracy"] * n_test / 100 == pytest.approx(round(b["test_accuracy"] * n_test / 100))
    assert "report_test" not in plain.describe() and with_test.describe()["report_test"] is True


# -- the command --------------------------------------------------------------------------------
@pytest.mark.slow
def test_cli_builds_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "cli.csv.gz"
    assert main(["bench", "build", "--output", str(output), "--archs", "2", *TINY_FLAGS]) == 0
    assert "wrote" in capsys.readouterr().out and len(load_table(output)) == 2
    assert main(["bench", "build", "--output", str(output), "--archs", "3", *TINY_FLAGS]) == 0
    assert "3 networks" in capsys.readouterr().out
    trials = nf.load_study("bench-build", database_url(output)).trials()
    assert len(trials) == 3


def test_cli_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "build", "--output", str(tmp_path / "t.json"), *TINY_FLAGS]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: output must be a .csv or .csv.gz file") and err.count("\n") == 1


# -- the shipped nb201-digits table ---------------------------------------------------------------
def test_shipped_table_checksum_size_and_values() -> None:
    assert hashlib.sha256(digits.shipped_file().read_bytes()).hexdigest() == digits.DIGITS_SHA256
    table = digits.load_nb201_digits()
    assert len(table) == digits.DIGITS_SETTINGS["archs"] >= 500
    epochs = digits.DIGITS_SETTINGS["epochs"]
    assert table.columns == (*COLUMNS[:8], *(f"valid_acc_epoch_{e}" for e in range(1, epochs + 1)))
    for column in ("valid_acc", "test_acc"):
        values = table.column(column)
        assert np.all((values > 10) & (values <= 100)), column
    space = NB201Space()
    assert len({space.canonical(space.parse(s)) for s in table}) == len(table)
    representatives = {space.format(a) for a in distinct_representatives(space)}
    assert set(table) <= representatives


def test_shipped_table_is_gzip_with_the_documented_header() -> None:
    header = gzip.decompress(digits.shipped_file().read_bytes()).split(b"\n", 1)[0].decode()
    assert header.startswith("arch_str,valid_acc,test_acc,")


def _member_of_another_row(table: BenchmarkTable) -> tuple[str, str]:
    """``(member, representative)``: a cell that is not a row but whose network is."""
    space = NB201Space()
    for arch_str in table:
        arch = space.parse(arch_str)
        for neighbour in space.neighbors(arch):
            if space.canonical(neighbour) == space.canonical(arch):
                return space.format(neighbour), arch_str
    raise AssertionError("no row has a same-network neighbour")


def test_lookup_of_a_member_string_returns_its_class_row() -> None:
    table = digits.load_nb201_digits()
    member, row_key = _member_of_another_row(table)
    assert member not in table
    assert digits.representative(member) == row_key
    row = table.row(row_key)
    assert TabularEvaluator("nb201-digits").lookup(member) == {
        "accuracy": row["valid_acc"],
        "test_accuracy": row["test_acc"],
        "params": row["params"],
        "flops": row["flops"],
        "train_seconds": row["train_seconds"],
    }


def test_lookup_outside_the_table_says_which_space_to_search() -> None:
    table = digits.load_nb201_digits()
    space = NB201Space()
    outside = next(s for s in map(space.format, space.enumerate()) if digits.representative(s) is None)
    assert outside not in table
    with pytest.raises(EvaluationError, match="not among the .* distinct networks.*'nb201-digits'"):
        TabularEvaluator("nb201-digits").lookup(outside)


def test_digits_space_holds_exactly_the_table_networks() -> None:
    space = digits.NB201DigitsSpace()
    check_space(space)
    plain = NB201Space()
    table_keys = {plain.canonical(plain.parse(s)) for s in digits.load_nb201_digits()}
    members = list(space.enumerate())
    assert {plain.canonical(a) for a in members} == table_keys
    assert sum(plain.canonical(a) in table_keys for a in plain.enumerate()) == len(members)


def test_tabular_study_on_the_digits_table() -> None:
    table = digits.load_nb201_digits()
    study = nf.create_study(
        space="nb201-digits", strategy="evolution", evaluator=TabularEvaluator("nb201-digits"), seed=0
    )
    study.optimize(budget=30)
    trials = study.trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 30
    for trial in trials:
        row = table.row(digits.representative(trial.arch_str) or "")
        assert (trial.metrics["accuracy"], trial.metrics["test_accuracy"]) == (
            row["valid_acc"],
            row["test_acc"],
        )
    with pytest.raises(ConfigError, match="needs space 'nb201-digits'"):
        nf.create_study(space="nb201", strategy="random", evaluator=TabularEvaluator("nb201-digits"))


def test_harness_runs_on_the_digits_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = digits.load_nb201_digits()
    best = table.best("valid_acc")[0]
    assert tabular_oracle("nb201-digits", "digits") == table.row(best)["test_acc"]
    result = run_bench(["random"], seeds=2, budget=10, benchmark="nb201-digits", dataset="digits", workers=1)
    curves = result.curves("random")
    assert curves.shape == (2, 10) and not math.isnan(curves[0, -1])
    assert set(curves[:, -1]) <= set(table.column("test_acc"))
    args = ["bench", "--benchmark", "nb201-digits", "--strategies", "random", "--seeds", "2", "--budget", "5"]
    assert main([*args, "--workers", "1", "--output-dir", str(tmp_path)]) == 0
    assert "nb201-digits digits" in capsys.readouterr().out
