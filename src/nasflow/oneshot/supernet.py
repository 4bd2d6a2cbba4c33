"""Shared-weight supernets: every candidate operation on every edge, mixed or picked per forward pass.

A supernet holds, for each *edge* of its cells, one :class:`MixedOp` with all candidate operations.
A forward pass gets either

* ``weights``: a ``(num_edges, num_ops)`` tensor of mixing weights, and computes
  ``sum_k weights[e, k] * op_k(x)`` on every edge (DARTS: softmax weights; FairDARTS: sigmoids), or
* ``path``: one operation index per edge (``None`` switches the edge off) and computes only that
  operation (SPOS, RSWS, ENAS and weight-sharing evaluation of any architecture), or
* both: only ``op_path[e]`` is computed, scaled by ``weights[e, path[e]]`` (GDAS: the weights are a
  straight-through one-hot sample, so the forward value is the single op's output while the gradient
  reaches the architecture parameters; see :meth:`MixedOp.forward`).

Edges are the rows of the architecture parameters; a space-specific supernet maps architectures to
paths (:meth:`Supernet.path_of`), mixing weights back to architectures (:meth:`Supernet.derive`) and
copies its weights into the discrete network of the space (:meth:`Supernet.extract`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from nasflow.errors import ConfigError, InvalidArchitectureError
from nasflow.space.architecture import Architecture
from nasflow.space.base import DecisionSpace

#: an operation index per edge; None means the edge is not part of the architecture
Path = Sequence[int | None]

#: examples per forward pass when only statistics or accuracies are computed
_EVAL_BATCH = 1024


class MixedOp(nn.Module):
    """The candidate operations of one edge, mixed by weights or picked by index."""

    def __init__(self, ops: Sequence[nn.Module]) -> None:
        super().__init__()
        if not ops:
            raise ValueError("a MixedOp needs at least one candidate operation")
        self.ops = nn.ModuleList(ops)

    def forward(
        self, x: torch.Tensor, weights: torch.Tensor | None = None, index: int | None = None
    ) -> torch.Tensor:
        """``op[index](x)`` (times ``weights[index]`` if given), else ``sum_k weights[k] * op_k(x)``.

        With both, the other weights are added as scalars, as GDAS does: straight-through weights are
        exactly 0 there, so the value is unchanged, but every weight of the edge gets a gradient even
        when the picked operation's output is zero (``none``).
        """
        if index is not None:
            out = self.ops[index](x)
            if weights is None:
                return out
            others = torch.cat([weights[:index], weights[index + 1 :]]).sum()
            return out * weights[index] + others
        if weights is None:
            raise ValueError("a MixedOp needs mixing weights or an operation index")
        total: torch.Tensor | None = None
        for weight, op in zip(weights, self.ops, strict=True):
            term = weight * op(x)
            total = term if total is None else total + term
        assert total is not None
        return total


class Supernet(nn.Module, ABC):
    """A network containing every architecture of a space, with shared weights.

    Attributes:
        space: the search space whose architectures the supernet contains.
        edge_names: one name per edge (row of the architecture parameters).
        op_names: the candidate operations of every edge, in column order.
        input_shape: ``(channels, height, width)`` the network was built for.
        num_classes: outputs of the classifier.
    """

    space: DecisionSpace
    edge_names: tuple[str, ...]
    op_names: tuple[str, ...]
    input_shape: tuple[int, int, int]
    num_classes: int

    @property
    def num_edges(self) -> int:
        return len(self.edge_names)

    @property
    def num_ops(self) -> int:
        return len(self.op_names)

    @abstractmethod
    def forward(
        self, x: torch.Tensor, weights: torch.Tensor | None = None, path: Path | None = None
    ) -> torch.Tensor:
        """Logits for ``x`` under mixing ``weights``, a single ``path``, or both (see module docs)."""

    @abstractmethod
    def path_of(self, arch: Architecture) -> list[int | None]:
        """The operation index of each edge for a member ``arch`` of the space (None: edge unused)."""

    @abstractmethod
    def derive(self, weights: np.ndarray) -> Architecture:
        """The discrete architecture that mixing ``weights`` (``num_edges x num_ops``) point to."""

    def derive_thresholded(self, weights: np.ndarray, threshold: float) -> Architecture:
        """Derivation from independent (sigmoid) weights that switch operations on above ``threshold``.

        By default the same as :meth:`derive`: spaces whose cells keep a fixed number of edges per
        node (DARTS) have no use for the threshold.
        """
        return self.derive(weights)

    @abstractmethod
    def extract(self, arch: Architecture) -> nn.Module:
        """The space's own network for ``arch``, holding copies of the supernet's weights."""

    def count_skips(self, arch: Architecture) -> int:
        """Skip connections in the cell(s) that DARTS+ watches (all decisions by default)."""
        return sum(1 for value in arch.values() if value == "skip_connect")

    def check_weights(self, weights: np.ndarray) -> np.ndarray:
        """``weights`` as a float array of the supernet's shape, or a ConfigError naming the shape."""
        array = np.asarray(weights, dtype=float)
        if array.shape != (self.num_edges, self.num_ops):
            raise ConfigError(
                f"architecture weights must have shape ({self.num_edges}, {self.num_ops}) "
                f"(edges x operations), got {array.shape}"
            )
        return array

    def validate(self, arch: Architecture | dict[str, Any]) -> Architecture:
        """``arch`` checked against the supernet's space (InvalidArchitectureError otherwise)."""
        if not isinstance(arch, (Architecture, dict)):
            raise InvalidArchitectureError(f"an architecture is a mapping of decisions, got {arch!r}")
        return self.space.validate(arch)


# -- batch-norm statistics ---------------------------------------------------------------------


def _batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@contextmanager
def preserved_bn_statistics(model: nn.Module) -> Iterator[None]:
    """Put every batch-norm running statistic back as it was when the block ends.

    Lets a train-mode forward (batch statistics) measure something without disturbing the
    statistics that training accumulates.
    """
    saved = [
        {name: buffer.clone() for name, buffer in bn.named_buffers(recurse=False)}
        for bn in _batch_norms(model)
    ]
    try:
        yield
    finally:
        with torch.no_grad():
            for bn, buffers in zip(_batch_norms(model), saved):
                for name, value in buffers.items():
                    getattr(bn, name).copy_(value)


def recalibrate_bn(supernet: Supernet, path: Path, x: torch.Tensor) -> None:
    """Re-estimate batch-norm statistics for one path from the examples ``x`` (SPOS, Guo et al. 2020).

    Statistics the supernet accumulated while training mix many paths and fit none of them; this
    resets them and averages the batch statistics of ``path`` over ``x`` (cumulative average, no
    momentum). The supernet is left in eval mode.
    """
    norms = _batch_norms(supernet)
    momenta = [bn.momentum for bn in norms]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average: every batch counts equally
    supernet.train()
    try:
        with torch.no_grad():
            for start in range(0, len(x), _EVAL_BATCH):
                supernet(x[start : start + _EVAL_BATCH], path=path)
    finally:
        for bn, momentum in zip(norms, momenta):
            bn.momentum = momentum
        supernet.eval()


def path_accuracy(supernet: Supernet, path: Path, x: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy in percent of ``path`` on ``(x, y)`` with the supernet in eval mode."""
    supernet.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(y), _EVAL_BATCH):
            logits = supernet(x[start : start + _EVAL_BATCH], path=path)
            correct += int((logits.argmax(dim=1) == y[start : start + _EVAL_BATCH]).sum())
    return 100.0 * correct / len(y)


def batch_statistics_accuracy(supernet: Supernet, path: Path, x: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy in percent of ``path`` on one batch, normalised with the batch's own statistics.

    A cheap reward (ENAS): no recalibration, and the running statistics are left untouched.
    """
    with preserved_bn_statistics(supernet), torch.no_grad():
        supernet.train()
        logits = supernet(x, path=path)
    return 100.0 * float((logits.argmax(dim=1) == y).float().mean())


def weight_sharing_accuracy(
    supernet: Supernet, path: Path, x_calibrate: torch.Tensor, x: torch.Tensor, y: torch.Tensor
) -> float:
    """Accuracy of one path with inherited weights after batch-norm recalibration on ``x_calibrate``.

    The running statistics are put back afterwards, so scores do not depend on what was scored before.
    """
    with preserved_bn_statistics(supernet):
        recalibrate_bn(supernet, path, x_calibrate)
        return path_accuracy(supernet, path, x, y)


# -- building ----------------------------------------------------------------------------------


def build_supernet(space: DecisionSpace, task: Any) -> Supernet:
    """The supernet of ``space`` shaped for ``task`` (input shape and classes), same macro skeleton.

    Raises:
        ConfigError: the space has no supernet (supported: nb201, darts).
    """
    from nasflow.space.darts import DartsSpace
    from nasflow.space.nb201 import NB201Space

    if isinstance(space, NB201Space):
        from nasflow.oneshot.nb201_supernet import NB201Supernet

        return NB201Supernet(space, task.input_shape, task.num_classes)
    if isinstance(space, DartsSpace):
        from nasflow.oneshot.darts_supernet import DartsSupernet

        return DartsSupernet(space, task.input_shape, task.num_classes)
    raise ConfigError(
        f"one-shot searches need a supernet, and space {space.name!r} has none; "
        "supported spaces: nb201, darts"
    )


class TaskShape:
    """The two task attributes a space's ``build()`` reads, for building without the data."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int) -> None:
        self.input_shape = input_shape
        self.num_classes = num_classes


def copy_matching(target: nn.Module, source_state: dict[str, torch.Tensor], mapping: dict[str, str]) -> None:
    """Load ``target``'s state from ``source_state`` through ``target key -> source key``.

    Every tensor of ``target`` must be covered, so a forgotten layer fails loudly instead of keeping
    its random initialisation.
    """
    state = target.state_dict()
    missing = [key for key in state if key not in mapping]
    if missing:
        raise RuntimeError(f"no supernet weights for {missing[:5]} of {type(target).__name__}")
    target.load_state_dict({key: source_state[mapping[key]].clone() for key in state})
