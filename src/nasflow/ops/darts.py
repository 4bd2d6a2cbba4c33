"""Building blocks of DARTS networks (Liu, Simonyan & Yang, "DARTS: Differentiable Architecture Search",
ICLR 2019).

The layer layout follows the paper's CIFAR-10 evaluation network so that parameter counts match the
published figures: every convolution is bias-free and preceded by ReLU, separable convolutions are
applied twice, strided ``skip_connect`` is a factorized reduction, and the two reduction cells sit at
1/3 and 2/3 of the depth. This module depends on torch only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

OpFactory = Callable[[int, int, bool], nn.Module]
#: per intermediate node, its incoming edges as ``(input state index, operation name)``
CellSpec = Sequence[Sequence[tuple[int, str]]]


class ReLUConvBN(nn.Sequential):
    """ReLU, a bias-free convolution, then batch norm (DARTS's plain conv unit and cell preprocessing)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        affine: bool = True,
    ) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(out_channels, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU, a dilated depthwise convolution, a 1x1 pointwise convolution, batch norm."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        padding: int,
        dilation: int,
        affine: bool = True,
    ) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(
                in_channels,
                in_channels,
                kernel_size,
                stride=stride,
                padding=padding,
                dilation=dilation,
                groups=in_channels,
                bias=False,
            ),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two stacked depthwise-separable units; only the first one strides (as in DARTS).

    Each unit is ReLU, depthwise ``kernel_size`` convolution, 1x1 pointwise convolution, batch norm.
    The first unit keeps the channel count, the second maps it to ``out_channels``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        padding: int,
        affine: bool = True,
    ) -> None:
        super().__init__(
            DilConv(in_channels, in_channels, kernel_size, stride, padding, dilation=1, affine=affine),
            DilConv(in_channels, out_channels, kernel_size, 1, padding, dilation=1, affine=affine),
        )


class Identity(nn.Module):
    """``skip_connect`` with stride 1: returns its input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Zero(nn.Module):
    """The ``none`` operation: zeros shaped like the (strided) output, so sums in a cell still type-check."""

    def __init__(self, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return torch.zeros_like(x)
        return torch.zeros_like(x[:, :, :: self.stride, :: self.stride])


class FactorizedReduce(nn.Module):
    """Halve the resolution with two 1x1 stride-2 convolutions, the second shifted by one pixel.

    Each convolution gives half of the output channels (the first rounds down), so together they see
    every input position. The shifted branch pads one row and column at the bottom right before
    shifting, which changes nothing for even sizes and keeps both halves the same size for odd ones
    (DARTS itself assumes even sizes).
    """

    def __init__(self, in_channels: int, out_channels: int, affine: bool = True) -> None:
        super().__init__()
        if out_channels < 2:
            raise ValueError(f"FactorizedReduce needs at least 2 output channels, got {out_channels}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(in_channels, out_channels // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(in_channels, out_channels - out_channels // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        shifted = F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


def _skip(channels: int, stride: int, affine: bool) -> nn.Module:
    return Identity() if stride == 1 else FactorizedReduce(channels, channels, affine=affine)


#: ``name -> factory(channels, stride, affine)`` for every candidate operation of a DARTS edge; every
#: module keeps the channel count and divides the resolution by ``stride`` (rounding up)
DARTS_OPS: dict[str, OpFactory] = {
    "none": lambda c, stride, affine: Zero(stride),
    "max_pool_3x3": lambda c, stride, affine: nn.MaxPool2d(3, stride=stride, padding=1),
    "avg_pool_3x3": lambda c, stride, affine: nn.AvgPool2d(
        3, stride=stride, padding=1, count_include_pad=False
    ),
    "skip_connect": _skip,
    "sep_conv_3x3": lambda c, stride, affine: SepConv(c, c, 3, stride, 1, affine=affine),
    "sep_conv_5x5": lambda c, stride, affine: SepConv(c, c, 5, stride, 2, affine=affine),
    "dil_conv_3x3": lambda c, stride, affine: DilConv(c, c, 3, stride, 2, dilation=2, affine=affine),
    "dil_conv_5x5": lambda c, stride, affine: DilConv(c, c, 5, stride, 4, dilation=2, affine=affine),
}
#: the candidate operations in the paper's order; ``none`` belongs to supernets, not to final genotypes
DARTS_OP_NAMES: tuple[str, ...] = tuple(DARTS_OPS)


def make_darts_op(name: str, channels: int, stride: int = 1, affine: bool = True) -> nn.Module:
    """The module for one DARTS edge; ``name`` is a key of :data:`DARTS_OPS`."""
    if name not in DARTS_OPS:
        raise ValueError(f"unknown DARTS operation {name!r}; allowed: {list(DARTS_OPS)}")
    if stride not in (1, 2):
        raise ValueError(f"DARTS operations use stride 1 or 2, got {stride}")
    return DARTS_OPS[name](channels, stride, affine)


def make_search_op(name: str, channels: int, stride: int = 1) -> nn.Module:
    """An edge candidate as DARTS's search network creates it: non-affine, pools followed by batch norm.

    Pooling has no normalisation of its own; DARTS adds a non-affine batch norm after it in the supernet
    so that its output scale is comparable with the convolutions' when the mixture weights are learned.
    """
    op = make_darts_op(name, channels, stride, affine=False)
    if "pool" in name:
        return nn.Sequential(op, nn.BatchNorm2d(channels, affine=False))
    return op


class Cell(nn.Module):
    """A DARTS cell: two preprocessed inputs, intermediate nodes that sum operations on earlier states,
    and the channel concatenation of all intermediate nodes as output.

    States are indexed as in DARTS genotypes: 0 and 1 are the cell inputs (outputs of the cells two
    and one steps back), ``2 + j`` is intermediate node ``j``.

    Args:
        nodes: per intermediate node, its incoming edges ``(input index, op name)``; DARTS uses two
            edges per node, any positive number works (their outputs are summed).
        prev_prev_channels: channels of input 0.
        prev_channels: channels of input 1.
        channels: width of every node; the cell outputs ``len(nodes) * channels`` channels.
        reduction: this cell halves the resolution (edges from the inputs use stride 2).
        reduction_prev: the previous cell halved it, so input 0 is at twice the resolution of input 1
            and is reduced by a :class:`FactorizedReduce`.
        op_factory: ``(name, channels, stride) -> module``; :func:`make_darts_op` by default
            (:func:`make_search_op` gives the supernet's candidates).
        affine: learnable scale and shift in the preprocessing batch norms (DARTS's search network
            turns them off).
    """

    def __init__(
        self,
        nodes: CellSpec,
        prev_prev_channels: int,
        prev_channels: int,
        channels: int,
        reduction: bool,
        reduction_prev: bool,
        op_factory: Callable[[str, int, int], nn.Module] = make_darts_op,
        affine: bool = True,
    ) -> None:
        super().__init__()
        if not nodes:
            raise ValueError("a DARTS cell needs at least one intermediate node")
        self.reduction = reduction
        if reduction_prev:
            self.preprocess0: nn.Module = FactorizedReduce(prev_prev_channels, channels, affine=affine)
        else:
            self.preprocess0 = ReLUConvBN(prev_prev_channels, channels, 1, affine=affine)
        self.preprocess1 = ReLUConvBN(prev_channels, channels, 1, affine=affine)
        self.edges: list[list[int]] = []
        ops: list[nn.Module] = []
        for j, edges in enumerate(nodes):
            if not edges:
                raise ValueError(f"intermediate node {j + 2} has no incoming edge")
            sources = []
            for source, name in edges:
                if not 0 <= source < j + 2:
                    raise ValueError(f"node {j + 2} cannot take input {source}; allowed: 0..{j + 1}")
                stride = 2 if reduction and source < 2 else 1
                ops.append(op_factory(name, channels, stride))
                sources.append(source)
            self.edges.append(sources)
        # one flat ModuleList in genotype order keeps state_dict keys like DARTS's (ops.0, ops.1, ...)
        self.ops = nn.ModuleList(ops)
        self.out_channels = len(nodes) * channels

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        position = 0
        for sources in self.edges:
            total: torch.Tensor | None = None
            for source in sources:
                term = self.ops[position](states[source])
                position += 1
                total = term if total is None else total + term
            assert total is not None  # every node has an edge (checked in __init__)
            states.append(total)
        return torch.cat(states[2:], dim=1)


def reduction_layers(layers: int) -> tuple[int, ...]:
    """Indices of the reduction cells in a stack of ``layers`` cells: ``layers // 3`` and ``2 * layers // 3``.

    With fewer than 3 layers the two positions coincide or start at 0, so the result is deduplicated.
    """
    return tuple(sorted({layers // 3, 2 * layers // 3}))


class DartsNetwork(nn.Module):
    """The DARTS evaluation network (no auxiliary head, no drop-path): stem, stacked cells, classifier.

    The stem is a stride-1 3x3 convolution to ``stem_multiplier * channels`` channels with batch norm,
    so it never downsamples; cells at :func:`reduction_layers` double the width and halve the
    resolution. DARTS V2 with ``channels=36, layers=20`` is the paper's 3.3M-parameter CIFAR-10 model.

    Args:
        normal: the normal cell as a :data:`CellSpec`.
        reduce: the reduction cell as a :data:`CellSpec`.
        channels: width of the first cells (``C``).
        layers: number of cells.
        stem_multiplier: the stem outputs ``stem_multiplier * channels`` channels.
        in_channels: channels of the input image.
        num_classes: outputs of the classifier.
    """

    def __init__(
        self,
        normal: CellSpec,
        reduce: CellSpec,
        channels: int = 16,
        layers: int = 8,
        stem_multiplier: int = 3,
        in_channels: int = 3,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        stem_channels = stem_multiplier * channels
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(stem_channels),
        )
        reductions = reduction_layers(layers)
        prev_prev, prev, width = stem_channels, stem_channels, channels
        reduction_prev = False
        cells = []
        for i in range(layers):
            reduction = i in reductions
            if reduction:
                width *= 2
            cell = Cell(reduce if reduction else normal, prev_prev, prev, width, reduction, reduction_prev)
            cells.append(cell)
            reduction_prev = reduction
            prev_prev, prev = prev, cell.out_channels
        self.cells = nn.ModuleList(cells)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(self.global_pooling(s1).flatten(1))


__all__ = [
    "DARTS_OPS",
    "DARTS_OP_NAMES",
    "Cell",
    "CellSpec",
    "DartsNetwork",
    "DilConv",
    "FactorizedReduce",
    "Identity",
    "ReLUConvBN",
    "SepConv",
    "Zero",
    "make_darts_op",
    "make_search_op",
    "reduction_layers",
]
