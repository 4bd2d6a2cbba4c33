"""The NAS-Bench-201 supernet: the benchmark's macro skeleton with all five operations on each edge.

Layer for layer the same network as :class:`nasflow.ops.nb201.NB201Network` (stem, three stages of
cells joined by residual reductions, classifier), except that every cell edge is a
:class:`~nasflow.oneshot.supernet.MixedOp`. All cells share one set of architecture weights (the
space has one cell type), as in the DARTS, GDAS and SPOS baselines of NAS-Bench-201 (Dong & Yang 2020).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from nasflow.oneshot.supernet import MixedOp, Path, Supernet, TaskShape, copy_matching
from nasflow.ops.nb201 import NB201_EDGES, NB201_NODES, NB201_OPS, ResidualReduction, make_nb201_op
from nasflow.space.architecture import Architecture
from nasflow.space.nb201 import EDGE_NAMES, NB201Space


class NB201SuperCell(nn.Module):
    """A 4-node cell whose six edges each hold all five candidate operations."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.edges = nn.ModuleList(
            MixedOp([make_nb201_op(op, channels) for op in NB201_OPS]) for _ in NB201_EDGES
        )

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None, path: Path | None) -> torch.Tensor:
        nodes: list[torch.Tensor] = [x]
        for target in range(1, NB201_NODES):
            total: torch.Tensor | None = None
            for e, ((dst, src), edge) in enumerate(zip(NB201_EDGES, self.edges)):
                if dst != target:
                    continue
                term = edge(
                    nodes[src],
                    None if weights is None else weights[e],
                    None if path is None else path[e],
                )
                total = term if total is None else total + term
            assert total is not None  # every node has incoming edges
            nodes.append(total)
        return nodes[-1]


class NB201Supernet(Supernet):
    """All 15,625 NB201 cells in one network, shaped like ``space.build(arch, task)``.

    Args:
        space: the NB201 space (its ``channels`` and ``cells_per_stage`` set the skeleton).
        input_shape: ``(channels, height, width)`` of one example.
        num_classes: classifier outputs.
    """

    space: NB201Space

    def __init__(self, space: NB201Space, input_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        self.space = space
        self.edge_names = EDGE_NAMES
        self.op_names = NB201_OPS
        c, h, w = (int(d) for d in input_shape)
        self.input_shape = (c, h, w)
        self.num_classes = int(num_classes)
        channels = space.channels
        # Attribute names follow NB201Network so that extract() maps keys one to one.
        self.stem = nn.Sequential(nn.Conv2d(c, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
        layers: list[nn.Module] = []
        width = channels
        for stage in range(3):
            if stage > 0:
                layers.append(ResidualReduction(width, width * 2))
                width *= 2
            layers.extend(NB201SuperCell(width) for _ in range(space.cells_per_stage))
        self.cells = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.BatchNorm2d(width), nn.ReLU(inplace=False))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(width, self.num_classes)

    def forward(
        self, x: torch.Tensor, weights: torch.Tensor | None = None, path: Path | None = None
    ) -> torch.Tensor:
        if weights is None and path is None:
            raise ValueError("the supernet needs mixing weights or a path")
        out = self.stem(x)
        for layer in self.cells:
            out = layer(out, weights, path) if isinstance(layer, NB201SuperCell) else layer(out)
        return self.classifier(self.pool(self.head(out)).flatten(1))

    def path_of(self, arch: Architecture) -> list[int | None]:
        arch = self.validate(arch)
        return [NB201_OPS.index(str(arch[name])) for name in EDGE_NAMES]

    def derive(self, weights: np.ndarray) -> Architecture:
        """The operation with the largest weight on each edge (``none`` included, as NB201's baselines)."""
        array = self.check_weights(weights)
        return Architecture({name: NB201_OPS[int(np.argmax(row))] for name, row in zip(EDGE_NAMES, array)})

    def derive_thresholded(self, weights: np.ndarray, threshold: float) -> Architecture:
        """FairDARTS on NB201: an edge keeps its strongest operation if that weight reaches ``threshold``,
        else it becomes ``none``; but every node keeps its strongest incoming edge, so the cell never
        disconnects its output from its input (a cell with an empty node computes zeros).

        The ``none`` column is ignored: with independent weights, switching every other operation off
        is what drops an edge.
        """
        array = self.check_weights(weights)
        usable = [k for k, op in enumerate(NB201_OPS) if op != "none"]
        best = [usable[int(np.argmax(row[usable]))] for row in array]
        strength = [float(row[k]) for row, k in zip(array, best)]
        kept = {e for e, value in enumerate(strength) if value >= threshold}
        for target in range(1, NB201_NODES):
            incoming = [e for e, (dst, _) in enumerate(NB201_EDGES) if dst == target]
            kept.add(max(incoming, key=lambda e: strength[e]))  # ties: the first edge
        return Architecture(
            {name: NB201_OPS[best[e]] if e in kept else "none" for e, name in enumerate(EDGE_NAMES)}
        )

    def extract(self, arch: Architecture) -> nn.Module:
        arch = self.validate(arch)
        network = self.space.build(arch, TaskShape(self.input_shape, self.num_classes))
        mapping: dict[str, str] = {}
        path = self.path_of(arch)
        for key in network.state_dict():
            parts = key.split(".")
            # cells.<i>.ops.<edge>.<rest>  ->  cells.<i>.edges.<edge>.ops.<op index>.<rest>
            if parts[0] == "cells" and len(parts) > 3 and parts[2] == "ops":
                edge = int(parts[3])
                parts = [*parts[:2], "edges", parts[3], "ops", str(path[edge]), *parts[4:]]
            mapping[key] = ".".join(parts)
        copy_matching(network, self.state_dict(), mapping)
        return network
