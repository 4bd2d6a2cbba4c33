"""The registries of built-in components, filled by explicit calls (no import side effects).

Targets are ``"module:attribute"`` strings, so listing names imports nothing heavy.
"""

from __future__ import annotations

from typing import Any

from nasflow.errors import ConfigError
from nasflow.registry import Registry

SPACES: Registry[Any] = Registry("space")
STRATEGIES: Registry[Any] = Registry("strategy")
EVALUATORS: Registry[Any] = Registry("evaluator")
BENCHMARKS: Registry[Any] = Registry("benchmark")

SPACES.register(
    "nb201",
    "nasflow.space.nb201:NB201Space",
    "NAS-Bench-201 cell: 6 edges x 5 ops, 15,625 cells (6,466 distinct networks)",
)

STRATEGIES.register("random", "nasflow.strategies.random_search:RandomSearch", "uniform random sampling")
STRATEGIES.register(
    "evolution",
    "nasflow.strategies.evolution:RegularizedEvolution",
    "regularized (aging) evolution with tournament selection",
)

STRATEGIES.register(
    "local", "nasflow.strategies.local_search:LocalSearch", "local search over neighbours with restarts"
)
STRATEGIES.register("grid", "nasflow.strategies.grid:GridSearch", "exhaustive enumeration of a finite space")
STRATEGIES.register(
    "reinforce", "nasflow.strategies.reinforce:ReinforceStrategy", "RL controller (LSTM policy, REINFORCE)"
)
STRATEGIES.register(
    "bo", "nasflow.strategies.bo:GaussianProcessBO", "Bayesian optimisation with a GP over encodings"
)
STRATEGIES.register(
    "bananas",
    "nasflow.strategies.bananas:Bananas",
    "BANANAS: MLP ensemble on path encodings, Thompson sampling",
)
STRATEGIES.register("tpe", "nasflow.strategies.optuna_adapter:OptunaTPE", "Optuna's TPE sampler (adapter)")
STRATEGIES.register(
    "optuna-nsga2", "nasflow.strategies.optuna_adapter:OptunaNSGA2", "Optuna's NSGA-II sampler (adapter)"
)
STRATEGIES.register(
    "predictor-evolution",
    "nasflow.strategies.predictor_evolution:PredictorEvolution",
    "evolution with offspring pre-screened by an online pairwise-ranking predictor",
)
STRATEGIES.register(
    "as-nas", "nasflow.strategies.asnas:ASNAS", "reinforced evolution on binary strings (AS-NAS style)"
)
STRATEGIES.register(
    "hyperband", "nasflow.strategies.hyperband:Hyperband", "Hyperband: successive halving over fidelity"
)
STRATEGIES.register("bohb", "nasflow.strategies.hyperband:BOHB", "BOHB: Hyperband with a TPE-style sampler")

EVALUATORS.register(
    "train", "nasflow.estimators.train:TrainEvaluator", "real PyTorch training on a task (proxy settings)"
)
EVALUATORS.register(
    "tabular", "nasflow.estimators.tabular:TabularEvaluator", "look-up in a tabular benchmark (NB201)"
)

BENCHMARKS.register(
    "nb201",
    "nasflow.benchmarks.nb201:load_nb201",
    "NAS-Bench-201 12-epoch results, CIFAR-10/100 (MIT, shipped)",
)


def get_space(name: str, **options: Any) -> Any:
    """A built-in search space by name, e.g. ``get_space("nb201", channels=8)``."""
    return SPACES.create(name, **options)


def get_strategy(name: str, **options: Any) -> Any:
    """A built-in strategy by name, e.g. ``get_strategy("evolution", population_size=10)``."""
    return STRATEGIES.create(name, **options)


def get_evaluator(name: str, **options: Any) -> Any:
    """A built-in evaluator by name, e.g. ``get_evaluator("tabular", dataset="cifar100")``."""
    return EVALUATORS.create(name, **options)


def list_spaces() -> list[str]:
    return SPACES.names()


def list_strategies() -> list[str]:
    return STRATEGIES.names()


def list_evaluators() -> list[str]:
    return EVALUATORS.names()


def list_benchmarks() -> list[str]:
    return BENCHMARKS.names()


def rebuild(registry: Registry[Any], description: dict[str, Any]) -> Any:
    """Recreate a component from the ``describe()`` dict recorded in a study."""
    options = dict(description)
    name = options.pop("name", None)
    if name not in registry:
        raise ConfigError(
            f"the study's {registry.kind} {name!r} cannot be rebuilt from storage; pass it explicitly"
        )
    return registry.create(name, **options)
