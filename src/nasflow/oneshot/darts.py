"""Differentiable searches: DARTS (1st/2nd order), DARTS+, FairDARTS and GDAS on one code path.

Every edge of the supernet mixes its candidate operations with weights computed from architecture
parameters ``alpha`` (one row per edge). Training alternates, batch by batch, one Adam step of
``alpha`` on a batch of the selection split and one SGD step of the supernet weights on a training
batch (the bilevel approximation of DARTS). The variants differ only in how ``alpha`` becomes
mixing weights, in a regulariser, and in when to stop:

* DARTS (Liu, Simonyan & Yang, ICLR 2019): softmax over the operations of each edge.
* DARTS+ (Liang et al. 2019): DARTS with early stopping against the collapse to skip connections.
* FairDARTS (Chu et al., ECCV 2020): independent sigmoids plus a zero-one loss.
* GDAS (Dong & Yang, CVPR 2019): one operation per edge sampled with straight-through Gumbel-softmax.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from nasflow.errors import ConfigError
from nasflow.oneshot.base import EpochLog, OneShotSearch, as_lists, check_float, check_int
from nasflow.oneshot.supernet import Path, Supernet
from nasflow.space.architecture import Architecture
from nasflow.space.base import DecisionSpace

#: scale of the random initial architecture parameters (DARTS: 1e-3 * N(0, 1))
_ALPHA_INIT = 1e-3
#: DARTS's finite-difference step: epsilon = 0.01 / ||grad||
_FD_SCALE = 0.01


class DARTS(OneShotSearch):
    """DARTS: continuous relaxation with softmax-mixed operations, bilevel gradient descent.

    The derived architecture takes the operation with the largest weight on each edge (NB201:
    ``none`` included, as in NAS-Bench-201's DARTS baseline; DARTS space: the two strongest
    incoming edges of each node, ``none`` excluded, as in the paper).

    Args:
        arch_lr: Adam learning rate of ``alpha``. Adam moves each parameter by about ``arch_lr`` per
            step, so ``arch_lr x steps`` bounds how far the weights can travel: the paper's 3e-4 over
            50 epochs of 25k images (~20k steps) allows ~6; 0.01 allows ~5 over the ~500 steps of a
            30-epoch digits search.
        arch_weight_decay: L2 penalty of ``alpha`` (1e-3 in the paper).
        order: 1 (first-order approximation, the default) or 2 (the unrolled second-order gradient
            with the paper's finite-difference Hessian-vector product; ~3x slower per step). The
            virtual step is a plain SGD step with weight decay, without the momentum term.

    The remaining arguments are described in :class:`~nasflow.oneshot.base.OneShotSearch`.
    """

    name = "darts"
    #: whether ``order=2`` is allowed (only for the plain softmax relaxation)
    _second_order = True

    def __init__(
        self,
        space: DecisionSpace | str | None = None,
        epochs: int = 30,
        batch_size: int = 64,
        lr: float = 0.025,
        lr_min: float = 0.001,
        momentum: float = 0.9,
        weight_decay: float = 3e-4,
        grad_clip: float = 5.0,
        arch_lr: float = 0.01,
        arch_weight_decay: float = 1e-3,
        order: int = 1,
        arch_split: str = "val",
        bn_examples: int = 512,
        device: str = "cpu",
        seed: int | None = None,
    ) -> None:
        super().__init__(
            space, epochs, batch_size, lr, lr_min, momentum, weight_decay, grad_clip, arch_split,
            bn_examples, device, seed,
        )  # fmt: skip
        self.arch_lr = check_float("arch_lr", arch_lr, 0.0, strict=True)
        self.arch_weight_decay = check_float("arch_weight_decay", arch_weight_decay, 0.0)
        if order not in (1, 2) or isinstance(order, bool):
            raise ConfigError(f"order must be 1 (first-order) or 2 (second-order), got {order!r}")
        if order == 2 and not self._second_order:
            raise ConfigError(f"{self.name} supports only order=1")
        self.order = order

    # -- architecture parameters ------------------------------------------------------------
    def _setup_search(self) -> None:
        shape = (self.supernet.num_edges, self.supernet.num_ops)
        device = self._x_w.device
        initial = _ALPHA_INIT * torch.randn(shape, generator=self.generator)
        self.alphas = nn.Parameter(initial.to(device))
        # betas (0.5, 0.999) as in DARTS
        self._arch_optimizer = torch.optim.Adam(
            [self.alphas], lr=self.arch_lr, betas=(0.5, 0.999), weight_decay=self.arch_weight_decay
        )

    def mixing_weights(self) -> torch.Tensor:
        """Edge x operation weights of the relaxation (softmax over each edge's operations)."""
        return torch.softmax(self.alphas, dim=-1)

    def _forward_args(self) -> tuple[torch.Tensor | None, Path | None]:
        """Mixing weights and path for one forward pass (GDAS samples a new path each time)."""
        return self.mixing_weights(), None

    def _regulariser(self) -> torch.Tensor | None:
        return None

    def _arch_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        weights, path = self._forward_args()
        loss = nn.functional.cross_entropy(self.supernet(x, weights=weights, path=path), y)
        extra = self._regulariser()
        return loss if extra is None else loss + extra

    def _derive_weights(self) -> np.ndarray:
        """The weights the derived architecture is read from."""
        return self.mixing_weights().detach().cpu().numpy()

    # -- training ---------------------------------------------------------------------------
    def _train_epoch(self, epoch: int) -> dict[str, float]:
        self._epoch = epoch
        loss_sum = arch_loss_sum = 0.0
        correct = seen = arch_seen = 0
        for index in self._weight_batches():
            x_arch, y_arch = self._next_arch_batch()
            arch_loss_sum += self._arch_step(index, x_arch, y_arch) * len(y_arch)
            arch_seen += len(y_arch)
            weights, path = self._forward_args()
            loss, right = self._weight_step(index, None if weights is None else weights.detach(), path)
            loss_sum += loss * len(index)
            correct += right
            seen += len(index)
        return {
            "train_loss": loss_sum / seen,
            "train_accuracy": 100.0 * correct / seen,
            "arch_loss": arch_loss_sum / arch_seen,
        }

    def _arch_step(self, index: torch.Tensor, x_arch: torch.Tensor, y_arch: torch.Tensor) -> float:
        """One update of ``alpha`` on a selection batch; returns the selection loss."""
        self.supernet.train()
        self._arch_optimizer.zero_grad(set_to_none=True)
        if self.order == 2:
            loss = self._unrolled_gradient(index, x_arch, y_arch)
        else:
            arch_loss = self._arch_loss(x_arch, y_arch)
            loss = float(arch_loss.detach())
            (grad,) = torch.autograd.grad(arch_loss, [self.alphas])
            self.alphas.grad = grad
        self._arch_optimizer.step()
        return loss

    def _unrolled_gradient(self, index: torch.Tensor, x_arch: torch.Tensor, y_arch: torch.Tensor) -> float:
        """Set ``alpha.grad`` to DARTS's second-order gradient (Liu et al. 2019, eq. 7-8).

        grad = d/d alpha L_val(w', alpha) - xi * (d/d alpha L_train(w+, alpha) - d/d alpha L_train(w-, alpha))
        / (2 eps), with w' = w - xi * grad_w L_train(w, alpha) and w+- = w +- eps * grad_w' L_val(w', alpha).
        """
        params = [p for p in self.supernet.parameters() if p.requires_grad]
        index = index.to(self._x_w.device)
        x_train, y_train = self._x_w[index], self._y_w[index]
        xi = self._learning_rate()
        backup = [p.detach().clone() for p in params]

        train_loss = self._arch_loss(x_train, y_train)
        grads = _grads(train_loss, params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(xi * (g + self.weight_decay * p))  # the virtual step w -> w'
        val_loss = self._arch_loss(x_arch, y_arch)
        alpha_grad, *w_grads = _grads(val_loss, [self.alphas, *params])
        norm = torch.sqrt(sum((g * g).sum() for g in w_grads))  # type: ignore[arg-type]
        eps = _FD_SCALE / float(norm) if float(norm) > 0 else 0.0

        def alpha_grad_at(sign: float) -> torch.Tensor:
            with torch.no_grad():
                for p, saved, g in zip(params, backup, w_grads):
                    p.copy_(saved + sign * eps * g)
            return _grads(self._arch_loss(x_train, y_train), [self.alphas])[0]

        if eps > 0:
            hessian_vector = (alpha_grad_at(1.0) - alpha_grad_at(-1.0)) / (2 * eps)
            alpha_grad = alpha_grad - xi * hessian_vector
        with torch.no_grad():
            for p, saved in zip(params, backup):
                p.copy_(saved)
        self.alphas.grad = alpha_grad
        return float(val_loss.detach())

    # -- logging and selection --------------------------------------------------------------
    def current_arch(self) -> Architecture:
        """The architecture the current ``alpha`` points to."""
        return self.supernet.derive(self._derive_weights())

    def _weights_log(self) -> dict[str, list[float]]:
        return as_lists(self.mixing_weights().detach().cpu().numpy(), self.supernet.edge_names)

    def _alphas_log(self) -> dict[str, list[float]]:
        return as_lists(self.alphas.detach().cpu().numpy(), self.supernet.edge_names)

    def _select(self, logs: list[EpochLog]) -> tuple[Architecture, list[dict[str, Any]]]:
        final = self.current_arch()
        archs = [self.space_.parse(log.arch) for log in logs if log.arch is not None]
        return final, self._scored([final, *archs])


class DARTSPlus(DARTS):
    """DARTS+ (Liang et al. 2019): DARTS that stops before it collapses to skip connections.

    After each epoch it stops when the derived architecture holds ``max_skips`` or more skip
    connections (DARTS space: in the normal cell; NB201: in its one cell), or when the ranking of the
    weights of the learnable operations (those with parameters) on every edge has not changed for
    ``patience`` epochs. The architecture derived at that epoch is the result.

    Args:
        max_skips: skip connections that stop the search (2 in the paper).
        patience: epochs of an unchanged ranking that stop the search (10 in the paper).
    """

    name = "darts+"

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
        arch_lr: float = 0.01,
        arch_weight_decay: float = 1e-3,
        order: int = 1,
        max_skips: int = 2,
        patience: int = 10,
        arch_split: str = "val",
        bn_examples: int = 512,
        device: str = "cpu",
        seed: int | None = None,
    ) -> None:
        super().__init__(
            space, epochs, batch_size, lr, lr_min, momentum, weight_decay, grad_clip, arch_lr,
            arch_weight_decay, order, arch_split, bn_examples, device, seed,
        )  # fmt: skip
        self.max_skips = check_int("max_skips", max_skips, 1)
        self.patience = check_int("patience", patience, 1)

    def _stop_reason(self, logs: list[EpochLog]) -> str | None:
        names = self.supernet.edge_names
        history = [np.array([log.weights[name] for name in names]) for log in logs]
        return early_stop_reason(history, self.supernet, self.max_skips, self.patience)


def early_stop_reason(
    history: Sequence[np.ndarray], supernet: Supernet, max_skips: int = 2, patience: int = 10
) -> str | None:
    """DARTS+'s stopping rules applied to the per-epoch mixing weights ``history`` (last = now).

    Returns the reason to stop now, or None.
    """
    if not history:
        return None
    skips = supernet.count_skips(supernet.derive(history[-1]))
    if skips >= max_skips:
        return f"the derived cell holds {skips} skip connections (max_skips={max_skips})"
    if len(history) <= patience:
        return None
    learnable = learnable_ops(supernet)
    rankings = [
        np.argsort(-np.asarray(w)[:, learnable], axis=1, kind="stable") for w in history[-patience - 1 :]
    ]
    if all(np.array_equal(r, rankings[-1]) for r in rankings):
        return f"the ranking of the learnable operations has not changed for {patience} epochs"
    return None


def learnable_ops(supernet: Supernet) -> list[int]:
    """Columns of the operations that have parameters (convolutions), read off the supernet."""
    from nasflow.oneshot.supernet import MixedOp

    mixed = next(m for m in supernet.modules() if isinstance(m, MixedOp))
    return [k for k, op in enumerate(mixed.ops) if any(True for _ in op.parameters())]


class FairDARTS(DARTS):
    """FairDARTS (Chu et al., ECCV 2020): sigmoid weights, so operations do not compete, plus a 0-1 loss.

    Each operation's weight is ``sigmoid(alpha)``, independent of the others on its edge. The
    zero-one loss ``-zero_one_weight * mean((sigmoid(alpha) - 0.5)^2)`` is added to the selection
    loss and pushes every weight towards 0 or 1, so that the discretisation at the end changes little.
    ``none`` has no switch of its own (an edge with every switch off is already empty). NB201: an
    edge takes its strongest operation if that weight reaches ``threshold``, else ``none``, except
    that every node keeps its strongest incoming edge, so that the cell stays connected. DARTS space:
    each node keeps its two strongest edges, as in the paper.

    Args:
        zero_one_weight: weight of the zero-one loss (10 in the paper).
        threshold: sigmoid value an operation needs to be kept (0.85 in the paper).
    """

    name = "fairdarts"
    _second_order = False

    def __init__(
        self,
        space: DecisionSpace | str | None = None,
        epochs: int = 30,
        batch_size: int = 64,
        lr: float = 0.025,
        lr_min: float = 0.001,
        momentum: float = 0.9,
        weight_decay: float = 3e-4,
        grad_clip: float = 5.0,
        arch_lr: float = 0.01,
        arch_weight_decay: float = 1e-3,
        zero_one_weight: float = 10.0,
        threshold: float = 0.85,
        arch_split: str = "val",
        bn_examples: int = 512,
        device: str = "cpu",
        seed: int | None = None,
    ) -> None:
        super().__init__(
            space, epochs, batch_size, lr, lr_min, momentum, weight_decay, grad_clip, arch_lr,
            arch_weight_decay, 1, arch_split, bn_examples, device, seed,
        )  # fmt: skip
        self.zero_one_weight = check_float("zero_one_weight", zero_one_weight, 0.0)
        self.threshold = check_float("threshold", threshold, 0.0, 1.0)

    def get_params(self) -> dict[str, Any]:
        params = super().get_params()
        params.pop("order", None)
        return params

    def _setup_search(self) -> None:
        super()._setup_search()
        ops = self.supernet.op_names
        self._switched = torch.tensor([0.0 if op == "none" else 1.0 for op in ops], device=self._x_w.device)

    def mixing_weights(self) -> torch.Tensor:
        return torch.sigmoid(self.alphas) * self._switched

    def _regulariser(self) -> torch.Tensor:
        switches = torch.sigmoid(self.alphas)[:, self._switched.bool()]
        return self.zero_one_weight * zero_one_loss(switches)

    def current_arch(self) -> Architecture:
        """The architecture the current sigmoid weights switch on (see the class docs)."""
        sigmoids = torch.sigmoid(self.alphas).detach().cpu().numpy()
        return self.supernet.derive_thresholded(sigmoids, self.threshold)


def zero_one_loss(sigmoids: torch.Tensor) -> torch.Tensor:
    """FairDARTS's zero-one loss ``-mean((sigmoid - 0.5)^2)``: lowest when every weight is 0 or 1."""
    return -torch.mean((sigmoids - 0.5) ** 2)


class GDAS(DARTS):
    """GDAS (Dong & Yang, CVPR 2019): one operation per edge, sampled by Gumbel-softmax.

    Every forward pass draws ``h = one_hot(argmax(log_softmax(alpha) + g))`` with Gumbel noise
    ``g`` and computes only that operation, scaled by the straight-through weight
    ``h - p.detach() + p`` with ``p = softmax((log_softmax(alpha) + g) / tau)``: the forward value
    is the single operation's output, and the gradient reaches every ``alpha`` of the edge. The
    temperature ``tau`` falls linearly from ``tau_max`` to ``tau_min`` over the epochs.

    Args:
        tau_max: temperature of the first epoch (10 in the paper).
        tau_min: temperature of the last epoch (0.1 in the paper).
    """

    name = "gdas"
    _second_order = False

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
        arch_lr: float = 0.01,
        arch_weight_decay: float = 1e-3,
        tau_max: float = 10.0,
        tau_min: float = 0.1,
        arch_split: str = "val",
        bn_examples: int = 512,
        device: str = "cpu",
        seed: int | None = None,
    ) -> None:
        super().__init__(
            space, epochs, batch_size, lr, lr_min, momentum, weight_decay, grad_clip, arch_lr,
            arch_weight_decay, 1, arch_split, bn_examples, device, seed,
        )  # fmt: skip
        self.tau_min = check_float("tau_min", tau_min, 0.0, strict=True)
        self.tau_max = check_float("tau_max", tau_max, self.tau_min)
        self._epoch = 1

    def get_params(self) -> dict[str, Any]:
        params = super().get_params()
        params.pop("order", None)
        return params

    def temperature(self, epoch: int) -> float:
        """Gumbel-softmax temperature during ``epoch`` (1-based)."""
        if self.epochs == 1:
            return self.tau_max
        return self.tau_max - (self.tau_max - self.tau_min) * (epoch - 1) / (self.epochs - 1)

    def sample_weights(self) -> tuple[torch.Tensor, Path]:
        """A straight-through one-hot sample per edge at the current temperature, and its path."""
        return gumbel_straight_through(self.alphas, self.temperature(self._epoch), self.generator)

    def _forward_args(self) -> tuple[torch.Tensor, Path]:
        return self.sample_weights()

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        return {**super()._train_epoch(epoch), "temperature": self.temperature(epoch)}

    def _derive_weights(self) -> np.ndarray:
        return torch.softmax(self.alphas, dim=-1).detach().cpu().numpy()

    def _weights_log(self) -> dict[str, list[float]]:
        return as_lists(self._derive_weights(), self.supernet.edge_names)


def gumbel_straight_through(
    alphas: torch.Tensor, tau: float, generator: torch.Generator
) -> tuple[torch.Tensor, list[int | None]]:
    """A straight-through one-hot sample per row of ``alphas`` and the sampled column of each row."""
    log_probs = torch.log_softmax(alphas, dim=-1)
    uniform = torch.rand(alphas.shape, generator=generator).to(alphas.device)
    # clamped away from 0 and 1 so that the noise -log(-log(u)) stays finite
    uniform = uniform.clamp(1e-10, 1.0 - 1e-7)
    gumbel = -torch.log(-torch.log(uniform))
    soft = torch.softmax((log_probs + gumbel) / tau, dim=-1)
    index = soft.argmax(dim=-1)
    one_hot = torch.zeros_like(soft).scatter_(-1, index.unsqueeze(-1), 1.0)
    hard = one_hot - soft.detach() + soft
    return hard, [int(i) for i in index]


def _grads(loss: torch.Tensor, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Gradients of ``loss``, zeros for inputs it does not depend on."""
    grads = torch.autograd.grad(loss, list(inputs), allow_unused=True)
    return [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads)]
