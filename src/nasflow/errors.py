"""Exceptions raised for user mistakes and failed work.

Every user-facing problem raises a subclass of :class:`NasflowError` whose message says what is
wrong and what is allowed; the CLI prints that message without a traceback.
"""

from __future__ import annotations


class NasflowError(Exception):
    """Base class of every error nasflow raises on purpose."""


class ConfigError(NasflowError, ValueError):
    """A setting has a wrong value, type or combination."""


class UnknownNameError(ConfigError, KeyError):
    """A name (space, strategy, evaluator, ...) is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class InvalidArchitectureError(NasflowError, ValueError):
    """An architecture is not a member of its search space."""


class SpaceError(NasflowError):
    """A search space cannot do what was asked (e.g. no valid architecture can be sampled)."""


class DataError(NasflowError, ValueError):
    """Task data is missing, unreadable or malformed."""


class StorageError(NasflowError):
    """The experiment store cannot be opened, read or written."""


class StudyNotFoundError(StorageError, KeyError):
    """No study of that name exists in the storage."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class StudyExistsError(StorageError):
    """A study of that name already exists in the storage."""


class EvaluationError(NasflowError):
    """Evaluating one architecture failed (e.g. the training loss became NaN).

    The study records the trial as FAILED with this message and the search goes on.
    """


class TrialPruned(NasflowError):
    """Raised inside an evaluation to stop a trial early (a pruner or pre-screening filter said so).

    The study records the trial as PRUNED, with this message as its reason and ``metrics`` (the last
    values measured before stopping) as its metrics. A pruned trial uses budget but is never the best.
    """

    def __init__(self, reason: str, metrics: dict[str, float] | None = None) -> None:
        super().__init__(reason)
        self.metrics = dict(metrics or {})


class BenchmarkDataError(NasflowError):
    """A tabular benchmark file is missing or corrupt."""


class BudgetReached(NasflowError):
    """A study's trial budget is used up, so the store refused to start another trial.

    Raised by ``ExperimentStore.create_trial(..., budget=n)`` when the study already has ``n``
    trials that use budget; with several drivers on one study this is how each learns to stop.
    """


class SearchExhausted(NasflowError):
    """A strategy has nothing new to propose (e.g. a grid that is fully enumerated).

    The study stops starting trials when a strategy raises it; this is not a failure.
    """
