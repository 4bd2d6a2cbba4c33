"""Constraints in every registered strategy: infeasible architectures are never best and are steered from.

Two kinds of constraint: one on a metric the evaluator knows before evaluating (screened by the study,
so no strategy ever pays for an infeasible evaluation), and one known only after evaluation (the
strategies that learn must propose fewer infeasible architectures as the search goes on).
"""

from __future__ import annotations

import numpy as np
import pytest

import nasflow as nf
from nasflow.testing.strategies import synthetic_score

#: 5^6 = 15,625 architectures; accuracy grows with cost, so the constraint binds at the optimum
SPACE = nf.DecisionSpace({f"x{i}": tuple(range(5)) for i in range(6)})


def cost(arch: nf.Architecture) -> float:
    return float(sum(arch.values()))


def score(arch: nf.Architecture) -> dict[str, float]:
    return {"accuracy": 0.3 * synthetic_score(arch) + 3 * cost(arch), "cost": cost(arch)}


class CostKnownInAdvance(nf.FunctionEvaluator):
    """Reports ``cost`` before evaluating, as TrainEvaluator does for parameters and MACs."""

    def __init__(self) -> None:
        super().__init__(score)
        self.evaluated = 0

    def evaluate(self, arch, context):  # type: ignore[no-untyped-def]
        self.evaluated += 1
        return super().evaluate(arch, context)

    def precheck(self, arch: nf.Architecture) -> dict[str, float]:
        return {"cost": cost(arch)}


@pytest.mark.parametrize("name", nf.list_strategies())
def test_screened_constraint_no_infeasible_evaluation_and_best_is_feasible(name: str) -> None:
    evaluator = CostKnownInAdvance()
    study = nf.create_study(space=SPACE, strategy=name, evaluator=evaluator, constraints=["cost<=10"], seed=0)
    study.optimize(budget=30)
    trials = study.trials()
    evaluated = [t for t in trials if not t.screened]
    screened = [t for t in trials if t.screened]
    assert len(evaluated) == 30 == evaluator.evaluated
    assert all(t.state is nf.TrialState.COMPLETE and t.feasible for t in evaluated)
    for trial in screened:
        assert trial.state is nf.TrialState.PRUNED and trial.metrics == {"cost": cost(trial.arch)}
        assert trial.error == f"screened: violates cost<=10 (cost={cost(trial.arch):g})"
    assert study.best().metrics["cost"] <= 10
    assert study.best().metrics["accuracy"] == max(t.metrics["accuracy"] for t in evaluated)


#: strategies that learn from violations; random, grid and the bandit/TPE-style ones sample without
#: a feasibility model, so for constraints unknown before evaluation they rely on best() alone
LEARNING = [
    "evolution",
    "bo",
    "bananas",
    "predictor-evolution",
    "reinforce",
    "nsga2",
    "mo-evolution",
    "monas",
]


@pytest.mark.parametrize("name", LEARNING)
def test_learning_strategies_propose_fewer_infeasible_architectures_over_time(name: str) -> None:
    early, late = [], []
    for seed in range(4):
        study = nf.create_study(
            space=SPACE,
            strategy=name,
            evaluator=nf.FunctionEvaluator(score),
            constraints=["cost<=10"],
            seed=seed,
        )
        study.optimize(budget=80)
        infeasible = [not t.feasible for t in study.trials()]
        assert study.best().feasible
        early.append(np.mean(infeasible[:25]))
        late.append(np.mean(infeasible[-25:]))
    # random proposals violate the bound about 68% of the time
    assert np.mean(late) < np.mean(early) - 0.1
