"""Retraining: settings from the study, train+val data, seeds, fine-tuning from a state dict."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import nasflow as nf
from nasflow.errors import ConfigError, NasflowError
from nasflow.estimators.train import TrainEvaluator
from nasflow.export.retrain import (
    FROM_DEFAULTS,
    FROM_STUDY,
    apply_weights,
    build_network,
    load_init_weights,
    model_seed,
    plan_training,
    retrain,
)
from nasflow.space.base import DecisionSpace


def _state_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_plan_takes_the_study_evaluators_settings_and_epochs() -> None:
    trainer = TrainEvaluator(
        epochs=7, batch_size=32, lr=0.02, optimizer="adamw", weight_decay=0.01, label_smoothing=0.1
    )
    plan = plan_training(trainer, None, None)
    assert plan.trainer is trainer and plan.epochs == 7 and plan.settings_from == FROM_STUDY
    assert plan.task.name == "digits"
    settings = plan.settings()
    assert settings == {
        "data": "train+val",
        "epochs": 7,
        "batch_size": 32,
        "lr": 0.02,
        "schedule": "cosine (per step, to 0)",
        "optimizer": "adamw",
        "momentum": 0.9,
        "weight_decay": 0.01,
        "label_smoothing": 0.1,
        "device": "cpu",
        "settings_from": FROM_STUDY,
    }
    assert plan_training(trainer, 3, "digits").epochs == 3  # retrain_epochs wins; same task is fine


def test_plan_for_an_evaluator_that_trains_nothing_uses_defaults_on_the_task() -> None:
    plan = plan_training(nf.FunctionEvaluator(lambda arch: 1.0), None, None)
    defaults = TrainEvaluator()
    assert plan.settings_from == FROM_DEFAULTS and plan.task.name == "digits"
    assert (plan.epochs, plan.trainer.lr, plan.trainer.batch_size) == (
        defaults.epochs,
        defaults.lr,
        defaults.batch_size,
    )


def test_plan_rejects_bad_epochs_and_another_task() -> None:
    with pytest.raises(ConfigError, match="retrain_epochs must be an integer >= 1"):
        plan_training(TrainEvaluator(), 0, None)
    with pytest.raises(ConfigError, match="transfer_data"):
        plan_training(TrainEvaluator(), None, "cifar10")


def test_model_seed_depends_on_study_seed_trial_and_index_only() -> None:
    assert model_seed(0, 3, 0) == model_seed(0, 3, 0)
    seeds = {model_seed(s, t, i) for s in (0, 1) for t in (0, 1) for i in (0, 1)}
    assert len(seeds) == 8
    assert model_seed(0, 3, 0) != nf.study.trial_seed(0, 3)  # a fresh draw, not the search's weights


def test_retrain_trains_on_train_plus_val_and_is_reproducible(space, cells, digits, monkeypatch) -> None:
    seen = []
    fit = TrainEvaluator.fit

    def spy(self, model, x, y, epochs, seed):
        seen.append((len(x), len(y), epochs, seed))
        return fit(self, model, x, y, epochs, seed)

    monkeypatch.setattr(TrainEvaluator, "fit", spy)
    plan = plan_training(TrainEvaluator(epochs=1), None, None)
    arch = space.parse(cells["cell"])
    before = torch.random.get_rng_state()
    first = retrain(space, arch, plan, seed=5)
    assert torch.equal(torch.random.get_rng_state(), before)  # no global seeding leaks out
    second = retrain(space, arch, plan, seed=5)
    other = retrain(space, arch, plan, seed=6)
    n = len(digits.y_train) + len(digits.y_val)
    assert seen == [(n, n, 1, 5), (n, n, 1, 5), (n, n, 1, 6)]
    assert _state_equal(first.model.state_dict(), second.model.state_dict())
    assert not _state_equal(first.model.state_dict(), other.model.state_dict())
    assert not first.model.training and first.seed == 5 and first.seconds > 0
    assert np.isfinite(first.train_loss) and first.train_loss == second.train_loss


def test_fit_without_validation_returns_the_last_epoch_loss(space, cells, digits) -> None:
    trainer = TrainEvaluator(epochs=2)
    model = space.build(space.parse(cells["cell"]), digits)
    x, y = torch.from_numpy(digits.x_train[:128]), torch.from_numpy(digits.y_train[:128])
    loss = trainer.fit(model, x, y, epochs=2, seed=0)
    assert 0 < loss < np.log(10) + 1  # a mean cross-entropy over 10 classes after two epochs
    with pytest.raises(ConfigError, match="epochs"):
        trainer.fit(model, x, y, epochs=0, seed=0)


def test_fine_tuning_starts_from_the_given_weights(space, cells, digits, tmp_path, monkeypatch) -> None:
    arch = space.parse(cells["cell"])
    donor = space.build(arch, digits)
    with torch.no_grad():
        for p in donor.parameters():
            p.fill_(0.125)  # unlike any random initialisation
    path = tmp_path / "weights.pt"
    torch.save(donor.state_dict(), path)
    # with training switched off, the network must hold exactly the file's weights
    monkeypatch.setattr(TrainEvaluator, "fit", lambda self, model, x, y, epochs, seed: 0.0)
    plan = plan_training(TrainEvaluator(epochs=1), None, None)
    result = retrain(space, arch, plan, seed=1, init_weights=load_init_weights(path))
    assert _state_equal(result.model.state_dict(), donor.state_dict())
    # a checkpoint dict that wraps the state dict is accepted too
    torch.save({"state_dict": donor.state_dict(), "epoch": 3}, tmp_path / "ckpt.pt")
    assert _state_equal(load_init_weights(tmp_path / "ckpt.pt"), donor.state_dict())


def test_bad_init_weights_files_give_clear_errors(space, cells, digits, tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_init_weights(tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 this is not a torch file")
    with pytest.raises(ConfigError, match="not a readable PyTorch state dict"):
        load_init_weights(corrupt)
    listed = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], listed)
    with pytest.raises(ConfigError, match="holds list, not a state dict"):
        load_init_weights(listed)
    foreign = tmp_path / "other.pt"
    torch.save(space.build(space.parse(cells["other"]), digits).state_dict(), foreign)
    network = space.build(space.parse(cells["cell"]), digits)
    with pytest.raises(ConfigError, match=r"does not fit the network.*(missing|unexpected|shapes)"):
        apply_weights(network, load_init_weights(foreign), str(foreign))


def test_a_space_that_builds_no_network_is_refused(digits) -> None:
    plain = DecisionSpace({"a": [1, 2]})
    with pytest.raises(NasflowError, match="cannot build networks"):
        build_network(plain, plain.parse("a=1"), digits)


def test_a_build_that_is_no_torch_module_is_refused(digits) -> None:
    class Strange(DecisionSpace):
        def build(self, arch, task=None):
            return "a network"

    strange = Strange({"a": [1]})
    with pytest.raises(NasflowError, match="not a torch.nn.Module"):
        build_network(strange, strange.parse("a=1"), digits)
