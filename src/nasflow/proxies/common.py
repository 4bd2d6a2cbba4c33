"""Shared plumbing of the zero-cost proxies: private model copies, the scored weights, loss helpers."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from nasflow.errors import ConfigError, EvaluationError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: layers whose weights the saliency proxies score, as in Abdelfattah et al. (2021): the weights a
#: pruning method would remove; biases and normalisation parameters are left out
WEIGHTED_LAYERS: tuple[type[nn.Module], ...] = (nn.modules.conv._ConvNd, nn.Linear)


def private_copy(model: nn.Module, train: bool) -> nn.Module:
    """A deep copy of ``model`` in train or eval mode with no stored gradients.

    Proxies work on such a copy so that the caller's parameters, gradients, batch-norm statistics and
    train/eval flags are never touched.
    """
    try:
        clone = copy.deepcopy(model)
    except Exception as exc:  # noqa: BLE001 - any failure means the same thing to the user
        raise EvaluationError(
            f"the model cannot be copied for scoring ({type(exc).__name__}: {exc}); proxies work on a "
            "copy so that the original model stays unchanged"
        ) from None
    clone.train(train)
    for parameter in clone.parameters():
        parameter.grad = None
    return clone


def scored_layers(model: nn.Module) -> list[nn.Module]:
    """The convolution and linear layers of ``model`` (each once, in module order)."""
    return [module for module in model.modules() if isinstance(module, WEIGHTED_LAYERS)]


def scored_weights(model: nn.Module, proxy: str) -> list[torch.Tensor]:
    """The weight tensors of the convolution and linear layers, made trainable (on a private copy).

    Raises:
        ConfigError: the model has no convolution or linear layer, so the proxy has nothing to score.
    """
    weights: list[torch.Tensor] = []
    seen: set[int] = set()
    for layer in scored_layers(model):
        weight = layer.weight
        if isinstance(weight, torch.Tensor) and id(weight) not in seen:
            seen.add(id(weight))
            weight.requires_grad_(True)
            weights.append(weight)
    if not weights:
        raise ConfigError(
            f"proxy {proxy!r} scores the weights of convolution and linear layers, and the model has none"
        )
    return weights


def batch_loss(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss_fn: LossFn
) -> torch.Tensor:
    """The scalar loss of one forward pass, checked to be a finite scalar."""
    loss = loss_fn(model(inputs), targets)
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise ConfigError(
            "loss_fn must return a scalar tensor (e.g. a mean over the batch), got "
            f"{type(loss).__name__}{'' if not isinstance(loss, torch.Tensor) else tuple(loss.shape)}"
        )
    loss = loss.reshape(())
    if not torch.isfinite(loss):
        raise EvaluationError(f"the loss of the scoring batch is {loss.item()} (not finite)")
    return loss


def gradients(
    output: torch.Tensor, tensors: list[torch.Tensor], create_graph: bool = False
) -> list[torch.Tensor]:
    """``d output / d tensor`` for each tensor; a tensor the output does not depend on gets zeros."""
    if not output.requires_grad:
        return [torch.zeros_like(t) for t in tensors]
    found = torch.autograd.grad(output, tensors, allow_unused=True, create_graph=create_graph)
    return [torch.zeros_like(t) if g is None else g for t, g in zip(tensors, found)]
