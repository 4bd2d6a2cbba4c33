"""Tiny tasks and spaces shared by the one-shot tests (a few hundred digits, 4-channel cells)."""

from __future__ import annotations

import functools

import pytest
import torch

from nasflow.space.nb201 import NB201Space
from nasflow.tasks import Task, load_task


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # tiny networks gain nothing from threads, and on a busy machine they only wait for each other
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@functools.lru_cache(maxsize=1)
def _tiny_task() -> Task:
    full = load_task("digits")
    return Task(
        name="tiny-digits",
        x_train=full.x_train[:192],
        y_train=full.y_train[:192],
        x_val=full.x_val[:96],
        y_val=full.y_val[:96],
        x_test=full.x_test[:32],
        y_test=full.y_test[:32],
        num_classes=full.num_classes,
        class_names=full.class_names,
    )


@pytest.fixture
def tiny_task() -> Task:
    """192 training and 96 validation digits: a supernet epoch takes a fraction of a second."""
    return _tiny_task()


@pytest.fixture
def tiny_space() -> NB201Space:
    return NB201Space(channels=4, cells_per_stage=1)


@pytest.fixture
def tiny() -> dict[str, int]:
    """Settings that make any one-shot search finish in about a second on ``tiny_task``."""
    return {"epochs": 2, "batch_size": 64, "bn_examples": 64}
