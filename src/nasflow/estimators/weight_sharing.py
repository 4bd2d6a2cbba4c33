"""Evaluate architectures with the inherited weights of a trained one-shot supernet.

Any ask/tell strategy can search with a trained supernet as its evaluator: each evaluation runs the
architecture's path through the shared weights after recalibrating batch norm for it (as SPOS does),
which takes milliseconds instead of the seconds of training from scratch. Weight-sharing scores rank
architectures only roughly (Yu et al., "Evaluating the search phase of NAS", ICLR 2020), so train the
final choice from scratch.
"""

from __future__ import annotations

from typing import Any

from nasflow.errors import ConfigError
from nasflow.estimators.base import EvalContext, Evaluator, Measurement
from nasflow.space.architecture import Architecture
from nasflow.space.base import DecisionSpace
from nasflow.tasks import Task


class WeightSharingEvaluator(Evaluator):
    """Accuracy with inherited supernet weights: ``{"accuracy": ..., "params": ...}``.

    Args:
        search: a one-shot search instance (fitted or not) or a registered name (``nasflow list
            strategies`` marks them); an unfitted search is fitted on ``task`` in :meth:`setup`,
            with the study's space.
        task: the data to fit on (a Task or a built-in dataset name), when the search is not fitted.
        search_options: settings of a search given by name, e.g. ``{"epochs": 20}``.

    Metrics: ``accuracy`` (percent, on the search's selection split: the validation split unless the
    search uses ``arch_split="half"``) and ``params`` (trainable parameters of the discrete network).
    """

    name = "weight-sharing"

    def __init__(
        self,
        search: Any = "spos",
        task: Task | str = "digits",
        search_options: dict[str, Any] | None = None,
    ) -> None:
        from nasflow.oneshot.base import OneShotSearch

        if isinstance(search, str):
            from nasflow.catalog import get_oneshot

            search = get_oneshot(search, **(search_options or {}))
        elif search_options:
            raise ConfigError("search_options are for a search given by name; configure the instance instead")
        if not isinstance(search, OneShotSearch):
            raise ConfigError(
                f"search must be a one-shot search or its name, got {type(search).__name__}; "
                "see `nasflow list strategies` (one-shot entries)"
            )
        if not isinstance(task, (Task, str)):
            raise ConfigError(f"task must be a Task or a built-in dataset name, got {type(task).__name__}")
        self.search = search
        self.task = task

    def setup(self, space: DecisionSpace) -> None:
        """Bind the space and fit the search now if it is not fitted yet (once)."""
        super().setup(space)
        if self.search.result_ is None:
            self.search.bind(space, 0)
            self.search.fit(self.task)
        elif self.search.space_.describe() != space.describe():
            raise ConfigError(
                f"the supernet was trained for space {self.search.space_.describe()}, "
                f"not the study's {space.describe()}"
            )

    def evaluate(self, arch: Architecture, context: EvalContext) -> Measurement:
        from nasflow.objectives.metrics import count_parameters

        accuracy = self.search.score(arch)
        params = count_parameters(self.search.supernet.extract(arch))
        return Measurement({"accuracy": accuracy, "params": float(params)})

    def describe(self) -> dict[str, Any]:
        options = self.search.describe()
        name = options.pop("name")
        options.pop("space", None)
        task = self.task if isinstance(self.task, str) else self.task.name
        return {"name": self.name, "search": name, "task": task, "search_options": options}
