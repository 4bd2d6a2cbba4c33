"""export_study end to end: model selection, the card and its files, the stored result, a standalone
run of the exported files without nasflow, seeds, transfer, fine-tuning, and every bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import nasflow as nf
from nasflow.errors import ConfigError, DataError, NasflowError
from nasflow.export import pipeline
from nasflow.export.formats import run_onnx
from nasflow.export.pipeline import export_study, select_trials
from nasflow.export.retrain import model_seed
from nasflow.export.validate import accuracy
from nasflow.objectives.metrics import count_macs, count_parameters
from nasflow.space.base import DecisionSpace
from nasflow.space.nb201 import NB201Space
from nasflow.tasks import load_task

CELL = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"
QUICK = {"retrain_epochs": 1, "robustness": False, "latency": False, "formats": ("torchscript",)}


def _numbers(trials) -> list[int]:
    return [t.number for t in trials]


# -- selection -------------------------------------------------------------------------------------
def test_top_k_takes_distinct_networks_feasible_first(make_study, cells) -> None:
    study = make_study(constraints=["params<=1000"])
    study.add_trial(study.space.parse(cells["dead_a"]), {"accuracy": 95.0, "params": 500})
    study.add_trial(
        study.space.parse(cells["dead_b"]), {"accuracy": 96.0, "params": 500}
    )  # same network as trial 0
    study.add_trial(
        study.space.parse(cells["cell"]), {"accuracy": 97.0, "params": 5000}
    )  # best but infeasible
    study.add_trial(study.space.parse(cells["other"]), {"accuracy": 90.0, "params": 800})
    study.add_trial(study.space.parse(cells["other"]), {"params": 800})  # no accuracy: FAILED
    assert _numbers(select_trials(study, top=1)) == [1]
    assert _numbers(select_trials(study, top=3)) == [1, 3, 2]
    assert _numbers(select_trials(study, top=10)) == [1, 3, 2]  # only three distinct networks
    assert _numbers(select_trials(study, trial=0)) == [0]


def test_pareto_front_is_exported_best_first_objective_first(make_study, cells) -> None:
    study = make_study(objectives=["accuracy:max", "params:min"])
    study.add_trial(study.space.parse(cells["dead_a"]), {"accuracy": 95.0, "params": 500})
    study.add_trial(study.space.parse(cells["cell"]), {"accuracy": 97.0, "params": 5000})
    study.add_trial(
        study.space.parse(cells["other"]), {"accuracy": 90.0, "params": 800}
    )  # dominated by trial 0
    assert _numbers(select_trials(study, pareto=True)) == [1, 0]


def test_selection_errors_name_the_problem(make_study, cells) -> None:
    study = make_study()
    with pytest.raises(NasflowError, match="no completed trial to export"):
        select_trials(study)
    study.add_trial(study.space.parse(cells["cell"]), {"params": 1.0})  # FAILED: no accuracy
    with pytest.raises(NasflowError, match="no completed trial to export"):
        select_trials(study)
    study.add_trial(study.space.parse(cells["other"]), {"accuracy": 90.0})
    with pytest.raises(
        ConfigError, match=r"trial 0 of study 's' is FAILED \(the evaluator returned no finite"
    ):
        select_trials(study, trial=0)
    with pytest.raises(ConfigError, match=r"has no trial 7; trial numbers: 0\.\.1"):
        select_trials(study, trial=7)
    with pytest.raises(ConfigError, match="top must be an integer >= 1, got 0"):
        select_trials(study, top=0)
    with pytest.raises(ConfigError, match="not both"):
        select_trials(study, trial=1, pareto=True)
    with pytest.raises(ConfigError, match="cannot be combined"):
        select_trials(study, top=2, trial=1)


# -- bad input fails before any training --------------------------------------------------------
@pytest.fixture
def no_training(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("training started before the input was checked")

    monkeypatch.setattr(pipeline, "retrain", fail)


def test_bad_options_fail_before_training(make_study, cells, tmp_path, no_training) -> None:
    study = make_study()
    study.add_trial(study.space.parse(cells["cell"]), {"accuracy": 90.0})
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match=r"output folder .*a-file/models.* is not writable"):
        export_study(study, output_dir=blocker / "models")
    with pytest.raises(ConfigError, match="exists and is not a folder"):
        export_study(study, output_dir=blocker)
    with pytest.raises(ConfigError, match="unknown export format"):
        export_study(study, formats="onnx,keras", output_dir=tmp_path / "out")
    with pytest.raises(ConfigError, match="seeds must be an integer >= 1"):
        export_study(study, seeds=0, output_dir=tmp_path / "out")
    corrupt = tmp_path / "weights.pt"
    corrupt.write_bytes(b"\x00garbage")
    with pytest.raises(ConfigError, match="not a readable PyTorch state dict"):
        export_study(study, init_weights=corrupt, output_dir=tmp_path / "out")
    with pytest.raises(DataError, match="does not exist"):
        export_study(study, transfer_data=tmp_path / "missing.npz", output_dir=tmp_path / "out")
    with pytest.raises(ConfigError, match="retrain_epochs"):
        export_study(study, retrain_epochs=0, output_dir=tmp_path / "out")


def test_weights_for_another_network_fail_before_training(
    make_study, cells, digits, tmp_path, no_training
) -> None:
    study = make_study()
    study.add_trial(study.space.parse(cells["cell"]), {"accuracy": 90.0})
    other = NB201Space(channels=4, cells_per_stage=1).build(study.space.parse(cells["other"]), digits)
    torch.save(other.state_dict(), tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="does not fit the network"):
        export_study(study, init_weights=tmp_path / "other.pt", output_dir=tmp_path / "out")


def test_a_space_without_networks_cannot_be_exported(tmp_path, no_training) -> None:
    study = nf.create_study(
        space=DecisionSpace({"width": [8, 16]}),
        strategy="random",
        evaluator=nf.FunctionEvaluator(lambda a: 1.0),
    )
    study.add_trial({"width": 8}, {"accuracy": 1.0})
    with pytest.raises(NasflowError, match="cannot build networks"):
        export_study(study, output_dir=tmp_path)


# -- the full export -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One trial exported with the default settings but one epoch: ONNX, TorchScript, robustness, latency."""
    folder = tmp_path_factory.mktemp("export")
    storage = f"sqlite:///{folder / 'study.db'}"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        study = nf.create_study(
            space=NB201Space(channels=4, cells_per_stage=1),
            strategy="random",
            evaluator=nf.TrainEvaluator(epochs=1, data_fraction=0.25),
            storage=storage,
            name="full",
            seed=3,
        )
        arch = study.space.parse(CELL)
        study.add_trial(arch, {"accuracy": 80.0})
        study.add_trial(arch.replace(**{"3<-0": "nor_conv_3x3"}), {"accuracy": 91.5})
        messages: list[str] = []
        (result,) = study.export(output_dir=folder / "models", retrain_epochs=1, progress=messages.append)
    finally:
        torch.set_num_threads(threads)
    return {"study": study, "storage": storage, "result": result, "messages": messages, "folder": folder}


@pytest.mark.slow
def test_card_has_the_documented_keys_and_files(exported) -> None:
    result, card = exported["result"], exported["result"].card
    assert result.model == "trial-1" and result.trial_number == 1
    assert result.directory == exported["folder"] / "models" / "trial-1"
    required = {
        "card_version", "model", "created_at", "study", "architecture", "task", "training", "metrics",
        "robustness", "transfer", "cost", "exports", "files", "software",
    }  # fmt: skip
    assert required <= set(card)
    assert card["card_version"] == 1 and card["model"] == "trial-1" and card["created_at"].endswith("+00:00")
    assert {
        "name",
        "trial_number",
        "space",
        "strategy",
        "objectives",
        "constraints",
        "seed",
        "search_metrics",
    } <= set(card["study"])
    assert card["study"]["search_metrics"] == {"accuracy": 91.5} and card["study"]["seed"] == 3
    assert card["study"]["strategy"] == "random" and card["study"]["objectives"] == ["accuracy:max"]
    assert set(card["architecture"]) >= {"string", "arch", "canonical", "diagram"}
    assert card["architecture"]["arch"]["3<-0"] == "nor_conv_3x3"
    training_keys = {
        "data", "epochs", "batch_size", "lr", "optimizer", "momentum", "weight_decay", "label_smoothing",
        "seeds", "init_weights", "seconds", "settings_from",
    }  # fmt: skip
    assert training_keys <= set(card["training"])
    assert card["training"]["settings_from"] == "study evaluator" and card["training"]["init_weights"] is None
    assert card["training"]["seeds"] == [model_seed(3, 1, 0)] and card["training"]["epochs"] == 1
    assert {
        "val_accuracy_search",
        "test_accuracy",
        "test_accuracy_std",
        "test_accuracy_per_seed",
        "test_loss",
    } <= set(card["metrics"])
    assert card["metrics"]["val_accuracy_search"] == 91.5 and card["metrics"]["test_accuracy_std"] == 0.0
    assert card["transfer"] is None
    assert (
        "the search trained on 0.25 of the training split; retraining used all of train+val" in card["notes"]
    )
    assert set(card["cost"]) == {"params", "flops", "latency_ms"}
    assert set(card["software"]) == {"python", "nasflow", "torch", "numpy", "onnx", "onnxruntime", "platform"}
    for name, file in (("onnx", "model.onnx"), ("torchscript", "model.pt")):
        entry = card["exports"][name]
        assert entry["file"] == file and entry["same_predictions"] is True and entry["max_abs_diff"] <= 1e-4
    assert card["exports"]["onnx"]["opset"] >= 18
    directory = result.directory
    assert card["files"]["dir"] == str(directory)
    for file in (
        "model.onnx",
        "model.pt",
        "weights.pt",
        "model_card.json",
        "model_card.md",
        "architecture.png",
        "predict.py",
    ):
        assert (directory / file).is_file(), file
    assert (directory / "architecture.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((directory / "model_card.json").read_text()) == card
    markdown = (directory / "model_card.md").read_text()
    assert card["architecture"]["string"] in markdown and "![architecture](architecture.png)" in markdown
    assert f"{card['metrics']['test_accuracy']:.2f}" in markdown
    assert any("exporting onnx, torchscript" in m for m in exported["messages"])


@pytest.mark.slow
def test_metrics_agree_with_the_files_and_the_test_split(exported, digits) -> None:
    result, card = exported["result"], exported["result"].card
    metrics = card["metrics"]
    # ONNX Runtime's accuracy on the test split is the card's test accuracy (one seed: the mean)
    logits = run_onnx(result.directory / "model.onnx", digits.x_test)
    assert (
        accuracy(logits, digits.y_test)
        == metrics["test_accuracy"]
        == card["exports"]["onnx"]["test_accuracy"]
    )
    assert (
        metrics["test_accuracy_per_seed"] == [metrics["test_accuracy"]] == [metrics["exported_test_accuracy"]]
    )
    assert card["exports"]["torchscript"]["test_accuracy"] == metrics["test_accuracy"]
    # the saved weights are the exported model: same predictions, same cost
    study = exported["study"]
    network = study.space.build(study.space.parse(card["architecture"]["string"]), digits)
    network.load_state_dict(torch.load(result.directory / "weights.pt", weights_only=True))
    network.eval()
    with torch.inference_mode():
        eager = network(torch.from_numpy(digits.x_test)).numpy()
    np.testing.assert_allclose(eager, logits, atol=1e-4)
    assert card["cost"]["params"] == count_parameters(network)
    assert card["cost"]["flops"] == count_macs(network, digits.input_shape)
    assert card["task"] == {
        "name": "digits",
        "input_shape": [1, 8, 8],
        "num_classes": 10,
        "sizes": {"train": len(digits.y_train), "val": len(digits.y_val), "test": len(digits.y_test)},
    }
    rows = card["robustness"]
    assert [(r["perturbation"], r["severity"]) for r in rows] == [
        ("gaussian_noise", 0.1),
        ("gaussian_noise", 0.25),
        ("gaussian_noise", 0.5),
        ("gaussian_noise", 1.0),
        ("shift", 1.0),
        ("shift", 2.0),
        ("occlusion", 0.25),
        ("occlusion", 0.5),
    ]
    assert all(0 <= r["accuracy"] <= 100 for r in rows)
    latency = card["cost"]["latency_ms"]
    for runtime in ("eager", "onnxruntime"):
        assert latency[runtime]["median_ms"] > 0 and latency[runtime]["runtime"] == runtime
        assert latency[runtime]["batch_size"] == 1 and latency[runtime]["threads"] == 1


@pytest.mark.slow
def test_the_card_is_stored_in_the_study_database(exported) -> None:
    reopened = nf.load_study("full", storage=exported["storage"])
    stored = reopened.results("export")
    assert len(stored) == 1 and stored[0].result_id == exported["result"].result_id
    assert stored[0].payload == exported["result"].card


_STANDALONE = r"""
import contextlib, io, json, runpy, sys
sys.modules["nasflow"] = None  # as if nasflow were not installed
try:
    import nasflow
except ImportError:
    pass
else:
    raise SystemExit("nasflow is importable")
folder, inputs = sys.argv[1], sys.argv[2]
sys.argv = ["predict.py", inputs, "--json"]
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        runpy.run_path(folder + "/predict.py", run_name="__main__")
    except SystemExit as exit:
        assert exit.code in (0, None), exit.code
onnx = json.loads(out.getvalue())["predictions"]
import numpy as np, torch
module = torch.jit.load(folder + "/model.pt")
with torch.inference_mode():
    script = module(torch.from_numpy(np.load(inputs))).argmax(1).tolist()
loaded = sys.modules.get("nasflow") is not None
print(json.dumps({"onnx": onnx, "torchscript": script, "nasflow_loaded": loaded}))
"""


@pytest.mark.slow
def test_exported_files_run_without_nasflow(exported, digits, tmp_path) -> None:
    directory = exported["result"].directory
    np.save(tmp_path / "x_test.npy", digits.x_test)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    done = subprocess.run(
        [sys.executable, "-I", "-c", _STANDALONE, str(directory), str(tmp_path / "x_test.npy")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["nasflow_loaded"] is False
    y = digits.y_test
    assert result["onnx"] == result["torchscript"]
    card_accuracy = exported["result"].card["metrics"]["test_accuracy"]
    assert 100.0 * int((np.array(result["onnx"]) == y).sum()) / len(y) == card_accuracy


# -- options ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_several_seeds_report_mean_and_std_and_export_the_first(make_study, cells, tmp_path) -> None:
    study = make_study(seed=5)
    study.add_trial(study.space.parse(cells["cell"]), {"accuracy": 90.0})
    (result,) = export_study(study, seeds=2, output_dir=tmp_path, **QUICK)
    metrics, training = result.card["metrics"], result.card["training"]
    a, b = metrics["test_accuracy_per_seed"]
    assert training["seeds"] == [model_seed(5, 0, 0), model_seed(5, 0, 1)]
    assert metrics["test_accuracy"] == pytest.approx((a + b) / 2)
    assert metrics["test_accuracy_std"] == pytest.approx(abs(a - b) / np.sqrt(2))
    assert metrics["exported_test_accuracy"] == a == result.card["exports"]["torchscript"]["test_accuracy"]
    assert training["seconds_total"] >= training["seconds"] > 0
    assert set(result.card["exports"]) == {"torchscript"} and not (result.directory / "predict.py").exists()


@pytest.mark.slow
def test_a_study_that_trained_nothing_uses_default_settings(tmp_path, cells) -> None:
    study = nf.create_study(
        space=NB201Space(channels=4, cells_per_stage=1),
        strategy="random",
        evaluator=nf.FunctionEvaluator(lambda arch: 50.0),
        name="fn",
        seed=0,
    )
    study.add_trial(study.space.parse(cells["cell"]), {"accuracy": 50.0})
    (result,) = study.export(output_dir=tmp_path, task="digits", **QUICK)
    card = result.card
    assert (
        card["training"]["settings_from"] == "defaults" and card["training"]["lr"] == nf.TrainEvaluator().lr
    )
    assert any("trains no networks" in note for note in card["notes"])
    assert card["task"]["name"] == "digits" and len(study.results("export")) == 1


@pytest.mark.slow
def test_transfer_trains_the_architecture_on_other_data(make_study, cells, digits, tmp_path) -> None:
    # another task: the digits 0, 1 and 2 turned a quarter
    keep = np.concatenate([digits.y_train, digits.y_test]) <= 2
    x = np.rot90(np.concatenate([digits.x_train, digits.x_test])[keep], axes=(2, 3)).copy()
    y = np.concatenate([digits.y_train, digits.y_test])[keep]
    np.savez(tmp_path / "rotated.npz", X=x, y=y)
    study = make_study()
    study.add_trial(study.space.parse(cells["cell"]), {"accuracy": 90.0})
    (result,) = export_study(
        study, transfer_data=tmp_path / "rotated.npz", output_dir=tmp_path / "out", **QUICK
    )
    transfer = result.card["transfer"]
    expected = load_task(data=tmp_path / "rotated.npz")
    assert transfer["data"] == str(tmp_path / "rotated.npz") and transfer["num_classes"] == 3
    assert transfer["sizes"] == expected.describe()["sizes"] and sum(transfer["sizes"].values()) == len(y)
    assert 0 <= transfer["test_accuracy"] <= 100 and transfer["epochs"] == 1
    assert "## Transfer" in (result.directory / "model_card.md").read_text()


@pytest.mark.slow
def test_fine_tuning_from_given_weights_is_recorded(make_study, cells, digits, tmp_path) -> None:
    study = make_study()
    study.add_trial(study.space.parse(cells["cell"]), {"accuracy": 90.0})
    with torch.random.fork_rng():
        torch.manual_seed(0)
        start = study.space.build(study.space.parse(cells["cell"]), digits)
    torch.save(start.state_dict(), tmp_path / "start.pt")
    (result,) = export_study(study, init_weights=tmp_path / "start.pt", output_dir=tmp_path / "out", **QUICK)
    assert result.card["training"]["init_weights"] == str((tmp_path / "start.pt").resolve())
    assert any(note.startswith("fine-tuned from the weights") for note in result.card["notes"])
