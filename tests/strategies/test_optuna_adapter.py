"""The Optuna adapters (tpe, optuna-nsga2): fidelity to Optuna, exact resume, invalid and failed trials."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import numpy as np
import pytest

import nasflow as nf
from nasflow.objectives.spec import Objective
from nasflow.space.architecture import Architecture
from nasflow.strategies.optuna_adapter import CONSTRAINT_KEY, OptunaNSGA2, OptunaTPE
from nasflow.testing.spaces import constrained_space
from nasflow.testing.strategies import synthetic_score
from nasflow.trial import FrozenTrial, TrialState

optuna = pytest.importorskip("optuna")

ONE = [Objective("accuracy", "max")]
TWO = [Objective("accuracy", "max"), Objective("params", "min")]


def result(number: int, arch: Architecture, objectives: list[Objective], failed: bool = False) -> FrozenTrial:
    if failed:
        return FrozenTrial(number, arch, "", "", TrialState.FAILED, error="boom")
    metrics = {o.metric: synthetic_score(arch, o.metric) for o in objectives}
    values = tuple(metrics[o.metric] for o in objectives)
    return FrozenTrial(number, arch, "", "", TrialState.COMPLETE, metrics, values)


Pending = list[tuple[int, Architecture]]


def run_async(
    strategy: nf.Strategy,
    objectives: list[Objective],
    rounds: int,
    pending: Pending | None = None,
    number: int = 0,
) -> tuple[list[Architecture], Pending, int]:
    """Each round asks 3, then tells all pending but the newest, newest first (out of order).

    One trial is always still pending between rounds, as with parallel workers; every fifth fails.
    """
    proposed: list[Architecture] = []
    pending = list(pending or [])
    for _ in range(rounds):
        for arch in strategy.ask(3):
            pending.append((number, arch))
            proposed.append(arch)
            number += 1
        keep = pending.pop()
        for n, arch in reversed(pending):
            strategy.tell(result(n, arch, objectives, failed=n % 5 == 4))
        pending = [keep]
    return proposed, pending, number


def resumes_exactly(
    factory: Callable[[], nf.Strategy], space: nf.DecisionSpace, objectives: list[Objective], rounds: int
) -> None:
    whole = factory()
    whole.setup(space, objectives, 5)
    expected, _, _ = run_async(whole, objectives, rounds)

    stopped = factory()
    stopped.setup(space, objectives, 5)
    head, pending, number = run_async(stopped, objectives, rounds // 2)
    state = json.loads(json.dumps(stopped.state_dict()))
    assert len(state["pending"]) == 1  # a trial is still being evaluated when the state is saved
    resumed = factory()
    resumed.setup(space, objectives, 777)  # the loaded state must override the new seed
    resumed.load_state_dict(state)
    tail, _, _ = run_async(resumed, objectives, rounds - rounds // 2, pending, number)
    assert head + tail == expected


def test_tpe_proposes_exactly_what_plain_optuna_tpe_proposes() -> None:
    space = nf.get_space("nb201")
    names = list(space.decisions())
    ours = OptunaTPE()
    ours.setup(space, ONE, 3)
    mine = []
    for number in range(25):
        (arch,) = ours.ask(1)
        mine.append(arch)
        ours.tell(result(number, arch, ONE))

    plain: list[Architecture] = []

    def objective(trial) -> float:
        arch = Architecture({k: trial.suggest_categorical(k, list(space.decisions()[k])) for k in names})
        plain.append(arch)
        return synthetic_score(arch, "accuracy")

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=3))
    study.optimize(objective, n_trials=25)
    assert mine == plain


def test_tpe_resumes_exactly_with_pending_trials_and_failures() -> None:
    resumes_exactly(OptunaTPE, nf.get_space("nb201"), ONE, rounds=10)


def test_multi_objective_tpe_resumes_exactly() -> None:
    resumes_exactly(lambda: OptunaTPE(n_startup_trials=5), constrained_space(), TWO, rounds=8)


def test_nsga2_resumes_exactly_across_generations() -> None:
    # population 4: the 30 trials span several generations, so parent selection and its cache matter
    resumes_exactly(lambda: OptunaNSGA2(population_size=4), nf.get_space("nb201"), TWO, rounds=10)


def test_nsga2_uses_the_objective_directions_and_generations() -> None:
    strategy = OptunaNSGA2(population_size=4)
    strategy.setup(nf.get_space("nb201"), TWO, 0)
    for number in range(20):
        (arch,) = strategy.ask(1)
        strategy.tell(result(number, arch, TWO))
    study = strategy._study
    assert study.directions == [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]
    key = optuna.samplers.NSGAIISampler._get_generation_key()
    assert max(t.system_attrs[key] for t in study.trials) >= 3


def test_invalid_proposals_are_pruned_in_optuna_and_never_reach_the_study() -> None:
    space = constrained_space()
    strategy = OptunaTPE(n_startup_trials=5)
    strategy.setup(space, ONE, 0)
    for number in range(40):
        (arch,) = strategy.ask(1)
        assert space.is_valid(arch)
        strategy.tell(result(number, arch, ONE))
    states = [t.state for t in strategy._study.trials]
    pruned = states.count(optuna.trial.TrialState.PRUNED)
    assert pruned > 0 and states.count(optuna.trial.TrialState.COMPLETE) == 40


def test_fallback_to_a_random_valid_architecture_after_the_retries() -> None:
    # only depth=1, width=8 is valid: Optuna almost never proposes it, so the fallback has to
    space = nf.DecisionSpace(
        {"depth": [1, 2, 3, 4, 5, 6], "width": [8, 16, 32, 64, 128, 256]},
        is_valid=lambda a: a["depth"] * a["width"] <= 8,
    )
    strategy = OptunaTPE(max_invalid_retries=2)
    strategy.setup(space, ONE, 0)
    for number in range(10):
        (arch,) = strategy.ask(1)
        assert space.is_valid(arch)
        strategy.tell(result(number, arch, ONE))
    complete = [t for t in strategy._study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 10  # fallbacks are added to Optuna's history once their result is known
    assert all(t.params == {"depth": "1", "width": "8"} for t in complete)


def test_failed_pruned_and_foreign_trials_and_constraint_violations() -> None:
    space = nf.get_space("nb201")
    strategy = OptunaTPE()
    strategy.setup(space, ONE, 0)
    a, b, c = strategy.ask(3)
    strategy.tell(FrozenTrial(1, b, "", "", TrialState.FAILED, error="nan loss"))
    strategy.tell(FrozenTrial(2, c, "", "", TrialState.PRUNED))
    done = result(0, a, ONE)
    strategy.tell(FrozenTrial(0, a, "", "", done.state, done.metrics, done.values, violation=2.5))
    foreign = space.sample(np.random.default_rng(1))
    strategy.tell(result(3, foreign, ONE))  # a trial it never asked for is learned from
    trials = strategy._study.trials
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "PRUNED", "COMPLETE"]
    assert trials[0].constraints == {"violation": 2.5} and trials[3].constraints == {"violation": 0.0}
    assert trials[0].system_attrs[CONSTRAINT_KEY] == 2.5
    assert trials[3].params == dict(foreign)


def test_non_string_choices_map_back_exactly() -> None:
    space = nf.DecisionSpace({"x": [1, 1.0, True, None, "1"], "y": [0, 1]})
    strategy = OptunaTPE(n_startup_trials=5)
    strategy.setup(space, ONE, 0)
    proposed = []
    for number in range(40):
        (arch,) = strategy.ask(1)
        proposed.append(arch)
        score = 1.0 if arch["x"] is True else 0.0  # only the bool True is good, not 1 or 1.0
        strategy.tell(FrozenTrial(number, arch, "", "", TrialState.COMPLETE, {"accuracy": score}, (score,)))
    labels = [json.dumps(a["x"]) for a in proposed]
    assert set(labels) == {"1", "1.0", "true", "null", '"1"'}
    # Optuna sees text labels, which map back to the exact values proposed
    assert [t.params["x"] for t in strategy._study.trials] == labels
    # TPE learned that only True scores: well above the 1 in 5 of random choices
    assert labels[10:].count("true") >= 12


def test_tpe_beats_random_on_a_structured_objective() -> None:
    space = nf.DecisionSpace({f"b{i}": ["a", "b", "c", "d"] for i in range(8)})

    def score(arch: Architecture) -> float:
        return float(sum(v == "a" for v in arch.values()))

    def best(strategy: nf.Strategy, seed: int) -> float:
        strategy.setup(space, ONE, seed)
        found = 0.0
        for number in range(60):
            (arch,) = strategy.ask(1)
            found = max(found, score(arch))
            strategy.tell(FrozenTrial(number, arch, "", "", TrialState.COMPLETE, {}, (score(arch),)))
        return found

    tpe = [best(OptunaTPE(), s) for s in range(4)]
    random = [best(nf.get_strategy("random"), s) for s in range(4)]
    assert np.mean(tpe) - np.mean(random) >= 1.5


def test_missing_optuna_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)  # makes `import optuna` raise ImportError
    with pytest.raises(nf.ConfigError, match=r"pip install 'nasflow\[optuna\]'"):
        nf.get_strategy("tpe")


def test_bad_settings_raise_config_errors_naming_them() -> None:
    with pytest.raises(nf.ConfigError, match="n_startup_trials"):
        nf.get_strategy("tpe", n_startup_trials=-1)
    with pytest.raises(nf.ConfigError, match="max_invalid_retries"):
        nf.get_strategy("tpe", max_invalid_retries=-2)
    with pytest.raises(nf.ConfigError, match="population_size"):
        nf.get_strategy("optuna-nsga2", population_size=1)
    with pytest.raises(nf.ConfigError, match="crossover_prob"):
        nf.get_strategy("optuna-nsga2", crossover_prob=1.5)
    assert nf.get_strategy("tpe").describe() == {
        "name": "tpe",
        "n_startup_trials": 10,
        "n_ei_candidates": 24,
        "multivariate": None,
        "constant_liar": True,
        "max_invalid_retries": 20,
    }


@pytest.mark.parametrize("name", ["tpe", "optuna-nsga2"])
def test_a_stored_study_resumes_like_an_uninterrupted_one(name: str, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    options = {"population_size": 6} if name == "optuna-nsga2" else {"n_startup_trials": 5}

    def make(**extra):
        return nf.create_study(
            space=constrained_space(),
            strategy=nf.get_strategy(name, **options),
            evaluator=nf.FunctionEvaluator(lambda arch: {"accuracy": synthetic_score(arch)}),
            seed=11,
            **extra,
        )

    make(storage=url, name="s").optimize(budget=12)
    resumed = nf.load_study(
        "s",
        url,
        space=constrained_space(),
        strategy=nf.get_strategy(name, **options),
        evaluator=nf.FunctionEvaluator(lambda arch: {"accuracy": synthetic_score(arch)}),
    )
    resumed.optimize(budget=25)
    straight = make()
    straight.optimize(budget=25)
    assert [t.arch for t in resumed.trials()] == [t.arch for t in straight.trials()]
