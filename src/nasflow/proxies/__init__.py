"""Zero-cost proxies: score an untrained network in one or a few passes instead of training it.

>>> import torch
>>> from torch import nn
>>> from nasflow import proxies
>>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3, bias=False))
>>> x, y = torch.ones(2, 1, 2, 2), torch.tensor([0, 1])
>>> proxies.score("params", net, x, y)
12.0

Every proxy is higher-is-better, works on a copy of the model (the caller's parameters, gradients,
batch-norm statistics and train/eval flags stay untouched), draws any randomness (dropout) from
``seed`` without touching the global random state, and gives the same value for the same model,
batch and seed. See ``docs/proxies.md`` for the formulas and measured rank correlations.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional

from nasflow.errors import ConfigError, EvaluationError, NasflowError, UnknownNameError
from nasflow.proxies.activation import jacob_cov, naswot
from nasflow.proxies.common import LossFn
from nasflow.proxies.cost import flops, params
from nasflow.proxies.gradient import fisher, grad_norm, grasp, snip, synflow

ProxyFn = Callable[[nn.Module, torch.Tensor, torch.Tensor | None, LossFn], float]


@dataclass(frozen=True)
class Proxy:
    """One registered proxy.

    Attributes:
        name: registry name, also the metric name the evaluators report.
        fn: ``fn(model, inputs, targets, loss_fn) -> float``; call it through :func:`score`.
        needs_targets: whether it computes a loss (and so needs labels).
        uses_data: whether the values of ``inputs`` matter (synflow, params and flops use only its shape).
        summary: one line with the paper it comes from.
    """

    name: str
    fn: ProxyFn
    needs_targets: bool
    uses_data: bool
    summary: str


PROXIES: dict[str, Proxy] = {
    proxy.name: proxy
    for proxy in (
        Proxy("synflow", synflow, False, False, "synaptic flow, data-free (Tanaka et al. 2020)"),
        Proxy("snip", snip, True, True, "connection sensitivity sum|g*w| (Lee et al. 2019)"),
        Proxy("grasp", grasp, True, True, "gradient signal preservation -w*(Hg) (Wang et al. 2020)"),
        Proxy(
            "fisher", fisher, True, True, "Fisher channel saliency (Theis et al. 2018, Turner et al. 2020)"
        ),
        Proxy("grad_norm", grad_norm, True, True, "Euclidean norm of the loss gradient"),
        Proxy("jacob_cov", jacob_cov, False, True, "input-Jacobian correlations (Mellor et al. 2020, v1)"),
        Proxy("naswot", naswot, False, True, "log|det| of the ReLU-code kernel (Mellor et al. 2021)"),
        Proxy("params", params, False, False, "number of trainable parameters"),
        Proxy("flops", flops, False, False, "multiply-accumulates of one example"),
    )
}


def proxy_names() -> list[str]:
    """Names of the registered proxies, in registry order."""
    return list(PROXIES)


def get_proxy(name: str) -> Proxy:
    """The proxy registered as ``name``.

    Raises:
        UnknownNameError: no proxy has that name.
    """
    proxy = PROXIES.get(name) if isinstance(name, str) else None
    if proxy is None:
        raise UnknownNameError(f"unknown proxy {name!r}; allowed: {', '.join(PROXIES)}")
    return proxy


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    reference = next((t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()), None)
    if reference is None:
        return torch.device("cpu"), torch.get_default_dtype()
    return reference.device, reference.dtype


def _check_batch(proxy: Proxy, inputs: object, targets: object) -> None:
    if not isinstance(inputs, torch.Tensor) or not inputs.is_floating_point():
        raise ConfigError(f"inputs must be a floating-point torch.Tensor, got {_describe(inputs)}")
    if inputs.dim() < 2 or inputs.shape[0] < 1:
        raise ConfigError(
            f"inputs must be a batch shaped (N, ...) with N >= 1 examples, got shape {tuple(inputs.shape)}"
        )
    if targets is None:
        if proxy.needs_targets:
            raise ConfigError(
                f"proxy {proxy.name!r} computes a loss and needs targets (labels) for the batch"
            )
        return
    if not isinstance(targets, torch.Tensor) or targets.dim() < 1:
        raise ConfigError(
            f"targets must be a torch.Tensor with one entry per example, got {_describe(targets)}"
        )
    if targets.shape[0] != inputs.shape[0]:
        raise ConfigError(f"targets have {targets.shape[0]} entries for {inputs.shape[0]} inputs")


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor shaped {tuple(value.shape)}"
    return type(value).__name__


def score(
    name: str,
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor | None = None,
    *,
    loss_fn: LossFn | None = None,
    seed: int = 0,
) -> float:
    """The value of proxy ``name`` for ``model`` on one batch (higher is better).

    Args:
        name: one of :data:`PROXIES` (``synflow``, ``snip``, ``grasp``, ``fisher``, ``grad_norm``,
            ``jacob_cov``, ``naswot``, ``params``, ``flops``).
        model: the (untrained) network; it is not modified.
        inputs: a batch shaped ``(N, ...)``; moved to the model's device and dtype. synflow, params
            and flops use only its shape.
        targets: labels of the batch, needed by the loss-based proxies (snip, grasp, fisher,
            grad_norm); ignored by the others.
        loss_fn: ``loss_fn(outputs, targets) -> scalar``; cross-entropy (mean over the batch) by default.
        seed: seeds whatever is random inside the forward pass (e.g. dropout); the global random
            state is restored afterwards.

    Raises:
        UnknownNameError: ``name`` is not a proxy.
        ConfigError: the model or batch does not fit the proxy (no targets for a loss-based proxy,
            no ReLU for naswot, no convolution or linear layer for the weight-based ones, ...).
        EvaluationError: the forward or backward pass failed, or the value is NaN.
    """
    proxy = get_proxy(name)
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _check_batch(proxy, inputs, targets)
    device, dtype = _model_device_dtype(model)
    inputs = inputs.to(device=device, dtype=dtype)
    if targets is not None:
        targets = targets.to(device=device)
    loss = loss_fn if loss_fn is not None else functional.cross_entropy
    cuda = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(seed)
            value = proxy.fn(model, inputs, targets, loss)
    except NasflowError:
        raise
    except (RuntimeError, ValueError, IndexError, TypeError) as exc:
        raise EvaluationError(
            f"proxy {name!r} failed on a batch shaped {tuple(inputs.shape)}: {type(exc).__name__}: {exc}"
        ) from None
    if math.isnan(value):
        raise EvaluationError(f"proxy {name!r} is NaN for this model and batch")
    return value


__all__ = ["PROXIES", "Proxy", "get_proxy", "proxy_names", "score"]
