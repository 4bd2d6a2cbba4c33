"""TabularEvaluator: NAS-Bench-201 look-ups."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest

from nasflow.benchmarks import nb201 as nb201_module
from nasflow.errors import ConfigError, EvaluationError, UnknownNameError
from nasflow.estimators.base import EvalContext
from nasflow.estimators.tabular import TabularEvaluator
from nasflow.space.architecture import Architecture
from nasflow.space.base import DecisionSpace

INDEX1 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
BEST_CIFAR10_VAL = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"
)


class StandInSpace:
    """Just enough of the nb201 space for the evaluator: a name and a fixed ``format``."""

    name = "nb201"

    def __init__(self, arch_str: str) -> None:
        self.arch_str = arch_str

    def format(self, arch: Architecture) -> str:
        return self.arch_str


def _ready(arch_str: str = INDEX1, **options: str) -> TabularEvaluator:
    evaluator = TabularEvaluator(**options)
    evaluator.setup(StandInSpace(arch_str))  # type: ignore[arg-type]
    return evaluator


def test_index_1_cifar10() -> None:
    measurement = _ready().evaluate(Architecture(), EvalContext())
    assert measurement.metrics == {"accuracy": 82.834, "test_accuracy": 88.22, "index": 1.0}
    assert measurement.cost_seconds == 0.0


def test_index_1_cifar100() -> None:
    measurement = _ready(dataset="cifar100").evaluate(Architecture(), EvalContext())
    assert measurement.metrics == {"accuracy": 57.8, "test_accuracy": 58.26, "index": 1.0}


def test_lookup_of_best_cifar10_architecture() -> None:
    assert TabularEvaluator().lookup(BEST_CIFAR10_VAL) == {
        "accuracy": 84.892,
        "test_accuracy": 89.03,
        "index": 13714.0,
    }


def test_unknown_arch_string() -> None:
    evaluator = _ready("|not_an_op~0|")
    with pytest.raises(EvaluationError, match=r"'\|not_an_op~0\|' is not in the nb201 table \(15,625"):
        evaluator.evaluate(Architecture(), EvalContext())


def test_unknown_dataset_lists_allowed() -> None:
    with pytest.raises(UnknownNameError, match="no dataset 'imagenet'; allowed: cifar10, cifar100"):
        TabularEvaluator(dataset="imagenet")


def test_unknown_benchmark_lists_allowed() -> None:
    with pytest.raises(UnknownNameError, match="unknown tabular benchmark 'nb301'; allowed: nb201"):
        TabularEvaluator(benchmark="nb301")
    assert issubclass(UnknownNameError, ConfigError)


def test_incompatible_space() -> None:
    space = DecisionSpace({"a": [1, 2]}, name="custom")
    with pytest.raises(ConfigError, match="needs space 'nb201', but the study's space is 'custom'"):
        TabularEvaluator().setup(space)


def test_evaluate_needs_setup() -> None:
    with pytest.raises(ConfigError, match="setup"):
        TabularEvaluator().evaluate(Architecture(), EvalContext())


def test_describe_rebuilds_the_evaluator() -> None:
    evaluator = TabularEvaluator(dataset="cifar100")
    description = evaluator.describe()
    assert description == {"name": "tabular", "benchmark": "nb201", "dataset": "cifar100", "path": None}
    options = {k: v for k, v in description.items() if k != "name"}
    assert TabularEvaluator(**options).lookup(INDEX1)["accuracy"] == 57.8


def test_pickle_is_small_and_works_after_reload() -> None:
    evaluator = _ready()
    blob = pickle.dumps(evaluator)
    assert len(blob) < 10_000
    # A fresh worker process has an empty cache; the copy must reload the table by itself.
    nb201_module._load_cached.cache_clear()
    copy = pickle.loads(blob)
    assert copy._table is None
    assert copy.evaluate(Architecture(), EvalContext()).metrics["accuracy"] == 82.834
    assert copy.describe() == evaluator.describe()


def test_custom_path(tmp_path: Path) -> None:
    plain = tmp_path / "nb201.csv"
    plain.write_bytes(gzip.decompress(nb201_module.shipped_file().read_bytes()))
    evaluator = _ready(path=str(plain))
    assert evaluator.describe()["path"] == str(plain)
    assert evaluator.evaluate(Architecture(), EvalContext()).metrics["test_accuracy"] == 88.22


def test_with_the_real_nb201_space() -> None:
    space_module = pytest.importorskip("nasflow.space.nb201")
    space = space_module.NB201Space()
    evaluator = TabularEvaluator()
    evaluator.setup(space)
    assert evaluator.evaluate(space.parse(INDEX1), EvalContext()).metrics["index"] == 1.0
    # Every architecture the space can produce must be in the table.
    rng = np.random.default_rng(0)
    for _ in range(200):
        metrics = evaluator.evaluate(space.sample(rng), EvalContext()).metrics
        assert 0.0 <= metrics["accuracy"] <= 100.0
    blob = pickle.dumps(evaluator)
    assert len(blob) < 10_000
    assert pickle.loads(blob).evaluate(space.parse(INDEX1), EvalContext()).metrics["accuracy"] == 82.834
