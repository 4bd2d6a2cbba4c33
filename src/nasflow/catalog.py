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
PRUNERS: Registry[Any] = Registry("pruner")
ONESHOT: Registry[Any] = Registry("one-shot search")

SPACES.register(
    "nb201",
    "nasflow.space.nb201:NB201Space",
    "NAS-Bench-201 cell: 6 edges x 5 ops, 15,625 cells (6,466 distinct networks)",
)
SPACES.register(
    "nb201-digits",
    "nasflow.benchmarks.digits:NB201DigitsSpace",
    "NB201 cells whose networks the nb201-digits table holds (search it with the tabular evaluator)",
)
SPACES.register(
    "darts",
    "nasflow.space.darts:DartsSpace",
    "DARTS normal + reduction cells: 4 nodes x 2 (input, op) edges, 7 ops, ~1.08e18 distinct networks",
)
SPACES.register(
    "macro",
    "nasflow.space.macro:MacroSpace",
    "chain CNN: 8 slots x (none/conv3x3/conv5x5/sepconv3x3, width 8-64, skip), grown by morphisms",
)
SPACES.register(
    "chain",
    "nasflow.space.chain:ChainSpace",
    "MobileNetV2/V3-like: width, act, per-stage depth, per-block kernel/expansion/SE (MBConv blocks)",
)
SPACES.register(
    "hierarchical",
    "nasflow.space.hierarchical:HierarchicalSpace",
    "macro stages (count, width, cells, reduction) over one searched NB201-style cell, searched jointly",
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
    "nsga2", "nasflow.strategies.nsga2:NSGA2", "NSGA-II: non-dominated sorting + crowding, asynchronous"
)
STRATEGIES.register(
    "mo-evolution",
    "nasflow.strategies.mo_evolution:MultiObjectiveEvolution",
    "multi-objective aging evolution: Pareto front, then crowding distance",
)
STRATEGIES.register(
    "monas", "nasflow.strategies.monas:MONAS", "MONAS: LSTM controller rewarded by accuracy and cost"
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
    "tabular",
    "nasflow.estimators.tabular:TabularEvaluator",
    "look-up in a tabular benchmark (nb201, nb201-digits)",
)
EVALUATORS.register(
    "zero-cost",
    "nasflow.estimators.zero_cost:ZeroCostEvaluator",
    "zero-cost proxies of the untrained network (synflow, naswot, snip, ...)",
)
EVALUATORS.register(
    "prescreen",
    "nasflow.estimators.zero_cost:PrescreenEvaluator",
    "prunes trials whose zero-cost proxy is in the bottom share, then runs an inner evaluator",
)

EVALUATORS.register(
    "weight-sharing",
    "nasflow.estimators.weight_sharing:WeightSharingEvaluator",
    "inherited weights of a trained one-shot supernet (BN recalibrated per architecture)",
)

EVALUATORS.register(
    "cost",
    "nasflow.estimators.cost:rebuild_cost_evaluator",
    "adds measured or predicted costs (latency_ms, peak_memory_mb, params, flops) to another evaluator",
)
ONESHOT.register("darts", "nasflow.oneshot.darts:DARTS", "DARTS: softmax relaxation, bilevel (1st/2nd order)")
ONESHOT.register("darts+", "nasflow.oneshot.darts:DARTSPlus", "DARTS+: DARTS with early stopping")
ONESHOT.register(
    "fairdarts", "nasflow.oneshot.darts:FairDARTS", "FairDARTS: independent sigmoid weights + zero-one loss"
)
ONESHOT.register("gdas", "nasflow.oneshot.darts:GDAS", "GDAS: one Gumbel-softmax sampled op per edge")
ONESHOT.register("enas", "nasflow.oneshot.enas:ENAS", "ENAS: LSTM controller (REINFORCE) over shared weights")
ONESHOT.register("spos", "nasflow.oneshot.spos:SPOS", "SPOS: uniform single-path supernet, then evolution")
ONESHOT.register(
    "rsws", "nasflow.oneshot.spos:RSWS", "random search with weight sharing (Li & Talwalkar 2019)"
)
# Weight-inheritance searches own their training loop too (no supernet): `nasflow search` runs them
# with HillClimb(...).fit(task, study), which records every network they train as a trial.
ONESHOT.register(
    "hill-climb",
    "nasflow.morphism.hill_climb:HillClimb",
    "NASH: hill climbing with function-preserving morphisms (macro space)",
)
ONESHOT.register(
    "neuroevolution",
    "nasflow.morphism.neuroevolution:Neuroevolution",
    "aging evolution, children inherit weights by morphism (macro space)",
)

PRUNERS.register(
    "median",
    "nasflow.pruners.median:MedianPruner",
    "median stopping rule: stop trials below the completed trials' median at a step",
)
PRUNERS.register(
    "curve",
    "nasflow.pruners.curve:CurvePruner",
    "learning-curve extrapolation: stop trials whose fitted curve cannot reach the best",
)

BENCHMARKS.register(
    "nb201",
    "nasflow.benchmarks.nb201:load_nb201",
    "NAS-Bench-201 12-epoch results, CIFAR-10/100 (MIT, shipped)",
)
BENCHMARKS.register(
    "nb201-digits",
    "nasflow.benchmarks.digits:load_nb201_digits",
    "NB201 cells trained from scratch on digits: distinct networks, 4 epochs (built by nasflow, shipped)",
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


def get_oneshot(name: str, **options: Any) -> Any:
    """A built-in one-shot search by name, e.g. ``get_oneshot("darts", epochs=20)``."""
    return ONESHOT.create(name, **options)


def get_pruner(name: str, **options: Any) -> Any:
    """A built-in pruner by name, e.g. ``get_pruner("median", warmup_trials=3)``."""
    return PRUNERS.create(name, **options)


def list_spaces() -> list[str]:
    return SPACES.names()


def list_strategies() -> list[str]:
    return STRATEGIES.names()


def list_evaluators() -> list[str]:
    return EVALUATORS.names()


def list_benchmarks() -> list[str]:
    return BENCHMARKS.names()


def list_oneshot() -> list[str]:
    return ONESHOT.names()


def list_pruners() -> list[str]:
    return PRUNERS.names()


def rebuild(registry: Registry[Any], description: dict[str, Any]) -> Any:
    """Recreate a component from the ``describe()`` dict recorded in a study."""
    options = dict(description)
    name = options.pop("name", None)
    if name not in registry:
        raise ConfigError(
            f"the study's {registry.kind} {name!r} cannot be rebuilt from storage; pass it explicitly"
        )
    return registry.create(name, **options)
