"""The DARTS cell space: a normal and a reduction cell, each with four intermediate nodes that pick two
earlier states and an operation for each (Liu, Simonyan & Yang, "DARTS: Differentiable Architecture
Search", ICLR 2019).

States are numbered as in DARTS genotypes: 0 and 1 are the cell inputs (the outputs of the cells two
and one steps back) and ``2 .. nodes + 1`` the intermediate nodes; the cell output concatenates every
intermediate node. Torch is imported only when a network is built, so listing or searching the space
stays light.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NoReturn

import numpy as np

from nasflow.errors import ConfigError, InvalidArchitectureError
from nasflow.space.architecture import Architecture, Choice
from nasflow.space.base import DecisionSpace

#: operations a final genotype may use, in the paper's order; ``none`` is a supernet-only candidate
#: (DARTS drops it when deriving the discrete cell), so it is not part of this space
OPS: tuple[str, ...] = (
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
CELL_TYPES: tuple[str, ...] = ("normal", "reduce")
#: the two incoming edges of every intermediate node
SLOTS: tuple[str, ...] = ("a", "b")

#: the genotype the DARTS paper reports for first-order search (DARTS repository, genotypes.py)
DARTS_V1 = (
    "Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), ('sep_conv_3x3', 1), "
    "('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 2)], "
    "normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), "
    "('max_pool_3x3', 0), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), "
    "('avg_pool_3x3', 0)], reduce_concat=[2, 3, 4, 5])"
)
#: the genotype of the paper's second-order search, its headline 2.76% / 3.3M-parameter CIFAR-10 cell
DARTS_V2 = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], "
    "normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), "
    "('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), "
    "('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"
)

_FORM_HINT = (
    "expected \"Genotype(normal=[('op', input), ...], normal_concat=[2, 3, ...], reduce=[...], "
    f'reduce_concat=[...])" with op in {list(OPS)}'
)
_TOKEN = re.compile(
    r"\s*(?:(?P<name>[A-Za-z_]\w*)|(?P<int>-?\d+)|(?P<str>'[^'\\]*'|\"[^\"\\]*\")|(?P<punct>[()\[\],=]))"
)
_GENOTYPE_FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")

#: ``cell type -> (operation, input) pairs``, two per intermediate node, in DARTS genotype order
Genotype = dict[str, list[tuple[str, int]]]


def _decision(cell: str, node: int, part: str, slot: str) -> str:
    return f"{cell}_node{node}_{part}_{slot}"


class DartsSpace(DecisionSpace):
    """The DARTS cell space; decisions ``{cell}_node{k}_{input|op}_{a|b}`` for every intermediate node.

    For cell ``normal`` or ``reduce`` and node ``k`` (2..nodes+1), ``input_a``/``input_b`` pick two
    distinct earlier states (0..k-1) and ``op_a``/``op_b`` the operation applied to each, from
    :data:`OPS`. The two edges of a node are unordered, so :meth:`canonical` sorts them; with the
    default four nodes there are about 1.08e18 distinct networks (:meth:`distinct_size`).

    Args:
        channels: width ``C`` of the first cells (doubled at each reduction); 16 in DARTS's search
            network, 36 in its CIFAR-10 evaluation network.
        layers: number of stacked cells; reductions at ``layers // 3`` and ``2 * layers // 3``. 8 in the
            search network, 20 for evaluation; 3 suits 8x8 inputs such as digits (reductions at 1, 2).
        stem_multiplier: the stride-1 stem outputs ``stem_multiplier * channels`` channels.
        nodes: intermediate nodes per cell (4 in DARTS).
    """

    name = "darts"

    def __init__(self, channels: int = 16, layers: int = 8, stem_multiplier: int = 3, nodes: int = 4) -> None:
        settings = {
            "channels": channels,
            "layers": layers,
            "stem_multiplier": stem_multiplier,
            "nodes": nodes,
        }
        for label, value in settings.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"darts {label} must be a positive integer, got {value!r}")
        self.channels = channels
        self.layers = layers
        self.stem_multiplier = stem_multiplier
        self.nodes = nodes
        self._node_ids = tuple(range(2, nodes + 2))
        # every edge in decision order: (node, input decision, op decision); edges 2i and 2i+1 share a node
        self._edge_keys = tuple(
            (node, _decision(cell, node, "input", slot), _decision(cell, node, "op", slot))
            for cell in CELL_TYPES
            for node in self._node_ids
            for slot in SLOTS
        )
        self._op_index = {op: i for i, op in enumerate(OPS)}
        # where each edge's entries start in the onehot vector (input block, then op block, per edge)
        # and in the adjacency vector (one earlier-states x ops block per node, shared by its edges)
        onehot_sizes = [size for node, _, _ in self._edge_keys for size in (node, len(OPS))]
        adjacency_sizes = [node * len(OPS) for node, _, _ in self._edge_keys[::2]]
        self._onehot_starts = np.cumsum([0, *onehot_sizes[:-1]])
        self._onehot_length = sum(onehot_sizes)
        self._adjacency_starts = np.repeat(np.cumsum([0, *adjacency_sizes[:-1]]), 2)
        self._adjacency_length = sum(adjacency_sizes)
        self._node_array = np.array([node for node, _, _ in self._edge_keys[::2]])
        decisions: dict[str, Sequence[Choice]] = {}
        for node, input_key, op_key in self._edge_keys:
            decisions[input_key] = tuple(range(node))
            decisions[op_key] = OPS
        super().__init__(decisions)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "channels": self.channels,
            "layers": self.layers,
            "stem_multiplier": self.stem_multiplier,
            "nodes": self.nodes,
        }

    def distinct_size(self) -> int:
        """Number of distinct networks: per node with ``k`` earlier states, ``C(k, 2) * len(OPS)**2``.

        :meth:`size` keeps the base meaning (combinations of choices, what grid search indexes); it
        counts ordered, possibly invalid, input pairs too.
        """
        per_cell = math.prod(math.comb(node, 2) * len(OPS) ** 2 for node in self._node_ids)
        return per_cell ** len(CELL_TYPES)

    # -- validity --------------------------------------------------------------------------
    # Strategies call canonical/encode/neighbors on thousands of candidates, so members are recognised
    # by a direct scan of the edge table; the base class's slower checks only run to explain a rejection.
    def _member_edges(self, arch: Mapping[str, Choice]) -> list[tuple[int, str]] | None:
        """``(input, op)`` of every edge in decision order if ``arch`` is a valid member, else None."""
        # a plain dict copy is made in C and its lookups are far cheaper than Mapping.get
        values = arch.to_dict() if isinstance(arch, Architecture) else dict(arch)
        if len(values) != len(self._decisions):
            return None
        edges: list[tuple[int, str]] = []
        for node, input_key, op_key in self._edge_keys:
            source, op = values.get(input_key), values.get(op_key)
            # type() rather than isinstance(): True is an int but not an allowed input
            if type(source) is not int or not 0 <= source < node or type(op) is not str:
                return None
            if op not in self._op_index or (len(edges) % 2 and edges[-1][0] == source):
                return None
            edges.append((source, op))
        return edges

    def _edges(self, arch: Mapping[str, Choice]) -> list[tuple[int, str]]:
        """The edges of a member; raises :class:`InvalidArchitectureError` (naming why) otherwise."""
        edges = self._member_edges(arch)
        if edges is None:
            edges = self._member_edges(self.validate(arch))
            assert edges is not None  # validate() accepts exactly the members
        return edges

    def _check_constraints(self, arch: Architecture) -> bool:
        return super()._check_constraints(arch) and next(self._repeated_inputs(arch), None) is None

    def _repeated_inputs(self, arch: Mapping[str, Choice]) -> Iterator[tuple[str, int, str, Choice]]:
        """``(cell, node, input decision, input)`` for every node whose two edges share their input."""
        for i in range(0, len(self._edge_keys), 2):
            node, key_a, _ = self._edge_keys[i]
            a, b = arch.get(key_a), arch.get(self._edge_keys[i + 1][1])
            if a is not None and a == b:
                yield CELL_TYPES[i // (2 * self.nodes)], node, key_a, a

    def validate(self, arch: Mapping[str, Choice]) -> Architecture:
        """Like the base class, but a repeated node input is reported by name."""
        if isinstance(arch, Architecture) and self._member_edges(arch) is not None:
            return arch
        if isinstance(arch, Mapping):
            for cell, node, key, source in self._repeated_inputs(arch):
                if source in self._decisions[key] and not isinstance(source, bool):
                    raise InvalidArchitectureError(
                        f"node {node} of the {cell} cell takes input {source} twice; a node's two inputs "
                        "must be distinct states, as in DARTS genotypes"
                    )
        return super().validate(arch)

    # -- equivalence -----------------------------------------------------------------------
    @staticmethod
    def _sorted(edges: list[tuple[int, str]]) -> list[tuple[int, str]]:
        """Each node's two edges ordered by input (inputs of a node differ, so ops never decide)."""
        result = []
        for i in range(0, len(edges), 2):
            result.extend(sorted(edges[i : i + 2]))
        return result

    def _from_edges(self, edges: list[tuple[int, str]]) -> Architecture:
        values: dict[str, Choice] = {}
        for (_, input_key, op_key), (source, op) in zip(self._edge_keys, edges):
            values[input_key] = source
            values[op_key] = op
        return Architecture(values)

    def canonical_architecture(self, arch: Architecture) -> Architecture:
        """The same network with each node's two edges ordered by input index (edges are unordered)."""
        return self._from_edges(self._sorted(self._edges(arch)))

    def canonical(self, arch: Architecture) -> str:
        """The genotype string of :meth:`canonical_architecture`.

        Swapping a node's two ``(input, op)`` edges gives the same key. Permutations of intermediate
        nodes are not merged: they reorder the output concatenation, so the key may split such
        (functionally equivalent) cells but never merges different ones.
        """
        return self._format_edges(self._sorted(self._edges(arch)))

    # -- random operators ------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> Architecture:
        """A uniformly random valid architecture: each node draws two distinct inputs (no rejection)."""
        # one draw per kind keeps sampling cheap; strategies sample thousands of candidates
        first = rng.integers(self._node_array)
        second = rng.integers(self._node_array - 1)
        second += second >= first  # uniform over the other node - 1 states
        ops = rng.integers(len(OPS), size=2 * len(first))
        edges = []
        for j in range(len(first)):
            edges.append((int(first[j]), OPS[int(ops[2 * j])]))
            edges.append((int(second[j]), OPS[int(ops[2 * j + 1])]))
        return self._from_edges(edges)

    def neighbors(self, arch: Architecture) -> list[Architecture]:
        """Every valid architecture with one edge's input or operation changed (base-class order).

        Like the base class, this accepts a combination that breaks the distinct-inputs rule and lists
        its valid single-decision repairs (strategies that decode bit strings rely on that).
        """
        edges = self._member_edges(arch)
        if edges is None:
            return super().neighbors(arch)
        result: list[Architecture] = []
        for i, (node, input_key, op_key) in enumerate(self._edge_keys):
            source, op = edges[i]
            partner = edges[i ^ 1][0]  # the other edge of the node
            result.extend(arch.replace(**{input_key: s}) for s in range(node) if s not in (source, partner))
            result.extend(arch.replace(**{op_key: o}) for o in OPS if o != op)
        return result

    def crossover(self, a: Architecture, b: Architecture, rng: np.random.Generator) -> Architecture:
        """Node-wise uniform crossover: every node copies both its edges from one parent, so the child
        is always valid and keeps each parent's (input, operation) pairs intact."""
        edges_a, edges_b = self._edges(a), self._edges(b)
        edges = []
        for i in range(0, len(edges_a), 2):
            edges.extend((edges_a if rng.random() < 0.5 else edges_b)[i : i + 2])
        return self._from_edges(edges)

    # -- encodings -------------------------------------------------------------------------
    def encodings(self) -> tuple[str, ...]:
        return (*super().encodings(), "adjacency")

    def encode(self, arch: Architecture, kind: str = "onehot") -> np.ndarray:
        """``onehot`` (168 with four nodes), ``index`` (32) or ``adjacency`` (196 features).

        ``onehot`` and ``index`` encode :meth:`canonical_architecture` decision by decision (as the
        base class does), so swapping a node's two edges does not change the vector. ``adjacency``
        lists, for each cell, node ``k`` and earlier state ``i < k``, a one-hot over :data:`OPS` that
        is set when ``i`` feeds ``k`` (all zeros otherwise).
        """
        if kind not in self.encodings():
            return super().encode(arch, kind)  # raises the error listing the encodings
        edges = self._sorted(self._edges(arch))
        if kind == "adjacency":
            positions = [source * len(OPS) + self._op_index[op] for source, op in edges]
            code = np.zeros(self._adjacency_length)
            code[self._adjacency_starts + positions] = 1.0
            return code
        positions = [value for source, op in edges for value in (source, self._op_index[op])]
        if kind == "index":
            return np.array(positions, dtype=float)
        code = np.zeros(self._onehot_length)
        code[self._onehot_starts + positions] = 1.0
        return code

    # -- genotypes -------------------------------------------------------------------------
    def genotype(self, arch: Architecture) -> Genotype:
        """``{"normal": [(op, input), ...], "reduce": [...]}``, two pairs per node in node order."""
        edges = self._edges(arch)
        half = len(edges) // len(CELL_TYPES)
        return {
            cell: [(op, s) for s, op in edges[i * half : (i + 1) * half]] for i, cell in enumerate(CELL_TYPES)
        }

    def from_genotype(
        self, normal: Sequence[tuple[str, int]], reduce: Sequence[tuple[str, int]]
    ) -> Architecture:
        """The architecture of DARTS-style ``(op, input)`` lists, two pairs per intermediate node.

        Raises:
            InvalidArchitectureError: naming the cell, node and problem (wrong length, unknown or
                ``none`` operation, an input from the node itself or later, a repeated input).
        """
        values: dict[str, Choice] = {}
        for cell, pairs in (("normal", normal), ("reduce", reduce)):
            expected = len(SLOTS) * self.nodes
            if len(pairs) != expected:
                raise InvalidArchitectureError(
                    f"the {cell} cell lists {len(pairs)} (op, input) pairs; this space needs {expected} "
                    f"({len(SLOTS)} per intermediate node, {self.nodes} nodes)"
                )
            for position, pair in enumerate(pairs):
                node, slot = self._node_ids[position // 2], SLOTS[position % 2]
                where = f"node {node} of the {cell} cell"
                if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                    raise InvalidArchitectureError(f"{where}: expected an (op, input) pair, got {pair!r}")
                op, source = pair
                if op == "none":
                    raise InvalidArchitectureError(
                        f"{where} uses 'none', which final DARTS genotypes exclude (derivation drops it); "
                        f"allowed: {list(OPS)}"
                    )
                if op not in OPS:
                    raise InvalidArchitectureError(
                        f"{where} uses unknown operation {op!r}; allowed: {list(OPS)}"
                    )
                if isinstance(source, bool) or not isinstance(source, int) or not 0 <= source < node:
                    raise InvalidArchitectureError(
                        f"{where} takes input {source!r}, which is not an earlier state; allowed: "
                        f"0..{node - 1} (0 and 1 are the cell inputs, 2.. the earlier nodes)"
                    )
                values[_decision(cell, node, "input", slot)] = source
                values[_decision(cell, node, "op", slot)] = op
        return self.validate(values)

    # -- text ------------------------------------------------------------------------------
    def format(self, arch: Architecture) -> str:
        """The DARTS genotype string, ``Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=...)``."""
        return self._format_edges(self._edges(arch))

    def _format_edges(self, edges: list[tuple[int, str]]) -> str:
        concat = "[" + ", ".join(map(str, self._node_ids)) + "]"
        half = len(edges) // len(CELL_TYPES)
        fields = []
        for i, cell in enumerate(CELL_TYPES):
            pairs = ", ".join(f"('{op}', {source})" for source, op in edges[i * half : (i + 1) * half])
            fields.append(f"{cell}=[{pairs}], {cell}_concat={concat}")
        return f"Genotype({', '.join(fields)})"

    def parse(self, text: str) -> Architecture:
        """Read a genotype string (whitespace-tolerant; ``range(2, 6)`` for a concat list is accepted).

        The base class's JSON and ``name=value`` forms are accepted too. Nothing is evaluated as Python.
        """
        if not isinstance(text, str):
            raise InvalidArchitectureError(f"cannot parse {text!r}: not a string; {_FORM_HINT}")
        stripped = text.strip()
        first = re.match(r"[A-Za-z_]\w*", stripped)
        if stripped.startswith("{") or (first is not None and first.group() in self._decisions):
            return super().parse(stripped)
        fields = _GenotypeParser(stripped).parse()
        concat = list(self._node_ids)
        for cell in CELL_TYPES:
            if fields[f"{cell}_concat"] != concat:
                raise InvalidArchitectureError(
                    f"cannot parse DARTS genotype {_shorten(text)}: {cell}_concat is "
                    f"{fields[f'{cell}_concat']}, but DARTS cells concatenate every intermediate node: "
                    f"{concat}"
                )
        return self.from_genotype(fields["normal"], fields["reduce"])

    # -- networks --------------------------------------------------------------------------
    def build(self, arch: Architecture, task: Any = None) -> Any:
        """The stacked DARTS network for ``arch``; with a task, shaped for its input and classes.

        Without a task: 3x32x32 input and 10 classes (CIFAR-10). The stem never downsamples, so small
        inputs work with few layers, e.g. ``DartsSpace(channels=8, layers=3)`` for 8x8 digits.
        """
        genotype = self.genotype(arch)
        in_channels, num_classes = 3, 10
        if task is not None:
            in_channels, num_classes = int(task.input_shape[0]), int(task.num_classes)
        from nasflow.ops.darts import DartsNetwork  # torch is loaded only when a network is needed

        def spec(pairs: list[tuple[str, int]]) -> list[list[tuple[int, str]]]:
            return [[(source, op) for op, source in pairs[i : i + 2]] for i in range(0, len(pairs), 2)]

        return DartsNetwork(
            spec(genotype["normal"]),
            spec(genotype["reduce"]),
            channels=self.channels,
            layers=self.layers,
            stem_multiplier=self.stem_multiplier,
            in_channels=in_channels,
            num_classes=num_classes,
        )


def _shorten(text: str, limit: int = 60) -> str:
    """``text`` quoted, cut to ``limit`` characters so that the problem stays visible in messages."""
    return repr(text) if len(text) <= limit else repr(text[: limit - 3] + "...")


class _GenotypeParser:
    """A small recursive-descent reader of ``Genotype(field=value, ...)`` text (never ``eval``)."""

    def __init__(self, text: str) -> None:
        self.text = text
        if not text.startswith("Genotype"):
            self.fail("the text must start with 'Genotype('")
        self.tokens: list[tuple[str, str, int]] = []
        position = 0
        while position < len(text):
            if text[position:].isspace():
                break
            match = _TOKEN.match(text, position)
            if match is None or match.lastgroup is None:
                offending = text[position:].lstrip()[:1]
                self.fail(f"unexpected character {offending!r} at position {position}")
            self.tokens.append((match.lastgroup, match.group(match.lastgroup), match.start(match.lastgroup)))
            position = match.end()
        self.index = 0

    def fail(self, problem: str) -> NoReturn:
        raise InvalidArchitectureError(
            f"cannot parse DARTS genotype {_shorten(self.text)}: {problem}; {_FORM_HINT}"
        )

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self, kind: str, value: str | None = None) -> str:
        token = self.peek()
        wanted = repr(value) if value is not None else f"a {kind}"
        if token is None:
            self.fail(f"text ends where {wanted} was expected")
        if token[0] != kind or (value is not None and token[1] != value):
            self.fail(f"expected {wanted} at position {token[2]}, found {token[1]!r}")
        self.index += 1
        return token[1]

    def accept(self, value: str) -> bool:
        token = self.peek()
        if token is not None and token[0] == "punct" and token[1] == value:
            self.index += 1
            return True
        return False

    def parse(self) -> dict[str, list[Any]]:
        self.take("name", "Genotype")
        self.take("punct", "(")
        fields: dict[str, list[Any]] = {}
        while not self.accept(")"):
            name = self.take("name")
            if name not in _GENOTYPE_FIELDS:
                self.fail(f"unknown field {name!r}; fields are {list(_GENOTYPE_FIELDS)}")
            if name in fields:
                self.fail(f"field {name!r} is given twice")
            self.take("punct", "=")
            fields[name] = self.concat() if name.endswith("_concat") else self.pairs()
            if not self.accept(","):
                self.take("punct", ")")
                break
        if self.peek() is not None:
            self.fail(
                f"unexpected text after the closing parenthesis at position {self.tokens[self.index][2]}"
            )
        missing = [f for f in _GENOTYPE_FIELDS if f not in fields]
        if missing:
            self.fail(f"missing field(s) {missing}")
        return fields

    def pairs(self) -> list[tuple[str, int]]:
        """``[('op', input), ...]``; inner pairs may use parentheses or brackets."""
        self.take("punct", "[")
        result = []
        while not self.accept("]"):
            if self.accept("("):
                close = ")"
            else:
                self.take("punct", "[")
                close = "]"
            op = self.take("str")[1:-1]
            self.take("punct", ",")
            source = int(self.take("int"))
            self.accept(",")
            self.take("punct", close)
            result.append((op, source))
            if not self.accept(","):
                self.take("punct", "]")
                break
        return result

    def concat(self) -> list[int]:
        """``[2, 3, 4, 5]`` or ``range(2, 6)``."""
        if self.accept("["):
            result = []
            while not self.accept("]"):
                result.append(int(self.take("int")))
                if not self.accept(","):
                    self.take("punct", "]")
                    break
            return result
        token = self.peek()
        if token is None or token[:2] != ("name", "range"):
            where = f"position {token[2]}, found {token[1]!r}" if token else "the end of the text"
            self.fail(f"expected a list of node indices or range(start, stop) at {where}")
        self.take("name", "range")
        self.take("punct", "(")
        start = int(self.take("int"))
        self.take("punct", ",")
        stop = int(self.take("int"))
        self.take("punct", ")")
        return list(range(start, stop))


__all__ = ["CELL_TYPES", "DARTS_V1", "DARTS_V2", "OPS", "SLOTS", "DartsSpace", "Genotype"]
