"""run_oneshot and `nasflow search --strategy <one-shot>`: fit, keep the log, train the result as a trial."""

from __future__ import annotations

import json

import pytest

import nasflow as nf
from nasflow.cli.main import main
from nasflow.errors import ConfigError
from nasflow.estimators.train import TrainEvaluator
from nasflow.oneshot import DARTS, GDAS, OneShotStrategy, read_log, run_oneshot
from nasflow.oneshot.run import default_log_path
from nasflow.trial import TrialState


def _study(tiny_task, space, search, storage=None, name="s"):
    return nf.create_study(
        space=space,
        strategy=OneShotStrategy(search),
        evaluator=TrainEvaluator(tiny_task, epochs=1),
        storage=storage,
        name=name,
        seed=7,
        load_if_exists=True,
    )


def test_run_oneshot_records_the_derived_arch_as_a_complete_trial(
    tmp_path, tiny_task, tiny_space, tiny
) -> None:
    search = DARTS(**tiny)
    storage = f"sqlite:///{tmp_path / 'runs.db'}"
    study = _study(tiny_task, tiny_space, search, storage)
    run = run_oneshot(study, search)
    assert search.space is tiny_space and search.seed == 7  # the study's space and seed
    (trial,) = run.trials
    assert trial.state is TrialState.COMPLETE
    assert trial.arch == run.result.arch and trial.arch_str == run.result.arch_str
    assert 0.0 <= trial.metrics["accuracy"] <= 100.0
    # the search log sits next to the database and reads back
    assert run.log_path == tmp_path / "runs.s.oneshot.json"
    logged = json.loads(run.log_path.read_text())
    assert logged["study"] == "s" and logged["arch_str"] == trial.arch_str
    assert len(logged["epochs"]) == tiny["epochs"]
    assert read_log(run.log_path).to_dict() == run.result.to_dict()
    # the stored study shows the trial, and the strategy recorded is the one-shot search
    reopened = nf.load_study("s", storage)
    assert [t.arch_str for t in reopened.trials()] == [trial.arch_str]


def test_budget_adds_the_next_best_candidates_and_a_rerun_resumes(
    tmp_path, tiny_task, tiny_space, tiny
) -> None:
    search = GDAS(epochs=3, batch_size=64, bn_examples=64)
    storage = f"sqlite:///{tmp_path / 'runs.db'}"
    run = run_oneshot(_study(tiny_task, tiny_space, search, storage, "g"), search, budget=2)
    distinct = {c["arch_str"] for c in run.result.candidates}
    expected = min(2, len(distinct | {run.result.arch_str}))
    assert len(run.trials) == expected
    assert run.trials[0].arch == run.result.arch
    if expected == 2:
        others = [c["arch_str"] for c in run.result.candidates if c["arch_str"] != run.result.arch_str]
        assert run.trials[1].arch_str == others[0]  # best weight-sharing score after the derived one
    # same command again: nothing left to train, the log is read back instead of searching again
    again = GDAS(epochs=3, batch_size=64, bn_examples=64)
    rerun = run_oneshot(_study(tiny_task, tiny_space, again, storage, "g"), again, budget=expected)
    assert rerun.trials == [] and again.result_ is None
    assert rerun.result.arch_str == run.result.arch_str


def test_oneshot_strategy_refuses_optimize_and_describes_the_search(tiny_task, tiny_space) -> None:
    strategy = OneShotStrategy(DARTS(epochs=3, order=2))
    described = strategy.describe()
    assert described["name"] == "darts" and described["oneshot"] is True
    assert described["epochs"] == 3 and described["order"] == 2
    assert "space" not in described and "seed" not in described
    study = nf.create_study(space=tiny_space, strategy=strategy, evaluator=TrainEvaluator(tiny_task), seed=0)
    with pytest.raises(ConfigError, match="one-shot search: run it with"):
        study.optimize(budget=1)


def test_run_oneshot_without_training_data_explains(tiny_space) -> None:
    search = DARTS(epochs=1)
    study = nf.create_study(space=tiny_space, strategy=OneShotStrategy(search), evaluator="tabular", seed=0)
    with pytest.raises(ConfigError, match="trains a supernet on real data"):
        run_oneshot(study, search)
    with pytest.raises(ConfigError, match="budget must be an integer >= 1"):
        run_oneshot(study, search, task="digits", budget=0)


def test_a_search_configured_for_another_space_is_refused(tiny_task, tiny_space) -> None:
    search = DARTS(space=nf.get_space("nb201", channels=2, cells_per_stage=1), epochs=1)
    study = _study(tiny_task, tiny_space, search)
    with pytest.raises(ConfigError, match="configured for space"):
        run_oneshot(study, search)


def test_default_log_path_only_for_sqlite_files() -> None:
    assert str(default_log_path("sqlite:///dir/runs.db", "my study/1")) == "dir/runs.my_study_1.oneshot.json"
    assert default_log_path("sqlite://", "s") is None
    assert default_log_path("postgresql://u@h/db", "s") is None
    assert default_log_path(None, "s") is None


# -- the command line ----------------------------------------------------------------------------


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_cli_search_runs_a_one_shot_search_on_digits(capsys, tmp_path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(
        "space_options: {channels: 4, cells_per_stage: 1}\n"
        "strategy_options: {epochs: 2, batch_size: 256, bn_examples: 128}\n"
        "evaluator_options: {epochs: 1, data_fraction: 0.3}\n"
    )
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    args = ["search", "--strategy", "darts", "--space", "nb201", "--dataset", "digits", "--budget", "1"]
    args += ["--config", str(config), "--storage", db, "--name", "d", "--output", "json"]
    code, out, _ = run_cli(capsys, *args)
    assert code == 0
    result = json.loads(out)
    assert result["n_trials"] == 1 and result["states"]["COMPLETE"] == 1
    assert result["best"]["arch_str"] == result["oneshot"]["arch_str"]
    assert result["oneshot"]["epochs"] == 2
    log = json.loads((tmp_path / "cli.d.oneshot.json").read_text())
    assert log["arch_str"] == result["oneshot"]["arch_str"] and len(log["epochs"]) == 2
    # nasflow show reads the study back; running the same command again trains nothing new
    code, out, _ = run_cli(capsys, "show", "d", "--storage", db)
    assert code == 0 and "1 trials (1 complete)" in out
    code, out, _ = run_cli(capsys, *args)
    assert code == 0 and json.loads(out)["n_trials"] == 1


def test_cli_lists_one_shot_searches_and_rejects_unknown_strategies(capsys) -> None:
    code, out, _ = run_cli(capsys, "list", "strategies")
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines()}
    for name in ("darts", "darts+", "fairdarts", "gdas", "enas", "spos", "rsws"):
        assert "(one-shot)" in lines[name]
    assert "(one-shot)" not in lines["evolution"]
    code, _, err = run_cli(capsys, "search", "--strategy", "dartz", "--storage", "sqlite://")
    assert code == 2
    assert "unknown strategy 'dartz'" in err and "one-shot searches: darts, darts+" in err
    code, _, err = run_cli(capsys, "search", "--strategy", "spos", "--seconds", "5", "--storage", "sqlite://")
    assert code == 2 and "seconds does not apply to the one-shot search 'spos'" in err


@pytest.mark.slow
@pytest.mark.parametrize("name", ["darts", "darts+", "fairdarts", "gdas", "enas", "spos", "rsws"])
def test_every_search_runs_on_the_darts_space(name, tiny_task) -> None:
    space = nf.get_space("darts", channels=4, layers=3, stem_multiplier=1, nodes=2)
    options = {"epochs": 1, "batch_size": 96, "bn_examples": 64, "seed": 0, "space": space}
    if name in ("spos", "rsws"):
        options["candidates"] = 4
    if name == "enas":
        options.update(controller_steps=2, derive_samples=3)
    search = nf.get_oneshot(name, **options)
    result = search.fit(tiny_task)
    assert space.is_valid(result.arch)
    assert result.arch_str.startswith("Genotype(normal=[")
    assert 0.0 <= result.score <= 100.0
    assert len(result.epochs) == 1


def test_inherited_weights_are_stored_and_exports_fine_tune_from_them(
    tmp_path, tiny_task, tiny_space, tiny
) -> None:
    import torch

    search = DARTS(**tiny)
    storage = f"sqlite:///{tmp_path / 'runs.db'}"
    study = _study(tiny_task, tiny_space, search, storage, "ft")
    (trial,) = run_oneshot(study, search).trials
    (stored,) = nf.load_study("ft", storage).results("inherited_weights")
    assert stored.payload["trial_number"] == trial.number and stored.payload["canonical"] == trial.canonical
    assert stored.payload["source"] == "darts"
    # the file holds exactly the supernet's weights for the derived network
    weights = torch.load(stored.payload["path"])
    expected = search.supernet.extract(trial.arch).state_dict()
    assert weights.keys() == expected.keys()
    assert all(torch.equal(weights[k], expected[k].cpu()) for k in weights)

    (result,) = study.export(
        fine_tune=True,
        retrain_epochs=1,
        formats="torchscript",
        robustness=False,
        latency=False,
        output_dir=tmp_path / "out",
    )
    assert result.card["training"]["init_weights"] == stored.payload["path"]
    with pytest.raises(ConfigError, match="not both"):
        study.export(fine_tune=True, init_weights=stored.payload["path"], output_dir=tmp_path / "out2")


def test_fine_tune_without_inherited_weights_is_a_clear_error(tmp_path, tiny_task, tiny_space) -> None:
    study = nf.create_study(
        space=tiny_space, strategy="random", evaluator=TrainEvaluator(tiny_task, epochs=1), seed=1
    )
    study.optimize(budget=1)
    with pytest.raises(ConfigError, match="trial 0 has no inherited weights"):
        study.export(fine_tune=True, output_dir=tmp_path / "out")
