"""The nasflow command: searches, show, list, and one- or two-line errors for user mistakes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import nasflow as nf
from nasflow.cli.main import main

TABULAR = [
    "search",
    "--space",
    "nb201",
    "--strategy",
    "evolution",
    "--evaluator",
    "tabular",
    "--dataset",
    "cifar10",
]


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_tabular_search_json_has_best_arch_and_accuracies(capsys, tmp_path) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    code, out, _ = run(
        capsys, *TABULAR, "--budget", "100", "--seed", "0", "--output", "json", "--storage", db, "--name", "t"
    )
    assert code == 0
    result = json.loads(out)
    assert result["name"] == "t" and result["n_trials"] == 100
    best = result["best"]
    assert best["arch_str"].startswith("|") and best["arch_str"].count("~") == 6
    assert 80 < best["metrics"]["accuracy"] <= 84.892  # the table's best validation accuracy
    assert best["metrics"]["test_accuracy"] > 85
    assert result["pareto_front"][0]["arch_str"] == best["arch_str"]
    # show reads the same study back
    code, out, _ = run(capsys, "show", "t", "--storage", db, "--output", "json")
    shown = json.loads(out)
    assert code == 0 and shown["best"] == best and len(shown["trials"]) == 100


def test_same_seed_same_result_and_resume_by_name(capsys, tmp_path) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    first = run(
        capsys, *TABULAR, "--budget", "40", "--seed", "3", "--output", "json", "--storage", db, "--name", "a"
    )
    code, out, _ = run(
        capsys, *TABULAR, "--budget", "40", "--seed", "3", "--output", "json", "--storage", db, "--name", "b"
    )
    assert json.loads(first[1])["best"] == json.loads(out)["best"]
    # a second run under the same name continues the study up to the new budget
    code, out, _ = run(
        capsys, *TABULAR, "--budget", "60", "--seed", "3", "--output", "json", "--storage", db, "--name", "a"
    )
    assert code == 0 and json.loads(out)["n_trials"] == 60


def test_text_output_ends_with_a_table_of_top_architectures(capsys, tmp_path) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    code, out, err = run(capsys, *TABULAR, "--budget", "15", "--storage", db, "--name", "x", "--quiet")
    assert code == 0
    assert "top 10 architectures of x" in out
    assert "best: trial" in out and "nasflow show x" in out
    code, out, _ = run(capsys, "show", "x", "--storage", db)
    assert "15 trials (15 complete)" in out


def test_multi_objective_flags_take_space_separated_values(capsys, tmp_path) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    code, out, _ = run(
        capsys,
        *TABULAR,
        "--budget",
        "30",
        "--objectives",
        "accuracy:max",
        "test_accuracy:min",
        "--constraints",
        "accuracy>=50",
        "--storage",
        db,
        "--name",
        "mo",
        "--output",
        "json",
    )
    assert code == 0
    result = json.loads(out)
    assert result["objectives"] == ["accuracy:max", "test_accuracy:min"]
    assert result["constraints"] == ["accuracy>=50"]
    assert all(t["metrics"]["accuracy"] >= 50 for t in result["pareto_front"])
    assert len(result["pareto_front"]) >= 1


def test_config_file_sets_the_search_and_flags_override_it(capsys, tmp_path) -> None:
    config = tmp_path / "search.yaml"
    config.write_text(
        "space: nb201\nstrategy: random\nevaluator: tabular\ndataset: cifar100\nbudget: 12\nseed: 1\n"
        f"storage: sqlite:///{tmp_path / 'cfg.db'}\nname: cfg\n"
    )
    code, out, _ = run(capsys, "search", "--config", str(config), "--budget", "20", "--output", "json")
    assert code == 0
    result = json.loads(out)
    assert result["n_trials"] == 20
    assert result["best"]["metrics"]["accuracy"] < 75  # CIFAR-100 accuracies, not CIFAR-10


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", "--strategy", "bogus"], "unknown strategy 'bogus'; allowed: as-nas, bananas, bo, bohb"),
        (["search", "--space", "nope"], "unknown space 'nope'; allowed: " + ", ".join(nf.list_spaces())),
        (
            ["search", "--evaluator", "magic"],
            "unknown evaluator 'magic'; allowed: " + ", ".join(nf.list_evaluators()),
        ),
        (["search", "--objectives", "accuracy:up"], "bad objective 'accuracy:up'"),
        (["search", "--constraints", "params<<5"], "bad constraint 'params<<5'"),
        (["search", "--budget", "-3"], "budget: Input should be greater than or equal to 0"),
        (["search", "--config", "missing.yaml"], "config file 'missing.yaml' does not exist"),
        (["search", "--evaluator", "tabular", "--dataset", "imagenet"], "allowed: cifar10, cifar100"),
        (["show", "ghost", "--storage", "sqlite:///{db}"], "ghost"),
        (["list", "widgets"], "cannot list 'widgets'; allowed: spaces, strategies"),
        (["search", "--storage", "mysql://x"], "sqlite"),
        (["search", "--data", "{tmp}/missing.npz", "--storage", "sqlite:///{db}"], "does not exist"),
    ],
)
def test_user_mistakes_give_a_short_error_and_nonzero_status(capsys, tmp_path, args, message) -> None:
    args = [a.replace("{db}", str(tmp_path / "e.db")).replace("{tmp}", str(tmp_path)) for a in args]
    code, out, err = run(capsys, *args)
    assert code == 2
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 2


def test_malformed_yaml_names_the_line(capsys, tmp_path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("space: nb201\nstrategy: [random\n")
    code, _, err = run(capsys, "search", "--config", str(config))
    assert code == 2 and "is not valid YAML at line" in err
    config.write_text("space: nb201\nbudgt: 5\n")
    code, _, err = run(capsys, "search", "--config", str(config))
    assert code == 2 and "budgt: unknown setting; allowed:" in err


def test_unreadable_database_is_a_clear_error(capsys, tmp_path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    code, _, err = run(capsys, "show", "x", "--storage", f"sqlite:///{garbage}")
    assert code == 2 and "not a database" in err and "Traceback" not in err


def test_debug_flag_shows_the_traceback(capsys) -> None:
    code, _, err = run(capsys, "--debug", "search", "--strategy", "bogus")
    assert code == 2 and "Traceback" in err


def test_list_verbs(capsys) -> None:
    assert "regularized (aging) evolution" in run(capsys, "list", "strategies")[1]
    assert "nb201" in run(capsys, "list", "spaces")[1]
    assert "tabular" in run(capsys, "list", "evaluators")[1]
    assert (
        "BayesWatch" in run(capsys, "list", "benchmarks")[1] or "MIT" in run(capsys, "list", "benchmarks")[1]
    )
    assert "digits" in run(capsys, "list", "datasets")[1]


def test_console_script_runs_as_a_program(tmp_path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "nasflow.cli.main",
            *TABULAR,
            "--budget",
            "5",
            "--output",
            "json",
            "--storage",
            f"sqlite:///{tmp_path / 'p.db'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["n_trials"] == 5


CELL_9930 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def test_evaluate_one_architecture_from_the_table(capsys) -> None:
    code, out, _ = run(capsys, "evaluate", CELL_9930, "--evaluator", "tabular", "--output", "json")
    assert code == 0
    result = json.loads(out)
    assert result["arch_str"] == CELL_9930
    assert result["metrics"]["index"] == 9930
    assert result["metrics"]["accuracy"] == pytest.approx(84.746)


@pytest.mark.parametrize(
    ("arch", "message"),
    [
        ("|nor_conv_3x3~0|+|bogus~0|", "need 3"),
        ("|conv_9x9~0|+|none~0|none~1|+|none~0|none~1|none~2|", "conv_9x9"),
        ("hello", "cannot parse"),
    ],
)
def test_evaluate_rejects_invalid_architecture_strings(capsys, arch: str, message: str) -> None:
    code, _, err = run(capsys, "evaluate", arch, "--evaluator", "tabular")
    assert code == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 2


@pytest.mark.slow
def test_hill_climb_runs_from_the_cli_and_records_every_trained_network(capsys, tmp_path) -> None:
    config = tmp_path / "hc.yaml"
    config.write_text(
        "space: macro\nstrategy: hill-climb\nstrategy_options: {n_steps: 1, n_children: 2, "
        "initial_epochs: 1, epochs_per_child: 1, data_fraction: 0.3}\n"
    )
    db = f"sqlite:///{tmp_path / 'hc.db'}"
    code, out, _ = run(capsys, "search", "--config", str(config), "--storage", db, "--name", "hc", "--quiet")
    assert code == 0
    assert "hill-climb ended on " in out
    study = nf.load_study("hc", storage=db)
    trials = study.trials()
    # the initial network, then one step with two morphed children
    assert len(trials) == 3 and all(t.state is nf.TrialState.COMPLETE for t in trials)
    assert f"hill-climb ended on {study.best().arch_str} " in out
