"""The DARTS supernet: every (node, earlier state) edge of both cell types carries all eight operations.

The skeleton is DARTS's search network (Liu et al. 2019) at the space's size: the stride-1 stem,
``layers`` cells with reductions at 1/3 and 2/3 of the depth, global pooling and a classifier,
exactly as :meth:`DartsSpace.build` stacks them. As in the paper's search network, candidate
operations and cell preprocessing use batch norm without learnable scale and shift, pools are
followed by such a batch norm, and ``none`` is a candidate (it never appears in a derived cell).

Architecture weights have one row per edge: the 14 edges of the normal cell (node 2 from states
0-1, node 3 from 0-2, ...), then the 14 of the reduction cell; all cells of a type share them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from nasflow.oneshot.supernet import MixedOp, Path, Supernet, TaskShape, copy_matching
from nasflow.ops.darts import DARTS_OP_NAMES, Cell, make_search_op, reduction_layers
from nasflow.space.architecture import Architecture
from nasflow.space.darts import CELL_TYPES, SLOTS, DartsSpace

_MIXED = "mixed"  # placeholder operation name: the cell's factory turns it into a MixedOp


def _mixed_op(_name: str, channels: int, stride: int) -> nn.Module:
    return MixedOp([make_search_op(op, channels, stride) for op in DARTS_OP_NAMES])


class DartsSuperCell(Cell):
    """A DARTS cell in which node ``j`` has an edge from every earlier state, each a MixedOp."""

    def __init__(
        self, nodes: int, prev_prev: int, prev: int, channels: int, reduction: bool, reduction_prev: bool
    ) -> None:
        spec = [[(source, _MIXED) for source in range(node)] for node in range(2, nodes + 2)]
        super().__init__(spec, prev_prev, prev, channels, reduction, reduction_prev, _mixed_op, affine=False)

    def forward(  # type: ignore[override]
        self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor | None, path: Path | None
    ) -> torch.Tensor:
        """Like :class:`Cell`, with edge ``e`` of the cell mixed by ``weights[e]`` / picked by ``path[e]``."""
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        position = 0
        for sources in self.edges:
            total: torch.Tensor | None = None
            for source in sources:
                index = None if path is None else path[position]
                if path is None or index is not None:
                    term = self.ops[position](
                        states[source], None if weights is None else weights[position], index
                    )
                    total = term if total is None else total + term
                position += 1
            if total is None:  # a node no selected edge reaches (never for members of the space)
                total = torch.zeros_like(states[1])
            states.append(total)
        return torch.cat(states[2:], dim=1)


class DartsSupernet(Supernet):
    """All architectures of a :class:`DartsSpace` in one network, shaped like ``space.build(arch, task)``.

    Args:
        space: the DARTS space (channels, layers, stem multiplier and nodes set the skeleton).
        input_shape: ``(channels, height, width)`` of one example.
        num_classes: classifier outputs.
    """

    space: DartsSpace

    def __init__(self, space: DartsSpace, input_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        self.space = space
        c, h, w = (int(d) for d in input_shape)
        self.input_shape = (c, h, w)
        self.num_classes = int(num_classes)
        self.op_names = DARTS_OP_NAMES
        self._edges = [(node, source) for node in range(2, space.nodes + 2) for source in range(node)]
        self.edge_names = tuple(
            f"{cell}:{node}<-{source}" for cell in CELL_TYPES for node, source in self._edges
        )
        stem_channels = space.stem_multiplier * space.channels
        # Attribute names follow DartsNetwork so that extract() maps keys one to one.
        self.stem = nn.Sequential(
            nn.Conv2d(c, stem_channels, 3, padding=1, bias=False), nn.BatchNorm2d(stem_channels)
        )
        reductions = reduction_layers(space.layers)
        prev_prev, prev, width = stem_channels, stem_channels, space.channels
        reduction_prev = False
        cells = []
        for i in range(space.layers):
            reduction = i in reductions
            if reduction:
                width *= 2
            cell = DartsSuperCell(space.nodes, prev_prev, prev, width, reduction, reduction_prev)
            cells.append(cell)
            reduction_prev = reduction
            prev_prev, prev = prev, cell.out_channels
        self.cells = nn.ModuleList(cells)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(prev, self.num_classes)

    @property
    def edges_per_cell(self) -> int:
        return len(self._edges)

    def forward(
        self, x: torch.Tensor, weights: torch.Tensor | None = None, path: Path | None = None
    ) -> torch.Tensor:
        if weights is None and path is None:
            raise ValueError("the supernet needs mixing weights or a path")
        n = self.edges_per_cell
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            part = slice(n, 2 * n) if cell.reduction else slice(0, n)
            cell_weights = None if weights is None else weights[part]
            cell_path = None if path is None else path[part]
            s0, s1 = s1, cell(s0, s1, cell_weights, cell_path)
        return self.classifier(self.global_pooling(s1).flatten(1))

    def _row(self, cell: str, node: int, source: int) -> int:
        return CELL_TYPES.index(cell) * self.edges_per_cell + self._edges.index((node, source))

    def path_of(self, arch: Architecture) -> list[int | None]:
        arch = self.validate(arch)
        path: list[int | None] = [None] * self.num_edges
        for cell, pairs in self.space.genotype(arch).items():
            for position, (op, source) in enumerate(pairs):
                node = 2 + position // len(SLOTS)
                path[self._row(cell, node, source)] = DARTS_OP_NAMES.index(op)
        return path

    def derive(self, weights: np.ndarray) -> Architecture:
        """DARTS's discretisation: per node, the two incoming edges whose best non-``none`` weight is
        largest, each with that best operation."""
        array = self.check_weights(weights)
        usable = [k for k, op in enumerate(DARTS_OP_NAMES) if op != "none"]
        genotype: dict[str, list[tuple[str, int]]] = {}
        for cell in CELL_TYPES:
            pairs: list[tuple[str, int]] = []
            for node in range(2, self.space.nodes + 2):
                rows = {source: array[self._row(cell, node, source), usable] for source in range(node)}
                # stable: ties keep the lower input first, so the result is deterministic
                strongest = sorted(range(node), key=lambda s: -float(rows[s].max()))[: len(SLOTS)]
                for source in strongest:
                    pairs.append((DARTS_OP_NAMES[usable[int(np.argmax(rows[source]))]], source))
            genotype[cell] = pairs
        return self.space.from_genotype(genotype["normal"], genotype["reduce"])

    def count_skips(self, arch: Architecture) -> int:
        """Skip connections of the normal cell (DARTS+ watches the normal cell)."""
        return sum(1 for op, _ in self.space.genotype(self.validate(arch))["normal"] if op == "skip_connect")

    def extract(self, arch: Architecture) -> nn.Module:
        """The discrete network with the supernet's weights.

        The supernet's batch norms have no scale and shift; the network's get 1 and 0, which computes
        the same. Pools in the supernet are followed by a batch norm that the final network does not
        have, so cells with pools compute slightly differently after extraction.
        """
        arch = self.validate(arch)
        network = self.space.build(arch, TaskShape(self.input_shape, self.num_classes))
        state = dict(self.state_dict())
        genotype = self.space.genotype(arch)
        mapping: dict[str, str] = {}
        for key, value in network.state_dict().items():
            parts = key.split(".")
            source_key = key
            if parts[0] == "cells" and parts[2] == "ops":
                cell_index, position = int(parts[1]), int(parts[3])
                cell_type = "reduce" if self.cells[cell_index].reduction else "normal"
                op, source = genotype[cell_type][position]
                edge = self._edges.index((2 + position // len(SLOTS), source))
                rest = parts[4:]
                if "pool" in op:
                    rest = ["0", *rest]  # the pool sits first in the supernet's Sequential(pool, bn)
                source_key = ".".join(
                    ["cells", parts[1], "ops", str(edge), "ops", str(DARTS_OP_NAMES.index(op)), *rest]
                )
            if source_key not in state and _is_affine_bn(network, key):
                # learnable scale/shift the non-affine supernet batch norms lack: the identity
                state[source_key] = (
                    torch.ones_like(value) if key.endswith(".weight") else torch.zeros_like(value)
                )
            if source_key in state:
                mapping[key] = source_key
        copy_matching(network, state, mapping)
        return network


def _is_affine_bn(network: nn.Module, key: str) -> bool:
    owner, _, name = key.rpartition(".")
    module = network.get_submodule(owner)
    return isinstance(module, nn.modules.batchnorm._BatchNorm) and name in ("weight", "bias")
