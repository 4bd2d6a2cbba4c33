"""Shared pieces of the export tests: tiny NB201 networks on the digits task and small studies."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import nasflow as nf
from nasflow.space.nb201 import NB201Space
from nasflow.study import Study
from nasflow.tasks import Task, load_task

#: a cell with every kind of operation, and two cells that are the same network (the 1<-0 edge is dead
#: in both: nothing leaves node 1), so they share a canonical key
CELL = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"
DEAD_A = "|nor_conv_1x1~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|none~2|"
DEAD_B = "|avg_pool_3x3~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|none~2|"
OTHER = "|skip_connect~0|+|nor_conv_3x3~0|none~1|+|none~0|nor_conv_1x1~1|skip_connect~2|"


@pytest.fixture(autouse=True)
def _one_thread():
    # two cores shared by several test runs; also keeps float results identical run to run
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def cells() -> dict[str, str]:
    """NB201 cells by role: ``cell``, ``other``, and ``dead_a``/``dead_b`` (the same network)."""
    return {"cell": CELL, "other": OTHER, "dead_a": DEAD_A, "dead_b": DEAD_B}


@pytest.fixture(scope="session")
def digits() -> Task:
    return load_task("digits")


@pytest.fixture
def space() -> NB201Space:
    return NB201Space(channels=4, cells_per_stage=1)


@pytest.fixture
def make_study(tmp_path: Path) -> Callable[..., Study]:
    """A study on a SQLite file in tmp_path whose trials are recorded with given metrics (no training)."""

    def make(
        name: str = "s",
        objectives: list[str] | None = None,
        constraints: list[str] | None = None,
        evaluator: object | None = None,
        seed: int = 0,
    ) -> Study:
        return nf.create_study(
            space=NB201Space(channels=4, cells_per_stage=1),
            strategy="random",
            evaluator=evaluator or nf.TrainEvaluator(epochs=1, batch_size=64),
            objectives=objectives or ["accuracy:max"],
            constraints=constraints or [],
            storage=f"sqlite:///{tmp_path / 'studies.db'}",
            name=name,
            seed=seed,
        )

    return make
