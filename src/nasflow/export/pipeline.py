"""From search result to shipped model: select, retrain, validate, export, describe, store.

:func:`export_study` is what ``Study.export`` and ``nasflow export`` run. Every check that can fail on
bad input (formats, folder, trial numbers, weights file, data) runs before any training starts.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from nasflow.errors import ConfigError, NasflowError
from nasflow.export import formats as fmt
from nasflow.export.card import (
    CARD_JSON,
    CARD_MARKDOWN,
    CARD_VERSION,
    draw_architecture,
    software_versions,
    utc_timestamp,
    write_card,
)
from nasflow.export.retrain import (
    FROM_DEFAULTS,
    TrainingPlan,
    apply_weights,
    build_network,
    load_init_weights,
    model_seed,
    plan_training,
    retrain,
)
from nasflow.export.standalone import write_predict_script
from nasflow.export.validate import mean_std, predict, score
from nasflow.export.validate import robustness as robustness_table
from nasflow.objectives.metrics import count_macs, count_parameters
from nasflow.output_dirs import prepare_output_dir, study_folder
from nasflow.tasks import Task, load_task
from nasflow.trial import FrozenTrial, TrialState

if TYPE_CHECKING:
    from torch import nn

    from nasflow.study import Study

Progress = Callable[[str], None]

DIAGRAM = "architecture.png"
WEIGHTS = "weights.pt"
PREDICT = "predict.py"
#: runtimes whose latency goes in the card (ONNX Runtime only when ONNX is exported)
LATENCY_RUNTIMES = ("eager", "onnxruntime")


@dataclass(frozen=True)
class ExportResult:
    """One exported model.

    Attributes:
        model: its name, e.g. ``"trial-12"`` (also the name of its folder).
        trial_number: the study trial it comes from.
        directory: the folder holding its files.
        card: the model card (also stored in the study as a result of kind ``"export"``).
        result_id: id of the stored card in the study's database.
    """

    model: str
    trial_number: int
    directory: Path
    card: dict[str, Any] = field(repr=False)
    result_id: int | None = None

    @property
    def card_path(self) -> Path:
        """The JSON model card."""
        return self.directory / CARD_JSON


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def select_trials(
    study: Study, top: int = 1, pareto: bool = False, trial: int | None = None
) -> list[FrozenTrial]:
    """The trials to export: one trial by number, the Pareto front, or the top ``top`` distinct networks.

    Top trials are ranked feasible first, then on the first objective (earlier trials win ties), and
    architectures that are the same network (same canonical key) count once.

    Raises:
        ConfigError: conflicting options, ``top`` < 1, or a trial that does not exist or is not COMPLETE.
        NasflowError: the study has no completed trial (or, with ``pareto``, no feasible one).
    """
    top = _positive_int("top", top)
    if trial is not None and pareto:
        raise ConfigError("choose either trial= (--trial) or pareto=True (--pareto), not both")
    if (trial is not None or pareto) and top != 1:
        raise ConfigError("top= (--top) cannot be combined with trial= (--trial) or pareto=True (--pareto)")
    trials = study.trials()
    if trial is not None:
        number = trial
        if isinstance(number, bool) or not isinstance(number, (int, np.integer)):
            raise ConfigError(f"trial must be a trial number (an integer), got {trial!r}")
        found = [t for t in trials if t.number == number]
        if not found:
            span = f"0..{trials[-1].number}" if trials else "none: the study has no trials"
            raise ConfigError(f"study {study.name!r} has no trial {number}; trial numbers: {span}")
        chosen = found[0]
        if chosen.state is not TrialState.COMPLETE or chosen.values is None:
            reason = f" ({chosen.error})" if chosen.error else ""
            raise ConfigError(
                f"trial {number} of study {study.name!r} is {chosen.state.value}{reason}; only COMPLETE "
                "trials can be exported"
            )
        return [chosen]
    scored = [t for t in trials if t.state is TrialState.COMPLETE and t.values is not None]
    if not scored:
        raise NasflowError(
            f"study {study.name!r} has no completed trial to export; run (or continue) its search first, "
            f"e.g. nasflow search --name {study.name}"
        )
    if pareto:
        front = study.pareto_front()
        if not front:
            raise NasflowError(
                f"study {study.name!r} has no feasible completed trial, so its Pareto front is empty; "
                "export the best infeasible one with top=1 or a trial number"
            )
        return front
    first = study.objectives[0]
    ranked = sorted(scored, key=lambda t: (t.violation, -first.oriented(t.values[0]), t.number))  # type: ignore[index]
    unique: dict[str, FrozenTrial] = {}
    for candidate in ranked:
        unique.setdefault(candidate.canonical, candidate)
        if len(unique) == top:
            break
    return list(unique.values())


def _latency(
    model: nn.Module, input_shape: Sequence[int], runtimes: Iterable[str]
) -> tuple[dict[str, Any], str | None]:
    """Median latency and spread per runtime (batch 1, one thread), or None with a note why not."""
    try:
        from nasflow.objectives.latency import measure_latency
    except ImportError as exc:
        return {r: None for r in LATENCY_RUNTIMES}, f"latency not measured: {exc}"
    result: dict[str, Any] = {r: None for r in LATENCY_RUNTIMES}
    notes = []
    for runtime in runtimes:
        try:
            measured = measure_latency(model, tuple(input_shape), batch_size=1, runtime=runtime, threads=1)
        except NasflowError as exc:
            notes.append(f"{runtime} latency not measured: {exc}")
            continue
        result[runtime] = measured.to_dict()
    return result, "; ".join(notes) or None


def _say(progress: Progress | None, message: str) -> None:
    if progress is not None:
        progress(message)


def inherited_weights(study: Study, chosen: Sequence[FrozenTrial]) -> dict[int, str]:
    """The stored weights file each chosen trial's architecture inherited in the search, by trial number.

    Raises:
        ConfigError: a chosen architecture has no stored weights, or its file is gone.
    """
    stored = {r.payload.get("canonical"): r.payload for r in study.results("inherited_weights")}
    found = {}
    for trial in chosen:
        entry = stored.get(trial.canonical)
        if entry is None:
            raise ConfigError(
                f"trial {trial.number} has no inherited weights in study {study.name!r}: only one-shot "
                "searches with a database file store them; train from scratch (no fine_tune) or pass "
                "init_weights"
            )
        path = Path(str(entry.get("path")))
        if not path.is_file():
            raise ConfigError(f"the inherited weights of trial {trial.number} are gone: {str(path)!r}")
        found[trial.number] = str(path)
    return found


def export_study(
    study: Study,
    *,
    top: int = 1,
    pareto: bool = False,
    trial: int | None = None,
    retrain_epochs: int | None = None,
    seeds: int = 1,
    formats: str | Sequence[str] = ("onnx", "torchscript"),
    output_dir: str | os.PathLike[str] | None = None,
    robustness: bool = True,
    transfer_data: str | os.PathLike[str] | None = None,
    init_weights: str | os.PathLike[str] | None = None,
    fine_tune: bool = False,
    task: str | Task | None = None,
    latency: bool = True,
    progress: Progress | None = None,
) -> list[ExportResult]:
    """Retrain, validate and export the chosen architectures of ``study``; store each model card in it.

    For each chosen trial (see :func:`select_trials`): retrain from scratch on train+val with the
    study's training settings (``seeds`` models with different seeds; the first is exported), measure
    test accuracy and loss, robustness to perturbed inputs and optionally transfer to other data,
    export ONNX and TorchScript files verified against the PyTorch model on the test inputs, measure
    cost (parameters, MACs, latency) and write ``model_card.json``/``.md``, ``architecture.png``,
    ``weights.pt`` and ``predict.py`` into ``output_dir/<model>/``.

    Args:
        study: the study (e.g. from :func:`nasflow.load_study`).
        top: export the best ``top`` distinct architectures (feasible first, first objective).
        pareto: export the Pareto front instead.
        trial: export this trial number instead.
        retrain_epochs: training epochs; default the study evaluator's ``epochs``.
        seeds: number of models trained with different seeds; the card reports mean and std.
        formats: ``"onnx"`` and/or ``"torchscript"`` (a list or a comma-separated string).
        output_dir: where model folders go; default ``exports/<study name>``.
        robustness: measure accuracy under noise, shifts and occlusion.
        transfer_data: a ``.npz`` file or image folder: also train the architecture on that task and
            report its test accuracy.
        init_weights: a state dict (``.pt``) of the network: fine-tune from it instead of training
            from scratch.
        fine_tune: fine-tune each architecture from the weights it inherited in the search (stored
            by one-shot searches as results of kind ``"inherited_weights"``) instead of training
            from scratch; an architecture without stored weights is an error.
        task: the task for studies whose evaluator trains nothing (e.g. tabular); default ``"digits"``.
        latency: measure latency (eager, and ONNX Runtime when ONNX is exported).
        progress: called with a short message at each stage (the CLI prints them).

    Returns:
        One :class:`ExportResult` per exported model, in selection order.

    Raises:
        ConfigError: a bad option, folder, trial number, weights file or missing ONNX packages.
        NasflowError: nothing to export, a space that builds no networks, or a failed verification
            (:class:`~nasflow.export.formats.ExportError`).
    """
    chosen_formats = fmt.check_formats(formats)
    seeds = _positive_int("seeds", seeds)
    chosen = select_trials(study, top=top, pareto=pareto, trial=trial)
    if study.space is None:
        raise ConfigError(
            f"study {study.name!r} was loaded without its search space (a custom space cannot be rebuilt "
            "from storage); pass space= to load_study to export it"
        )
    space = study.space
    root = prepare_output_dir(output_dir if output_dir is not None else study_folder("exports", study.name))
    if "onnx" in chosen_formats:
        fmt.require_onnx()
    plan = plan_training(study.evaluator, retrain_epochs, task)
    if fine_tune and init_weights is not None:
        raise ConfigError("give either init_weights (one file for every model) or fine_tune, not both")
    sources = inherited_weights(study, chosen) if fine_tune else {}
    if init_weights is not None:
        sources = {t.number: str(Path(init_weights).resolve()) for t in chosen}
    initials = {number: load_init_weights(path) for number, path in sources.items()}
    transfer_task = None
    if transfer_data is not None:
        transfer_task = load_task(data=transfer_data, split_seed=plan.trainer.split_seed)
    # Build every network once now, so a space that cannot build or weights that do not fit fail
    # before any training.
    for candidate in chosen:
        network = build_network(space, candidate.arch, plan.task)
        if candidate.number in initials:
            apply_weights(network, initials[candidate.number], sources[candidate.number])
        if transfer_task is not None:
            build_network(space, candidate.arch, transfer_task)

    results = []
    for candidate in chosen:
        results.append(
            _export_one(
                study,
                candidate,
                plan,
                root,
                formats=chosen_formats,
                seeds=seeds,
                with_robustness=robustness,
                transfer_task=transfer_task,
                transfer_data=None if transfer_data is None else str(transfer_data),
                initial=initials.get(candidate.number),
                init_source=sources.get(candidate.number),
                with_latency=latency,
                progress=progress,
            )
        )
    return results


def _export_one(
    study: Study,
    trial: FrozenTrial,
    plan: TrainingPlan,
    root: Path,
    *,
    formats: tuple[str, ...],
    seeds: int,
    with_robustness: bool,
    transfer_task: Task | None,
    transfer_data: str | None,
    initial: dict[str, torch.Tensor] | None,
    init_source: str | None,
    with_latency: bool,
    progress: Progress | None,
) -> ExportResult:
    """Retrain, validate, export and describe one trial's architecture."""
    assert study.space is not None
    space, task = study.space, plan.task
    start = time.perf_counter()
    name = f"trial-{trial.number}"
    directory = root / name
    directory.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []

    # -- retrain (k seeds) and test ----------------------------------------------------------
    runs: list[dict[str, Any]] = []
    exported: nn.Module | None = None
    for index in range(seeds):
        seed = model_seed(study.seed, trial.number, index)
        what = "fine-tuning" if initial is not None else "training"
        _say(progress, f"{name}: {what} seed {index + 1}/{seeds} for {plan.epochs} epochs on train+val")
        run = retrain(space, trial.arch, plan, seed, initial, init_source or "init_weights")
        accuracy, loss = score(run.model, task.x_test, task.y_test)
        runs.append({"seed": seed, "test_accuracy": accuracy, "test_loss": loss, "seconds": run.seconds})
        if exported is None:
            exported = run.model
    assert exported is not None
    mean, std = mean_std([r["test_accuracy"] for r in runs])
    reference = predict(exported, task.x_test)

    # -- robustness and transfer ---------------------------------------------------------------
    rows: list[dict[str, Any]] = []
    if with_robustness:
        _say(progress, f"{name}: robustness (noise, shifts, occlusion) on the test split")
        data_std = float(np.concatenate([task.x_train, task.x_val]).std())
        rows = robustness_table(exported, task.x_test, task.y_test, data_std=data_std, seed=runs[0]["seed"])
    transfer = None
    if transfer_task is not None:
        _say(progress, f"{name}: training on the transfer data {transfer_data}")
        transfer = _transfer(space, trial, plan, transfer_task, transfer_data, runs[0]["seed"])

    # -- files ---------------------------------------------------------------------------------
    _say(
        progress, f"{name}: exporting {', '.join(formats) or 'weights only'} and verifying on the test inputs"
    )
    exports = fmt.export_and_verify(exported, directory, formats, task.x_test, task.y_test, reference)
    torch.save(exported.state_dict(), directory / WEIGHTS)
    draw_architecture(space, trial.arch, directory / DIAGRAM, task=task)
    class_names = task.class_names or [str(i) for i in range(task.num_classes)]
    if "onnx" in formats:
        write_predict_script(directory / PREDICT, name, class_names, task.input_shape)

    # -- cost ------------------------------------------------------------------------------------
    latency: dict[str, Any] = {r: None for r in LATENCY_RUNTIMES}
    if with_latency:
        _say(progress, f"{name}: measuring latency")
        runtimes = [r for r in LATENCY_RUNTIMES if r == "eager" or "onnx" in formats]
        latency, note = _latency(exported, task.input_shape, runtimes)
        if note:
            notes.append(note)
    cost = {
        "params": count_parameters(exported),
        "flops": count_macs(exported, task.input_shape),
        "latency_ms": latency,
    }

    # -- card ------------------------------------------------------------------------------------
    if plan.settings_from == FROM_DEFAULTS:
        evaluator = study.evaluator.name if study.evaluator is not None else "unknown"
        notes.append(
            f"the study's evaluator ({evaluator}) trains no networks, so the architecture was trained with "
            f"TrainEvaluator's default settings on the task {task.name!r}"
        )
    fraction = getattr(plan.trainer, "data_fraction", 1.0)
    if plan.settings_from != FROM_DEFAULTS and fraction < 1.0:
        notes.append(
            f"the search trained on {fraction:g} of the training split; retraining used all of train+val"
        )
    if initial is not None:
        notes.append(f"fine-tuned from the weights in {init_source}, not trained from scratch")
    if not trial.feasible:
        notes.append(f"this trial violates the study's constraints (violation {trial.violation:g})")
    notes.append("inputs: float32 images (N, C, H, W) preprocessed exactly like the task's arrays")
    card = _card(
        study,
        trial,
        plan,
        name,
        directory,
        runs=runs,
        mean_std=(mean, std),
        rows=rows,
        transfer=transfer,
        cost=cost,
        exports=exports,
        init_source=init_source,
        formats=formats,
        notes=notes,
    )
    card["export_seconds"] = time.perf_counter() - start  # everything above: training, checks, files
    write_card(card, directory)
    record = study.add_result("export", card)
    _say(progress, f"{name}: done, card in {directory / CARD_JSON}")
    return ExportResult(name, trial.number, directory, card, record.result_id)


def _transfer(
    space: Any, trial: FrozenTrial, plan: TrainingPlan, task: Task, data: str | None, seed: int
) -> dict[str, Any]:
    """Train the architecture from scratch on another task with the same settings; its test result."""
    from nasflow.estimators.train import TrainEvaluator

    t = plan.trainer
    trainer = TrainEvaluator(
        task=task,
        epochs=plan.epochs,
        batch_size=t.batch_size,
        lr=t.lr,
        optimizer=t.optimizer,
        momentum=t.momentum,
        weight_decay=t.weight_decay,
        device=t.device,
        label_smoothing=t.label_smoothing,
    )
    run = retrain(space, trial.arch, TrainingPlan(trainer, task, plan.epochs, plan.settings_from), seed)
    accuracy, loss = score(run.model, task.x_test, task.y_test)
    return {
        "data": data,
        "task": task.name,
        "input_shape": list(task.input_shape),
        "num_classes": task.num_classes,
        "sizes": task.describe()["sizes"],
        "test_accuracy": accuracy,
        "test_loss": loss,
        "epochs": plan.epochs,
        "seed": seed,
        "seconds": run.seconds,
    }


def _card(
    study: Study,
    trial: FrozenTrial,
    plan: TrainingPlan,
    name: str,
    directory: Path,
    *,
    runs: list[dict[str, Any]],
    mean_std: tuple[float, float],
    rows: list[dict[str, Any]],
    transfer: dict[str, Any] | None,
    cost: dict[str, Any],
    exports: dict[str, dict[str, Any]],
    init_source: str | None,
    formats: tuple[str, ...],
    notes: list[str],
) -> dict[str, Any]:
    """The model card dict (schema ``card_version`` 1; see docs/export.md)."""
    assert study.space is not None
    space, task = study.space, plan.task
    files: dict[str, Any] = {"dir": str(directory)}
    files.update({f: fmt.FORMATS[f] for f in formats})
    files.update(
        {"weights": WEIGHTS, "card_json": CARD_JSON, "card_markdown": CARD_MARKDOWN, "diagram": DIAGRAM}
    )
    if "onnx" in formats:
        files["predict"] = PREDICT
    strategy = study.strategy.describe().get("name") if study.strategy is not None else None
    training = plan.settings()
    training.update(
        {
            "seeds": [r["seed"] for r in runs],
            "init_weights": init_source,
            "seconds": runs[0]["seconds"],
            "seconds_total": float(sum(r["seconds"] for r in runs)),
        }
    )
    return {
        "card_version": CARD_VERSION,
        "model": name,
        "created_at": utc_timestamp(),
        "study": {
            "name": study.name,
            "trial_number": trial.number,
            "space": space.name,
            "space_settings": space.describe(),
            "strategy": strategy,
            "evaluator": study.evaluator.describe() if study.evaluator is not None else None,
            "objectives": [str(o) for o in study.objectives],
            "constraints": [str(c) for c in study.constraints],
            "seed": study.seed,
            "feasible": trial.feasible,
            "search_metrics": dict(trial.metrics),
        },
        "architecture": {
            "string": trial.arch_str,
            "arch": trial.arch.to_dict(),
            "canonical": trial.canonical,
            "diagram": DIAGRAM,
        },
        "task": task.describe(),
        "training": training,
        "metrics": {
            "val_accuracy_search": trial.metrics.get("accuracy"),
            "test_accuracy": mean_std[0],
            "test_accuracy_std": mean_std[1],
            "test_accuracy_per_seed": [r["test_accuracy"] for r in runs],
            "test_loss": runs[0]["test_loss"],
            "test_loss_per_seed": [r["test_loss"] for r in runs],
            "exported_test_accuracy": runs[0]["test_accuracy"],
            "exported_seed": runs[0]["seed"],
        },
        "robustness": rows,
        "transfer": transfer,
        "cost": cost,
        "exports": exports,
        "files": files,
        "software": software_versions(),
        "notes": notes,
    }


__all__ = ["ExportResult", "export_study", "select_trials"]
