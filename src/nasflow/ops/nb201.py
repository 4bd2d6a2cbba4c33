"""Building blocks of the NAS-Bench-201 network (Dong & Yang, ICLR 2020).

The layer layout mirrors the benchmark's own network so that parameter and MAC counts match the
published figures exactly; this module depends on torch only.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

#: the five candidate operations of a NAS-Bench-201 cell edge, in the benchmark's order
NB201_OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: cell edges as ``(target node, source node)`` in the order of the official architecture string
NB201_EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
NB201_NODES = 4


class ReLUConvBN(nn.Sequential):
    """ReLU, then a bias-free convolution, then batch norm (the benchmark's conv unit)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        affine: bool = True,
        track_running_stats: bool = True,
    ) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(out_channels, affine=affine, track_running_stats=track_running_stats),
        )


class ResidualReduction(nn.Module):
    """ResNet basic block with stride 2 that halves the resolution between stages.

    The shortcut is a 2x2 average pool followed by a 1x1 convolution (no batch norm), as in the
    benchmark, which matters for the parameter count. The pool rounds its output size up so that odd
    resolutions (e.g. 7x7) still match the strided convolution; even ones are unaffected.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(in_channels, out_channels, 3, stride=2, padding=1)
        self.conv_b = ReLUConvBN(out_channels, out_channels, 3, stride=1, padding=1)
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, padding=0, ceil_mode=True),
            nn.Conv2d(in_channels, out_channels, 1, stride=1, padding=0, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


class AvgPool3x3(nn.AvgPool2d):
    """3x3 average pooling that keeps the resolution; border averages ignore the padding."""

    def __init__(self) -> None:
        super().__init__(kernel_size=3, stride=1, padding=1, count_include_pad=False)


class Zero(nn.Module):
    """The ``none`` operation: an all-zero tensor shaped like the input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


def make_nb201_op(name: str, channels: int) -> nn.Module:
    """The module for one cell edge; ``name`` is one of :data:`NB201_OPS`."""
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1, stride=1, padding=0)
    if name == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3, stride=1, padding=1)
    if name == "avg_pool_3x3":
        return AvgPool3x3()
    raise ValueError(f"unknown NAS-Bench-201 operation {name!r}; allowed: {list(NB201_OPS)}")


class NB201Cell(nn.Module):
    """A 4-node cell: node ``j`` is the sum of ``op(j<-i)(node i)`` over ``i < j``; node 3 is the output.

    Args:
        edge_ops: ``(target, source) -> operation name`` for each of :data:`NB201_EDGES`.
        channels: width of the cell (input and output).
    """

    def __init__(self, edge_ops: Mapping[tuple[int, int], str], channels: int) -> None:
        super().__init__()
        missing = [edge for edge in NB201_EDGES if edge not in edge_ops]
        if missing:
            raise ValueError(f"cell is missing operations for edges {missing}")
        self.edges = NB201_EDGES
        # ModuleList in edge order keeps state_dict keys stable across cells
        self.ops = nn.ModuleList(make_nb201_op(edge_ops[edge], channels) for edge in NB201_EDGES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes: list[torch.Tensor] = [x]
        for target in range(1, NB201_NODES):
            total: torch.Tensor | None = None
            for (dst, src), op in zip(self.edges, self.ops, strict=True):
                if dst == target:
                    term = op(nodes[src])
                    total = term if total is None else total + term
            assert total is not None  # every node has at least one incoming edge
            nodes.append(total)
        return nodes[-1]


class NB201Network(nn.Module):
    """The macro skeleton: stem, three stages of cells joined by residual reductions, classifier.

    With the defaults (16 channels, 5 cells per stage, 3x32x32 input, 10 classes) this is the
    network whose results NAS-Bench-201 tabulates.
    """

    def __init__(
        self,
        edge_ops: Mapping[tuple[int, int], str],
        channels: int = 16,
        cells_per_stage: int = 5,
        in_channels: int = 3,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )
        layers: list[nn.Module] = []
        width = channels
        for stage in range(3):
            if stage > 0:
                layers.append(ResidualReduction(width, width * 2))
                width *= 2
            layers.extend(NB201Cell(edge_ops, width) for _ in range(cells_per_stage))
        self.cells = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.BatchNorm2d(width), nn.ReLU(inplace=False))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.pool(self.head(self.cells(self.stem(x))))
        return self.classifier(features.flatten(1))
