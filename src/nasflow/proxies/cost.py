"""Cost proxies: trainable parameters and multiply-accumulates, the baselines every proxy must beat."""

from __future__ import annotations

import torch
from torch import nn

from nasflow.objectives.metrics import count_macs, count_parameters
from nasflow.proxies.common import LossFn


def params(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None, loss_fn: LossFn) -> float:
    """Number of trainable parameters (``nasflow.objectives.metrics.count_parameters``)."""
    return float(count_parameters(model))


def flops(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None, loss_fn: LossFn) -> float:
    """Multiply-accumulates of one example shaped like ``inputs[0]`` (``count_macs``; (C, H, W) inputs)."""
    return float(count_macs(model, tuple(inputs.shape[1:])))
