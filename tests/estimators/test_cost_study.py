"""Cost metrics in studies: naming latency wraps the evaluator; screening, resume, re-measurement, config."""

from __future__ import annotations

from typing import Any

import pytest
from torch import nn

import nasflow as nf
from nasflow.config import build_components, make_config
from nasflow.estimators import cost as cost_module
from nasflow.estimators.cost import CostEvaluator, remeasure_latency
from nasflow.objectives.latency import LatencyResult


@pytest.fixture
def fake_latency(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """1 ms per 1,000 parameters, so the numbers are exact; records each measured network's size."""
    calls: list[int] = []

    def fake(model: nn.Module, input_shape: Any, **settings: Any) -> LatencyResult:
        params = sum(p.numel() for p in model.parameters())
        calls.append(params)
        value = params / 1000
        return LatencyResult(value, value, 0.0, value, value, 0.0, 30, settings["runtime"], "cpu", 1, 1)

    monkeypatch.setattr(cost_module, "measure_latency", fake)
    return calls


def tiny_study(storage: str | None = None, **options: Any) -> nf.Study:
    return nf.create_study(
        space=nf.get_space("nb201", channels=4, cells_per_stage=1),
        strategy="random",
        evaluator=nf.TrainEvaluator("digits", epochs=1, data_fraction=0.1),
        storage=storage,
        name="costs",
        seed=0,
        **options,
    )


def test_naming_latency_measures_it_and_the_study_resumes_with_the_same_evaluator(
    tmp_path, fake_latency
) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    study = tiny_study(url, objectives=["accuracy:max", "latency_ms:min"])
    assert isinstance(study.evaluator, CostEvaluator) and study.evaluator.metrics == ("latency_ms",)
    study.optimize(budget=3)
    for trial in study.trials():
        assert trial.state is nf.TrialState.COMPLETE
        assert trial.metrics["latency_ms"] == trial.metrics["params"] / 1000
    assert study.config["evaluator"]["name"] == "cost"
    reopened = nf.load_study("costs", url)
    assert isinstance(reopened.evaluator, CostEvaluator)
    assert reopened.evaluator.describe() == study.evaluator.describe()
    # continuing with the same settings is accepted (the wrapped evaluator compares equal)
    tiny_study(url, objectives=["accuracy:max", "latency_ms:min"], load_if_exists=True).optimize(budget=4)
    assert len(nf.load_study("costs", url).trials()) == 4


def test_a_latency_constraint_screens_before_training_and_is_checked_again(tmp_path, fake_latency) -> None:
    study = tiny_study(constraints=["latency_ms<=40"])
    study.optimize(budget=3)
    trials = study.trials()
    trained = [t for t in trials if not t.screened]
    assert len(trained) == 3 and all(t.metrics["latency_ms"] <= 40 for t in trained)
    assert all(t.metrics["latency_ms"] > 40 for t in trials if t.screened)
    # each distinct network was measured once: the training run reused the screening measurement
    assert len(fake_latency) == len({t.canonical for t in trials})
    rows = remeasure_latency(study)
    best = study.best()
    assert rows == [
        {
            "trial": best.number,
            "recorded_ms": best.metrics["latency_ms"],
            "remeasured_ms": best.metrics["latency_ms"],
            "feasible": True,
        }
    ]
    (stored,) = study.results("remeasured_latency")
    assert stored.payload == {"source": "measured", "runtime": "eager", "rows": rows}


def test_evaluators_without_a_task_keep_their_own_latency() -> None:
    # e.g. latency measured on the target phone by the user's function: not replaced by ours
    def on_phone(arch: nf.Architecture) -> dict[str, float]:
        return {"accuracy": 90.0, "latency_ms": 12.5}

    study = nf.create_study(
        space=nf.DecisionSpace({"x": [1, 2]}),
        strategy="random",
        evaluator=nf.FunctionEvaluator(on_phone),
        objectives=["accuracy:max", "latency_ms:min"],
    )
    assert not isinstance(study.evaluator, CostEvaluator)
    study.optimize(budget=1)
    assert study.trials()[0].metrics["latency_ms"] == 12.5


def test_search_config_wraps_the_evaluator_for_latency() -> None:
    config = make_config(
        space="chain", objectives=["accuracy:max", "latency_ms:min"], latency_runtime="onnxruntime"
    )
    evaluator = build_components(config)["evaluator"]
    assert isinstance(evaluator, CostEvaluator)
    assert evaluator.runtime == "onnxruntime" and evaluator.metrics == ("latency_ms",)
    assert (evaluator.batch_size, evaluator.threads) == (1, 1)
    config = make_config(
        space="chain", objectives=["accuracy:max"], constraints=["latency_ms<=3"], latency_batch_size=32
    )
    assert build_components(config)["evaluator"].batch_size == 32
    with pytest.raises(nf.ConfigError, match="latency_batch_size"):
        make_config(latency_batch_size=0)
    assert not isinstance(build_components(make_config(space="chain"))["evaluator"], CostEvaluator)
    with pytest.raises(nf.ConfigError, match="no objective or constraint names latency_ms"):
        build_components(make_config(space="chain", latency_table="lut.json"))


def test_default_strategy_is_bananas_for_one_objective_and_nsga2_for_several() -> None:
    assert make_config().strategy == "bananas"
    assert make_config(objectives=["accuracy:max", "latency_ms:min"]).strategy == "nsga2"
    assert make_config(objectives=["accuracy:max", "params:min"], strategy="random").strategy == "random"


def test_remeasurement_walks_down_to_a_trial_that_still_meets_the_bound(fake_latency, monkeypatch) -> None:
    study = tiny_study(constraints=["latency_ms<=40"])
    study.optimize(budget=3)
    ranked = sorted(study.trials([nf.TrialState.COMPLETE]), key=lambda t: (-t.metrics["accuracy"], t.number))
    best = study.best()
    assert ranked[0].number == best.number
    # the best measures over the bound now (a slow moment of the machine), the next does not
    slow = {best.arch.to_json(): 55.0}
    monkeypatch.setattr(
        study.evaluator, "remeasure", lambda arch: {"latency_ms": slow.get(arch.to_json(), 20.0)}
    )
    rows = remeasure_latency(study)
    assert [(r["trial"], r["remeasured_ms"], r["feasible"]) for r in rows] == [
        (best.number, 55.0, False),
        (ranked[1].number, 20.0, True),
    ]
