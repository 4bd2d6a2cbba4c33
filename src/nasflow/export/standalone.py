"""The ``predict.py`` script shipped next to an exported model: classification with numpy + onnxruntime.

The script must run where nasflow (and torch) are not installed, so it is plain text with the
class names and the input shape written into it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

_TEMPLATE = '''"""Classify images with the exported model; needs only numpy and onnxruntime.

Usage:
    python predict.py INPUTS.npy [--model model.onnx] [--json]

INPUTS.npy holds float32 images shaped (N, {shape_text}) or one image shaped ({shape_text}),
preprocessed exactly like the task arrays the model was trained on (see model_card.md). Prints one
line per image: index, predicted class name and its probability; with --json a JSON object with the
class indices, names and probabilities.

Written by nasflow for model {model!r}.
"""

import argparse
import json
import os
import sys

import numpy as np
import onnxruntime as ort

CLASS_NAMES = {class_names!r}
INPUT_SHAPE = {input_shape!r}
HERE = os.path.dirname(os.path.abspath(__file__))


def softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def predict(model_path, images):
    """Class indices and probabilities (N, classes) for float32 images (N, C, H, W)."""
    images = np.asarray(images, dtype=np.float32)
    if images.shape == INPUT_SHAPE:
        images = images[None]
    if images.ndim != 4 or images.shape[1:] != INPUT_SHAPE:
        expected = ", ".join(map(str, INPUT_SHAPE))
        raise ValueError(f"inputs must be shaped (N, {{expected}}), got {{images.shape}}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    logits = np.concatenate(
        [session.run(None, {{name: images[i : i + 1024]}})[0] for i in range(0, len(images), 1024)]
    ) if len(images) else np.zeros((0, len(CLASS_NAMES)), dtype=np.float32)
    probabilities = softmax(logits)
    return probabilities.argmax(axis=1), probabilities


def main(argv=None):
    parser = argparse.ArgumentParser(description="Classify images with the exported ONNX model.")
    parser.add_argument("inputs", help=".npy file of float32 images")
    parser.add_argument("--model", default=os.path.join(HERE, "model.onnx"), help="ONNX file")
    parser.add_argument("--json", action="store_true", help="print JSON instead of lines")
    args = parser.parse_args(argv)
    try:
        images = np.load(args.inputs, allow_pickle=False)
        indices, probabilities = predict(args.model, images)
    except (OSError, ValueError) as exc:
        print(f"error: {{exc}}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({{
            "predictions": [int(i) for i in indices],
            "classes": [CLASS_NAMES[int(i)] for i in indices],
            "probabilities": [float(probabilities[n, i]) for n, i in enumerate(indices)],
        }}))
    else:
        for n, i in enumerate(indices):
            print(f"{{n}}\\t{{CLASS_NAMES[int(i)]}}\\t{{probabilities[n, i]:.4f}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''


def write_predict_script(
    path: Path, model: str, class_names: Sequence[str], input_shape: Sequence[int]
) -> Path:
    """Write the standalone ``predict.py`` for a model with these classes and input shape."""
    shape = tuple(int(d) for d in input_shape)
    text = _TEMPLATE.format(
        model=model,
        class_names=[str(c) for c in class_names],
        input_shape=shape,
        shape_text=", ".join(map(str, shape)),
    )
    path.write_text(text)
    return path
