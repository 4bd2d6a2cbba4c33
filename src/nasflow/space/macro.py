"""A plain chain CNN space whose networks can be grown by function-preserving morphisms.

The network is a stem convolution, ``max_layers`` slots and a linear head after global average pooling.
Each slot is ``none`` (absent) or one layer ``op -> batch norm [+ shortcut] -> ReLU`` of a chosen width;
2x2 max pools sit before fixed slot positions. Every slot's input is the output of a ReLU (or of a pool
of one), so it is never negative: that is what lets a morphism insert an identity layer anywhere (see
:mod:`nasflow.morphism.ops`). The design follows the chain networks grown by NASH (Elsken et al., 2017,
"Simple and efficient architecture search for convolutional neural networks").
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from nasflow.errors import ConfigError, InvalidArchitectureError
from nasflow.space.architecture import Architecture, Choice
from nasflow.space.base import DecisionSpace

#: slot operations; ``none`` leaves the slot empty
OPS: tuple[str, ...] = ("none", "conv3x3", "conv5x5", "sepconv3x3")
DEFAULT_WIDTHS: tuple[int, ...] = (8, 16, 32, 64)
#: batch-norm epsilon of every layer; morphisms need it to write identity batch norms
BN_EPS = 1e-5

_KERNEL = {"conv3x3": 3, "conv5x5": 5, "sepconv3x3": 3}
_TOKEN = re.compile(r"^(?P<op>[a-z0-9]+)(?:-(?P<width>\d+))?(?P<skip>\+skip)?$")
_FORM_HINT = (
    "expected slots like 'conv3x3-16', 'sepconv3x3-32+skip' or 'none', '|' between slots, '/' at pools"
)


@dataclass(frozen=True)
class Layer:
    """One non-empty slot of an architecture, with the width of the tensor it receives."""

    slot: int
    op: str
    width: int
    skip: bool
    in_width: int

    @property
    def projects(self) -> bool:
        """True when the shortcut needs a 1x1 projection (input and output widths differ)."""
        return self.skip and self.in_width != self.width


def op_key(slot: int) -> str:
    return f"op_{slot}"


def width_key(slot: int) -> str:
    return f"width_{slot}"


def skip_key(slot: int) -> str:
    return f"skip_{slot}"


class MacroSpace(DecisionSpace):
    """Chain CNNs: per slot an operation, a width and a residual-shortcut flag.

    Args:
        max_layers: number of slots.
        widths: output channel choices of a slot.
        ops: operation choices, a subset of :data:`OPS`; with ``none`` a slot may stay empty.
        reduce_at: slot indices before which a 2x2 max pool halves the resolution (``max_layers``
            means after the last slot); default ``(max_layers // 3, 2 * max_layers // 3)``.
        stem_channels: output channels of the fixed 3x3 stem convolution.

    An architecture needs at least one non-empty slot. The canonical key lists the layers of each
    stage in order, so the width and skip settings of empty slots, and where the empty slots sit
    inside a stage, do not matter.
    """

    name = "macro"

    def __init__(
        self,
        max_layers: int = 8,
        widths: Sequence[int] = DEFAULT_WIDTHS,
        ops: Sequence[str] = OPS,
        reduce_at: Sequence[int] | None = None,
        stem_channels: int = 16,
    ) -> None:
        self.max_layers = _positive_int("max_layers", max_layers)
        self.stem_channels = _positive_int("stem_channels", stem_channels)
        if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence) or not widths:
            raise ConfigError(f"macro widths must be a non-empty list of positive integers, got {widths!r}")
        self.widths = tuple(sorted({_positive_int("widths entry", w) for w in widths}))
        if isinstance(ops, (str, bytes)) or not isinstance(ops, Sequence):
            raise ConfigError(f"macro ops must be a list drawn from {list(OPS)}, got {ops!r}")
        unknown = [op for op in ops if op not in OPS]
        if unknown:
            raise ConfigError(f"macro ops {unknown} are unknown; allowed: {list(OPS)}")
        self.ops = tuple(op for op in OPS if op in ops)
        if not any(op != "none" for op in self.ops):
            raise ConfigError(f"macro ops need at least one operation besides 'none', got {list(ops)}")
        if reduce_at is None:
            reduce_at = (self.max_layers // 3, 2 * self.max_layers // 3)
        positions = {_int_at_least("reduce_at entry", r, 0) for r in reduce_at}
        if any(r > self.max_layers for r in positions):
            raise ConfigError(
                f"macro reduce_at entries must be in 0..{self.max_layers}, got {list(reduce_at)}"
            )
        self.reduce_at = tuple(sorted(positions))
        decisions: dict[str, tuple[Choice, ...]] = {}
        for slot in range(self.max_layers):
            decisions[op_key(slot)] = self.ops
            decisions[width_key(slot)] = self.widths
            decisions[skip_key(slot)] = (False, True)
        super().__init__(decisions)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "max_layers": self.max_layers,
            "widths": list(self.widths),
            "ops": list(self.ops),
            "reduce_at": list(self.reduce_at),
            "stem_channels": self.stem_channels,
        }

    # -- structure -------------------------------------------------------------------------
    def layers(self, arch: Architecture) -> list[Layer]:
        """The non-empty slots of ``arch`` in order, each with the width it receives."""
        result = []
        width = self.stem_channels
        for slot in range(self.max_layers):
            op = str(arch[op_key(slot)])
            if op == "none":
                continue
            out = int(arch[width_key(slot)])  # type: ignore[arg-type]
            result.append(Layer(slot, op, out, bool(arch[skip_key(slot)]), width))
            width = out
        return result

    def in_width(self, arch: Architecture, slot: int) -> int:
        """Channels of the tensor that reaches ``slot`` (from the last non-empty slot before it)."""
        width = self.stem_channels
        for layer in self.layers(arch):
            if layer.slot >= slot:
                break
            width = layer.width
        return width

    def stage(self, slot: int) -> int:
        """Index of the stage (run of slots between pools) that ``slot`` belongs to."""
        return sum(1 for r in self.reduce_at if r <= slot)

    def _check_constraints(self, arch: Architecture) -> bool:
        has_layer = any(arch[op_key(s)] != "none" for s in range(self.max_layers))
        return has_layer and super()._check_constraints(arch)

    def canonical(self, arch: Architecture) -> str:
        """Stages separated by ``/``, each the ``|``-joined list of its layers (empty slots dropped)."""
        arch = self.validate(arch)
        stages: list[list[str]] = [[] for _ in range(len(self.reduce_at) + 1)]
        for layer in self.layers(arch):
            stages[self.stage(layer.slot)].append(_layer_text(layer.op, layer.width, layer.skip))
        return "/".join("|".join(stage) for stage in stages)

    def normalize(self, arch: Architecture) -> Architecture:
        """``arch`` with every empty slot at the smallest width and without skip (same network)."""
        changes: dict[str, Choice] = {}
        for slot in range(self.max_layers):
            if arch[op_key(slot)] == "none":
                changes[width_key(slot)], changes[skip_key(slot)] = self.widths[0], False
        return arch.replace(**changes)

    def sample(self, rng: np.random.Generator) -> Architecture:
        """A random architecture (uniform over decisions) with empty slots normalised."""
        return self.normalize(super().sample(rng))

    def mutate(self, arch: Architecture, rng: np.random.Generator) -> Architecture:
        """A different network one decision away (not just another setting of an empty slot).

        Empty slots of the result are normalised (see :meth:`normalize`).
        """
        key = self.canonical(arch)
        options = [n for n in self.neighbors(arch) if self.canonical(n) != key]
        if options:
            return self.normalize(options[int(rng.integers(len(options)))])
        return super().mutate(arch, rng)

    # -- text ------------------------------------------------------------------------------
    def format(self, arch: Architecture) -> str:
        """E.g. ``conv3x3-16|none/conv5x5-32+skip|none|none/sepconv3x3-64|none|none``.

        Slots are joined by ``|`` and stages (the pools) by ``/``. An empty slot prints as ``none``
        when its width is the smallest and skip is off, else with its settings (``none-32+skip``),
        so that :meth:`parse` gives back exactly the same architecture.
        """
        stages: list[list[str]] = [[] for _ in range(len(self.reduce_at) + 1)]
        for slot in range(self.max_layers):
            op, width, skip = str(arch[op_key(slot)]), int(arch[width_key(slot)]), bool(arch[skip_key(slot)])  # type: ignore[arg-type]
            if op == "none" and width == self.widths[0] and not skip:
                token = "none"
            else:
                token = _layer_text(op, width, skip)
            stages[self.stage(slot)].append(token)
        return "/".join("|".join(stage) for stage in stages)

    def parse(self, text: str) -> Architecture:
        """Inverse of :meth:`format`; JSON and ``name=value`` forms of the base class work too."""
        if not isinstance(text, str):
            raise InvalidArchitectureError(f"cannot parse {text!r}: not a string; {_FORM_HINT}")
        stripped = "".join(text.split())
        if stripped.startswith("{") or "=" in stripped:
            return super().parse(text)
        stage_texts = stripped.split("/")
        if len(stage_texts) != len(self.reduce_at) + 1:
            raise InvalidArchitectureError(
                f"cannot parse {text!r}: found {len(stage_texts)} stage(s) separated by '/', the space has "
                f"{len(self.reduce_at) + 1} (pools before slots {list(self.reduce_at)}); {_FORM_HINT}"
            )
        values: dict[str, Choice] = {}
        slot = 0
        for number, stage_text in enumerate(stage_texts):
            tokens = stage_text.split("|") if stage_text else []
            expected = sum(1 for s in range(self.max_layers) if self.stage(s) == number)
            if len(tokens) != expected:
                raise InvalidArchitectureError(
                    f"cannot parse {text!r}: stage {number} has {len(tokens)} slot(s), needs {expected}; "
                    f"{_FORM_HINT}"
                )
            for token in tokens:
                op, width, skip = self._parse_token(text, token)
                values.update({op_key(slot): op, width_key(slot): width, skip_key(slot): skip})
                slot += 1
        return self.validate(values)

    def _parse_token(self, text: str, token: str) -> tuple[str, int, bool]:
        match = _TOKEN.match(token)
        if match is None or match["op"] not in self.ops:
            raise InvalidArchitectureError(
                f"cannot parse slot {token!r} of {text!r}: operations are {list(self.ops)}; {_FORM_HINT}"
            )
        op, raw_width = match["op"], match["width"]
        if raw_width is None and op != "none":
            raise InvalidArchitectureError(
                f"cannot parse slot {token!r} of {text!r}: {op} needs a width, e.g. '{op}-{self.widths[0]}'"
            )
        width = self.widths[0] if raw_width is None else int(raw_width)
        if width not in self.widths:
            raise InvalidArchitectureError(
                f"cannot parse slot {token!r} of {text!r}: width {width} is not one of {list(self.widths)}"
            )
        return op, width, match["skip"] is not None

    # -- networks --------------------------------------------------------------------------
    def build(self, arch: Architecture, task: Any = None) -> MacroNetwork:
        """The network of ``arch`` for ``task``'s input channels and classes (default 3 and 10)."""
        in_channels, num_classes = 3, 10
        if task is not None:
            in_channels, num_classes = int(task.input_shape[0]), int(task.num_classes)
        return self.build_network(arch, in_channels, num_classes)

    def build_network(self, arch: Architecture, in_channels: int, num_classes: int) -> MacroNetwork:
        """The network of ``arch`` for ``in_channels``-channel images and ``num_classes`` classes."""
        arch = self.validate(arch)
        return MacroNetwork(
            self.layers(arch),
            max_layers=self.max_layers,
            reduce_at=self.reduce_at,
            stem_channels=self.stem_channels,
            in_channels=_positive_int("in_channels", in_channels),
            num_classes=_positive_int("num_classes", num_classes),
        )


class MacroSlot(nn.Module):
    """One layer: ``ReLU(BN(op(x)) [+ shortcut(x)])``.

    ``op`` is a ``Sequential`` of bias-free convolution(s) ending in batch norm: ``(conv, bn)`` for
    ``conv3x3``/``conv5x5``, ``(depthwise 3x3, pointwise 1x1, bn)`` for ``sepconv3x3``. The shortcut is
    the identity when the widths agree and a bias-free 1x1 convolution when they differ.
    """

    def __init__(self, op: str, in_channels: int, width: int, skip: bool) -> None:
        super().__init__()
        if op == "sepconv3x3":
            self.op = nn.Sequential(
                nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False),
                nn.Conv2d(in_channels, width, 1, bias=False),
                nn.BatchNorm2d(width, eps=BN_EPS),
            )
        else:
            kernel = _KERNEL[op]
            self.op = nn.Sequential(
                nn.Conv2d(in_channels, width, kernel, padding=kernel // 2, bias=False),
                nn.BatchNorm2d(width, eps=BN_EPS),
            )
        self.shortcut: nn.Module | None = None
        if skip:
            self.shortcut = (
                nn.Identity() if in_channels == width else nn.Conv2d(in_channels, width, 1, bias=False)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.op(x)
        if self.shortcut is not None:
            y = y + self.shortcut(x)
        return F.relu(y)


class MacroNetwork(nn.Module):
    """Stem ``conv3x3 -> BN -> ReLU``, the slots with max pools before ``reduce_at``, pooling, linear head.

    Empty slots are ``nn.Identity`` entries, so parameter names (``slots.<index>...``) follow slot
    indices and a network's ``state_dict`` loads into any fresh build of the same architecture.
    """

    def __init__(
        self,
        layers: Sequence[Layer],
        max_layers: int,
        reduce_at: Sequence[int],
        stem_channels: int,
        in_channels: int,
        num_classes: int,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.reduce_at = tuple(reduce_at)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(stem_channels, eps=BN_EPS),
            nn.ReLU(),
        )
        by_slot = {layer.slot: layer for layer in layers}
        self.slots = nn.ModuleList(
            MacroSlot(by_slot[s].op, by_slot[s].in_width, by_slot[s].width, by_slot[s].skip)
            if s in by_slot
            else nn.Identity()
            for s in range(max_layers)
        )
        self.head = nn.Linear(layers[-1].width if layers else stem_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for index, slot in enumerate(self.slots):
            if index in self.reduce_at:
                x = _pool(x)
            x = slot(x)
        if len(self.slots) in self.reduce_at:
            x = _pool(x)
        return self.head(x.mean(dim=(2, 3)))


def _pool(x: torch.Tensor) -> torch.Tensor:
    # ceil_mode keeps odd sizes covered and a 1x1 map at 1x1, so any input size builds
    return F.max_pool2d(x, kernel_size=2, stride=2, ceil_mode=True)


def _layer_text(op: str, width: int, skip: bool) -> str:
    return f"{op}-{width}{'+skip' if skip else ''}"


def _int_at_least(field: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ConfigError(f"macro {field} must be an integer >= {low}, got {json.dumps(value, default=str)}")
    return int(value)


def _positive_int(field: str, value: object) -> int:
    return _int_at_least(field, value, 1)


__all__ = ["BN_EPS", "DEFAULT_WIDTHS", "OPS", "Layer", "MacroNetwork", "MacroSlot", "MacroSpace"]
