"""A two-level space: a macro skeleton of stages over one searched micro cell, searched jointly.

The micro level is a NAS-Bench-201 cell (Dong & Yang, 2020): a 4-node DAG whose six edges each choose
an operation; one cell design is shared by every cell of the network. The macro level chooses how many
stages the network has and, per stage, its width, its number of cells and whether a reduction block
halves the resolution before it. Macro and micro decisions form one decision vector, so every strategy
searches both at once, in the spirit of hierarchical search spaces such as Liu et al., 2018
("Hierarchical representations for efficient architecture search") and Auto-DeepLab (Liu et al., 2019).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from nasflow.errors import ConfigError, InvalidArchitectureError
from nasflow.ops.nb201 import NB201_EDGES, NB201_OPS, NB201Cell, ReLUConvBN, ResidualReduction
from nasflow.space.architecture import Architecture, Choice
from nasflow.space.base import DecisionSpace
from nasflow.space.nb201 import NB201Space

DEFAULT_INPUT_SHAPE: tuple[int, int, int] = (3, 32, 32)
DEFAULT_NUM_CLASSES = 10
#: decision names of the cell edges, ``cell_<target><-<source>``, in the official NB201 string order
CELL_KEYS: tuple[str, ...] = tuple(f"cell_{dst}<-{src}" for dst, src in NB201_EDGES)

_STAGE = re.compile(r"^(?P<inactive>~)?d(?P<reduce>\d+)-(?P<width>\d+)x(?P<cells>\d+)$")
_FORM_HINT = (
    "expected 'macro:<stage>,<stage>,...|cell:<NB201 cell string>' with stages "
    "'d<reduce 0/1>-<width>x<cells>' (inactive stages, when shown, start with '~'), e.g. "
    "'macro:d0-16x1,d1-32x2|cell:|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|"
    "nor_conv_3x3~2|'"
)


def reduce_key(stage: int) -> str:
    """Decision name of whether a reduction block precedes ``stage``."""
    return f"stage{stage}_reduce"


def width_key(stage: int) -> str:
    return f"stage{stage}_width"


def cells_key(stage: int) -> str:
    return f"stage{stage}_cells"


@dataclass(frozen=True)
class Stage:
    """One active stage as built: a reduction block first (``reduce``), then ``cells`` cells of ``width``."""

    reduce: bool
    width: int
    cells: int


class HierarchicalSpace(DecisionSpace):
    """Stages of shared NB201-style cells; stage count, widths, cells per stage and reductions searched.

    Args:
        min_stages, max_stages: the choices of ``num_stages``.
        widths: channel choices of a stage.
        cells: choices of the number of cells in a stage.
        ops: cell edge operations, a subset of the NB201 operations ``none``, ``skip_connect``,
            ``nor_conv_1x1``, ``nor_conv_3x3``, ``avg_pool_3x3``.

    A cell must connect its input to its output through edges other than ``none``: otherwise every
    network built with it ignores its input. Stages beyond ``num_stages`` are inactive.
    """

    name = "hierarchical"

    def __init__(
        self,
        min_stages: int = 2,
        max_stages: int = 4,
        widths: Sequence[int] = (16, 24, 32, 48),
        cells: Sequence[int] = (1, 2),
        ops: Sequence[str] = NB201_OPS,
    ) -> None:
        self.max_stages = _int_at_least("max_stages", max_stages, 1)
        self.min_stages = _int_at_least("min_stages", min_stages, 1)
        if self.min_stages > self.max_stages:
            raise ConfigError(
                f"hierarchical min_stages ({min_stages}) must not exceed max_stages ({max_stages})"
            )
        self.widths = _int_list("widths", widths)
        self.cells = _int_list("cells", cells)
        if isinstance(ops, (str, bytes)) or not isinstance(ops, Sequence):
            raise ConfigError(f"hierarchical ops must be a list drawn from {list(NB201_OPS)}, got {ops!r}")
        unknown = [op for op in ops if op not in NB201_OPS]
        if unknown:
            raise ConfigError(f"hierarchical ops {unknown} are unknown; allowed: {list(NB201_OPS)}")
        self.ops = tuple(op for op in NB201_OPS if op in ops)
        if not any(op != "none" for op in self.ops):
            raise ConfigError(f"hierarchical ops need at least one operation besides 'none', got {list(ops)}")
        decisions: dict[str, tuple[Choice, ...]] = {
            "num_stages": tuple(range(self.min_stages, self.max_stages + 1))
        }
        for stage in range(self.max_stages):
            decisions[reduce_key(stage)] = (0, 1)
            decisions[width_key(stage)] = self.widths
            decisions[cells_key(stage)] = self.cells
        for key in CELL_KEYS:
            decisions[key] = self.ops
        super().__init__(decisions)
        self._nb201 = NB201Space()  # for the cell's canonical key and path encoding

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "min_stages": self.min_stages,
            "max_stages": self.max_stages,
            "widths": list(self.widths),
            "cells": list(self.cells),
            "ops": list(self.ops),
        }

    # -- structure -------------------------------------------------------------------------
    def num_stages(self, arch: Architecture) -> int:
        return _as_int(arch["num_stages"])

    def stages(self, arch: Architecture) -> list[Stage]:
        """The active stages of ``arch`` as chosen (before clamping reductions to the input size)."""
        return [
            Stage(bool(arch[reduce_key(s)]), _as_int(arch[width_key(s)]), _as_int(arch[cells_key(s)]))
            for s in range(self.num_stages(arch))
        ]

    def layout(self, arch: Architecture, input_shape: Sequence[int]) -> list[Stage]:
        """The stages as built for ``input_shape``: a reduction on a 1x1 map is dropped (it cannot halve)."""
        _, height, width = _input_shape(input_shape)
        result = []
        for stage in self.stages(self.validate(arch)):
            reduce = stage.reduce and (height, width) != (1, 1)
            if reduce:
                height, width = (height + 1) // 2, (width + 1) // 2
            result.append(Stage(reduce, stage.width, stage.cells))
        return result

    def cell(self, arch: Architecture) -> dict[tuple[int, int], str]:
        """The shared cell: ``(target, source) -> operation``."""
        return {edge: str(arch[key]) for edge, key in zip(NB201_EDGES, CELL_KEYS)}

    def _cell_arch(self, arch: Architecture) -> Architecture:
        return Architecture({f"{dst}<-{src}": op for (dst, src), op in self.cell(arch).items()})

    def _check_constraints(self, arch: Architecture) -> bool:
        return _connected(self.cell(arch)) and super()._check_constraints(arch)

    def normalize(self, arch: Architecture) -> Architecture:
        """``arch`` with every inactive stage set to the first choices (the same network)."""
        changes: dict[str, Choice] = {}
        for stage in range(self.num_stages(arch), self.max_stages):
            changes[reduce_key(stage)], changes[width_key(stage)] = 0, self.widths[0]
            changes[cells_key(stage)] = self.cells[0]
        return arch.replace(**changes)

    def distinct_size(self) -> int:
        """Number of architectures once inactive stages are ignored (valid cells only, no isomorphism)."""
        per_stage = 2 * len(self.widths) * len(self.cells)
        macro = sum(per_stage**n for n in range(self.min_stages, self.max_stages + 1))
        cells = 0
        for ops in itertools.product(self.ops, repeat=len(NB201_EDGES)):
            cells += _connected(dict(zip(NB201_EDGES, ops)))
        return macro * cells

    def canonical(self, arch: Architecture) -> str:
        """Active stages, then the cell's NAS-Bench-201 canonical expression.

        Stages read ``d<reduce>-<width>x<cells>``; when the cell is the identity (its output is its
        input) the number of cells does not matter and reads ``x*``. The cell part groups cells that
        compute the same function by NAS-Bench-201's own rules (see :meth:`NB201Space.canonical`).
        """
        arch = self.validate(arch)
        identity = _is_identity(self.cell(arch))
        stages = ",".join(
            f"d{int(s.reduce)}-{s.width}x{'*' if identity else s.cells}" for s in self.stages(arch)
        )
        return f"{stages}|{self._nb201.canonical(self._cell_arch(arch))}"

    # -- random operators ------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> Architecture:
        """Uniform over valid decision vectors, inactive stages normalised."""
        return self.normalize(super().sample(rng))

    def neighbors(self, arch: Architecture) -> list[Architecture]:
        """Valid one-decision changes that give a different network (inactive stages are not touched)."""
        key = self.canonical(arch)
        inactive = self._inactive_keys(arch)
        result = []
        for name, choices in self.decisions().items():
            if name in inactive:
                continue
            for value in choices:
                if value == arch[name]:
                    continue
                child = arch.replace(**{name: value})
                if self._check_constraints(child) and self.canonical(child) != key:
                    result.append(child)
        return result

    def _inactive_keys(self, arch: Architecture) -> set[str]:
        return {
            key
            for stage in range(self.num_stages(arch), self.max_stages)
            for key in (reduce_key(stage), width_key(stage), cells_key(stage))
        }

    def mutate(self, arch: Architecture, rng: np.random.Generator) -> Architecture:
        """A random neighbour (always a different network), inactive stages normalised."""
        options = self.neighbors(arch)
        if options:
            return self.normalize(options[int(rng.integers(len(options)))])
        return super().mutate(arch, rng)

    def crossover(self, a: Architecture, b: Architecture, rng: np.random.Generator) -> Architecture:
        """Uniform crossover of the decisions, inactive stages normalised."""
        return self.normalize(super().crossover(a, b, rng))

    # -- encodings -------------------------------------------------------------------------
    def encodings(self) -> tuple[str, ...]:
        return (*super().encodings(), "path")

    def encode(self, arch: Architecture, kind: str = "onehot") -> np.ndarray:
        """``onehot`` (inactive stages all zeros), ``index`` (normalised) or ``path``.

        ``path`` is the macro part of ``onehot`` followed by the cell's NB201 path encoding (BANANAS,
        White et al., 2021).
        """
        arch = self.validate(arch)
        if kind == "index":
            return super().encode(self.normalize(arch), kind)
        if kind not in ("onehot", "path"):
            return super().encode(arch, kind)
        inactive = self._inactive_keys(arch)
        parts = []
        for key, choices in self.decisions().items():
            if kind == "path" and key in CELL_KEYS:
                continue
            part = np.zeros(len(choices))
            if key not in inactive:
                part[choices.index(arch[key])] = 1.0
            parts.append(part)
        if kind == "path":
            parts.append(self._nb201.encode(self._cell_arch(arch), "path"))
        return np.concatenate(parts)

    # -- text ------------------------------------------------------------------------------
    def format(self, arch: Architecture) -> str:
        """E.g. ``macro:d0-16x1,d1-32x2|cell:|nor_conv_3x3~0|+|skip_connect~0|none~1|+|...|``.

        Active stages ``d<reduce>-<width>x<cells>`` joined by ``,``, then the cell as an official
        NAS-Bench-201 string. Inactive stages are omitted while they hold the first choices (as after
        :meth:`normalize`); otherwise they follow, marked ``~``, so :meth:`parse` restores them exactly.
        """
        tokens = [
            f"d{arch[reduce_key(s)]}-{arch[width_key(s)]}x{arch[cells_key(s)]}"
            for s in range(self.max_stages)
        ]
        count = self.num_stages(arch)
        default = f"d0-{self.widths[0]}x{self.cells[0]}"
        shown = max([count, *(s + 1 for s in range(count, self.max_stages) if tokens[s] != default)])
        stages = ",".join(tokens[:count] + [f"~{t}" for t in tokens[count:shown]])
        return f"macro:{stages}|cell:{self._nb201.format(self._cell_arch(arch))}"

    def parse(self, text: str) -> Architecture:
        """Inverse of :meth:`format`; JSON and ``name=value`` forms of the base class work too."""
        if not isinstance(text, str):
            raise InvalidArchitectureError(f"cannot parse {text!r}: not a string; {_FORM_HINT}")
        stripped = "".join(text.split())
        if stripped.startswith("{") or ("=" in stripped and "cell:" not in stripped):
            return super().parse(text)
        macro, sep, cell = stripped.partition("|cell:")
        if not sep or not macro.startswith("macro:"):
            raise InvalidArchitectureError(f"cannot parse {text!r}: {_FORM_HINT}")
        values = self._parse_macro(text, macro[len("macro:") :])
        if cell.startswith("{") or "=" in cell:
            raise InvalidArchitectureError(f"cannot parse cell {cell!r} of {text!r}: {_FORM_HINT}")
        cell_arch = self._nb201.parse(cell)  # raises InvalidArchitectureError naming the problem
        values.update({key: cell_arch[f"{dst}<-{src}"] for key, (dst, src) in zip(CELL_KEYS, NB201_EDGES)})
        return self.validate(values)

    def _parse_macro(self, text: str, macro: str) -> dict[str, Choice]:
        matches = []
        for token in macro.split(",") if macro else []:
            match = _STAGE.match(token)
            if match is None:
                raise InvalidArchitectureError(f"cannot parse stage {token!r} of {text!r}; {_FORM_HINT}")
            matches.append(match)
        count = sum(1 for m in matches if not m["inactive"])
        if any(m["inactive"] for m in matches[:count]):
            raise InvalidArchitectureError(f"cannot parse {text!r}: inactive '~' stages must come last")
        if not self.min_stages <= count <= self.max_stages or len(matches) > self.max_stages:
            raise InvalidArchitectureError(
                f"cannot parse {text!r}: a network has {self.min_stages}..{self.max_stages} active stages "
                f"(and at most {self.max_stages} in all), found {count} active of {len(matches)}"
            )
        values: dict[str, Choice] = {"num_stages": count}
        for stage in range(self.max_stages):
            if stage < len(matches):
                match = matches[stage]
                reduce, width, cells = int(match["reduce"]), int(match["width"]), int(match["cells"])
            else:
                reduce, width, cells = 0, self.widths[0], self.cells[0]
            values.update({reduce_key(stage): reduce, width_key(stage): width, cells_key(stage): cells})
        return values

    # -- networks --------------------------------------------------------------------------
    def build(self, arch: Architecture, task: Any = None) -> HierarchicalNetwork:
        """The network of ``arch`` for ``task``'s input shape and classes (default 3x32x32, 10)."""
        input_shape, num_classes = DEFAULT_INPUT_SHAPE, DEFAULT_NUM_CLASSES
        if task is not None:
            input_shape, num_classes = tuple(task.input_shape), int(task.num_classes)
        return self.build_network(arch, input_shape, num_classes)

    def build_network(
        self, arch: Architecture, input_shape: Sequence[int], num_classes: int
    ) -> HierarchicalNetwork:
        """The network of ``arch`` for ``input_shape`` = (C, H, W) and ``num_classes`` classes."""
        arch = self.validate(arch)
        return HierarchicalNetwork(
            self.cell(arch),
            self.layout(arch, input_shape),
            in_channels=_input_shape(input_shape)[0],
            num_classes=_int_at_least("num_classes", num_classes, 1),
        )


class HierarchicalNetwork(nn.Module):
    """Stem ``conv3x3 -> BN``, the stages, then ``BN -> ReLU -> global pool -> linear``.

    The stem has the first stage's width. Before each stage sits a transition: NAS-Bench-201's residual
    reduction block when the stage reduces, else a ReLU-conv1x1-BN projection when the width changes,
    else nothing. Every cell of the network uses the same edge operations (separate weights).
    """

    def __init__(
        self,
        cell: dict[tuple[int, int], str],
        stages: Sequence[Stage],
        in_channels: int,
        num_classes: int,
    ) -> None:
        super().__init__()
        width = stages[0].width
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width)
        )
        layers: list[nn.Module] = []
        for stage in stages:
            if stage.reduce:
                layers.append(ResidualReduction(width, stage.width))
            elif stage.width != width:
                layers.append(ReLUConvBN(width, stage.width, 1))
            width = stage.width
            layers.extend(NB201Cell(cell, width) for _ in range(stage.cells))
        self.body = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.BatchNorm2d(width), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.head(self.body(self.stem(x)))).flatten(1))


def _connected(cell: dict[tuple[int, int], str]) -> bool:
    """True when some path of non-``none`` edges leads from the cell input (node 0) to node 3."""
    reached = {0}
    for dst in range(1, 4):
        if any(src in reached and cell[dst, src] != "none" for src in range(dst)):
            reached.add(dst)
    return 3 in reached


def _is_identity(cell: dict[tuple[int, int], str]) -> bool:
    """True when the cell's output is exactly its input: one skip chain, every other term zero.

    A node is ``zero`` when all its terms are (``none`` edges, or skip / average pool of a zero node),
    ``input`` when exactly one term is the input and the rest are zero; anything else is ``other``.
    """
    values = ["input"]
    for dst in range(1, 4):
        terms = []
        for src in range(dst):
            op, operand = cell[dst, src], values[src]
            if op == "none" or (operand == "zero" and op in ("skip_connect", "avg_pool_3x3")):
                terms.append("zero")
            else:
                terms.append(operand if op == "skip_connect" else "other")
        live = [t for t in terms if t != "zero"]
        if not live:
            values.append("zero")
        else:
            values.append("input" if live == ["input"] else "other")
    return values[3] == "input"


def _as_int(value: Choice) -> int:
    assert isinstance(value, int), value  # validated decisions hold ints
    return int(value)


def _input_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    values = tuple(shape) if isinstance(shape, Sequence) and not isinstance(shape, str) else ()
    if len(values) != 3 or any(
        isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in values
    ):
        raise ConfigError(
            f"input_shape must be (channels, height, width) of positive integers, got {shape!r}"
        )
    return int(values[0]), int(values[1]), int(values[2])


def _int_at_least(field: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ConfigError(
            f"hierarchical {field} must be an integer >= {low}, got {json.dumps(value, default=str)}"
        )
    return int(value)


def _int_list(field: str, values: object) -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
        raise ConfigError(
            f"hierarchical {field} must be a non-empty list of positive integers, got {values!r}"
        )
    result = tuple(sorted({_int_at_least(f"{field} entry", v, 1) for v in values}))
    if len(result) != len(values):
        raise ConfigError(f"hierarchical {field} lists a value twice: {list(values)}")
    return result


__all__ = [
    "CELL_KEYS",
    "HierarchicalNetwork",
    "HierarchicalSpace",
    "Stage",
    "cells_key",
    "reduce_key",
    "width_key",
]
