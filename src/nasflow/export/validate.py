"""Validate a retrained network: held-out test accuracy, robustness to perturbed inputs, seed spread.

The perturbations follow the corruption benchmarks of Hendrycks & Dietterich ("Benchmarking Neural
Network Robustness to Common Corruptions and Perturbations", 2019) in spirit, scaled to small images:
additive Gaussian noise with a standard deviation relative to the data's, translations by whole pixels
(zero fill, as in Engstrom et al., "Exploring the Landscape of Spatial Robustness", 2019) and occlusion
by a square of zeros (cutout, DeVries & Taylor, 2017, used here as a test-time perturbation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from nasflow.errors import ConfigError
from nasflow.estimators.train import TrainEvaluator

#: noise standard deviations, as multiples of the training data's standard deviation
NOISE_LEVELS: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)
#: shifts in pixels; each is averaged over the four directions
SHIFTS: tuple[int, ...] = (1, 2)
#: occluding square's side as a fraction of the image's shorter side
OCCLUSIONS: tuple[float, ...] = (0.25, 0.5)
#: the four unit directions (rows, columns) a shift is averaged over: down, up, right, left
DIRECTIONS: tuple[tuple[int, int], ...] = ((1, 0), (-1, 0), (0, 1), (0, -1))

_BATCH = 1024


def score(model: nn.Module, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Accuracy in percent and mean cross-entropy of ``model`` (eval mode) on arrays ``(x, y)``."""
    return TrainEvaluator.score(model, torch.from_numpy(_float32(x)), torch.from_numpy(y.astype(np.int64)))


def predict(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """Logits of ``model`` in eval mode for the images ``x`` (N, C, H, W), as a float32 array."""
    model.eval()
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(x), _BATCH):
            outputs.append(model(torch.from_numpy(_float32(x[start : start + _BATCH]))).numpy())
    return np.concatenate(outputs) if outputs else np.zeros((0, 0), dtype=np.float32)


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    """Percent of rows whose arg-max is the label (the formula the training loop uses)."""
    return 100.0 * int((logits.argmax(axis=1) == y).sum()) / len(y)


def gaussian_noise(x: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """``x`` plus independent Gaussian noise of standard deviation ``std`` (0 gives ``x`` back)."""
    if std < 0 or not math.isfinite(std):
        raise ConfigError(f"noise std must be a finite number >= 0, got {std}")
    if std == 0:
        return x.copy()
    return (x + rng.normal(0.0, std, size=x.shape)).astype(x.dtype)


def shift(x: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Images ``x`` (N, C, H, W) moved by ``rows`` down and ``cols`` right; uncovered pixels are 0."""
    out = np.zeros_like(x)
    h, w = x.shape[-2:]
    if abs(rows) >= h or abs(cols) >= w:
        return out
    src_r, dst_r = (
        (slice(0, h - rows), slice(rows, h)) if rows >= 0 else (slice(-rows, h), slice(0, h + rows))
    )
    src_c, dst_c = (
        (slice(0, w - cols), slice(cols, w)) if cols >= 0 else (slice(-cols, w), slice(0, w + cols))
    )
    out[..., dst_r, dst_c] = x[..., src_r, src_c]
    return out


def occlusion_side(fraction: float, height: int, width: int) -> int:
    """Side in pixels of the occluding square: ``fraction`` of the shorter side, at least 1."""
    if not 0 < fraction <= 1:
        raise ConfigError(f"occlusion fraction must be in (0, 1], got {fraction}")
    return max(1, round(fraction * min(height, width)))


def occlude(x: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray:
    """Each image with a ``side`` x ``side`` square of zeros (all channels) at a random position.

    The top-left corner is uniform over the positions where the square fits, drawn per image from
    ``rng`` (rows first, then columns).
    """
    n, _, h, w = x.shape
    side = min(side, h, w)
    tops = rng.integers(0, h - side + 1, size=n)
    lefts = rng.integers(0, w - side + 1, size=n)
    out = x.copy()
    for i in range(n):
        out[i, :, tops[i] : tops[i] + side, lefts[i] : lefts[i] + side] = 0
    return out


def robustness(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    *,
    data_std: float,
    seed: int,
    noise_levels: Sequence[float] = NOISE_LEVELS,
    shifts: Sequence[int] = SHIFTS,
    occlusions: Sequence[float] = OCCLUSIONS,
) -> list[dict[str, object]]:
    """Accuracy under each perturbation and severity, one row each.

    Rows are ``{"perturbation", "severity", "accuracy"}``: ``gaussian_noise`` (severity: std as a
    multiple of ``data_std``), ``shift`` (pixels; mean accuracy over the four directions) and
    ``occlusion`` (side as a fraction of the image's shorter side; the square's pixel size is in
    ``"pixels"``). Random draws come from ``seed``, so the table is reproducible.
    """
    rng = np.random.default_rng(seed)
    rows: list[dict[str, object]] = []
    for level in noise_levels:
        noisy = gaussian_noise(x, float(level) * data_std, rng)
        rows.append(_row("gaussian_noise", level, accuracy(predict(model, noisy), y)))
    for pixels in shifts:
        per_direction = [
            accuracy(predict(model, shift(x, dr * pixels, dc * pixels)), y) for dr, dc in DIRECTIONS
        ]
        rows.append(_row("shift", pixels, float(np.mean(per_direction))))
    for fraction in occlusions:
        side = occlusion_side(float(fraction), x.shape[2], x.shape[3])
        row = _row("occlusion", fraction, accuracy(predict(model, occlude(x, side, rng)), y))
        row["pixels"] = side
        rows.append(row)
    return rows


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1 in the denominator; 0 for a single value)."""
    if not values:
        raise ConfigError("mean_std needs at least one value")
    array = np.asarray(values, dtype=float)
    std = float(array.std(ddof=1)) if len(array) > 1 else 0.0
    return float(array.mean()), std


def _row(perturbation: str, severity: float, acc: float) -> dict[str, object]:
    return {"perturbation": perturbation, "severity": float(severity), "accuracy": float(acc)}


def _float32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)
