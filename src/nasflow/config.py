"""The typed search configuration shared by the CLI (flags and YAML files) and the Python API."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from nasflow import catalog
from nasflow.errors import ConfigError
from nasflow.objectives.spec import MEASURED_COSTS, parse_constraints, parse_objectives

#: the built-in default search: NB201 cells scaled for 8x8 digits, trained for real
DIGITS_NB201 = {"channels": 8, "cells_per_stage": 1}
DEFAULT_BUDGET = 30
DEFAULT_STRATEGY = "bananas"
#: our NSGA-II: larger hypervolume than Optuna's NSGA-II on NAS-Bench-201 (docs/benchmarks.md)
DEFAULT_MULTI_OBJECTIVE_STRATEGY = "nsga2"


class SearchConfig(BaseModel):
    """Everything ``nasflow search`` needs; unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid")

    space: str = "nb201"
    space_options: dict[str, Any] | None = None
    #: default: bananas (best single-objective strategy measured), nsga2 with several objectives
    strategy: str = ""
    strategy_options: dict[str, Any] | None = None
    evaluator: str = "train"
    evaluator_options: dict[str, Any] = Field(default_factory=dict)
    dataset: str | None = None
    data: str | None = None
    budget: int | None = Field(default=None, ge=0)
    seconds: float | None = Field(default=None, gt=0)
    objectives: list[str] = Field(default_factory=lambda: ["accuracy:max"])
    constraints: list[str] = Field(default_factory=list)
    storage: str = "sqlite:///nasflow.db"
    name: str | None = None
    seed: int = 0
    workers: int = Field(default=1, ge=1)
    #: where evaluations run: auto (inline for one worker, local processes for more), or ray
    executor: Literal["auto", "inline", "process", "ray"] = "auto"
    #: the Ray cluster to join ("auto" or HOST:PORT); without it a local Ray instance is started
    ray_address: str | None = None
    #: resources each trial takes on Ray
    trial_cpus: float | None = Field(default=None, gt=0)
    trial_gpus: float | None = Field(default=None, ge=0)
    #: how often a trial whose worker died is run again before it is marked failed
    max_retries: int = Field(default=2, ge=0)
    pruner: str = "none"
    pruner_options: dict[str, Any] = Field(default_factory=dict)
    #: a latency lookup table (``nasflow latency profile``): latency_ms is predicted, not measured
    latency_table: str | None = None
    #: where latency_ms is measured when no table is given
    latency_runtime: Literal["eager", "onnxruntime"] = "eager"
    #: examples per timed forward pass, and intra-op threads, when latency is measured
    latency_batch_size: int = Field(default=1, ge=1)
    latency_threads: int = Field(default=1, ge=1)

    @field_validator("space")
    @classmethod
    def _known_space(cls, value: str) -> str:
        catalog.SPACES.entry(value)
        return value

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, value: str) -> str:
        if value == "":
            return value  # chosen from the objectives in _check
        if value not in catalog.ONESHOT and value not in catalog.STRATEGIES:
            raise ValueError(
                f"unknown strategy {value!r}; allowed: {', '.join(catalog.list_strategies())}; "
                f"one-shot searches: {', '.join(catalog.list_oneshot())}"
            )
        return value

    @field_validator("evaluator")
    @classmethod
    def _known_evaluator(cls, value: str) -> str:
        catalog.EVALUATORS.entry(value)
        return value

    @field_validator("pruner")
    @classmethod
    def _known_pruner(cls, value: str) -> str:
        if value != "none" and value not in catalog.PRUNERS:
            raise ValueError(f"unknown pruner {value!r}; allowed: none, {', '.join(catalog.list_pruners())}")
        return value

    @field_validator("objectives", "constraints", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            return [part.strip() for item in value for part in str(item).split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _check(self) -> SearchConfig:
        objectives = parse_objectives(self.objectives)  # type: ignore[arg-type]
        parse_constraints(self.constraints)  # type: ignore[arg-type]
        ray_only = [f for f in ("ray_address", "trial_cpus", "trial_gpus") if getattr(self, f) is not None]
        if ray_only and self.executor != "ray":
            raise ValueError(f"{', '.join(ray_only)} only apply to executor 'ray'; add --executor ray")
        if not self.strategy:
            self.strategy = DEFAULT_MULTI_OBJECTIVE_STRATEGY if len(objectives) > 1 else DEFAULT_STRATEGY
        oneshot = self.strategy in catalog.ONESHOT
        if oneshot and self.seconds is not None:
            raise ValueError(
                f"seconds does not apply to the one-shot search {self.strategy!r}; its length is set by "
                "strategy_options (e.g. epochs)"
            )
        if self.budget is None and self.seconds is None:
            # one-shot: the budget counts architectures trained from scratch, the derived one first
            self.budget = 1 if oneshot else DEFAULT_BUDGET
        # Real training on small inputs wants small cells; this default never depends on the budget,
        # so raising the budget of a study still resumes it.
        training = self.evaluator in ("train", "weight-sharing")
        if self.space_options is None:
            self.space_options = dict(DIGITS_NB201) if training and self.space == "nb201" else {}
        if self.strategy_options is None:
            self.strategy_options = {}
        return self


def _explain(error: ValidationError) -> ConfigError:
    lines = []
    for problem in error.errors():
        field = ".".join(str(p) for p in problem["loc"]) or "config"
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            message = f"unknown setting; allowed: {', '.join(SearchConfig.model_fields)}"
        lines.append(f"{field}: {message}")
    return ConfigError("invalid configuration: " + "; ".join(lines))


def make_config(**values: Any) -> SearchConfig:
    """A validated config; errors name the field and what is allowed."""
    try:
        return SearchConfig(**values)
    except ValidationError as exc:
        raise _explain(exc) from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The settings in a YAML file (validated later, together with command-line overrides)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(
            f"config file {str(path)!r} is not valid YAML{where}: {getattr(exc, 'problem', exc)}"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {str(path)!r} must hold a mapping of settings, got {type(data).__name__}"
        )
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def build_components(config: SearchConfig) -> dict[str, Any]:
    """Space, strategy and evaluator objects for ``create_study``."""
    space = catalog.get_space(config.space, **(config.space_options or {}))
    if config.strategy in catalog.ONESHOT:
        from nasflow.oneshot.run import OneShotStrategy

        strategy = OneShotStrategy(catalog.get_oneshot(config.strategy, **(config.strategy_options or {})))
    else:
        strategy = catalog.get_strategy(config.strategy, **(config.strategy_options or {}))
    options = dict(config.evaluator_options)
    if config.evaluator == "train":
        options.setdefault("task", config.dataset or "digits")
        if config.data is not None:
            options.setdefault("data", config.data)
    elif config.evaluator == "tabular":
        if config.data is not None:
            raise ConfigError(
                "--data is for the train evaluator; the tabular evaluator reads its benchmark table"
            )
        options.setdefault("benchmark", config.space)
        options.setdefault("dataset", config.dataset or "cifar10")
    elif config.evaluator == "weight-sharing" and "task" not in options:
        from nasflow.tasks import load_task

        dataset = config.dataset or "digits"
        options["task"] = load_task(dataset, data=config.data) if config.data else dataset
    evaluator = catalog.get_evaluator(config.evaluator, **options)
    return {"space": space, "strategy": strategy, "evaluator": _with_costs(evaluator, config)}


def _with_costs(evaluator: Any, config: SearchConfig) -> Any:
    """The evaluator, wrapped to measure (or predict from a table) the costs the study names."""
    named = [o.metric for o in parse_objectives(config.objectives)]  # type: ignore[arg-type]
    named += [c.metric for c in parse_constraints(config.constraints)]  # type: ignore[arg-type]
    metrics = [m for m in dict.fromkeys(named) if m in MEASURED_COSTS]
    if config.latency_table is not None and "latency_ms" not in metrics:
        raise ConfigError(
            "latency_table is set, but no objective or constraint names latency_ms; add e.g. "
            "--objectives accuracy:max latency_ms:min or --constraints latency_ms<=4"
        )
    if not metrics:
        return evaluator
    from nasflow.estimators.cost import CostEvaluator  # loads torch and the profilers

    if config.latency_table is not None:
        return CostEvaluator(evaluator, metrics, predictor=config.latency_table)
    return CostEvaluator(
        evaluator,
        metrics,
        runtime=config.latency_runtime,
        batch_size=config.latency_batch_size,
        threads=config.latency_threads,
    )


def build_executor(config: SearchConfig) -> Any:
    """Where the config's evaluations run (Ray only starts or connects when asked for)."""
    from nasflow.execution import make_executor

    if config.executor == "auto":
        return make_executor(config.workers)
    return make_executor(
        config.workers,
        config.executor,
        ray_address=config.ray_address,
        trial_cpus=config.trial_cpus,
        trial_gpus=config.trial_gpus,
    )


def build_pruner(config: SearchConfig) -> Any:
    """The pruner a config names (None for ``"none"``)."""
    if config.pruner == "none":
        if config.pruner_options:
            raise ConfigError("pruner_options are set but pruner is 'none'; choose a pruner: median or curve")
        return None
    return catalog.get_pruner(config.pruner, **config.pruner_options)


def study_from_config(config: SearchConfig, load_if_exists: bool = True) -> Any:
    """Create (or resume) the study a config describes."""
    from nasflow.api import create_study

    return create_study(
        **build_components(config),
        objectives=config.objectives,
        constraints=config.constraints,
        storage=config.storage,
        name=config.name,
        seed=config.seed,
        load_if_exists=load_if_exists,
        pruner=build_pruner(config),
    )
