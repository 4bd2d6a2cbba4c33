"""Building blocks of efficient mobile networks: MBConv, squeeze-and-excitation, stem and head.

A network of the ``chain`` space is a plain sequence of blocks, each described by a :class:`BlockSpec`
(what it is and the shape it receives). :func:`build_block` turns a spec into a module, so the cost of
a network is the sum of the costs of its blocks; latency look-up tables rely on that.

References: inverted residual blocks from MobileNetV2 (Sandler et al., 2018); squeeze-and-excitation
(Hu et al., 2018) with the hard-sigmoid gate and hard-swish activation of MobileNetV3 (Howard et al.,
2019). This module depends on torch only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

#: kinds of block a chain network is made of, in the order they appear
BLOCK_KINDS: tuple[str, ...] = ("stem", "mbconv", "head")
#: activation functions a block may use
ACTIVATIONS: tuple[str, ...] = ("relu", "hswish")
#: squeeze-and-excitation bottleneck: the squeezed width is the block's inner width divided by this
SE_REDUCTION = 4


def make_divisible(value: float, divisor: int) -> int:
    """``value`` rounded to the nearest multiple of ``divisor`` (at least ``divisor``).

    As in MobileNetV2's width scaling, rounding never removes more than 10% of ``value``: the result is
    bumped up by one ``divisor`` when it would.
    """
    if divisor < 1:
        raise ValueError(f"divisor must be a positive integer, got {divisor!r}")
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def conv_output_size(size: int, kernel: int, stride: int) -> int:
    """Spatial size after a convolution with ``padding = kernel // 2`` (``ceil(size / stride)``)."""
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


def activation(name: str) -> nn.Module:
    """The module of activation ``name`` (one of :data:`ACTIVATIONS`)."""
    if name == "relu":
        return nn.ReLU()
    if name == "hswish":
        return nn.Hardswish()
    raise ValueError(f"unknown activation {name!r}; allowed: {list(ACTIVATIONS)}")


@dataclass(frozen=True)
class BlockSpec:
    """One block of a chain network and the shape of the tensor it receives.

    Attributes:
        kind: ``"stem"`` (3x3 conv, BN, activation), ``"mbconv"`` (inverted residual) or ``"head"``
            (1x1 conv to ``out_channels`` features, BN, activation, global average pool, linear
            classifier to ``num_classes``).
        in_channels, out_channels: channels received and produced (for the head: the feature width).
        stride: stride of the stem convolution or of the MBConv depthwise convolution; 1 for the head.
        kernel: convolution kernel of the stem / depthwise convolution; 0 for the head.
        expand: MBConv expansion ratio (inner width = ``in_channels * expand``); 1 for stem and head.
        se: whether an MBConv has squeeze-and-excitation; False for stem and head.
        act: activation, one of :data:`ACTIVATIONS`.
        in_hw: spatial size ``(height, width)`` of the block's input.
        num_classes: classifier outputs (head only; 0 otherwise).
    """

    kind: str
    in_channels: int
    out_channels: int
    stride: int
    kernel: int
    expand: int
    se: bool
    act: str
    in_hw: tuple[int, int]
    num_classes: int = 0

    def __post_init__(self) -> None:
        # lists from JSON become tuples so that specs stay hashable (look-up tables key on them)
        if isinstance(self.in_hw, (list, tuple)):
            object.__setattr__(self, "in_hw", tuple(self.in_hw))
        object.__setattr__(self, "se", bool(self.se))
        problem = self._problem()
        if problem:
            raise ValueError(f"invalid block spec {self!r}: {problem}")

    def _problem(self) -> str | None:
        if self.kind not in BLOCK_KINDS:
            return f"kind must be one of {list(BLOCK_KINDS)}"
        if self.act not in ACTIVATIONS:
            return f"act must be one of {list(ACTIVATIONS)}"
        ints = ("in_channels", "out_channels", "stride", "kernel", "expand", "num_classes")
        if any(isinstance(getattr(self, f), bool) or not isinstance(getattr(self, f), int) for f in ints):
            return f"{', '.join(ints)} must be integers"
        if min(self.in_channels, self.out_channels, self.stride, self.expand) < 1:
            return "channels, stride and expand must be >= 1"
        if (
            not isinstance(self.in_hw, tuple)
            or len(self.in_hw) != 2
            or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in self.in_hw)
        ):
            return "in_hw must be two positive integers (height, width)"
        if self.kind == "head":
            if self.kernel != 0 or self.stride != 1 or self.expand != 1 or self.se or self.num_classes < 1:
                return "a head has kernel 0, stride 1, expand 1, no SE and num_classes >= 1"
            return None
        if self.kernel < 1 or self.kernel % 2 == 0:
            return "kernel must be a positive odd integer"
        if self.num_classes != 0:
            return "only a head has num_classes"
        if self.kind == "stem" and (self.expand != 1 or self.se):
            return "a stem has expand 1 and no SE"
        return None

    @property
    def residual(self) -> bool:
        """True for an MBConv whose input is added to its output (stride 1, same channels)."""
        return self.kind == "mbconv" and self.stride == 1 and self.in_channels == self.out_channels

    @property
    def out_hw(self) -> tuple[int, int]:
        """Spatial size of the block's output feature map (the head pools it away)."""
        if self.kind == "head":
            return (1, 1)
        return (
            conv_output_size(self.in_hw[0], self.kernel, self.stride),
            conv_output_size(self.in_hw[1], self.kernel, self.stride),
        )

    def input_shape(self) -> tuple[int, int, int]:
        """``(in_channels, height, width)`` of one input example."""
        return (self.in_channels, *self.in_hw)

    def output_shape(self) -> tuple[int, ...]:
        """``(out_channels, height, width)``, or ``(num_classes,)`` for the head."""
        if self.kind == "head":
            return (self.num_classes,)
        return (self.out_channels, *self.out_hw)

    def key(self) -> str:
        """A compact unique string, e.g. ``mbconv-16-24-s2-k5-e6-se1-hswish-8x8``."""
        text = (
            f"{self.kind}-{self.in_channels}-{self.out_channels}-s{self.stride}-k{self.kernel}-e{self.expand}"
            f"-se{int(self.se)}-{self.act}-{self.in_hw[0]}x{self.in_hw[1]}"
        )
        return f"{text}-c{self.num_classes}" if self.kind == "head" else text

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields (``in_hw`` as a list)."""
        data = asdict(self)
        data["in_hw"] = list(self.in_hw)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BlockSpec:
        """Inverse of :meth:`to_dict`; raises ValueError naming missing or unknown fields."""
        fields = set(cls.__dataclass_fields__)
        required = fields - {"num_classes"}
        missing = sorted(required - set(data))
        unknown = sorted(set(data) - fields)
        if missing or unknown:
            raise ValueError(
                f"block spec needs fields {sorted(fields)}; missing {missing}, unknown {unknown}"
            )
        return cls(**{k: data[k] for k in data})


def _conv_bn(
    in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1
) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
    ]


class SqueezeExcite(nn.Module):
    """Channel attention: ``x * hsigmoid(W2 relu(W1 mean(x)))`` (Hu et al., 2018; MobileNetV3 gate).

    ``W1``/``W2`` are 1x1 convolutions with bias through ``channels // SE_REDUCTION`` (at least 1)
    channels, so the block adds ``2 * C * r + r + C`` parameters.
    """

    def __init__(self, channels: int, reduction: int = SE_REDUCTION) -> None:
        super().__init__()
        squeezed = max(1, channels // reduction)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, squeezed, 1)
        self.act = nn.ReLU()
        self.expand = nn.Conv2d(squeezed, channels, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.expand(self.act(self.reduce(self.pool(x)))))


class MBConv(nn.Module):
    """Inverted residual block (MobileNetV2): 1x1 expand, depthwise kxk, [SE], 1x1 linear projection.

    The expansion convolution is left out when ``expand == 1``. Every convolution is bias-free and
    followed by batch norm; the projection has no activation (a linear bottleneck). The input is added
    to the output when the stride is 1 and the channels agree.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int, stride: int, expand: int, se: bool, act: str
    ) -> None:
        super().__init__()
        inner = in_channels * expand
        self.expand: nn.Module | None = None
        if expand != 1:
            self.expand = nn.Sequential(*_conv_bn(in_channels, inner, 1), activation(act))
        self.depthwise = nn.Sequential(*_conv_bn(inner, inner, kernel, stride, groups=inner), activation(act))
        self.se: nn.Module | None = SqueezeExcite(inner) if se else None
        self.project = nn.Sequential(*_conv_bn(inner, out_channels, 1))
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x if self.expand is None else self.expand(x)
        y = self.depthwise(y)
        if self.se is not None:
            y = self.se(y)
        y = self.project(y)
        return x + y if self.residual else y


class Stem(nn.Sequential):
    """``conv kxk (stride) -> BN -> activation``."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, act: str) -> None:
        super().__init__(*_conv_bn(in_channels, out_channels, kernel, stride), activation(act))


class Head(nn.Module):
    """``conv 1x1 -> BN -> activation -> global average pool -> linear``: features to class logits."""

    def __init__(self, in_channels: int, features: int, num_classes: int, act: str) -> None:
        super().__init__()
        self.features = nn.Sequential(*_conv_bn(in_channels, features, 1), activation(act))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


def build_block(spec: BlockSpec) -> nn.Module:
    """The module that ``spec`` describes (fresh, randomly initialised weights)."""
    if spec.kind == "stem":
        return Stem(spec.in_channels, spec.out_channels, spec.kernel, spec.stride, spec.act)
    if spec.kind == "mbconv":
        return MBConv(
            spec.in_channels, spec.out_channels, spec.kernel, spec.stride, spec.expand, spec.se, spec.act
        )
    return Head(spec.in_channels, spec.out_channels, spec.num_classes, spec.act)


class ChainNetwork(nn.Module):
    """A network that is exactly its blocks run one after the other (``self.blocks``).

    Args:
        blocks: the block modules in order (e.g. ``nn.Sequential(*map(build_block, specs))``).
        specs: the specs they were built from, kept for inspection (``self.specs``).
    """

    def __init__(self, blocks: nn.Sequential, specs: Iterable[BlockSpec] = ()) -> None:
        super().__init__()
        self.blocks = blocks
        self.specs: tuple[BlockSpec, ...] = tuple(specs)

    @classmethod
    def from_specs(cls, specs: Iterable[BlockSpec]) -> ChainNetwork:
        """Build every block of ``specs`` and chain them."""
        specs = tuple(specs)
        return cls(nn.Sequential(*[build_block(s) for s in specs]), specs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


__all__ = [
    "ACTIVATIONS",
    "BLOCK_KINDS",
    "SE_REDUCTION",
    "BlockSpec",
    "ChainNetwork",
    "Head",
    "MBConv",
    "SqueezeExcite",
    "Stem",
    "activation",
    "build_block",
    "conv_output_size",
    "make_divisible",
]
