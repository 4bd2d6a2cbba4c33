"""Gradient-based zero-cost proxies: synflow, snip, grasp, fisher and grad_norm.

All of them score a freshly initialised network from one forward/backward pass. They sum over the
weights of convolution and linear layers (biases and normalisation parameters left out), as the
implementation of Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS" (ICLR 2021) does, and
all except synflow run the model in train mode (batch statistics) on one batch with ``loss_fn``
(cross-entropy by default). Each works on a private copy of the model.
"""

from __future__ import annotations

import torch
from torch import nn

from nasflow.errors import ConfigError
from nasflow.proxies.common import (
    LossFn,
    batch_loss,
    gradients,
    private_copy,
    scored_layers,
    scored_weights,
)


def _total(tensors: list[torch.Tensor]) -> float:
    """Sum of all elements of all tensors, accumulated in float64."""
    return float(sum((t.detach().double().sum() for t in tensors), torch.zeros((), dtype=torch.float64)))


def _without_batch_norm(module: nn.Module) -> None:
    """Replace every batch-norm layer below ``module`` by an identity, in place."""
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(module, name, nn.Identity())
        else:
            _without_batch_norm(child)


def synflow(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None, loss_fn: LossFn) -> float:
    """Synaptic flow: ``sum |theta * dR/dtheta|`` with ``R = sum(f_|theta|(1))``, data-free.

    Tanaka et al., "Pruning neural networks without any data by iteratively conserving synaptic flow"
    (NeurIPS 2020), as a NAS proxy in Abdelfattah et al. (2021). The network is evaluated in float64
    with every parameter replaced by its absolute value and batch norm removed (replaced by the
    identity, so it cannot normalise the flow away), on one all-ones input shaped like one example of
    ``inputs``. Only the input shape is used; ``targets`` and ``loss_fn`` are ignored.
    """
    clone = private_copy(model, train=False)
    _without_batch_norm(clone)
    clone.double()
    with torch.no_grad():
        for parameter in clone.parameters():
            parameter.abs_()
    weights = scored_weights(clone, "synflow")
    ones = torch.ones((1, *inputs.shape[1:]), dtype=torch.float64, device=inputs.device)
    output = clone(ones)
    if not isinstance(output, torch.Tensor):
        raise ConfigError(f"synflow needs a model that returns a tensor, got {type(output).__name__}")
    grads = gradients(output.sum(), weights)
    return _total([(w * g).abs() for w, g in zip(weights, grads)])


def snip(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None, loss_fn: LossFn) -> float:
    """Connection sensitivity ``sum |g * theta|`` of the loss on one batch.

    Lee et al., "SNIP: Single-shot Network Pruning based on Connection Sensitivity" (ICLR 2019).
    """
    assert targets is not None
    clone = private_copy(model, train=True)
    weights = scored_weights(clone, "snip")
    grads = gradients(batch_loss(clone, inputs, targets, loss_fn), weights)
    return _total([(w.detach() * g).abs() for w, g in zip(weights, grads)])


def grad_norm(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None, loss_fn: LossFn) -> float:
    """Euclidean norm of the gradient of the loss on one batch, over all scored weights together.

    (Abdelfattah et al.'s implementation sums per-layer norms instead; the global norm is the
    textbook quantity and ranks similarly.)
    """
    assert targets is not None
    clone = private_copy(model, train=True)
    weights = scored_weights(clone, "grad_norm")
    grads = gradients(batch_loss(clone, inputs, targets, loss_fn), weights)
    return _total([g.double().pow(2) for g in grads]) ** 0.5


def grasp(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None, loss_fn: LossFn) -> float:
    """Gradient signal preservation ``sum(-theta * (H g))`` with an exact Hessian-gradient product.

    Wang et al., "Picking Winning Tickets Before Training by Preserving Gradient Flow" (ICLR 2020).
    ``g`` is the loss gradient and ``H g`` comes from a second backward pass through ``g . stopgrad(g)``
    (no temperature on the logits, as in Abdelfattah et al. 2021).
    """
    assert targets is not None
    clone = private_copy(model, train=True)
    weights = scored_weights(clone, "grasp")
    grads = gradients(batch_loss(clone, inputs, targets, loss_fn), weights, create_graph=True)
    # d/dtheta (g . stopgrad(g)) = H g, because the Hessian is symmetric
    inner = sum((g * g.detach()).sum() for g in grads)
    assert isinstance(inner, torch.Tensor)
    hessian_grad = gradients(inner, weights)
    return _total([-w.detach() * hg for w, hg in zip(weights, hessian_grad)])


def fisher(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None, loss_fn: LossFn) -> float:
    """Fisher channel saliency summed over the outputs of every convolution and linear layer.

    Theis et al., "Faster gaze prediction with dense networks and Fisher pruning" (2018), as used by
    Turner et al., "BlockSwap" (ICLR 2020) and Abdelfattah et al. (2021). For each output channel
    ``k`` of a layer, with activation ``a`` and ``dL/da`` of the batch-mean loss:
    ``Delta_k = 1/2 * mean_n (sum_spatial a_nk * dL/da_nk)^2``; the score is the sum over channels
    and layers. A layer called several times contributes once per call.
    """
    assert targets is not None
    clone = private_copy(model, train=True)
    layers = scored_layers(clone)
    if not layers:
        raise ConfigError(
            "proxy 'fisher' scores the outputs of convolution and linear layers; the model has none"
        )
    activations: list[tuple[torch.Tensor, bool]] = []

    def keep(module: nn.Module, args: object, output: torch.Tensor) -> None:
        activations.append((output, isinstance(module, nn.Linear)))

    handles = [layer.register_forward_hook(keep) for layer in layers]
    try:
        loss = batch_loss(clone, inputs, targets, loss_fn)
    finally:
        for handle in handles:
            handle.remove()
    grads = gradients(loss, [a for a, _ in activations])
    saliencies = []
    for (activation, linear), grad in zip(activations, grads):
        product = (activation.detach() * grad).double()
        # channels: dimension 1 for convolutions, the last one for linear layers
        if linear:
            per_channel = product.reshape(product.shape[0], -1, product.shape[-1]).sum(1)
        else:
            per_channel = product.flatten(2).sum(2)
        saliencies.append(0.5 * per_channel.pow(2).mean(0))
    return _total(saliencies)
