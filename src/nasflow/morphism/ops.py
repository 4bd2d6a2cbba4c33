"""Function-preserving network morphisms on :class:`~nasflow.space.macro.MacroSpace` networks.

A morphism maps a parent (architecture, trained network) to a child architecture and a child network
whose weights are derived from the parent's so that the child computes the same function (Wei et al.,
2016, "Network morphism"; Chen et al., 2016, "Net2Net"; Elsken et al., 2017, NASH). The child is a
fresh ``MacroSpace.build_network`` of the child architecture with a complete ``state_dict`` loaded
strictly, so its modules are exactly those of any other build of that architecture.

Preservation is exact (up to float rounding) with batch norm in eval mode, i.e. normalising with the
running statistics. In training mode batch norm uses batch statistics, so an inserted identity batch
norm is no longer the identity; brief training of the child re-estimates the statistics.

- :func:`deepen`: fill an empty slot with an identity layer. The slot's input is the output of a ReLU
  (or of a max pool of one), hence non-negative; an identity kernel and a batch norm set to the
  identity (``gamma = sqrt(1 + eps)``, ``beta = 0`` on running mean 0 and variance 1) reproduce it, and
  the closing ReLU leaves non-negative values unchanged.
- :func:`widen`: Net2WiderNet. A layer with ``w`` units gets ``w' > w``: the first ``w`` keep their
  weights, each extra unit copies a random existing one (weights and batch-norm statistics, so its
  output equals its source's), and every consumer of the layer (next layer, its shortcut, or the
  linear head) splits the outgoing weight of a source among the source's copies with shares summing
  to one. With ``noise = 0`` the shares are equal (``1 / copies``) as in Net2Net; with noise they are
  random, still summing to one, which keeps the function and breaks the symmetry between copies that
  gradient descent would otherwise never break.
- :func:`add_skip`: add a residual path that contributes zero. On a layer whose widths differ the new
  1x1 projection shortcut is zero-initialised. Where widths agree the shortcut is the identity, which
  cannot be zero, so instead an empty slot becomes a residual layer whose branch ends in a batch norm
  with ``gamma = beta = 0``: ``ReLU(0 + x) = x`` (in training mode too). This is the zero-initialised
  residual block of Goyal et al. (2017) used as a morphism.
- :func:`widen_kernel`: a 3x3 convolution becomes 5x5 with the kernel zero-padded (padding grows from 1
  to 2, so the centre stays aligned).

:func:`inherit_weights` is the non-preserving alternative for arbitrary mutations: copy every tensor
whose name and shape agree (Real et al., 2017, "Large-scale evolution of image classifiers").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from nasflow.errors import ConfigError, SpaceError
from nasflow.space.architecture import Architecture, Choice
from nasflow.space.macro import BN_EPS, Layer, MacroNetwork, MacroSpace, op_key, skip_key, width_key

State = dict[str, torch.Tensor]

#: morphism names accepted by :func:`apply_morphism` and :func:`random_morphism`
MORPHISMS: tuple[str, ...] = ("deepen", "widen", "add_skip", "widen_kernel")


@dataclass
class Morphed:
    """A child produced by a morphism: its architecture, its network, and what was done."""

    arch: Architecture
    network: MacroNetwork
    description: str


# -- building children ---------------------------------------------------------------------
def _blank_network(space: MacroSpace, arch: Architecture, in_channels: int, num_classes: int) -> MacroNetwork:
    """A network of ``arch`` whose tensors are about to be overwritten by ``load_state_dict``."""
    # fork_rng: the throw-away initialisation must not advance the caller's global random stream
    # (building on the meta device would avoid it too, but costs more for networks this small)
    with torch.random.fork_rng(devices=[]):
        return space.build_network(arch, in_channels, num_classes)


def _child(space: MacroSpace, arch: Architecture, parent: MacroNetwork, state: State, what: str) -> Morphed:
    child = _blank_network(space, arch, parent.in_channels, parent.num_classes)
    device = next(parent.parameters()).device
    child.load_state_dict(state, strict=True)  # strict: every tensor of the child was derived
    child.to(device)
    child.train(parent.training)
    return Morphed(arch, child, what)


def _state(network: MacroNetwork) -> State:
    return {name: tensor.detach().cpu().clone() for name, tensor in network.state_dict().items()}


def _layer(space: MacroSpace, arch: Architecture, slot: int) -> Layer:
    for layer in space.layers(arch):
        if layer.slot == slot:
            return layer
    raise SpaceError(f"slot {slot} of {space.format(arch)} is empty")


def _consumer(space: MacroSpace, arch: Architecture, slot: int) -> Layer | None:
    """The first non-empty layer after ``slot``, or None when the head reads ``slot``'s output."""
    return next((layer for layer in space.layers(arch) if layer.slot > slot), None)


def _pick(options: Sequence[Any], rng: np.random.Generator, what: str, arch_text: str) -> Any:
    if not options:
        raise SpaceError(f"no {what} is possible on {arch_text}")
    return options[int(rng.integers(len(options)))]


def _check_slot(slot: int | None, options: Sequence[Any], what: str, arch_text: str) -> list[Any]:
    if slot is None:
        return list(options)
    chosen = [o for o in options if (o if isinstance(o, int) else o[0]) == slot]
    if not chosen:
        raise SpaceError(f"cannot {what} slot {slot} of {arch_text}")
    return chosen


def _identity_bn(state: State, prefix: str, width: int, gain: float) -> None:
    """A batch norm computing ``gain * x`` in eval mode (running mean 0, variance 1)."""
    state[f"{prefix}.weight"] = torch.full((width,), gain * math.sqrt(1.0 + BN_EPS))
    state[f"{prefix}.bias"] = torch.zeros(width)
    state[f"{prefix}.running_mean"] = torch.zeros(width)
    state[f"{prefix}.running_var"] = torch.ones(width)
    state[f"{prefix}.num_batches_tracked"] = torch.zeros((), dtype=torch.long)


def _identity_kernel(width: int, kernel: int) -> torch.Tensor:
    weight = torch.zeros(width, width, kernel, kernel)
    weight[torch.arange(width), torch.arange(width), kernel // 2, kernel // 2] = 1.0
    return weight


def _op_tensors(
    state: State, slot: int, op: str, width: int, kernel_init: Callable[..., torch.Tensor]
) -> None:
    """Fill the convolution(s) of a new layer ``op`` on ``width`` channels using ``kernel_init``."""
    prefix = f"slots.{slot}.op"
    if op == "sepconv3x3":
        state[f"{prefix}.0.weight"] = kernel_init(width, 1, 3)
        state[f"{prefix}.1.weight"] = kernel_init(width, width, 1)
    else:
        kernel = 5 if op == "conv5x5" else 3
        state[f"{prefix}.0.weight"] = kernel_init(width, width, kernel)


def _bn_prefix(slot: int, op: str) -> str:
    return f"slots.{slot}.op.{2 if op == 'sepconv3x3' else 1}"


def _empty_slots(space: MacroSpace, arch: Architecture) -> list[tuple[int, int]]:
    """``(slot, input width)`` of empty slots whose input width is a width choice."""
    options = []
    for slot in range(space.max_layers):
        if arch[op_key(slot)] == "none":
            width = space.in_width(arch, slot)
            if width in space.widths:
                options.append((slot, width))
    return options


# -- the morphisms -------------------------------------------------------------------------
def deepen(
    space: MacroSpace,
    arch: Architecture,
    network: MacroNetwork,
    rng: np.random.Generator,
    slot: int | None = None,
    op: str | None = None,
) -> Morphed:
    """Fill an empty slot with an identity layer (same width as its input, no shortcut).

    Args:
        slot: the empty slot to fill (random among possible ones when None).
        op: the new layer's operation (random among the space's non-empty ops when None).
    """
    arch = space.validate(arch)
    text = space.format(arch)
    choices = [o for o in space.ops if o != "none"]
    if op is not None and op not in choices:
        raise ConfigError(f"deepen op must be one of {choices}, got {op!r}")
    options = _check_slot(slot, _empty_slots(space, arch), "deepen", text)
    slot, width = _pick(options, rng, "deepen (no empty slot whose input width is a width choice)", text)
    op = op or str(_pick(choices, rng, "operation", text))
    child = arch.replace(**{op_key(slot): op, width_key(slot): width, skip_key(slot): False})
    state = _state(network)

    def identity(out: int, inp: int, kernel: int) -> torch.Tensor:
        # depthwise kernels (inp == 1) are per-channel identities, pointwise ones the identity matrix
        if inp == 1:
            weight = torch.zeros(out, 1, kernel, kernel)
            weight[:, 0, kernel // 2, kernel // 2] = 1.0
            return weight
        return _identity_kernel(out, kernel)

    _op_tensors(state, slot, op, width, identity)
    _identity_bn(state, _bn_prefix(slot, op), width, gain=1.0)
    return _child(space, space.validate(child), network, state, f"deepen slot {slot} with {op}-{width}")


def _widen_options(space: MacroSpace, arch: Architecture) -> list[tuple[int, int]]:
    """``(slot, new width)`` pairs that widen without turning a projection shortcut into an identity."""
    options = []
    for layer in space.layers(arch):
        consumer = _consumer(space, arch, layer.slot)
        for new in space.widths:
            if new <= layer.width:
                continue
            if layer.projects and new == layer.in_width:
                continue  # the learned projection would have to become an identity
            if consumer is not None and consumer.projects and new == consumer.width:
                continue
            options.append((layer.slot, new))
    return options


def _split_shares(mapping: np.ndarray, sources: int, noise: float, rng: np.random.Generator) -> torch.Tensor:
    """Per new unit, its share of its source's outgoing weight; the shares of each source sum to 1."""
    raw = rng.uniform(1.0 - noise, 1.0 + noise, size=len(mapping)) if noise > 0 else np.ones(len(mapping))
    totals = np.zeros(sources)
    np.add.at(totals, mapping, raw)
    return torch.tensor(raw / totals[mapping], dtype=torch.float32)


def widen(
    space: MacroSpace,
    arch: Architecture,
    network: MacroNetwork,
    rng: np.random.Generator,
    slot: int | None = None,
    width: int | None = None,
    noise: float = 0.0,
) -> Morphed:
    """Net2WiderNet: give a layer more units by copying random existing ones.

    Args:
        slot: the layer to widen (random when None).
        width: its new width, larger than the current one (random when None).
        noise: in [0, 1); 0 splits outgoing weights equally among copies, larger values split them
            randomly (shares still sum to one) so that copies can drift apart in training.
    """
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0.0 <= noise < 1.0:
        raise ConfigError(f"widen noise must be a number in [0, 1), got {noise!r}")
    arch = space.validate(arch)
    text = space.format(arch)
    options = _check_slot(slot, _widen_options(space, arch), "widen", text)
    if width is not None:
        options = [o for o in options if o[1] == width]
        if not options:
            raise SpaceError(f"cannot widen slot {slot} of {text} to width {width}")
    slot, new = _pick(options, rng, "widening", text)
    layer = _layer(space, arch, slot)
    old = layer.width
    mapping = np.concatenate([np.arange(old), rng.integers(old, size=new - old)])
    index = torch.from_numpy(mapping)
    shares = _split_shares(mapping, old, float(noise), rng)
    state = _state(network)
    prefix = f"slots.{slot}"

    # the widened layer: rows (output units) copied from their sources
    out_weight = f"{prefix}.op.1.weight" if layer.op == "sepconv3x3" else f"{prefix}.op.0.weight"
    state[out_weight] = state[out_weight][index]
    bn = _bn_prefix(slot, layer.op)
    for name in ("weight", "bias", "running_mean", "running_var"):
        state[f"{bn}.{name}"] = state[f"{bn}.{name}"][index]
    if layer.skip:
        if layer.projects:
            state[f"{prefix}.shortcut.weight"] = state[f"{prefix}.shortcut.weight"][index]
        else:  # identity -> projection that copies channel mapping[j] into unit j
            projection = torch.zeros(new, old, 1, 1)
            projection[torch.arange(new), index, 0, 0] = 1.0
            state[f"{prefix}.shortcut.weight"] = projection

    # whoever reads the widened output: input columns copied and scaled by the shares
    consumer = _consumer(space, arch, slot)
    if consumer is None:
        state["head.weight"] = state["head.weight"][:, index] * shares
    else:
        target = f"slots.{consumer.slot}"
        column = shares.view(1, -1, 1, 1)
        if consumer.op == "sepconv3x3":
            # a depthwise filter acts on one channel, so a copied channel gets a copy of its filter
            state[f"{target}.op.0.weight"] = state[f"{target}.op.0.weight"][index]
            state[f"{target}.op.1.weight"] = state[f"{target}.op.1.weight"][:, index] * column
        else:
            state[f"{target}.op.0.weight"] = state[f"{target}.op.0.weight"][:, index] * column
        if consumer.skip:
            if consumer.projects:
                weight = state[f"{target}.shortcut.weight"]
                state[f"{target}.shortcut.weight"] = weight[:, index] * column
            else:  # identity of width `old` -> projection summing each channel's copies back
                projection = torch.zeros(consumer.width, new, 1, 1)
                projection[index, torch.arange(new), 0, 0] = shares
                state[f"{target}.shortcut.weight"] = projection
    child = space.validate(arch.replace(**{width_key(slot): new}))
    return _child(space, child, network, state, f"widen slot {slot} {old}->{new}")


def _kaiming(generator: torch.Generator) -> Callable[[int, int, int], torch.Tensor]:
    def init(out: int, inp: int, kernel: int) -> torch.Tensor:
        std = math.sqrt(2.0 / (inp * kernel * kernel))
        return torch.randn(out, inp, kernel, kernel, generator=generator) * std

    return init


def _skip_options(space: MacroSpace, arch: Architecture) -> list[tuple[int, str]]:
    """``(slot, kind)``: layers without shortcut whose widths differ, and fillable empty slots."""
    projections = [
        (layer.slot, "projection")
        for layer in space.layers(arch)
        if not layer.skip and layer.in_width != layer.width
    ]
    return projections + [(slot, "residual") for slot, _ in _empty_slots(space, arch)]


def add_skip(
    space: MacroSpace,
    arch: Architecture,
    network: MacroNetwork,
    rng: np.random.Generator,
    slot: int | None = None,
) -> Morphed:
    """Add a shortcut that contributes zero: a zero 1x1 projection, or a zero-branch residual layer.

    Args:
        slot: a layer without shortcut whose widths differ, or an empty slot whose input width is a
            width choice (random among both kinds when None).
    """
    arch = space.validate(arch)
    text = space.format(arch)
    options = _check_slot(slot, _skip_options(space, arch), "add a skip to", text)
    slot, kind = _pick(options, rng, "skip connection", text)
    state = _state(network)
    if kind == "projection":
        layer = _layer(space, arch, slot)
        state[f"slots.{slot}.shortcut.weight"] = torch.zeros(layer.width, layer.in_width, 1, 1)
        child = arch.replace(**{skip_key(slot): True})
        return _child(space, space.validate(child), network, state, f"add projection skip to slot {slot}")
    width = space.in_width(arch, slot)
    op = str(_pick([o for o in space.ops if o != "none"], rng, "operation", text))
    generator = torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))
    # the branch's weights are random so that it can learn once the batch norm's gain moves off 0
    _op_tensors(state, slot, op, width, _kaiming(generator))
    _identity_bn(state, _bn_prefix(slot, op), width, gain=0.0)
    changes: dict[str, Choice] = {op_key(slot): op, width_key(slot): width, skip_key(slot): True}
    child = arch.replace(**changes)
    return _child(space, space.validate(child), network, state, f"add residual {op}-{width} at slot {slot}")


def widen_kernel(
    space: MacroSpace,
    arch: Architecture,
    network: MacroNetwork,
    rng: np.random.Generator,
    slot: int | None = None,
) -> Morphed:
    """Turn a ``conv3x3`` layer into ``conv5x5`` by zero-padding its kernel."""
    arch = space.validate(arch)
    text = space.format(arch)
    if "conv5x5" not in space.ops:
        raise SpaceError(f"cannot widen kernels: the space's ops {list(space.ops)} lack conv5x5")
    options = [layer.slot for layer in space.layers(arch) if layer.op == "conv3x3"]
    slot = int(_pick(_check_slot(slot, options, "widen the kernel of", text), rng, "kernel widening", text))
    state = _state(network)
    name = f"slots.{slot}.op.0.weight"
    state[name] = nn.functional.pad(state[name], (1, 1, 1, 1))
    child = space.validate(arch.replace(**{op_key(slot): "conv5x5"}))
    return _child(space, child, network, state, f"widen kernel of slot {slot} to 5x5")


# -- choosing morphisms --------------------------------------------------------------------
def applicable(space: MacroSpace, arch: Architecture) -> list[str]:
    """Names of the morphisms that can be applied to ``arch``."""
    arch = space.validate(arch)
    result = []
    if _empty_slots(space, arch):
        result.append("deepen")
    if _skip_options(space, arch):
        result.append("add_skip")
    if _widen_options(space, arch):
        result.append("widen")
    if "conv5x5" in space.ops and any(layer.op == "conv3x3" for layer in space.layers(arch)):
        result.append("widen_kernel")
    return [name for name in MORPHISMS if name in result]


def apply_morphism(
    name: str,
    space: MacroSpace,
    arch: Architecture,
    network: MacroNetwork,
    rng: np.random.Generator,
    noise: float = 0.0,
) -> Morphed:
    """Apply the morphism called ``name`` (one of :data:`MORPHISMS`) at a random position."""
    if name == "deepen":
        return deepen(space, arch, network, rng)
    if name == "widen":
        return widen(space, arch, network, rng, noise=noise)
    if name == "add_skip":
        return add_skip(space, arch, network, rng)
    if name == "widen_kernel":
        return widen_kernel(space, arch, network, rng)
    raise ConfigError(f"unknown morphism {name!r}; allowed: {list(MORPHISMS)}")


def random_morphism(
    space: MacroSpace,
    arch: Architecture,
    network: MacroNetwork,
    rng: np.random.Generator,
    kinds: Sequence[str] = MORPHISMS,
    noise: float = 0.0,
) -> Morphed:
    """Apply one morphism, drawn uniformly among the ``kinds`` applicable to ``arch``.

    Raises:
        SpaceError: none of ``kinds`` applies (e.g. every slot is full and at the largest width).
    """
    unknown = [k for k in kinds if k not in MORPHISMS]
    if unknown:
        raise ConfigError(f"unknown morphism(s) {unknown}; allowed: {list(MORPHISMS)}")
    possible = [k for k in applicable(space, arch) if k in kinds]
    if not possible:
        raise SpaceError(f"none of the morphisms {list(kinds)} applies to {space.format(arch)}")
    name = possible[int(rng.integers(len(possible)))]
    return apply_morphism(name, space, arch, network, rng, noise=noise)


def inherit_weights(parent: nn.Module, child: nn.Module) -> int:
    """Copy into ``child`` every parent tensor with the same name and shape; returns how many.

    Not function-preserving: it gives an arbitrarily mutated child a head start (Real et al., 2017).
    """
    parent_state = parent.state_dict()
    update = {
        name: parent_state[name].detach().clone()
        for name, tensor in child.state_dict().items()
        if name in parent_state and parent_state[name].shape == tensor.shape
    }
    child.load_state_dict(update, strict=False)
    return len(update)


__all__ = [
    "MORPHISMS",
    "Morphed",
    "add_skip",
    "applicable",
    "apply_morphism",
    "deepen",
    "inherit_weights",
    "random_morphism",
    "widen",
    "widen_kernel",
]
