"""From search result to shipped model: retrain, validate, export (ONNX, TorchScript), model card.

Torch's ONNX exporter, onnx and onnxruntime are imported only when a model is exported.
"""

from __future__ import annotations

from nasflow.export.formats import ExportError
from nasflow.export.pipeline import ExportResult, export_study, select_trials

__all__ = ["ExportError", "ExportResult", "export_study", "select_trials"]
