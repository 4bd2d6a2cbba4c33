"""Export a network to ONNX and TorchScript, and verify each file against the PyTorch model.

Verification runs the exported file in its own runtime (ONNX Runtime, ``torch.jit.load``) on the real
test inputs and compares with the eager model: the largest absolute difference of the logits must be
at most :data:`TOLERANCE` and every arg-max prediction must be the same.
"""

from __future__ import annotations

import importlib
import logging
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nasflow.errors import ConfigError, NasflowError
from nasflow.export.validate import accuracy

#: format name -> file written in the model's folder
FORMATS: dict[str, str] = {"onnx": "model.onnx", "torchscript": "model.pt"}
#: largest allowed absolute difference between an exported model's logits and the eager ones
TOLERANCE = 1e-4
#: the oldest ONNX opset accepted; the exporter's current default is used
MIN_OPSET = 18
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
INSTALL_HINT = "pip install 'nasflow[export]'"
_ONNX_MODULES = ("onnx", "onnxruntime", "onnxscript")
_BATCH = 1024


class ExportError(NasflowError):
    """A model could not be exported, or the exported file does not reproduce the PyTorch model."""


def check_formats(formats: str | Iterable[str]) -> tuple[str, ...]:
    """The requested formats in a fixed order; ``"onnx,torchscript"`` strings are split at commas.

    Raises:
        ConfigError: an unknown format name.
    """
    if isinstance(formats, str):
        formats = [formats]
    names = [part.strip().lower() for item in formats for part in str(item).split(",") if part.strip()]
    unknown = [n for n in names if n not in FORMATS]
    if unknown:
        raise ConfigError(f"unknown export format(s) {unknown}; allowed: {list(FORMATS)}")
    return tuple(n for n in FORMATS if n in names)


def require_onnx() -> None:
    """Check that the ONNX packages are importable, naming the extra to install when they are not."""
    for name in _ONNX_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            raise ConfigError(
                f"ONNX export needs the package {name!r}, which is not installed; run {INSTALL_HINT} "
                "(or export only TorchScript with formats=('torchscript',))"
            ) from None


def _example(input_shape: Sequence[int]) -> torch.Tensor:
    # batch 2: torch.export treats a batch of 1 as a constant, which would defeat the dynamic batch
    return torch.zeros((2, *(int(d) for d in input_shape)), dtype=torch.float32)


def export_onnx(model: nn.Module, path: Path, input_shape: Sequence[int]) -> int:
    """Write ``model`` as a single ONNX file with a dynamic batch dimension; returns its opset."""
    import onnx

    model.eval()
    # the exporter logs warnings about optional packages (torchvision ops) that do not concern the user
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # exporter internals warn about their own deprecations
            torch.onnx.export(
                model,
                (_example(input_shape),),
                str(path),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                external_data=False,
                verbose=False,
            )
    except Exception as exc:
        raise ExportError(
            f"ONNX export of {type(model).__name__} failed: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        logger.setLevel(level)
    proto = onnx.load(str(path), load_external_data=False)
    opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < MIN_OPSET:
        raise ExportError(f"the ONNX exporter wrote opset {opset}; nasflow needs >= {MIN_OPSET}")
    return int(opset)


def export_torchscript(model: nn.Module, path: Path, input_shape: Sequence[int]) -> None:
    """Write ``model`` as a traced TorchScript file (loadable with ``torch.jit.load``, no Python code)."""
    model.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # torch marks torch.jit as deprecated in favour of torch.export, but TorchScript files are
            # still what C++/mobile runtimes load; the warning is not the user's concern
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(model, (_example(input_shape),))
            traced.save(str(path))
    except Exception as exc:
        raise ExportError(
            f"TorchScript export of {type(model).__name__} failed: {type(exc).__name__}: {exc}"
        ) from exc


def run_onnx(path: Path, x: np.ndarray, threads: int = 1) -> np.ndarray:
    """Logits of the ONNX file at ``path`` for ``x`` under ONNX Runtime (CPU)."""
    import onnxruntime as ort  # type: ignore[import-untyped]

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x = np.ascontiguousarray(x, dtype=np.float32)
    parts = [session.run(None, {INPUT_NAME: x[i : i + _BATCH]})[0] for i in range(0, len(x), _BATCH)]
    return np.concatenate(parts)


def run_torchscript(path: Path, x: np.ndarray) -> np.ndarray:
    """Logits of the TorchScript file at ``path`` for ``x``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # see export_torchscript
        module = torch.jit.load(str(path), map_location="cpu")
    module.eval()
    x = np.ascontiguousarray(x, dtype=np.float32)
    with torch.inference_mode():
        parts = [module(torch.from_numpy(x[i : i + _BATCH])).numpy() for i in range(0, len(x), _BATCH)]
    return np.concatenate(parts)


def compare(reference: np.ndarray, outputs: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """How exported logits match the eager ones: max abs difference, same predictions, accuracy."""
    if outputs.shape != reference.shape:
        return {"max_abs_diff": float("inf"), "same_predictions": False, "test_accuracy": float("nan")}
    return {
        "max_abs_diff": float(np.abs(outputs.astype(np.float64) - reference).max()) if len(y) else 0.0,
        "same_predictions": bool((outputs.argmax(axis=1) == reference.argmax(axis=1)).all()),
        "test_accuracy": accuracy(outputs, y),
    }


def export_and_verify(
    model: nn.Module,
    directory: Path,
    formats: Sequence[str],
    x_test: np.ndarray,
    y_test: np.ndarray,
    reference: np.ndarray,
) -> dict[str, dict[str, Any]]:
    """Export ``model`` in each format into ``directory`` and verify it on the test inputs.

    Args:
        reference: the eager model's logits for ``x_test``.

    Returns:
        ``format -> {"file", "max_abs_diff", "same_predictions", "test_accuracy", ...}``.

    Raises:
        ExportError: an export failed, or a file's outputs differ by more than :data:`TOLERANCE` or
            change a prediction.
    """
    input_shape = x_test.shape[1:]
    results: dict[str, dict[str, Any]] = {}
    for name in formats:
        path = directory / FORMATS[name]
        if name == "onnx":
            opset = export_onnx(model, path, input_shape)
            check = compare(reference, run_onnx(path, x_test), y_test)
            entry = {"file": path.name, "opset": opset, "runtime": "onnxruntime", **check}
            entry["dynamic_batch"] = True
        else:
            export_torchscript(model, path, input_shape)
            check = compare(reference, run_torchscript(path, x_test), y_test)
            entry = {"file": path.name, "method": "trace", "runtime": "torch.jit", **check}
        if not check["max_abs_diff"] <= TOLERANCE or not check["same_predictions"]:
            raise ExportError(
                f"the {name} export in {str(path)!r} does not reproduce the PyTorch model on the test "
                f"inputs: max abs difference {check['max_abs_diff']:.3g} (allowed {TOLERANCE:g}), same "
                f"predictions: {check['same_predictions']}"
            )
        results[name] = entry
    return results
