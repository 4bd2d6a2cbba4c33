"""Stratified train/validation/test splits shared by every task loader.

Splits are stratified so that small classes are represented in every split, and are a pure function
of the labels and ``split_seed``: the same data and seed always give the same split, whatever the
global random state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from nasflow.errors import ConfigError, DataError
from nasflow.tasks.base import Task

#: where the search for the smallest splittable class size gives up; only fractions summing to
#: almost exactly 1 need more, and the error message then just reports this bound
_MAX_MIN_CLASS_SIZE = 10_000


def check_fractions(val_fraction: float, test_fraction: float) -> tuple[float, float]:
    """Return the fractions as floats or raise :class:`ConfigError` saying what is allowed."""
    checked = []
    for field, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{field} must be a number in (0, 1), got {value!r}")
        value = float(value)
        if not (0.0 < value < 1.0):
            raise ConfigError(f"{field} must be in (0, 1) (exclusive), got {value}")
        checked.append(value)
    val, test = checked
    if val + test >= 1.0:
        raise ConfigError(
            f"val_fraction + test_fraction must be below 1 so that training data remains, "
            f"got {val} + {test} = {val + test}"
        )
    return val, test


def _split_sizes(count: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """``(train, val, test)`` sizes for one class; every size is at least 1 when possible."""
    n_val = max(1, round(count * val_fraction))
    n_test = max(1, round(count * test_fraction))
    return count - n_val - n_test, n_val, n_test


def min_class_size(val_fraction: float, test_fraction: float) -> int:
    """The fewest examples a class needs to appear in all three splits."""
    for count in range(3, _MAX_MIN_CLASS_SIZE):
        if _split_sizes(count, val_fraction, test_fraction)[0] >= 1:
            return count
    return _MAX_MIN_CLASS_SIZE


def stratified_split(
    labels: np.ndarray,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split example indices into ``(train, val, test)``, stratified by class.

    Each class is shuffled with its own deterministic permutation and cut according to the
    fractions (rounded per class, at least one example in each split). The returned index arrays
    are sorted, so examples keep their original order inside each split.

    Raises:
        ConfigError: a fraction is outside (0, 1) or they leave no training data.
        DataError: some class has too few examples to appear in all three splits.
    """
    val_fraction, test_fraction = check_fractions(val_fraction, test_fraction)
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    parts: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        n_train, n_val, _ = _split_sizes(len(members), val_fraction, test_fraction)
        if n_train < 1:
            name = class_names[int(label)] if class_names is not None else str(label)
            need = min_class_size(val_fraction, test_fraction)
            raise DataError(
                f"class {name!r} has only {len(members)} example(s); splitting it into train, "
                f"validation and test (val_fraction={val_fraction}, test_fraction={test_fraction}) "
                f"needs at least {need}. Add examples or remove the class."
            )
        members = rng.permutation(members)
        parts[0].append(members[:n_train])
        parts[1].append(members[n_train : n_train + n_val])
        parts[2].append(members[n_train + n_val :])
    train, val, test = (np.sort(np.concatenate(p)) for p in parts)
    return train, val, test


def stratified_subset(labels: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Sorted indices of a deterministic, class-balanced ``fraction`` of the examples.

    Every class keeps at least one example so that a small fraction never drops a class.
    """
    if not (0.0 < fraction <= 1.0):
        raise ConfigError(f"data fraction must be in (0, 1], got {fraction}")
    labels = np.asarray(labels)
    if fraction == 1.0:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    kept = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        keep = max(1, math.ceil(len(members) * fraction))
        kept.append(rng.permutation(members)[:keep])
    return np.sort(np.concatenate(kept))


def make_task(
    name: str,
    images: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    split_seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
) -> Task:
    """Split ready-made ``(N, C, H, W)`` float32 images and ``0..K-1`` labels into a :class:`Task`.

    Loaders call this last, after they have checked and converted their data.
    """
    if len(class_names) < 2:
        only = f" ({class_names[0]!r})" if class_names else ""
        raise DataError(
            f"data set {name!r} has only one class{only}; classification needs at least two classes"
        )
    train, val, test = stratified_split(labels, val_fraction, test_fraction, split_seed, class_names)
    images = np.ascontiguousarray(images, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    return Task(
        name=name,
        x_train=images[train],
        y_train=labels[train],
        x_val=images[val],
        y_val=labels[val],
        x_test=images[test],
        y_test=labels[test],
        num_classes=len(class_names),
        class_names=[str(c) for c in class_names],
    )
