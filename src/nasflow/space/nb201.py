"""The NAS-Bench-201 cell space: six edges of a 4-node cell, five operations each (Dong & Yang, 2020).

Torch is imported only when a network is built, so listing or searching the space stays light.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nasflow.errors import ConfigError, InvalidArchitectureError
from nasflow.space.architecture import Architecture
from nasflow.space.base import DecisionSpace

#: candidate operations of every edge, in the benchmark's order (``none`` drops the edge)
OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: ``(target, source)`` node pairs in the order of the official architecture string
EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
#: decision names, one per edge: ``"2<-1"`` is the edge into node 2 from node 1
EDGE_NAMES: tuple[str, ...] = tuple(f"{dst}<-{src}" for dst, src in EDGES)
#: input-to-output routes through the cell, as edge lists (the support of the path encoding)
ROUTES: tuple[tuple[tuple[int, int], ...], ...] = (
    ((3, 0),),
    ((1, 0), (3, 1)),
    ((2, 0), (3, 2)),
    ((1, 0), (2, 1), (3, 2)),
)

_OUTPUT_NODE = 3
_EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
_FORM_HINT = (
    f"expected the official form '|op~0|+|op~0|op~1|+|op~0|op~1|op~2|' (e.g. {_EXAMPLE!r}) "
    f"with op in {list(OPS)}"
)
# Upper-triangular positions of the 4x4 cell adjacency matrix, row-major (by source node).
_ADJACENCY_ORDER: tuple[tuple[int, int], ...] = tuple(sorted(EDGES, key=lambda e: (e[1], e[0])))
# Tokens of the canonical expression; their sort order ('#' < '(' < '0') decides which keys coincide,
# so they are fixed to reproduce NAS-Bench-201's own count of unique cells.
_ZERO_TERM = "#"
_INPUT_TERM = "0"


class NB201Space(DecisionSpace):
    """NAS-Bench-201: all 5^6 = 15,625 cells are members.

    Args:
        channels: width of the first stage (doubled at each of the two reductions); 16 in the benchmark.
        cells_per_stage: cells in each of the three stages; 5 in the benchmark.
    """

    name = "nb201"

    def __init__(self, channels: int = 16, cells_per_stage: int = 5) -> None:
        for label, value in (("channels", channels), ("cells_per_stage", cells_per_stage)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"nb201 {label} must be a positive integer, got {value!r}")
        super().__init__({name: OPS for name in EDGE_NAMES})
        self.channels = channels
        self.cells_per_stage = cells_per_stage

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "channels": self.channels, "cells_per_stage": self.cells_per_stage}

    # -- text ------------------------------------------------------------------------------
    def format(self, arch: Architecture) -> str:
        """The official string, e.g. ``|nor_conv_3x3~0|+|none~0|skip_connect~1|+|...|``."""
        nodes = []
        for target in range(1, _OUTPUT_NODE + 1):
            nodes.append("".join(f"|{arch[f'{target}<-{src}']}~{src}" for src in range(target)) + "|")
        return "+".join(nodes)

    def parse(self, text: str) -> Architecture:
        """Read the official string; JSON and ``name=value`` forms of the base class are accepted too."""
        if not isinstance(text, str):
            raise InvalidArchitectureError(f"cannot parse {text!r}: not a string; {_FORM_HINT}")
        stripped = text.strip()
        if stripped.startswith("{") or "=" in stripped:
            return super().parse(stripped)
        nodes = stripped.split("+")
        if len(nodes) != _OUTPUT_NODE:
            raise InvalidArchitectureError(
                f"cannot parse {text!r}: found {len(nodes)} node group(s) separated by '+', "
                f"need {_OUTPUT_NODE}; {_FORM_HINT}"
            )
        values: dict[str, str] = {}
        for target, group in enumerate(nodes, start=1):
            values.update(_parse_node(text, target, group))
        return self.validate(values)

    # -- equivalence -----------------------------------------------------------------------
    def canonical(self, arch: Architecture) -> str:
        """A key shared by cells that compute the same network; 6,466 keys over the 15,625 cells.

        The key is the cell's output written as an expression of its input, following the rules
        NAS-Bench-201 itself uses to count unique cells: ``skip_connect`` passes its operand through
        unchanged, ``none`` (or any operation applied to a node that is identically zero) gives a zero
        term, other operations wrap their operand as ``(operand)@op``, and each node's terms are sorted
        before being joined with ``+``. Edges that cannot reach the output never enter the expression,
        sorting makes the sums order-free (so node orderings that are isomorphic coincide), and folding
        ``skip_connect`` equates cells that differ only in where an identity sits. Zero terms are kept,
        so ``a + 0`` and ``a`` stay apart: the key can split equivalent cells, never merge different ones.
        The exact token spelling matters: the sort order of the joined strings decides which cells
        coincide, and this spelling reproduces the benchmark's 6,466 classes. (Plain labelled-graph
        isomorphism after pruning dead edges, without folding identities, gives 8,765 classes.)
        """
        ops = _edge_ops(self.validate(arch))
        values = [_INPUT_TERM]
        for target in range(1, _OUTPUT_NODE + 1):
            terms = []
            for src in range(target):
                op, operand = ops[target, src], values[src]
                if op == "none" or operand == _ZERO_TERM:
                    terms.append(_ZERO_TERM)
                elif op == "skip_connect":
                    terms.append(operand)
                else:
                    terms.append(f"({operand})@{op}")
            values.append("+".join(sorted(terms)))
        return values[_OUTPUT_NODE]

    # -- encodings -------------------------------------------------------------------------
    def encodings(self) -> tuple[str, ...]:
        return (*super().encodings(), "adjacency", "path")

    def encode(self, arch: Architecture, kind: str = "onehot") -> np.ndarray:
        """``onehot``/``index`` (base class), ``adjacency`` (24) or ``path`` (180 features).

        ``adjacency`` flattens the upper triangle of the 4x4 cell matrix row by row (edges 0->1, 0->2,
        0->3, 1->2, 1->3, 2->3); each entry is a one-hot over the four real operations, all zeros when
        the edge is ``none``. ``path`` is the BANANAS path encoding: one feature per input-to-output
        route and sequence of operations along it (5 + 25 + 25 + 125), set when the cell has that
        path; paths through a ``none`` edge never exist.
        """
        if kind == "adjacency":
            ops = _edge_ops(arch)
            real_ops = OPS[1:]
            matrix = np.zeros((len(_ADJACENCY_ORDER), len(real_ops)))
            for row, edge in enumerate(_ADJACENCY_ORDER):
                if ops[edge] != "none":
                    matrix[row, real_ops.index(ops[edge])] = 1.0
            return matrix.ravel()
        if kind == "path":
            return _path_encoding(_edge_ops(arch))
        return super().encode(arch, kind)

    # -- networks --------------------------------------------------------------------------
    def build(self, arch: Architecture, task: Any = None) -> Any:
        """The benchmark network for ``arch``; with a task, shaped for its input and classes.

        Without a task: 3x32x32 input and 10 classes (CIFAR-10), as in NAS-Bench-201.
        """
        arch = self.validate(arch)
        in_channels, num_classes = 3, 10
        if task is not None:
            in_channels, num_classes = int(task.input_shape[0]), int(task.num_classes)
        from nasflow.ops.nb201 import NB201Network  # torch is loaded only when a network is needed

        return NB201Network(
            _edge_ops(arch),
            channels=self.channels,
            cells_per_stage=self.cells_per_stage,
            in_channels=in_channels,
            num_classes=num_classes,
        )


def _edge_ops(arch: Architecture) -> dict[tuple[int, int], str]:
    return {edge: str(arch[name]) for edge, name in zip(EDGES, EDGE_NAMES, strict=True)}


def _parse_node(text: str, target: int, group: str) -> dict[str, str]:
    """Decisions of one ``|op~src|...|`` group of the official string."""
    where = f"node {target} group {group!r} of {text!r}"
    if len(group) < 2 or not (group.startswith("|") and group.endswith("|")):
        raise InvalidArchitectureError(f"cannot parse {where}: it must start and end with '|'; {_FORM_HINT}")
    tokens = group[1:-1].split("|")
    if len(tokens) != target:
        raise InvalidArchitectureError(
            f"cannot parse {where}: node {target} needs {target} input(s), found {len(tokens)}; {_FORM_HINT}"
        )
    values: dict[str, str] = {}
    for token in tokens:
        op, sep, src = token.partition("~")
        if not sep:
            raise InvalidArchitectureError(f"cannot parse {where}: {token!r} lacks '~'; {_FORM_HINT}")
        if op not in OPS:
            raise InvalidArchitectureError(
                f"cannot parse {where}: unknown operation {op!r}; allowed: {list(OPS)}"
            )
        if not src.isdigit() or int(src) >= target:
            raise InvalidArchitectureError(
                f"cannot parse {where}: source {src!r} must be a node index 0..{target - 1}; {_FORM_HINT}"
            )
        name = f"{target}<-{int(src)}"
        if name in values:
            raise InvalidArchitectureError(f"cannot parse {where}: source {src} appears twice; {_FORM_HINT}")
        values[name] = op
    return values


def _path_encoding(ops: dict[tuple[int, int], str]) -> np.ndarray:
    code = np.zeros(sum(len(OPS) ** len(route) for route in ROUTES))
    offset = 0
    for route in ROUTES:
        labels = [ops[edge] for edge in route]
        if "none" not in labels:
            position = 0
            for label in labels:
                position = position * len(OPS) + OPS.index(label)
            code[offset + position] = 1.0
        offset += len(OPS) ** len(route)
    return code


__all__ = ["EDGES", "EDGE_NAMES", "OPS", "ROUTES", "NB201Space"]
