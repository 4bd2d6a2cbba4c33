"""Multi-objective strategies: NSGA-II, multi-objective aging evolution and the MONAS controller."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import nasflow as nf
from nasflow.errors import ConfigError
from nasflow.objectives.hypervolume import hypervolume_trajectory
from nasflow.objectives.spec import Objective
from nasflow.space.architecture import Architecture
from nasflow.space.nb201 import NB201Space
from nasflow.strategies.fitness import Scored
from nasflow.strategies.mo_evolution import MultiObjectiveEvolution
from nasflow.strategies.monas import MONAS
from nasflow.strategies.nsga2 import NSGA2, environmental_selection
from nasflow.strategies.reinforce import ReinforceStrategy
from nasflow.testing.strategies import drive
from nasflow.trial import FrozenTrial, TrialState

ROOT = Path(__file__).resolve().parents[2]
TWO = [Objective("accuracy", "max"), Objective("params", "min")]
ONE = [Objective("accuracy", "max")]
#: the toy problem: accuracy peaks at TARGET while params grow with every choice, so they conflict
TARGET = (3, 2, 3, 3, 2, 3, 3, 1)
WEIGHTS = (1.0, 1.5, 1.5, 2.5, 2.5, 1.0, 1.5, 2.5)
REFERENCE = (0.0, 50.0)  # accuracy 0 (the lowest is 14), params 50 (the largest is 3 * 15 = 45)


def toy_space() -> nf.DecisionSpace:
    return nf.DecisionSpace({f"x{i}": [0, 1, 2, 3] for i in range(len(TARGET))})


def toy_metrics(arch: Architecture) -> dict[str, float]:
    values = [int(arch[f"x{i}"]) for i in range(len(TARGET))]  # type: ignore[call-overload]
    accuracy = sum(w * (4 - abs(v - t)) for v, t, w in zip(values, TARGET, WEIGHTS))
    params = sum(v * (1 + i % 3) for i, v in enumerate(values))
    return {"accuracy": accuracy, "params": float(params)}


def toy_study(strategy: str | nf.Strategy, seed: int, budget: int, constraints=None) -> nf.Study:
    study = nf.create_study(
        space=toy_space(),
        strategy=strategy,
        evaluator=nf.FunctionEvaluator(toy_metrics),
        objectives=["accuracy:max", "params:min"],
        constraints=constraints,
        seed=seed,
    )
    study.optimize(budget=budget)
    return study


def final_hv(study: nf.Study) -> float:
    return hypervolume_trajectory(study.trials(), TWO, REFERENCE)[-1]


def scored(values: tuple[float, ...], violation: float = 0.0, name: int = 0) -> Scored:
    return Scored(Architecture({"x": name}), values, violation)


def complete(
    number: int, arch: Architecture, values: tuple[float, ...], violation: float = 0.0
) -> FrozenTrial:
    metrics = {o.metric: v for o, v in zip(TWO, values)}
    return FrozenTrial(number, arch, "", "", TrialState.COMPLETE, metrics, values, violation=violation)


# -- NSGA-II mechanics ----------------------------------------------------------------------------
def test_environmental_selection_on_a_hand_made_set() -> None:
    points = [(4, 1), (3, 2), (2, 3), (1, 4), (2, 2), (9, 9), (9, 9), (0, 0)]
    violations = [0, 0, 0, 0, 0, 0.5, 2.0, 0]
    # front 0 is (4,1) (3,2) (2,3) (1,4): boundaries first, then the two middle points, whose crowding
    # distances tie at 2/3 + 2/3 (index order decides)
    assert environmental_selection(points, violations, 3) == [0, 3, 1]
    assert environmental_selection(points, violations, 4) == [0, 3, 1, 2]
    # then (2,2), then (0,0); the infeasible (9,9)s come after every feasible point, less violation first
    assert environmental_selection(points, violations, 7) == [0, 3, 1, 2, 4, 7, 5]
    assert environmental_selection(points, violations, 8) == [0, 3, 1, 2, 4, 7, 5, 6]


def test_nsga2_forms_a_generation_per_population_of_results() -> None:
    strategy = NSGA2(population_size=4)
    space = toy_space()
    strategy.setup(space, TWO, 0)
    first = strategy.ask(4)
    assert len({a.to_json() for a in first}) == 4 and strategy.generation == 0
    for number, arch in enumerate(first[:3]):
        metrics = toy_metrics(arch)
        strategy.tell(complete(number, arch, (metrics["accuracy"], metrics["params"])))
    assert strategy.generation == 0  # three results of four
    extra = strategy.ask(2)  # parents are still missing: random samples, none seen before
    seen = {a.to_json() for a in first}
    assert all(a.to_json() not in seen for a in extra)
    metrics = toy_metrics(first[3])
    strategy.tell(complete(3, first[3], (metrics["accuracy"], metrics["params"])))
    assert strategy.generation == 1
    # four distinct results make four parents, ordered by front and crowding distance
    assert sorted(p.arch.to_json() for p in strategy.parents) == sorted(a.to_json() for a in first)
    children = strategy.ask(8)  # asked before any of them is told: bred from generation 1
    keys = [c.to_json() for c in children]
    assert len(set(keys)) == 8 and not set(keys) & (seen | {a.to_json() for a in extra})


def test_nsga2_keeps_feasible_parents_before_infeasible_ones() -> None:
    strategy = NSGA2(population_size=2)
    strategy.setup(toy_space(), TWO, 0)
    archs = strategy.ask(2)
    strategy.tell(complete(0, archs[0], (99.0, 0.0), violation=1.0))  # best objectives, infeasible
    strategy.tell(complete(1, archs[1], (1.0, 30.0)))
    assert strategy.generation == 1
    children = strategy.ask(2)
    strategy.tell(complete(2, children[0], (2.0, 30.0)))
    strategy.tell(complete(3, children[1], (0.5, 35.0)))
    # all three feasible results beat the infeasible one; (2,30) dominates (1,30) and (0.5,35)
    assert [p.values for p in strategy.parents] == [(2.0, -30.0), (1.0, -30.0)]


def test_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="population_size"):
        NSGA2(population_size=1)
    with pytest.raises(ConfigError, match="crossover_prob"):
        NSGA2(crossover_prob=1.5)
    with pytest.raises(ConfigError, match="dedupe must be one of"):
        NSGA2(dedupe="yes")
    with pytest.raises(ConfigError, match="selection must be one of"):
        MultiObjectiveEvolution(selection="best")
    with pytest.raises(ConfigError, match="sample_size"):
        MultiObjectiveEvolution(population_size=4, sample_size=5)
    with pytest.raises(ConfigError, match="beta"):
        MONAS(beta=-1)
    with pytest.raises(ConfigError, match="both be 0"):
        MONAS(alpha=0, beta=0)


# -- search quality on the toy problem ------------------------------------------------------------
SEEDS = range(5)
BUDGET = 120


def test_nsga2_and_mo_evolution_beat_random_search_on_hypervolume() -> None:
    names = ("random", "nsga2", "mo-evolution")
    hv = {name: [final_hv(toy_study(name, seed, BUDGET)) for seed in SEEDS] for name in names}
    # the numbers these seeds produce; the hypervolume of the toy problem's true front is 2382.5
    assert hv["random"] == [1755.0, 1977.0, 2067.0, 1891.5, 2030.0]
    assert hv["nsga2"] == [2137.5, 2161.0, 1980.0, 2026.5, 2065.5]
    assert hv["mo-evolution"] == [2116.0, 2146.5, 2204.5, 1976.0, 2109.0]
    for name in ("nsga2", "mo-evolution"):
        assert np.mean(hv[name]) > np.mean(hv["random"]) + 100
        assert sum(a > b for a, b in zip(hv[name], hv["random"])) >= 4


@pytest.mark.slow
def test_monas_beats_random_search_on_hypervolume() -> None:
    hv = [final_hv(toy_study("monas", seed, BUDGET)) for seed in SEEDS]
    assert hv == [1906.5, 1789.0, 1973.5, 2039.5, 2127.0]
    # the weakest of the three here: ahead of random search (mean 1944.1) on average only
    assert np.mean(hv) > 1944.1


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("random", (176, 176)),
        ("nsga2", (165, 96)),
        ("mo-evolution", (139, 52)),
        pytest.param("monas", (115, 32), marks=pytest.mark.slow),  # LSTM updates: about 3 s
    ],
)
def test_constraint_keeps_the_front_feasible_and_infeasible_proposals_fade(
    name: str, expected: tuple[int, int]
) -> None:
    # params <= 15 rejects about 88% of the space (random search: 176 of 200 proposals per half)
    early = late = 0
    for seed in SEEDS:
        study = toy_study(name, seed, 80, constraints=["params<=15"])
        assert all(t.feasible for t in study.pareto_front())
        flags = [not t.feasible for t in study.trials()]
        early += sum(flags[:40])
        late += sum(flags[40:])
    assert (early, late) == expected
    if name != "random":
        assert late < 0.6 * early


# -- resume with several objectives and constraint violations -------------------------------------
@pytest.mark.parametrize(
    "factory",
    [lambda: NSGA2(population_size=4), lambda: MultiObjectiveEvolution(population_size=6), lambda: MONAS()],
    ids=["nsga2", "mo-evolution", "monas"],
)
def test_multiobjective_state_resumes_exactly(factory) -> None:
    space = toy_space()

    def run(strategy: nf.Strategy, start: int, steps: int) -> list[Architecture]:
        proposed = []
        for number in range(start, start + steps, 3):
            archs = strategy.ask(3)  # batches of three: generations fill across asks
            for offset, arch in enumerate(archs):
                metrics = toy_metrics(arch)
                violation = max(0.0, metrics["params"] - 12.0)
                values = (metrics["accuracy"], metrics["params"])
                strategy.tell(complete(number + offset, arch, values, violation))
            proposed.extend(archs)
        return proposed

    whole = factory()
    whole.setup(space, TWO, 3)
    expected = run(whole, 0, 48)
    head = factory()
    head.setup(space, TWO, 3)
    assert run(head, 0, 21) == expected[:21]
    resumed = factory()
    resumed.setup(space, TWO, 99)
    resumed.load_state_dict(json.loads(json.dumps(head.state_dict())))
    assert run(resumed, 21, 27) == expected[21:]


# -- MONAS reward ---------------------------------------------------------------------------------
def test_monas_reward_by_hand() -> None:
    strategy = MONAS(alpha=1.0, beta=0.25, gamma=1.0)
    strategy.setup(toy_space(), TWO, 0)
    # first result: empty ranges, both normalised to 0.5 -> 0.5 - 0.25 * 0.5
    assert strategy.reward(scored((50.0, -4.0))) == 0.375
    # accuracy range [40, 50], params range [2, 4]: the least accurate but cheapest -> 0 - 0.25 * 0
    assert strategy.reward(scored((40.0, -2.0))) == 0.0
    # the most accurate and most expensive so far -> 1 - 0.25 * 1
    assert strategy.reward(scored((60.0, -8.0))) == 0.75
    # infeasible: -beta - gamma * violation / largest violation so far (1 for an infinite one)
    assert strategy.reward(scored((99.0, 0.0), violation=2.0)) == -1.25
    assert strategy.reward(scored((99.0, 0.0), violation=1.0)) == -0.75
    assert strategy.reward(scored((99.0, 0.0), violation=math.inf)) == -1.25
    # infeasible results do not move the ranges: (50, 4) is again in the middle of [40, 60] x [2, 8]
    assert strategy.reward(scored((50.0, -5.0))) == 0.5 - 0.25 * 0.5


def test_monas_with_one_objective_is_reinforce() -> None:
    space = toy_space()
    ours, theirs = MONAS(entropy_weight=0.0), ReinforceStrategy()
    ours.setup(space, ONE, 5)
    theirs.setup(space, ONE, 5)
    assert drive(ours, 30, ONE) == drive(theirs, 30, ONE)


# -- the exact NB201 cost model of benchmarks/hypervolume_nb201.py --------------------------------
def _benchmark_module(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    path = ROOT / "benchmarks" / "hypervolume_nb201.py"
    spec = importlib.util.spec_from_file_location("hypervolume_nb201", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_nb201_cost_model_is_additive_and_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    bench = _benchmark_module(monkeypatch)
    space = NB201Space(channels=4, cells_per_stage=1)
    model = bench.build_cost_model(space, input_shape=(3, 8, 8))
    # one cell per stage at widths 4, 8, 16 and resolutions 8, 4, 2:
    # 3x3 conv + BN = 9 C^2 + 2 C parameters and 9 C^2 H W MACs; 1x1 conv + BN = C^2 + 2 C and C^2 H W
    assert model.op_params == {
        "none": 0,
        "skip_connect": 0,
        "nor_conv_1x1": 24 + 80 + 288,
        "nor_conv_3x3": 152 + 592 + 2336,
        "avg_pool_3x3": 0,
    }
    assert model.op_macs == {
        "none": 0,
        "skip_connect": 0,
        "nor_conv_1x1": 3 * 1024,
        "nor_conv_3x3": 3 * 9216,
        "avg_pool_3x3": 0,
    }
    rng = np.random.default_rng(0)
    bench.verify_cost_model(model, space, [space.sample(rng) for _ in range(10)], input_shape=(3, 8, 8))
