"""Neuroevolution with weight inheritance: tournament, aging, inheritance, trials, reproducibility."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

import nasflow as nf
from nasflow.morphism import Neuroevolution
from nasflow.space.macro import MacroSpace
from nasflow.tasks import Task

SPACE = MacroSpace(max_layers=3, widths=(8, 16), stem_channels=8)
TINY = {"epochs_per_child": 1, "initial_epochs": 1, "data_fraction": 0.1}


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def task() -> Task:
    return nf.load_task("digits")


def alive_after(history: list[dict], population_size: int, upto: int) -> list[int]:
    """Indices alive once the networks before ``upto`` were added (the oldest die first)."""
    return [r["index"] for r in history[:upto]][-population_size:]


def test_tournament_aging_and_inheritance(task: Task) -> None:
    study = nf.create_study(space=SPACE, strategy="random", evaluator=nf.FunctionEvaluator(lambda a: 0.0))
    search = Neuroevolution(
        space=SPACE, population_size=2, sample_size=2, n_children=3, p_mutation=0.0, seed=1, **TINY
    )
    result = search.fit(task, study=study)
    history = result.history
    assert len(history) == 5 and result.total_epochs == 5
    assert [r["parent"] for r in history[:2]] == [None, None]
    for record in history[2:]:
        # sample_size == population_size: the parent is the most accurate living member
        alive = alive_after(history, 2, record["index"])
        expected = max(alive, key=lambda i: (history[i]["accuracy"], -i))
        assert record["parent"] == expected
        assert record["lineage_epochs"] == history[expected]["lineage_epochs"] + 1
        assert len(record["morphisms"]) == 1 and not record["morphisms"][0].startswith("mutate")
    assert [t.state for t in study.trials()] == [nf.TrialState.COMPLETE] * 5
    assert [t.arch_str for t in study.trials()] == [r["arch"] for r in history]
    assert result.best_accuracy == max(r["accuracy"] for r in history)
    assert SPACE.format(search.derive()) == result.best_record["arch"]


def test_mutation_children_inherit_fitting_weights(task: Task) -> None:
    search = Neuroevolution(
        space=SPACE, population_size=2, sample_size=1, n_children=2, p_mutation=1.0, seed=2, **TINY
    )
    history = search.fit(task).history
    for record in history[2:]:
        parent = history[record["parent"]]
        (description,) = record["morphisms"]
        assert description.startswith(f"mutate to {record['arch']} (")
        assert int(description.split("(")[1].split()[0]) >= 8  # at least stem (6) and head (2)
        assert SPACE.canonical(SPACE.parse(record["arch"])) != SPACE.canonical(SPACE.parse(parent["arch"]))


def test_same_seed_same_evolution(task: Task) -> None:
    def run(seed: int) -> list[tuple]:
        search = Neuroevolution(
            space=SPACE, population_size=2, sample_size=1, n_children=2, seed=seed, **TINY
        )
        return [(r["arch"], r["parent"], r["accuracy"]) for r in search.fit(task).history]

    assert run(4) == run(4)
    assert run(4) != run(5)


def test_settings_are_checked() -> None:
    with pytest.raises(nf.ConfigError, match=r"sample_size \(4\) must not exceed population_size \(3\)"):
        Neuroevolution(population_size=3, sample_size=4)
    with pytest.raises(nf.ConfigError, match="p_mutation must be a probability"):
        Neuroevolution(p_mutation=1.5)
    with pytest.raises(nf.ConfigError, match="epochs_per_child must be an integer >= 1"):
        Neuroevolution(epochs_per_child=0)
    assert Neuroevolution(seed=3).describe()["population_size"] == 8
