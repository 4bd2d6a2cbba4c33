"""ENAS (Pham et al., ICML 2018): an LSTM controller samples paths of a shared-weight supernet.

Each epoch first trains the shared weights, one controller-sampled architecture per batch, then
trains the controller for ``controller_steps`` REINFORCE steps: it samples an architecture, the
reward is that architecture's accuracy on a batch of the selection split with the shared weights
(batch statistics, no recalibration: cheap, as in ENAS), and the loss is
``-(reward - baseline) * log p(arch) - entropy_weight * entropy`` with an exponential moving-average
baseline. At the end ``derive_samples`` architectures drawn from the controller (plus its most likely
one) are scored with the shared weights after batch-norm recalibration and the best is chosen.

The controller is the autoregressive LSTM policy of the ``reinforce`` strategy (one step per
decision of the space, logits bounded by ``tanh_constant`` as in ENAS), reused as is.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from nasflow.oneshot.base import EpochLog, OneShotSearch, check_float, check_int
from nasflow.oneshot.supernet import batch_statistics_accuracy
from nasflow.space.architecture import Architecture
from nasflow.space.base import DecisionSpace
from nasflow.strategies.reinforce import _Adam, _Controller

#: controller draws tried for a valid architecture before a uniform sample stands in
_VALID_TRIES = 20


class ENAS(OneShotSearch):
    """Efficient NAS via parameter sharing: REINFORCE controller + shared weights on sampled paths.

    Args:
        controller_hidden: width of the controller's LSTM and embeddings (ENAS: 64 or 100).
        controller_lr: Adam learning rate of the controller (larger than ENAS's 3.5e-4 because a
            digits search makes hundreds of controller steps, not tens of thousands).
        controller_steps: controller updates after each epoch of weight training.
        entropy_weight: weight of the entropy bonus (ENAS: 1e-4).
        baseline_decay: decay of the moving-average reward baseline (ENAS: 0.99).
        tanh_constant: logits are bounded by ``c * tanh(logits / c)`` (ENAS: 1.1 to 2.5).
        derive_samples: controller samples scored at the end to choose the architecture (ENAS
            samples several and keeps the best on validation data).

    The remaining arguments are described in :class:`~nasflow.oneshot.base.OneShotSearch`.
    """

    name = "enas"

    def __init__(
        self,
        space: DecisionSpace | str | None = None,
        epochs: int = 50,
        batch_size: int = 64,
        lr: float = 0.025,
        lr_min: float = 0.001,
        momentum: float = 0.9,
        weight_decay: float = 3e-4,
        grad_clip: float = 5.0,
        controller_hidden: int = 32,
        controller_lr: float = 0.01,
        controller_steps: int = 20,
        entropy_weight: float = 1e-4,
        baseline_decay: float = 0.95,
        tanh_constant: float = 2.5,
        derive_samples: int = 20,
        arch_split: str = "val",
        bn_examples: int = 512,
        device: str = "cpu",
        seed: int | None = None,
    ) -> None:
        super().__init__(
            space, epochs, batch_size, lr, lr_min, momentum, weight_decay, grad_clip, arch_split,
            bn_examples, device, seed,
        )  # fmt: skip
        self.controller_hidden = check_int("controller_hidden", controller_hidden, 1)
        self.controller_lr = check_float("controller_lr", controller_lr, 0.0, strict=True)
        self.controller_steps = check_int("controller_steps", controller_steps, 0)
        self.entropy_weight = check_float("entropy_weight", entropy_weight, 0.0)
        self.baseline_decay = check_float("baseline_decay", baseline_decay, 0.0, 1.0)
        self.tanh_constant = check_float("tanh_constant", tanh_constant, 0.0, strict=True)
        self.derive_samples = check_int("derive_samples", derive_samples, 1)

    # -- controller ------------------------------------------------------------------------
    def _setup_search(self) -> None:
        self._decisions = self.space_.decisions()
        self._controller_seed = int(self.rng.integers(2**31))
        self._build_controller()
        self._baseline: float | None = None

    def _build_controller(self) -> None:
        cardinalities = [len(choices) for choices in self._decisions.values()]
        self.controller = _Controller(
            cardinalities, self.controller_hidden, self._controller_seed, self.tanh_constant
        )
        self._controller_optimizer = _Adam(self.controller.parameters, lr=self.controller_lr)

    def __getstate__(self) -> dict[str, Any]:
        # The controller holds the torch module object, which does not pickle: keep its weights only.
        state = dict(self.__dict__)
        if "controller" in state:
            state["controller"] = [p.detach().clone() for p in self.controller.parameters]
            state.pop("_controller_optimizer")
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        weights = state.pop("controller", None)
        self.__dict__.update(state)
        if weights is not None:
            # a fresh Adam: an unpickled search samples and scores like the original; further
            # controller training would start with new moment estimates
            self._build_controller()
            with torch.no_grad():
                for parameter, value in zip(self.controller.parameters, weights):
                    parameter.copy_(value)

    def _decode(self, choices: np.ndarray) -> Architecture:
        return Architecture({k: c[int(i)] for (k, c), i in zip(self._decisions.items(), choices)})

    def sample(self) -> tuple[Architecture, np.ndarray]:
        """An architecture drawn from the controller and its choice indices.

        Invalid draws (spaces with constraints) are redrawn; after a few tries a uniform sample stands
        in, and learning uses the log-probability of what was actually used.
        """
        for _ in range(_VALID_TRIES):
            choices = self.controller.sample(self.rng, 1)[0]
            arch = self._decode(choices)
            if self.space_.is_valid(arch):
                return arch, choices
        arch = self.space_.sample(self.rng)
        return arch, self.space_.encode(arch, "index").astype(np.int64)

    def most_likely(self) -> tuple[Architecture, list[list[float]]]:
        """The greedy (step-wise most likely) architecture and each step's choice probabilities."""
        torch_ = self.controller.torch
        probabilities: list[list[float]] = []
        chosen: list[int] = []
        with torch_.no_grad():
            state = None
            previous = torch_.zeros(1, dtype=torch_.long)
            for step in range(len(self._decisions)):
                logits, state = self.controller.step_logits(previous, step, state)
                probs = torch_.softmax(logits, dim=-1)[0]
                probabilities.append([float(p) for p in probs])
                chosen.append(int(probs.argmax()))
                previous = torch_.tensor([chosen[-1]])
        return self._decode(np.array(chosen)), probabilities

    # -- training --------------------------------------------------------------------------
    def _train_epoch(self, epoch: int) -> dict[str, float]:
        loss_sum = 0.0
        correct = seen = 0
        for index in self._weight_batches():
            arch, _ = self.sample()
            loss, right = self._weight_step(index, path=self.supernet.path_of(arch))
            loss_sum += loss * len(index)
            correct += right
            seen += len(index)
        metrics = {"train_loss": loss_sum / seen, "train_accuracy": 100.0 * correct / seen}
        rewards = [self._controller_step() for _ in range(self.controller_steps)]
        if rewards:
            metrics["reward"] = 100.0 * float(np.mean(rewards))
            metrics["baseline"] = 100.0 * float(self._baseline or 0.0)
        return metrics

    def _controller_step(self) -> float:
        """One REINFORCE update; returns the reward (accuracy as a fraction)."""
        arch, choices = self.sample()
        x, y = self._next_arch_batch()
        reward = batch_statistics_accuracy(self.supernet, self.supernet.path_of(arch), x, y) / 100.0
        if self._baseline is None:
            self._baseline = reward  # so that the first update does not push blindly
        self._baseline = self.baseline_decay * self._baseline + (1.0 - self.baseline_decay) * reward
        advantage = reward - self._baseline
        log_prob, entropy = self.controller.evaluate(torch.tensor([choices.tolist()], dtype=torch.long))
        loss = -advantage * log_prob[0] - self.entropy_weight * entropy[0]
        loss.backward()
        self._controller_optimizer.step()
        return reward

    # -- logging and selection -------------------------------------------------------------
    def _choices(self) -> dict[str, list[str]]:
        return {name: [str(c) for c in choices] for name, choices in self._decisions.items()}

    def _weights_log(self) -> dict[str, list[float]]:
        """Each decision's choice probabilities along the controller's most likely sequence."""
        _, probabilities = self.most_likely()
        return dict(zip(self._decisions, probabilities))

    def current_arch(self) -> Architecture | None:
        arch = self.most_likely()[0]
        return arch if self.space_.is_valid(arch) else None

    def _select(self, logs: list[EpochLog]) -> tuple[Architecture, list[dict[str, Any]]]:
        archs = [self.sample()[0] for _ in range(self.derive_samples)]
        greedy = self.current_arch()
        scored = self._scored(([greedy] if greedy is not None else []) + archs)
        best = max(scored, key=lambda c: c["score"])
        return Architecture(best["arch"]), scored
