"""Classification tasks: built-in data sets and user data (``.npz`` arrays or image folders)."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nasflow.errors import ConfigError, DataError, UnknownNameError
from nasflow.tasks.arrays import load_npz, task_from_arrays
from nasflow.tasks.base import Task
from nasflow.tasks.digits import DESCRIPTION as _DIGITS_DESCRIPTION
from nasflow.tasks.digits import load_digits
from nasflow.tasks.image_folder import load_image_folder
from nasflow.tasks.split import make_task, stratified_split, stratified_subset

#: built-in data set name -> one-line description
BUILTIN_DATASETS: dict[str, str] = {"digits": _DIGITS_DESCRIPTION}

_BUILTIN_LOADERS: dict[str, Callable[..., Task]] = {"digits": load_digits}
_SPLIT_ARGS = ("split_seed", "val_fraction", "test_fraction")


def _call_with_options(loader: Callable[..., Task], what: str, *args: Any, **kwargs: Any) -> Task:
    """Call ``loader``, turning unknown keyword options into a ConfigError that lists the known ones."""
    accepted = set(inspect.signature(loader).parameters)
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        allowed = sorted(accepted - set(_SPLIT_ARGS) - {"path"})
        raise ConfigError(
            f"unknown option(s) {unknown} for {what}; allowed: {allowed or 'none'} "
            f"(besides {', '.join(_SPLIT_ARGS)})"
        )
    return loader(*args, **kwargs)


def load_task(
    dataset: str | None = "digits",
    data: str | os.PathLike[str] | None = None,
    split_seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    **options: Any,
) -> Task:
    """Load a task with a fixed, seeded, stratified train/validation/test split.

    Args:
        dataset: name of a built-in data set (see ``BUILTIN_DATASETS``); ignored when ``data`` is given.
        data: user data: a ``.npz`` file with arrays ``X`` and ``y`` (options: ``layout``) or a folder
            with one sub-folder of images per class (options: ``image_size``, ``mode``).
        split_seed: seed of the split; the same seed always gives the same split.
        val_fraction, test_fraction: fractions of each class held out for validation and test.
        options: loader-specific options, listed above.

    Raises:
        DataError: the data is missing, unreadable or malformed.
        UnknownNameError: ``dataset`` is not a built-in name.
        ConfigError: a fraction or option is invalid.
    """
    split = {"split_seed": split_seed, "val_fraction": val_fraction, "test_fraction": test_fraction}
    if data is not None:
        path = Path(data)
        if path.is_dir():
            return _call_with_options(load_image_folder, "an image folder", path, **split, **options)
        if not path.exists():
            raise DataError(f"data path {str(path)!r} does not exist")
        if path.suffix.lower() != ".npz":
            raise DataError(
                f"data path {str(path)!r} is neither a .npz file nor a folder; pass a .npz file with "
                "arrays X and y, or a folder with one sub-folder of images per class"
            )
        return _call_with_options(load_npz, "a .npz file", path, **split, **options)
    if dataset is None:
        raise ConfigError("no data given: name a built-in dataset or pass user data with data=PATH")
    loader = _BUILTIN_LOADERS.get(dataset)
    if loader is None:
        raise UnknownNameError(
            f"unknown dataset {dataset!r}; built-in datasets: {sorted(BUILTIN_DATASETS)}. "
            "Pass your own data with data=PATH (a .npz file with arrays X and y, or an image folder)"
        )
    return _call_with_options(loader, f"dataset {dataset!r}", **split, **options)


__all__ = [
    "BUILTIN_DATASETS",
    "Task",
    "load_digits",
    "load_image_folder",
    "load_npz",
    "load_task",
    "make_task",
    "stratified_split",
    "stratified_subset",
    "task_from_arrays",
]
