"""Retrain a chosen architecture from scratch on train+val with the full budget.

Search evaluations are proxies (few epochs, a share of the data, validation split held out); the model
one ships is trained again with everything but the test split, as in the final-evaluation protocol
of the NAS literature (e.g. Zoph & Le, 2017; Liu et al., "DARTS", 2019). The training loop is the
study's :class:`~nasflow.estimators.train.TrainEvaluator`'s, so the settings are the searched ones.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nasflow.errors import ConfigError, NasflowError
from nasflow.estimators.base import Evaluator
from nasflow.estimators.train import TrainEvaluator
from nasflow.space.architecture import Architecture
from nasflow.space.base import DecisionSpace
from nasflow.tasks import Task, load_task

#: what ``settings_from`` says in the model card
FROM_STUDY = "study evaluator"
FROM_DEFAULTS = "defaults"


def model_seed(study_seed: int, trial_number: int, index: int) -> int:
    """The seed of the ``index``-th retrained model of a trial, from the study seed and trial number.

    Distinct from the search's own per-trial seed, so the retrained network is a fresh draw.
    """
    return int(np.random.SeedSequence([study_seed, trial_number, 1, index]).generate_state(1)[0])


@dataclass
class TrainingPlan:
    """How a chosen architecture is retrained: the training settings, the task and the budget.

    Attributes:
        trainer: the TrainEvaluator whose loop and settings (lr, optimizer, ...) are used.
        task: the task; training uses train+val, validation the test split.
        epochs: training epochs.
        settings_from: ``"study evaluator"`` or ``"defaults"`` (the study did not train networks).
    """

    trainer: TrainEvaluator
    task: Task
    epochs: int
    settings_from: str

    def settings(self) -> dict[str, Any]:
        """The training settings recorded in the model card."""
        t = self.trainer
        return {
            "data": "train+val",
            "epochs": self.epochs,
            "batch_size": t.batch_size,
            "lr": t.lr,
            "schedule": "cosine (per step, to 0)",
            "optimizer": t.optimizer,
            "momentum": t.momentum,
            "weight_decay": t.weight_decay,
            "label_smoothing": t.label_smoothing,
            "device": t.device,
            "settings_from": self.settings_from,
        }


def _train_evaluator(evaluator: Evaluator | None) -> TrainEvaluator | None:
    """The TrainEvaluator inside ``evaluator``, unwrapping wrappers that hold an ``inner`` one."""
    seen = 0
    while evaluator is not None and seen < 10:
        if isinstance(evaluator, TrainEvaluator):
            return evaluator
        evaluator = getattr(evaluator, "inner", None)
        seen += 1
    return None


def plan_training(evaluator: Evaluator | None, epochs: int | None, task: str | Task | None) -> TrainingPlan:
    """The training plan for a study's evaluator.

    A study that trained networks gives its settings and task; any other (tabular look-ups, proxies)
    gets TrainEvaluator's defaults on ``task`` (default ``"digits"``).

    Raises:
        ConfigError: ``epochs`` < 1, or ``task`` names another task than the one the study trained on.
    """
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise ConfigError(f"retrain_epochs must be an integer >= 1, got {epochs!r}")
    trainer = _train_evaluator(evaluator)
    if trainer is not None:
        if task is not None:
            name = task.name if isinstance(task, Task) else task
            if name != trainer.task_name:
                raise ConfigError(
                    f"task {name!r} differs from the task the study searched on ({trainer.task_name!r}); "
                    "to train the architecture on other data too, use transfer_data (--transfer-data)"
                )
        return TrainingPlan(trainer, trainer.task, epochs or trainer.epochs, FROM_STUDY)
    if isinstance(task, Task):
        loaded = task
    else:
        loaded = load_task(task or "digits")
    trainer = TrainEvaluator(task=loaded)
    return TrainingPlan(trainer, loaded, epochs or trainer.epochs, FROM_DEFAULTS)


def build_network(space: DecisionSpace, arch: Architecture, task: Task) -> nn.Module:
    """``space.build(arch, task)``, checked to be a torch module.

    Raises:
        NasflowError: the space cannot build networks (e.g. a plain DecisionSpace).
    """
    model = space.build(arch, task)
    if not isinstance(model, nn.Module):
        raise NasflowError(
            f"space {space.name!r} built {type(model).__name__}, not a torch.nn.Module, so it cannot be "
            "retrained or exported"
        )
    return model


def load_init_weights(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a state dict saved with ``torch.save(model.state_dict(), path)``, without unpickling code.

    Raises:
        ConfigError: the file is missing, unreadable, corrupt or not a state dict of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"init_weights file {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for corrupt files (pickle, zip, runtime errors)
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"init_weights file {str(path)!r} is not a readable PyTorch state dict ({first_line}); save one "
            "with torch.save(model.state_dict(), path)"
        ) from None
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]  # a checkpoint dict that holds the weights
    if not isinstance(state, Mapping) or not state:
        raise ConfigError(
            f"init_weights file {str(path)!r} holds {type(state).__name__}, not a state dict "
            "(a mapping of parameter names to tensors)"
        )
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ConfigError(
            f"init_weights file {str(path)!r} is not a state dict: entries {bad[:3]} are not named tensors"
        )
    return dict(state)


def apply_weights(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``model``, with a message naming the mismatching entries.

    Raises:
        ConfigError: keys are missing or unexpected, or shapes differ.
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        problems = []
        if missing:
            problems.append(f"missing {len(missing)} (e.g. {missing[:3]})")
        if unexpected:
            problems.append(f"unexpected {len(unexpected)} (e.g. {unexpected[:3]})")
        if shapes:
            problems.append(f"shapes differ for {len(shapes)} (e.g. {shapes[:2]})")
        raise ConfigError(
            f"init_weights {source!r} does not fit the network of this architecture: " + "; ".join(problems)
        )
    model.load_state_dict(dict(state), strict=True)


@dataclass
class Retrained:
    """A retrained network (on CPU, in eval mode) and how it was made."""

    model: nn.Module
    seed: int
    seconds: float
    train_loss: float


def retrain(
    space: DecisionSpace,
    arch: Architecture,
    plan: TrainingPlan,
    seed: int,
    init_weights: Mapping[str, torch.Tensor] | None = None,
    init_source: str = "init_weights",
) -> Retrained:
    """Train the network of ``arch`` on the plan's task (train+val) for the plan's epochs.

    The initial weights are drawn from ``seed`` (or loaded from ``init_weights``: fine-tuning) and the
    batches are ordered by ``seed``; the caller's global random state is left as it was.
    """
    task = plan.task
    device = torch.device(plan.trainer.device)
    x = torch.from_numpy(np.concatenate([task.x_train, task.x_val]).astype(np.float32, copy=False))
    y = torch.from_numpy(np.concatenate([task.y_train, task.y_val]).astype(np.int64, copy=False))
    rng_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=rng_devices):
        torch.manual_seed(seed)
        model = build_network(space, arch, task)
        if init_weights is not None:
            apply_weights(model, init_weights, init_source)
        model.to(device)
        start = time.perf_counter()
        loss = plan.trainer.fit(model, x.to(device), y.to(device), plan.epochs, seed)
        seconds = time.perf_counter() - start
    model.cpu().eval()
    return Retrained(model, seed, seconds, loss)
