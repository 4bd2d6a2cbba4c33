"""ZeroCostEvaluator and PrescreenEvaluator: metrics, seeding, the fixed batch, pruning and rebuilding.

A tiny MLP space defined here has a closed-form parameter count, which makes the ``params`` proxy a
hand-checkable screening signal.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import nasflow as nf
from nasflow import catalog
from nasflow.errors import ConfigError, UnknownNameError
from nasflow.estimators import zero_cost
from nasflow.estimators.base import EvalContext
from nasflow.estimators.tabular import TabularEvaluator
from nasflow.estimators.train import TrainEvaluator
from nasflow.estimators.zero_cost import PrescreenEvaluator, ZeroCostEvaluator
from nasflow.proxies import score
from nasflow.space.architecture import Architecture
from nasflow.space.base import DecisionSpace
from nasflow.space.nb201 import NB201Space
from nasflow.tasks import load_task


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # tiny networks gain nothing from threads, and on a busy machine they only wait for each other
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class TinyMLPSpace(DecisionSpace):
    """Flatten, ``depth`` ReLU layers of ``width`` units, a linear classifier."""

    def __init__(self) -> None:
        super().__init__({"width": [1, 2, 4, 8, 16, 32], "depth": [1, 2]}, name="tiny_mlp")

    def build(self, arch: Architecture, task: Any = None) -> nn.Module:
        features = int(np.prod(task.input_shape))
        width, layers = int(arch["width"]), [nn.Flatten()]
        for _ in range(int(arch["depth"])):
            layers += [nn.Linear(features, width), nn.ReLU()]
            features = width
        return nn.Sequential(*layers, nn.Linear(features, task.num_classes))


def mlp_params(arch: Architecture) -> float:
    """64 digit pixels -> width (-> width) -> 10 classes, with biases."""
    w = int(arch["width"])
    return float(75 * w + 10 + (int(arch["depth"]) - 1) * (w * w + w))


def width_accuracy(arch: Architecture) -> dict[str, float]:
    return {"accuracy": float(arch["width"])}


ARCH = Architecture({"width": 8, "depth": 2})


# -- ZeroCostEvaluator ------------------------------------------------------------------------------
def test_metrics_are_the_proxies_of_the_network_seeded_by_the_context() -> None:
    evaluator = ZeroCostEvaluator(["synflow", "naswot", "snip", "params"], batch_size=32)
    evaluator.setup(TinyMLPSpace())
    measurement = evaluator.evaluate(ARCH, EvalContext(seed=5))
    assert set(measurement.metrics) == {"synflow", "naswot", "snip", "params"}
    assert measurement.metrics["params"] == mlp_params(ARCH) == 682.0
    with torch.random.fork_rng():
        torch.manual_seed(5)
        net = TinyMLPSpace().build(ARCH, load_task("digits"))
    x, y = evaluator.batch()
    for name in ("synflow", "naswot", "snip"):
        assert measurement.metrics[name] == score(name, net, x, y, seed=5)
    assert measurement.cost_seconds > 0
    # same seed, same scores; another seed draws other weights
    assert evaluator.evaluate(ARCH, EvalContext(seed=5)).metrics == measurement.metrics
    other = evaluator.evaluate(ARCH, EvalContext(seed=6)).metrics
    assert other["synflow"] != measurement.metrics["synflow"] and other["params"] == 682.0


def test_the_batch_is_fixed_training_examples_chosen_by_split_seed() -> None:
    task = load_task("digits")
    x, y = ZeroCostEvaluator(batch_size=32).batch()
    assert x.shape == (32, 1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    # training examples, each with its own label
    flat = task.x_train.reshape(len(task.x_train), -1).round(6)
    lookup = {tuple(r): label for r, label in zip(flat, task.y_train)}
    assert [lookup[tuple(r)] for r in x.reshape(32, -1).numpy().round(6)] == y.tolist()
    again, _ = ZeroCostEvaluator(batch_size=32).batch()
    other, _ = ZeroCostEvaluator(batch_size=32, split_seed=1).batch()
    assert torch.equal(x, again) and not torch.equal(x, other)
    huge, _ = ZeroCostEvaluator(batch_size=100_000).batch()
    assert len(huge) == len(task.y_train)


def test_without_a_task_the_official_network_is_scored_on_a_synthetic_cifar_batch() -> None:
    space = NB201Space(channels=4, cells_per_stage=1)
    arch = space.parse(
        "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|"
    )
    evaluator = ZeroCostEvaluator(["synflow", "jacob_cov"], task=None, batch_size=8)
    evaluator.setup(space)
    x, y = evaluator.batch()
    assert x.shape == (8, 3, 32, 32) and 0 <= int(y.min()) and int(y.max()) < 10
    metrics = evaluator.evaluate(arch, EvalContext(seed=1)).metrics
    with torch.random.fork_rng():
        torch.manual_seed(1)
        net = space.build(arch, None)
    assert metrics == {"synflow": score("synflow", net, x), "jacob_cov": score("jacob_cov", net, x)}


def test_describe_rebuilds_and_pickles_without_the_batch() -> None:
    evaluator = nf.get_evaluator("zero-cost", proxy=["params", "grad_norm"], batch_size=16, split_seed=2)
    assert isinstance(evaluator, ZeroCostEvaluator)
    evaluator.setup(TinyMLPSpace())
    expected = evaluator.evaluate(ARCH, EvalContext(seed=0)).metrics
    rebuilt = catalog.rebuild(catalog.EVALUATORS, evaluator.describe())
    assert rebuilt.describe() == evaluator.describe()
    rebuilt.setup(TinyMLPSpace())
    assert rebuilt.evaluate(ARCH, EvalContext(seed=0)).metrics == expected
    copy = pickle.loads(pickle.dumps(evaluator))
    assert copy._batch is None
    assert copy.evaluate(ARCH, EvalContext(seed=0)).metrics == expected


def test_a_study_can_search_on_a_proxy() -> None:
    study = nf.create_study(
        space=TinyMLPSpace(),
        strategy="random",
        evaluator=ZeroCostEvaluator("params"),
        objectives=["params:max"],
        seed=0,
    )
    study.optimize(budget=8)
    trials = study.trials()
    assert all(
        t.state is nf.TrialState.COMPLETE and t.metrics == {"params": mlp_params(t.arch)} for t in trials
    )
    assert study.best().metrics["params"] == max(mlp_params(t.arch) for t in trials)


def test_zero_cost_settings_are_checked() -> None:
    with pytest.raises(UnknownNameError, match="unknown proxy 'synflw'"):
        ZeroCostEvaluator("synflw")
    with pytest.raises(ConfigError, match="at least one proxy"):
        ZeroCostEvaluator([])
    with pytest.raises(ConfigError, match="twice"):
        ZeroCostEvaluator(["snip", "snip"])
    with pytest.raises(UnknownNameError, match="unknown task 'cifar'"):
        ZeroCostEvaluator(task="cifar")
    with pytest.raises(ConfigError, match="batch_size must be an integer >= 1"):
        ZeroCostEvaluator(batch_size=0)
    with pytest.raises(ConfigError, match="input_shape"):
        ZeroCostEvaluator(task=None, input_shape=(3, 0, 32))
    with pytest.raises(ConfigError, match="needs setup"):
        ZeroCostEvaluator().evaluate(ARCH, EvalContext())
    with pytest.raises(ConfigError, match="bad options for evaluator 'zero-cost'"):
        nf.get_evaluator("zero-cost", proxies=["snip"])


# -- PrescreenEvaluator -----------------------------------------------------------------------------
def test_prescreen_prunes_below_the_running_quantile_in_a_real_study() -> None:
    evaluator = PrescreenEvaluator(nf.FunctionEvaluator(width_accuracy), proxy="params", keep=0.5, warmup=5)
    study = nf.create_study(space=TinyMLPSpace(), strategy="random", evaluator=evaluator, seed=0)
    study.optimize(budget=30)
    trials = study.trials()
    values = [mlp_params(t.arch) for t in trials]
    assert list(evaluator.history) == values
    states = [t.state for t in trials]
    assert nf.TrialState.PRUNED not in states[:5]
    for i, trial in enumerate(trials[5:], start=5):
        limit = float(np.quantile(values[:i], 0.5))
        if values[i] < limit:
            assert trial.state is nf.TrialState.PRUNED
            assert trial.metrics == {"params": values[i]}
            assert trial.error == (
                f"pre-screened out: params = {values[i]:.6g} is below {limit:.6g}, the 0.5 quantile of the "
                f"{i} scores seen so far"
            )
        else:
            assert trial.state is nf.TrialState.COMPLETE
            assert trial.metrics == {"accuracy": float(trial.arch["width"]), "params": values[i]}
    assert 3 <= states.count(nf.TrialState.PRUNED) <= 20
    assert study.best().state is nf.TrialState.COMPLETE


def test_prescreen_never_prunes_during_warmup() -> None:
    evaluator = PrescreenEvaluator(nf.FunctionEvaluator(width_accuracy), proxy="params", keep=0.01, warmup=12)
    study = nf.create_study(space=TinyMLPSpace(), strategy="random", evaluator=evaluator, seed=1)
    study.optimize(budget=12)
    assert all(t.state is nf.TrialState.COMPLETE for t in study.trials())
    assert evaluator.threshold() is not None  # the next trial would be screened


def test_threshold_is_the_linear_quantile_and_minus_inf_is_always_pruned() -> None:
    evaluator = PrescreenEvaluator(nf.FunctionEvaluator(width_accuracy), proxy="params", keep=0.5, warmup=10)
    assert evaluator.threshold() is None
    zero_cost._HISTORIES[evaluator._key] = [float(v) for v in range(1, 10)]
    assert evaluator.threshold() is None  # 9 < warmup
    zero_cost._HISTORIES[evaluator._key].append(10.0)
    assert evaluator.threshold() == 5.5
    zero_cost._HISTORIES[evaluator._key][:5] = [-np.inf] * 5
    limit = evaluator.threshold()
    assert limit is not None and np.isfinite(limit) and -np.inf < limit < 6.0
    del zero_cost._HISTORIES[evaluator._key]


def test_copies_share_the_history_within_a_process() -> None:
    evaluator = PrescreenEvaluator(nf.FunctionEvaluator(width_accuracy), proxy="params", warmup=0)
    evaluator.setup(TinyMLPSpace())
    copy = pickle.loads(pickle.dumps(evaluator))
    metrics = copy.evaluate(ARCH, EvalContext(seed=0)).metrics
    assert metrics == {"accuracy": 8.0, "params": 682.0}
    assert evaluator.history == copy.history == (682.0,)
    small = Architecture({"width": 1, "depth": 1})
    with pytest.raises(nf.TrialPruned, match="params = 85 is below 682") as caught:
        evaluator.evaluate(small, EvalContext(seed=0))
    assert caught.value.metrics == {"params": 85.0}
    assert PrescreenEvaluator(nf.FunctionEvaluator(width_accuracy), proxy="params").history == ()


def test_the_proxy_scores_the_network_the_inner_evaluator_measures() -> None:
    train = TrainEvaluator(epochs=1, split_seed=3)
    screen = PrescreenEvaluator(train, proxy="synflow", keep=0.25, warmup=3).screen
    assert (screen.task_name, screen.split_seed, screen.proxies) == ("digits", 3, ["synflow"])
    assert PrescreenEvaluator(TabularEvaluator(), proxy="naswot").screen.task_name is None
    assert PrescreenEvaluator(nf.FunctionEvaluator(width_accuracy)).screen.task_name == "digits"
    custom = ZeroCostEvaluator("snip", batch_size=8)
    assert PrescreenEvaluator(train, proxy=custom).screen is custom


def test_prescreen_describe_rebuilds_it() -> None:
    evaluator = nf.get_evaluator("prescreen", inner="tabular", proxy="synflow", keep=0.3, warmup=4)
    description = evaluator.describe()
    assert description["inner"] == TabularEvaluator().describe()
    assert description["proxy"]["task"] is None and description["keep"] == 0.3
    rebuilt = catalog.rebuild(catalog.EVALUATORS, description)
    assert isinstance(rebuilt, PrescreenEvaluator) and rebuilt.describe() == description


def test_prescreen_settings_are_checked() -> None:
    inner = nf.FunctionEvaluator(width_accuracy)
    for keep in (0, 1, 1.5, "half"):
        with pytest.raises(ConfigError, match="keep must be a number in \\(0, 1\\)"):
            PrescreenEvaluator(inner, keep=keep)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="warmup must be an integer >= 0"):
        PrescreenEvaluator(inner, warmup=-1)
    with pytest.raises(ConfigError, match="exactly one proxy"):
        PrescreenEvaluator(inner, proxy=ZeroCostEvaluator(["snip", "params"]))
    with pytest.raises(UnknownNameError, match="unknown evaluator 'tabluar'"):
        PrescreenEvaluator("tabluar")
    with pytest.raises(ConfigError, match="must describe a 'zero-cost' evaluator"):
        PrescreenEvaluator(inner, proxy={"name": "train"})
