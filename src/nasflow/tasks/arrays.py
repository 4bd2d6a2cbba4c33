"""Tasks from user arrays: a ``.npz`` file with ``X`` (images) and ``y`` (labels), or arrays in memory.

Image layout rule (``layout="auto"``):

* ``(N, H, W)`` is a batch of single-channel images; a channel axis is added.
* ``(N, A, B, C)`` is read channel-first ``(N, C, H, W)`` unless that reading is implausible: when
  the last axis has 1, 3 or 4 entries (grayscale, RGB, RGBA) and the second axis does not, the array
  is taken as channels-last ``(N, H, W, C)`` and transposed. So ``(N, 32, 32, 3)`` is channels-last
  while ``(N, 3, 32, 32)`` and the ambiguous ``(N, 3, 8, 3)`` are channel-first. Pass
  ``layout="nchw"`` or ``layout="nhwc"`` to override the guess.

``uint8`` images are scaled from 0..255 to [0, 1]; other numeric types are used as they are.
Labels may be of any type (ints, floats, strings); the sorted unique values become classes
``0..K-1`` and their string forms become the class names.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from nasflow.errors import ConfigError, DataError
from nasflow.tasks.base import Task
from nasflow.tasks.split import make_task

LAYOUTS = ("auto", "nchw", "nhwc")
_COMMON_CHANNELS = (1, 3, 4)


def _channels_first(x: np.ndarray, layout: str, source: str) -> np.ndarray:
    if x.ndim == 3:
        return x[:, None, :, :]
    if x.ndim != 4:
        raise DataError(
            f"X in {source} has shape {x.shape} ({x.ndim} dimensions); expected images shaped "
            "(N, H, W), (N, C, H, W) or (N, H, W, C)"
        )
    if layout == "nhwc":
        return x.transpose(0, 3, 1, 2)
    if layout == "nchw":
        return x
    looks_channels_last = x.shape[3] in _COMMON_CHANNELS and x.shape[1] not in _COMMON_CHANNELS
    return x.transpose(0, 3, 1, 2) if looks_channels_last else x


def _check_images(x: np.ndarray, source: str) -> np.ndarray:
    if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise DataError(f"X in {source} has non-numeric type {x.dtype}; images must be numbers")
    if np.issubdtype(x.dtype, np.complexfloating):
        raise DataError(f"X in {source} is complex ({x.dtype}); images must be real numbers")
    if len(x) == 0:
        raise DataError(f"X in {source} holds no examples")
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    images = x.astype(np.float32)
    if not np.isfinite(images).all():
        bad = int((~np.isfinite(images)).reshape(len(images), -1).any(axis=1).sum())
        raise DataError(
            f"X in {source} contains NaN or infinite values (in {bad} of {len(images)} examples); "
            "clean or drop those examples first"
        )
    return images


def _encode_labels(y: np.ndarray, source: str) -> tuple[np.ndarray, list[str]]:
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"y in {source} has shape {y.shape}; expected one label per example, shape (N,)")
    if y.dtype == object:
        raise DataError(
            f"y in {source} is an object array; store labels as numbers or fixed-width strings "
            "(e.g. np.asarray(labels, dtype=str))"
        )
    if np.issubdtype(y.dtype, np.floating) and not np.isfinite(y).all():
        raise DataError(f"y in {source} contains NaN or infinite labels")
    classes, codes = np.unique(y, return_inverse=True)
    return codes.reshape(-1).astype(np.int64), [str(c) for c in classes.tolist()]


def task_from_arrays(
    x: np.ndarray,
    y: np.ndarray,
    name: str = "arrays",
    split_seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    layout: str = "auto",
) -> Task:
    """A :class:`Task` from in-memory images ``x`` and labels ``y`` (see the module doc for rules)."""
    if layout not in LAYOUTS:
        raise ConfigError(f"layout must be one of {list(LAYOUTS)}, got {layout!r}")
    source = f"data set {name!r}"
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y):
        raise DataError(f"{source} has {len(x)} images in X but {len(y)} labels in y; they must match")
    images = _check_images(_channels_first(x, layout, source), source)
    labels, class_names = _encode_labels(y, source)
    return make_task(name, images, labels, class_names, split_seed, val_fraction, test_fraction)


def _read_array(archive: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    try:
        return archive[key]
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise DataError(
                f"array {key!r} in {str(path)!r} is an object array, which nasflow does not load; "
                "save X as a numeric array and y as numbers or fixed-width strings"
            ) from None
        raise DataError(f"cannot read array {key!r} from {str(path)!r}: {exc}") from None


def load_npz(
    path: str | os.PathLike[str],
    split_seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    layout: str = "auto",
) -> Task:
    """A :class:`Task` from a ``.npz`` file holding arrays ``X`` and ``y``; named after the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {str(path)!r} does not exist")
    if not zipfile.is_zipfile(path):
        raise DataError(
            f"{str(path)!r} is not a .npz archive; save the data with np.savez(path, X=images, y=labels)"
        )
    try:
        # allow_pickle stays off: a data file must not be able to run code when loaded
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.files)
            if "X" not in keys or "y" not in keys:
                raise DataError(
                    f"{str(path)!r} must hold arrays named 'X' (images) and 'y' (labels); "
                    f"found {keys or 'no arrays'}. Save with np.savez(path, X=images, y=labels)"
                )
            x = _read_array(archive, "X", path)
            y = _read_array(archive, "y", path)
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"cannot read {str(path)!r} as a .npz file: {exc}") from None
    return task_from_arrays(x, y, path.stem, split_seed, val_fraction, test_fraction, layout)
