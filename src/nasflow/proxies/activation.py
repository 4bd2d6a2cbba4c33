"""Activation-based zero-cost proxies of Mellor et al.: naswot and jacob_cov.

Both look at how differently an untrained network treats the examples of one batch, in train mode
(batch statistics) on a private copy of the model; neither needs labels.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nasflow.errors import ConfigError
from nasflow.proxies.common import LossFn, private_copy

#: the constant ``k`` of the jacob_cov score, from Mellor et al. (2020)
JACOB_COV_EPS = 1e-5


def naswot(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None, loss_fn: LossFn) -> float:
    """``log|det K|`` of the kernel of binary ReLU activation codes over a batch.

    Mellor et al., "Neural Architecture Search without Training" (ICML 2021). Each example's code
    ``c_i`` is the concatenation of ``input > 0`` over the inputs of every ``nn.ReLU`` module, and
    ``K_ij = N_A - hamming(c_i, c_j)`` counts the units on which examples ``i`` and ``j`` agree. The
    score is ``slogdet(K)``'s log-absolute-determinant; it is ``-inf`` when two examples share a code.

    Raises:
        ConfigError: the model has no ``nn.ReLU`` module (``torch.nn.functional.relu`` calls cannot be
            seen) or the batch has fewer than two examples.
    """
    clone = private_copy(model, train=True)
    relus = [module for module in clone.modules() if isinstance(module, nn.ReLU)]
    if not relus:
        raise ConfigError(
            "proxy 'naswot' reads the activation codes of nn.ReLU modules, and the model has none "
            "(ReLUs applied with torch.nn.functional.relu are invisible to it); use another proxy"
        )
    n = inputs.shape[0]
    if n < 2:
        raise ConfigError(f"proxy 'naswot' needs a batch of at least 2 examples, got {n}")
    kernel = torch.zeros((n, n), dtype=torch.float64, device=inputs.device)

    def count(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        # a pre-hook sees the input before an in-place ReLU overwrites it
        codes = (args[0].detach().reshape(n, -1) > 0).float()
        # agreements = both active + both inactive; exact in float32 below 2**24 units per layer
        kernel.add_((codes @ codes.T + (1 - codes) @ (1 - codes).T).double())

    handles = [relu.register_forward_pre_hook(count) for relu in relus]
    try:
        with torch.no_grad():
            clone(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return float(torch.linalg.slogdet(kernel).logabsdet)


def jacob_cov(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None, loss_fn: LossFn) -> float:
    """Score of the correlations of the input Jacobians over a batch (higher: less correlated).

    Mellor et al., "Neural Architecture Search without Training" (arXiv v1, 2020). With ``J_i`` the
    gradient of the sum of the outputs with respect to example ``i`` and ``sigma`` the eigenvalues of
    the correlation matrix of ``J_1..J_N``, the score is
    ``-sum(log(sigma + k) + 1 / (sigma + k))`` with ``k = 1e-5``. When some ``J_i`` is constant (the
    output ignores that example, e.g. a cell with no path from input to output) correlations are
    undefined and the score is ``-inf``, the worst possible.
    """
    n = inputs.shape[0]
    if n < 2:
        raise ConfigError(f"proxy 'jacob_cov' needs a batch of at least 2 examples, got {n}")
    clone = private_copy(model, train=True)
    x = inputs.detach().clone().requires_grad_(True)
    output = clone(x)
    if not isinstance(output, torch.Tensor):
        raise ConfigError(f"jacob_cov needs a model that returns a tensor, got {type(output).__name__}")
    if not output.requires_grad:
        return -math.inf
    (jacobian,) = torch.autograd.grad(output.sum(), x, allow_unused=True)
    if jacobian is None:
        return -math.inf
    rows = jacobian.detach().reshape(n, -1).double()
    if bool(((rows.max(dim=1).values - rows.min(dim=1).values) == 0).any()):
        return -math.inf
    eigenvalues = torch.linalg.eigvalsh(torch.corrcoef(rows)).clamp_min(0.0)
    shifted = eigenvalues + JACOB_COV_EPS
    return float(-(torch.log(shifted) + 1.0 / shifted).sum())
