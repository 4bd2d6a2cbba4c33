"""create_study / load_study: resolve names to components and open the store."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np

from nasflow import catalog
from nasflow.errors import ConfigError, NasflowError
from nasflow.estimators.base import Evaluator
from nasflow.objectives.spec import (
    MEASURED_COSTS,
    Constraint,
    Objective,
    parse_constraints,
    parse_objectives,
)
from nasflow.pruners.base import Pruner
from nasflow.space.base import DecisionSpace
from nasflow.storage import ExperimentStore, StudyExistsError, open_store
from nasflow.strategies.base import Strategy
from nasflow.study import Study

CONFIG_VERSION = 1


def _resolve(value: Any, kind: type, get: Any, what: str) -> Any:
    if isinstance(value, kind):
        return value
    if isinstance(value, str):
        return get(value)
    raise ConfigError(f"{what} must be a name or a {kind.__name__} instance, got {type(value).__name__}")


def _store(storage: str | ExperimentStore | None) -> ExperimentStore:
    return storage if isinstance(storage, ExperimentStore) else open_store(storage)


def _config(
    space: DecisionSpace,
    strategy: Strategy,
    evaluator: Evaluator,
    objectives: Sequence[Objective],
    constraints: Sequence[Constraint],
    seed: int,
    pruner: Pruner | None = None,
) -> dict[str, Any]:
    return {
        "version": CONFIG_VERSION,
        "space": space.describe(),
        "strategy": strategy.describe(),
        "evaluator": evaluator.describe(),
        "objectives": [str(o) for o in objectives],
        "constraints": [str(c) for c in constraints],
        "seed": seed,
        "pruner": pruner.describe() if pruner is not None else None,
    }


def _resolve_pruner(pruner: str | Pruner | None) -> Pruner | None:
    if pruner is None or pruner == "none":
        return None
    return _resolve(pruner, Pruner, catalog.get_pruner, "pruner")  # type: ignore[no-any-return]


def create_study(
    space: str | DecisionSpace = "nb201",
    strategy: str | Strategy = "evolution",
    evaluator: str | Evaluator = "tabular",
    objectives: Sequence[str | Objective] | str | None = None,
    constraints: Sequence[str | Constraint] | str | None = None,
    storage: str | ExperimentStore | None = None,
    name: str | None = None,
    seed: int | None = None,
    load_if_exists: bool = False,
    pruner: str | Pruner | None = None,
) -> Study:
    """Create a study (a persistent search).

    Args:
        space: a registered space name (see :func:`list_spaces`) or a space instance.
        strategy: a registered strategy name (see :func:`list_strategies`) or an instance.
        evaluator: an Evaluator instance or a registered evaluator name with default settings.
        objectives: e.g. ``["accuracy:max", "params:min"]``; default ``["accuracy:max"]``.
            Several objectives make a multi-objective study with a Pareto front.
        constraints: hard bounds such as ``["latency_ms<=5", "params<=2e5"]``. Naming
            ``latency_ms``, ``latency_spread`` or ``peak_memory_mb`` in objectives or constraints
            wraps an evaluator that trains on a task in a
            :class:`~nasflow.estimators.cost.CostEvaluator` that measures them (pass your own
            CostEvaluator for other settings, e.g. a latency lookup table).
        storage: ``None`` (in memory), a URL like ``"sqlite:///runs.db"``, or an ExperimentStore.
        name: the study's name in the storage (generated when omitted).
        seed: makes the whole search reproducible; drawn at random (and recorded) when omitted.
        load_if_exists: continue the stored study of that name instead of raising. Its settings must
            match the stored ones.
        pruner: stop unpromising trials early from their intermediate reports: ``None``/``"none"``,
            ``"median"``, ``"curve"`` (see :func:`list_pruners`) or a Pruner instance. It is part of
            the study's settings, so a resumed study must use the same one.

    Raises:
        StudyExistsError: the name is taken and ``load_if_exists`` is False.
        ConfigError: a setting is invalid, or differs from the stored study being continued.
    """
    space_obj = _resolve(space, DecisionSpace, catalog.get_space, "space")
    strategy_obj = _resolve(strategy, Strategy, catalog.get_strategy, "strategy")
    evaluator_obj = _resolve(evaluator, Evaluator, catalog.get_evaluator, "evaluator")
    objective_list = parse_objectives(objectives)  # type: ignore[arg-type]
    constraint_list = parse_constraints(constraints)  # type: ignore[arg-type]
    named = [o.metric for o in objective_list] + [c.metric for c in constraint_list]
    if any(m in MEASURED_COSTS for m in named):
        from nasflow.estimators.cost import with_cost_metrics  # loads torch and the profilers

        evaluator_obj = with_cost_metrics(evaluator_obj, named)
    pruner_obj = _resolve_pruner(pruner)
    if pruner_obj is not None:
        pruner_obj.setup(objective_list)
    # Bind early so an incompatible space or missing data fails before anything is stored.
    evaluator_obj.setup(space_obj)
    store = _store(storage)
    name = name or f"study-{uuid.uuid4().hex[:8]}"
    if seed is None and load_if_exists and name in store.study_names():
        seed = int(store.load_study(name).config["seed"])
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0])
    config = _config(
        space_obj, strategy_obj, evaluator_obj, objective_list, constraint_list, seed, pruner_obj
    )
    try:
        record = store.create_study(name, config)
    except StudyExistsError:
        if not load_if_exists:
            raise
        record = store.load_study(name)
        _check_same(name, record.config, config)
    return Study(
        name=record.name,
        study_id=record.study_id,
        space=space_obj,
        strategy=strategy_obj,
        evaluator=evaluator_obj,
        objectives=objective_list,
        constraints=constraint_list,
        store=store,
        seed=seed,
        pruner=pruner_obj,
    )


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    """The settings that must match to resume; custom evaluators are compared by kind only,
    since their code may legitimately be renamed or edited between runs."""
    evaluator = config.get("evaluator") or {}
    if evaluator.get("name") not in catalog.EVALUATORS:
        config = {**config, "evaluator": {"name": evaluator.get("name")}}
    pruner = config.get("pruner")
    if pruner and pruner.get("name") not in catalog.PRUNERS:
        config = {**config, "pruner": {"name": pruner.get("name")}}
    return config


def _check_same(name: str, stored: dict[str, Any], wanted: dict[str, Any]) -> None:
    stored, wanted = _comparable(stored), _comparable(wanted)
    differences = [
        f"{key}: stored {stored.get(key)!r}, given {wanted[key]!r}"
        for key in ("space", "strategy", "evaluator", "objectives", "constraints", "seed", "pruner")
        if stored.get(key) != wanted[key]
    ]
    if differences:
        raise ConfigError(
            f"study {name!r} already exists with other settings ({'; '.join(differences)}); "
            "use the same settings to resume it, or choose another --name"
        )


def load_study(
    name: str,
    storage: str | ExperimentStore | None,
    space: DecisionSpace | None = None,
    strategy: Strategy | None = None,
    evaluator: Evaluator | None = None,
    pruner: Pruner | None = None,
) -> Study:
    """Open a stored study to inspect or continue it.

    Built-in components are rebuilt from the settings recorded in the study; pass ``space``,
    ``strategy``, ``evaluator`` or ``pruner`` for custom ones (e.g. a FunctionEvaluator) to continue
    searching.

    Raises:
        StudyNotFoundError: no study of that name exists in ``storage``.
    """
    store = _store(storage)
    record = store.load_study(name)
    config = record.config
    study = Study(
        name=record.name,
        study_id=record.study_id,
        space=space or _try_rebuild(catalog.SPACES, config.get("space")),
        strategy=strategy or _try_rebuild(catalog.STRATEGIES, config.get("strategy")),
        evaluator=evaluator or _try_rebuild(catalog.EVALUATORS, config.get("evaluator")),
        objectives=parse_objectives(config.get("objectives")),
        constraints=parse_constraints(config.get("constraints")),
        store=store,
        seed=int(config.get("seed", 0)),
        pruner=pruner or _try_rebuild(catalog.PRUNERS, config.get("pruner")),
    )
    if study.pruner is None and config.get("pruner"):
        # continuing without the recorded pruner would silently change the search
        study.missing_pruner = str(config["pruner"].get("name"))
    return study


def _try_rebuild(registry: Any, description: dict[str, Any] | None) -> Any:
    if not description or description.get("name") not in registry:
        return None
    try:
        return catalog.rebuild(registry, description)
    except NasflowError:
        return None
