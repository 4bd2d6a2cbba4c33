"""nasflow: Neural Architecture Search for PyTorch.

>>> import nasflow as nf
>>> study = nf.create_study(space="nb201", strategy="evolution",
...                         evaluator=nf.TabularEvaluator("nb201", dataset="cifar10"), seed=0)
>>> study.optimize(budget=50)
>>> study.best().arch_str  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from nasflow.api import create_study, load_study
from nasflow.catalog import (
    get_evaluator,
    get_oneshot,
    get_pruner,
    get_space,
    get_strategy,
    list_benchmarks,
    list_evaluators,
    list_oneshot,
    list_pruners,
    list_spaces,
    list_strategies,
)
from nasflow.errors import (
    ConfigError,
    DataError,
    EvaluationError,
    InvalidArchitectureError,
    NasflowError,
    SpaceError,
    StorageError,
    StudyNotFoundError,
    TrialPruned,
)
from nasflow.estimators.base import EvalContext, Evaluator, Measurement
from nasflow.estimators.function import FunctionEvaluator
from nasflow.objectives.spec import Constraint, Objective
from nasflow.pruners import CurvePruner, MedianPruner, Pruner
from nasflow.space.architecture import Architecture
from nasflow.space.base import DecisionSpace, SearchSpace
from nasflow.strategies.base import Strategy
from nasflow.study import Study
from nasflow.trial import FrozenTrial, TrialState

__version__ = "0.1.0"

# Evaluators that pull in torch or the benchmark table load on first use, keeping `import nasflow` light.
_LAZY = {
    "TabularEvaluator": "nasflow.estimators.tabular",
    "TrainEvaluator": "nasflow.estimators.train",
    "WeightSharingEvaluator": "nasflow.estimators.weight_sharing",
    "run_oneshot": "nasflow.oneshot.run",
    "ZeroCostEvaluator": "nasflow.estimators.zero_cost",
    "PrescreenEvaluator": "nasflow.estimators.zero_cost",
    "CostEvaluator": "nasflow.estimators.cost",
    "load_task": "nasflow.tasks",
    "Task": "nasflow.tasks",
    "MacroSpace": "nasflow.space.macro",
    "ChainSpace": "nasflow.space.chain",
    "HierarchicalSpace": "nasflow.space.hierarchical",
    "HillClimb": "nasflow.morphism",
    "Neuroevolution": "nasflow.morphism",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nasflow' has no attribute {name!r}")


__all__ = [
    "Architecture",
    "ChainSpace",
    "ConfigError",
    "Constraint",
    "CostEvaluator",
    "CurvePruner",
    "DataError",
    "DecisionSpace",
    "EvalContext",
    "EvaluationError",
    "Evaluator",
    "FrozenTrial",
    "FunctionEvaluator",
    "HierarchicalSpace",
    "HillClimb",
    "InvalidArchitectureError",
    "MacroSpace",
    "Measurement",
    "MedianPruner",
    "NasflowError",
    "Neuroevolution",
    "Objective",
    "PrescreenEvaluator",
    "Pruner",
    "SearchSpace",
    "SpaceError",
    "StorageError",
    "Strategy",
    "Study",
    "StudyNotFoundError",
    "TrialPruned",
    "TabularEvaluator",
    "Task",
    "TrainEvaluator",
    "TrialState",
    "WeightSharingEvaluator",
    "ZeroCostEvaluator",
    "create_study",
    "get_evaluator",
    "get_oneshot",
    "get_pruner",
    "get_space",
    "get_strategy",
    "list_benchmarks",
    "list_evaluators",
    "list_oneshot",
    "list_pruners",
    "list_spaces",
    "list_strategies",
    "load_study",
    "load_task",
    "run_oneshot",
]
