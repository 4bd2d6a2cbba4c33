"""Cost metrics of a network: trainable parameters and multiply-accumulates (MACs)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from nasflow.errors import ConfigError


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters; a parameter shared by several layers counts once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one forward pass on one example shaped ``input_shape`` = (C, H, W).

    Counted with PyTorch's ``FlopCounterMode`` (FLOPs / 2): convolutions and matrix products only,
    without bias additions, normalisation, activations, pooling or element-wise sums. That is the
    convention of NAS-Bench-201's published "FLOPs" (really MACs, conv and linear layers only) and
    reproduces them to the reported two decimals, e.g. 184.73 M for the benchmark's index 9930; the
    benchmark also adds the classifier's bias (``num_classes`` more), a difference below 0.0001 M.

    The model runs in eval mode without gradients; every submodule's train/eval flag is restored.
    """
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(
            f"input_shape must be (channels, height, width) of positive sizes, got {input_shape!r}"
        )
    reference = next((t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()), None)
    device = reference.device if reference is not None else torch.device("cpu")
    dtype = reference.dtype if reference is not None else torch.get_default_dtype()
    example = torch.zeros((1, *shape), device=device, dtype=dtype)
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(example)
    finally:
        # restore flags one by one: a model may mix train and eval submodules (e.g. frozen BN)
        for module, training in modes:
            module.training = training
    return int(counter.get_total_flops()) // 2
