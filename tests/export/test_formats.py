"""ONNX and TorchScript export, verified on the real digits test inputs; format names; missing packages."""

from __future__ import annotations

import importlib

import numpy as np
import onnx
import pytest
import torch

from nasflow.errors import ConfigError
from nasflow.export import formats
from nasflow.export.formats import ExportError, check_formats, compare, export_and_verify, require_onnx
from nasflow.export.validate import accuracy, predict


@pytest.fixture
def network(space, cells, digits) -> torch.nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return space.build(space.parse(cells["cell"]), digits).eval()


def test_format_names_are_checked_and_ordered() -> None:
    assert check_formats(("onnx", "torchscript")) == ("onnx", "torchscript")
    assert check_formats("torchscript, ONNX") == ("onnx", "torchscript")
    assert check_formats(["TorchScript"]) == ("torchscript",)
    assert check_formats([]) == ()
    with pytest.raises(
        ConfigError, match=r"unknown export format\(s\) \['tflite'\]; allowed: \['onnx', 'torchscript'\]"
    ):
        check_formats("onnx,tflite")


def test_missing_onnx_packages_name_the_extra(monkeypatch) -> None:
    real = importlib.import_module

    def without_onnxruntime(name: str, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(formats.importlib, "import_module", without_onnxruntime)
    with pytest.raises(ConfigError, match=r"'onnxruntime'.*pip install 'nasflow\[export\]'"):
        require_onnx()


def test_compare_on_hand_made_logits() -> None:
    reference = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0]], dtype=np.float32)
    y = np.array([0, 1, 1])
    close = reference.copy()
    close[0, 0] += 2**-14  # exact in float32: 1 + 2^-14
    result = compare(reference, close, y)
    assert result["max_abs_diff"] == 2**-14
    assert result["same_predictions"] is True
    assert result["test_accuracy"] == pytest.approx(200 / 3)
    flipped = reference.copy()
    flipped[2] = [1.0, 2.0]
    changed = compare(reference, flipped, y)
    assert changed["same_predictions"] is False and changed["test_accuracy"] == 100.0
    assert compare(reference, reference[:2], y)["same_predictions"] is False  # wrong shape


@pytest.mark.slow
def test_onnx_and_torchscript_reproduce_the_model_on_the_test_inputs(network, digits, tmp_path) -> None:
    x, y = digits.x_test, digits.y_test
    reference = predict(network, x)
    results = export_and_verify(network, tmp_path, ("onnx", "torchscript"), x, y, reference)
    assert set(results) == {"onnx", "torchscript"}
    for name, entry in results.items():
        assert (tmp_path / entry["file"]).is_file()
        assert entry["max_abs_diff"] <= formats.TOLERANCE and entry["same_predictions"] is True, name
        assert entry["test_accuracy"] == accuracy(reference, y)
    assert results["onnx"]["opset"] >= 18
    proto = onnx.load(str(tmp_path / "model.onnx"))
    onnx.checker.check_model(proto)
    (batch, *rest) = proto.graph.input[0].type.tensor_type.shape.dim
    assert batch.dim_param and [d.dim_value for d in rest] == list(digits.input_shape)  # dynamic batch
    # the exported files run at other batch sizes than the example used to export them
    for n in (1, 5):
        np.testing.assert_allclose(formats.run_onnx(tmp_path / "model.onnx", x[:n]), reference[:n], atol=1e-4)
        np.testing.assert_allclose(
            formats.run_torchscript(tmp_path / "model.pt", x[:n]), reference[:n], atol=1e-4
        )


def test_a_file_that_does_not_reproduce_the_model_fails_verification(
    network, digits, tmp_path, monkeypatch
) -> None:
    x, y = digits.x_test[:50], digits.y_test[:50]
    reference = predict(network, x)
    monkeypatch.setattr(formats, "run_torchscript", lambda path, inputs: reference + 1e-3)
    with pytest.raises(
        ExportError, match=r"torchscript export .* does not reproduce .* max abs difference 0\.001"
    ):
        export_and_verify(network, tmp_path, ("torchscript",), x, y, reference)


def test_an_unexportable_model_gives_an_export_error(digits, tmp_path) -> None:
    class DataDependent(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if float(x.sum()) > 0:  # Python control flow on values cannot be traced into a graph
                return x.flatten(1)[:, :10]
            return -x.flatten(1)[:, :10]

    with pytest.raises(ExportError, match="ONNX export of DataDependent failed"):
        formats.export_onnx(DataDependent(), tmp_path / "m.onnx", digits.input_shape)
