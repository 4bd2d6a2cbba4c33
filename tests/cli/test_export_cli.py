"""``nasflow export``: the table, the card path, JSON output and one-line errors."""

from __future__ import annotations

import json

import pytest
import torch

import nasflow as nf
from nasflow.cli.main import main
from nasflow.space.nb201 import NB201Space

CELL = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"


@pytest.fixture
def storage(tmp_path) -> str:
    """A stored study with one completed trial (recorded, not trained) and one failed one."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    study = nf.create_study(
        space=NB201Space(channels=4, cells_per_stage=1),
        strategy="random",
        evaluator=nf.TrainEvaluator(epochs=1),
        storage=url,
        name="found",
        seed=0,
    )
    study.add_trial(study.space.parse(CELL), {"accuracy": 93.0})
    study.add_trial(study.space.parse(CELL), {"params": 1.0})  # FAILED: no accuracy
    return url


def run(capsys, *args: str) -> tuple[int, str, str]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = main(list(args))
    finally:
        torch.set_num_threads(threads)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_export_prints_a_table_and_the_card_path(capsys, tmp_path, storage) -> None:
    out_dir = tmp_path / "models"
    code, out, err = run(
        capsys, "export", "found", "--storage", storage, "--retrain-epochs", "1",
        "--output-dir", str(out_dir), "--no-latency", "--no-robustness",
    )  # fmt: skip
    assert code == 0, err
    assert "trial-0" in out and "ok (max diff" in out and str(out_dir / "trial-0") in out
    card_line = [line for line in out.splitlines() if line.startswith("model card: ")]
    assert card_line == [f"model card: {out_dir / 'trial-0' / 'model_card.json'}"]
    card = json.loads((out_dir / "trial-0" / "model_card.json").read_text())
    assert f"{card['metrics']['test_accuracy']:.2f}" in out
    assert card["exports"]["onnx"]["test_accuracy"] == card["metrics"]["test_accuracy"]
    assert "trial-0: training seed 1/1 for 1 epochs on train+val" in err  # progress on stderr
    assert nf.load_study("found", storage).results("export")[0].payload == card


@pytest.mark.slow
def test_export_json_output_is_the_list_of_cards(capsys, tmp_path, storage) -> None:
    code, out, err = run(
        capsys, "export", "found", "--storage", storage, "--retrain-epochs", "1", "--format", "torchscript",
        "--output-dir", str(tmp_path), "--no-latency", "--no-robustness", "--seeds", "2", "--output", "json",
    )  # fmt: skip
    assert code == 0, err
    cards = json.loads(out)
    assert [c["model"] for c in cards] == ["trial-0"] and set(cards[0]["exports"]) == {"torchscript"}
    assert len(cards[0]["metrics"]["test_accuracy_per_seed"]) == 2
    assert err == ""  # --output json is quiet


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["export", "ghost"], "ghost"),
        (["export", "found", "--format", "tflite"], "unknown export format(s) ['tflite']"),
        (["export", "found", "--top", "0"], "top must be an integer >= 1"),
        (["export", "found", "--trial", "1"], "trial 1 of study 'found' is FAILED"),
        (["export", "found", "--trial", "9"], "has no trial 9"),
        (["export", "found", "--pareto", "--trial", "0"], "not both"),
        (["export", "found", "--init-weights", "{tmp}/missing.pt"], "does not exist"),
        (["export", "found", "--output-dir", "{tmp}/cli.db/x"], "is not writable"),
        (["export", "found", "--output", "yaml"], "--output must be text or json"),
    ],
)
def test_export_errors_are_one_line_with_exit_code_2(capsys, tmp_path, storage, args, message) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code, _, err = run(capsys, *args, "--storage", storage)
    assert code == 2
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
