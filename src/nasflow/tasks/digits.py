"""The built-in ``digits`` task: scikit-learn's 8x8 handwritten digits.

It ships with scikit-learn (no download) and is small enough that a small CNN trains on it in a few
seconds on a CPU, which makes it the default task for examples and tests.
"""

from __future__ import annotations

import functools

import numpy as np

from nasflow.tasks.base import Task
from nasflow.tasks.split import make_task

DESCRIPTION = "scikit-learn's 8x8 handwritten digits: 1,797 grayscale images, 10 classes"

#: pixel values in the scikit-learn data are counts of set pixels in 4x4 blocks, hence 0..16
_MAX_PIXEL = 16.0


@functools.lru_cache(maxsize=1)
def _raw_digits() -> tuple[np.ndarray, np.ndarray]:
    # Cached because worker processes may build many tasks from it; callers get copies via make_task.
    from sklearn.datasets import load_digits as sklearn_load_digits

    bunch = sklearn_load_digits()
    images = (bunch.images.astype(np.float32) / _MAX_PIXEL)[:, None, :, :]
    labels = bunch.target.astype(np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def load_digits(split_seed: int = 0, val_fraction: float = 0.2, test_fraction: float = 0.2) -> Task:
    """The digits task: float32 images ``(N, 1, 8, 8)`` in [0, 1], labels 0..9.

    The stratified train/validation/test split (60/20/20 by default) depends only on
    ``split_seed``.
    """
    images, labels = _raw_digits()
    return make_task(
        "digits",
        images,
        labels,
        class_names=[str(d) for d in range(10)],
        split_seed=split_seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
    )
