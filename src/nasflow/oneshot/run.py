"""Run a one-shot search inside a study: fit, keep the search log, train the result from scratch.

The study's storage keeps trials only, so the per-epoch log of the search (architecture weights,
derived architectures, losses, scored candidates) is written as JSON next to a SQLite database, as
``<database stem>.<study name>.oneshot.json`` (or wherever ``log_path`` says). The derived
architecture, and with a larger ``budget`` the next best candidates by weight-sharing score, are
then trained from scratch with the study's evaluator as ordinary trials, which ``nasflow show`` lists.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nasflow.errors import ConfigError, NasflowError
from nasflow.oneshot.base import EpochLog, OneShotResult, OneShotSearch
from nasflow.space.architecture import Architecture
from nasflow.strategies.base import Strategy
from nasflow.study import Study
from nasflow.tasks import Task
from nasflow.trial import FrozenTrial


@dataclass
class OneShotRun:
    """What :func:`run_oneshot` did.

    Attributes:
        result: the search's result (loaded from ``log_path`` when nothing was left to do).
        trials: the trials this call added to the study (the derived architecture first).
        log_path: where the search log was written, if anywhere.
    """

    result: OneShotResult
    trials: list[FrozenTrial] = field(default_factory=list)
    log_path: Path | None = None


class OneShotStrategy(Strategy):
    """Stands for a one-shot search in a study's record; it proposes nothing itself.

    Studies need a strategy; this one records the one-shot search's name and settings, so that a
    resumed study is checked against the same search, and refuses ``ask``: one-shot searches run
    through :func:`run_oneshot` (or ``nasflow search``), not ``Study.optimize``.
    """

    def __init__(self, search: Any) -> None:
        from nasflow.morphism.base import MorphismSearch

        if not isinstance(search, (OneShotSearch, MorphismSearch)):
            raise ConfigError(
                f"OneShotStrategy needs a OneShotSearch or a MorphismSearch, got {type(search).__name__}"
            )
        self.search = search
        self.name = search.name

    def ask(self, n: int = 1) -> list[Architecture]:
        raise ConfigError(
            f"{self.name!r} is a one-shot search: run it with nasflow.oneshot.run_oneshot(study, search) "
            "or `nasflow search`, not Study.optimize()"
        )

    def get_params(self) -> dict[str, Any]:
        return {}

    def describe(self) -> dict[str, Any]:
        settings = self.search.describe()
        # the study supplies space and seed, so they are not settings of the search here
        settings.pop("space", None)
        settings.pop("seed", None)
        return {**settings, "oneshot": True}


def default_log_path(storage_url: str | None, study_name: str) -> Path | None:
    """``<dir>/<db stem>.<study>.oneshot.json`` beside a SQLite file; None for other storages."""
    if not storage_url or not storage_url.startswith("sqlite:///"):
        return None
    database = storage_url.removeprefix("sqlite:///").split("?", 1)[0]
    if not database or database == ":memory:":
        return None
    path = Path(database)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", study_name)
    return path.with_name(f"{path.stem}.{safe}.oneshot.json")


def read_log(path: str | Path) -> OneShotResult:
    """The result a one-shot run wrote to ``path``."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise NasflowError(f"cannot read the one-shot log {str(path)!r}: {exc}") from None
    return OneShotResult.from_dict(data)


def run_oneshot(
    study: Study,
    search: OneShotSearch,
    task: Task | str | None = None,
    budget: int = 1,
    log_path: str | Path | None = None,
    callback: Callable[[EpochLog], None] | None = None,
) -> OneShotRun:
    """Fit ``search`` on ``task`` with the study's space and seed, then train its choice from scratch.

    Args:
        study: the study that keeps the trials; its space and seed are used where the search
            leaves them open, and its evaluator trains the chosen architectures.
        search: the one-shot search.
        task: the data the supernet trains on; default: the task of the study's training evaluator.
        budget: finished trials the study should hold when done: the derived architecture first,
            then the next best candidates by weight-sharing score (architectures already in the
            study are not trained again). A study that already holds ``budget`` finished trials is
            not searched again if its log can be read.
        log_path: where to write the search log (JSON); default beside a SQLite database, else none.
        callback: called with each epoch's log during the fit.

    Raises:
        ConfigError: no task can be found, or the search was configured for another space.
    """
    if not isinstance(search, OneShotSearch):
        raise ConfigError(f"run_oneshot needs a OneShotSearch, got {type(search).__name__}")
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ConfigError(f"budget must be an integer >= 1 (trials trained from scratch), got {budget!r}")
    if study.space is None or study.evaluator is None:
        raise ConfigError(f"study {study.name!r} has no space or evaluator; pass them to load_study")
    path = Path(log_path) if log_path is not None else default_log_path(_storage_url(study), study.name)
    finished = [t for t in study.trials() if t.state.finished and not t.interrupted]
    if len(finished) >= budget and path is not None and path.is_file():
        return OneShotRun(read_log(path), [], path)

    search.bind(study.space, study.seed)
    result = search.fit(_task(study, task), callback=callback)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"study": study.name, **result.to_dict()}, indent=1, allow_nan=True))

    trained = {t.canonical for t in finished}
    order = [result.arch, *(Architecture(c["arch"]) for c in result.candidates)]
    added: list[FrozenTrial] = []
    for arch in order:
        if len(finished) + len(added) >= budget:
            break
        key = study.space.canonical(arch)
        if key in trained:
            continue
        trained.add(key)
        added.append(study.evaluate(arch))
    if path is not None:
        for trial in added:
            _store_inherited_weights(study, search, trial, path)
    return OneShotRun(result, added, path)


def _store_inherited_weights(study: Study, search: OneShotSearch, trial: FrozenTrial, log: Path) -> None:
    """Save the supernet's weights for ``trial``'s network beside the log, for fine-tuning at export."""
    supernet = getattr(search, "supernet", None)
    if supernet is None:
        return
    target = log.with_name(f"{log.stem}-trial{trial.number}-inherited.pt")
    torch.save(supernet.extract(trial.arch).cpu().state_dict(), target)
    study.add_result(
        "inherited_weights",
        {
            "trial_number": trial.number,
            "canonical": trial.canonical,
            "arch_str": trial.arch_str,
            "path": str(target.resolve()),
            "source": getattr(search, "name", type(search).__name__),
        },
    )


def _storage_url(study: Study) -> str | None:
    # The study does not expose its store; a SQL store knows its URL, other stores have no file.
    return getattr(getattr(study, "_store", None), "url", None)


def _task(study: Study, task: Task | str | None) -> Task | str:
    if task is not None:
        return task
    found = getattr(study.evaluator, "task", None)
    if isinstance(found, Task):
        return found
    raise ConfigError(
        "a one-shot search trains a supernet on real data, and the study's evaluator "
        f"({getattr(study.evaluator, 'name', type(study.evaluator).__name__)!r}) has none; pass task=... "
        "(e.g. 'digits') or use the train evaluator"
    )
