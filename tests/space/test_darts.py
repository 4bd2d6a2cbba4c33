"""The DARTS cell space: genotype text, validity, canonical keys, counts, encodings and networks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import nasflow as nf
from nasflow.errors import ConfigError, InvalidArchitectureError
from nasflow.ops.darts import (
    DARTS_OP_NAMES,
    DARTS_OPS,
    Cell,
    DartsNetwork,
    FactorizedReduce,
    make_darts_op,
    make_search_op,
    reduction_layers,
)
from nasflow.space.darts import DARTS_V1, DARTS_V2, OPS, DartsSpace
from nasflow.tasks.base import Task
from nasflow.testing.spaces import check_space

# The example genotype written out in the issue (line breaks included); it is a valid DARTS cell, close
# to DARTS_V1 (its first normal node lists the two edges the other way round).
ISSUE_GENOTYPE = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('skip_connect', 0), "
    "('sep_conv_3x3', 1),\n('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
    "('skip_connect', 2)], normal_concat=[2, 3,\n4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), "
    "('skip_connect', 2), ('max_pool_3x3', 0),\n('max_pool_3x3', 0), ('skip_connect', 2), "
    "('skip_connect', 2), ('avg_pool_3x3', 0)], reduce_concat=[2, 3,\n4, 5])"
)


@pytest.fixture(scope="module")
def space() -> DartsSpace:
    return DartsSpace()


def params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def tiny_task(shape: tuple[int, int, int]) -> Task:
    x = np.zeros((4, *shape), dtype=np.float32)
    y = np.arange(4) % 3
    return Task("tiny", x, y, x, y, x, y, num_classes=3)


# -- structure ---------------------------------------------------------------------------------
def test_decisions_and_settings(space: DartsSpace) -> None:
    decisions = space.decisions()
    assert len(decisions) == 2 * 4 * 4
    assert list(decisions)[:4] == [
        "normal_node2_input_a",
        "normal_node2_op_a",
        "normal_node2_input_b",
        "normal_node2_op_b",
    ]
    assert decisions["reduce_node5_input_b"] == (0, 1, 2, 3, 4)
    assert decisions["normal_node3_op_a"] == OPS and "none" not in OPS
    assert OPS == DARTS_OP_NAMES[1:] and DARTS_OP_NAMES[0] == "none"  # space and torch ops agree
    assert space.describe() == {
        "name": "darts",
        "channels": 16,
        "layers": 8,
        "stem_multiplier": 3,
        "nodes": 4,
    }
    assert nf.get_space("darts", channels=8, layers=3).describe()["layers"] == 3


@pytest.mark.parametrize(
    "setting", [{"channels": 0}, {"layers": -1}, {"nodes": 2.0}, {"stem_multiplier": True}]
)
def test_rejects_bad_settings(setting: dict) -> None:
    with pytest.raises(ConfigError, match=next(iter(setting))):
        DartsSpace(**setting)


def test_counts(space: DartsSpace) -> None:
    # node k (k = 2..5) picks an unordered pair of distinct inputs from k states and 7 ops per edge:
    # C(2,2)*49 * C(3,2)*49 * C(4,2)*49 * C(5,2)*49 = 49 * 147 * 294 * 490 per cell, squared for two cells
    per_cell = 49 * 147 * 294 * 490
    assert per_cell == 1_037_664_180
    assert space.distinct_size() == per_cell**2 == 1_076_746_950_455_072_400
    # size() counts combinations of choices: (k*7)^2 per node, ordered and possibly repeating inputs
    assert space.size() == math.prod((k * 7) ** 2 for k in (2, 3, 4, 5)) ** 2
    # each valid cell has 2^4 orderings of its nodes' edges
    valid_per_cell = math.prod(k * (k - 1) * 49 for k in (2, 3, 4, 5))
    assert valid_per_cell == per_cell * 2**4


def test_distinct_size_matches_enumeration_of_a_one_node_space() -> None:
    small = DartsSpace(nodes=1)  # node 2 only: inputs {0, 1}, so 49 distinct cells each
    valid = list(small.enumerate())
    assert small.size() == (2 * 7) ** 4
    assert len(valid) == (2 * 7 * 7) ** 2  # input_a picks 0 or 1, input_b is the other one
    assert len({small.canonical(a) for a in valid}) == small.distinct_size() == 49**2


# -- text --------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", [DARTS_V1, DARTS_V2, ISSUE_GENOTYPE], ids=["v1", "v2", "issue"])
def test_format_parse_round_trip_of_published_genotypes(space: DartsSpace, text: str) -> None:
    arch = space.parse(text)
    assert space.format(arch) == " ".join(text.split())  # the exact DARTS notation, one line
    assert space.parse(space.format(arch)) == arch
    assert space.parse(arch.to_json()) == arch  # the base class's JSON form still works


def test_parse_reads_the_genotype_fields(space: DartsSpace) -> None:
    arch = space.parse(DARTS_V2)
    assert arch["normal_node5_input_b"] == 2 and arch["normal_node5_op_b"] == "dil_conv_3x3"
    assert arch["reduce_node3_input_a"] == 2 and arch["reduce_node3_op_a"] == "skip_connect"
    assert space.genotype(arch)["reduce"][-1] == ("max_pool_3x3", 1)
    # derived genotypes print the concat as range(2, 6); pairs may use brackets; spacing is free
    variant = DARTS_V2.replace("[2, 3, 4, 5]", "range(2, 6)").replace(
        "('max_pool_3x3', 0)", "[ 'max_pool_3x3' ,0 ]"
    )
    assert space.parse("  " + variant.replace(", ", ",\n  ") + "\n") == arch
    assert space.parse(variant.replace("'", '"')) == arch


def test_parse_accepts_the_name_value_form(space: DartsSpace) -> None:
    arch = space.parse(DARTS_V1)
    text = ",".join(f"{key}={value}" for key, value in arch.items())
    assert space.parse(text) == arch


def _swap_first_normal_node(text: str) -> str:
    return text.replace(
        "('sep_conv_3x3', 0), ('sep_conv_3x3', 1)", "('sep_conv_3x3', 0), ('sep_conv_3x3', 0)", 1
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (_swap_first_normal_node(DARTS_V2), "node 2 of the normal cell takes input 0 twice"),
        (
            DARTS_V2.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', 5)"),
            "node 5 of the normal cell takes input 5",
        ),
        (
            DARTS_V2.replace("('max_pool_3x3', 0)", "('max_pool_5x5', 0)", 1),
            "unknown operation 'max_pool_5x5'",
        ),
        (
            DARTS_V2.replace("('max_pool_3x3', 0)", "('none', 0)", 1),
            "'none', which final DARTS genotypes exclude",
        ),
        (
            DARTS_V2.replace("('skip_connect', 0), ('dil_conv_3x3', 2)", "('skip_connect', 0)"),
            "lists 7 .* needs 8",
        ),
        (
            DARTS_V2.replace("normal_concat=[2, 3, 4, 5]", "normal_concat=[2, 5]"),
            "normal_concat is \\[2, 5\\]",
        ),
        (
            DARTS_V2.replace("reduce_concat=[2, 3, 4, 5]", "reduce_concat=)"),
            "expected a list of node indices",
        ),
        (DARTS_V2.replace(", reduce_concat=[2, 3, 4, 5]", ""), "missing field\\(s\\) \\['reduce_concat'\\]"),
        (DARTS_V2.replace("normal=", "normal_cell="), "unknown field 'normal_cell'"),
        (DARTS_V2 + ")", "unexpected text after the closing parenthesis"),
        (
            DARTS_V2.replace("'sep_conv_3x3'", "sep_conv_3x3", 1),
            "expected a str at position 18, found 'sep_conv_3x3'",
        ),
        (DARTS_V2[:60], "text ends where"),
        ("__import__('os').system('true')", "must start with 'Genotype\\('"),
        ("Genotype(normal=[('sep_conv_3x3'; 0)])", "unexpected character ';'"),
        ("", "must start with 'Genotype\\('"),
        ("Genotype", "text ends where '\\(' was expected"),
    ],
)
def test_parse_rejects_malformed_genotypes(space: DartsSpace, text: str, message: str) -> None:
    with pytest.raises(InvalidArchitectureError, match=message):
        space.parse(text)


def test_parse_rejects_non_strings(space: DartsSpace) -> None:
    with pytest.raises(InvalidArchitectureError, match="not a string"):
        space.parse(42)  # type: ignore[arg-type]


def test_validate_names_a_repeated_input(space: DartsSpace) -> None:
    arch = space.parse(DARTS_V2).replace(reduce_node4_input_a=3, reduce_node4_input_b=3)
    assert not space.is_valid(arch)
    with pytest.raises(InvalidArchitectureError, match="node 4 of the reduce cell takes input 3 twice"):
        space.validate(arch)


def test_from_genotype_matches_parse(space: DartsSpace) -> None:
    genotype = space.genotype(space.parse(DARTS_V1))
    assert space.from_genotype(genotype["normal"], genotype["reduce"]) == space.parse(DARTS_V1)
    with pytest.raises(InvalidArchitectureError, match="expected an \\(op, input\\) pair"):
        space.from_genotype([("sep_conv_3x3",)] * 8, genotype["reduce"])  # type: ignore[list-item]
    with pytest.raises(InvalidArchitectureError, match="takes input True"):
        space.from_genotype([("sep_conv_3x3", True)] * 8, genotype["reduce"])  # type: ignore[list-item]


# -- equivalence -------------------------------------------------------------------------------
def test_canonical_ignores_the_order_of_a_nodes_two_edges(space: DartsSpace) -> None:
    v1, issue = space.parse(DARTS_V1), space.parse(ISSUE_GENOTYPE)
    assert v1 != issue  # the first normal node lists ('sep_conv_3x3', 1) and ('sep_conv_3x3', 0) swapped
    assert space.canonical(v1) == space.canonical(issue)
    swapped = v1.replace(
        reduce_node5_input_a=v1["reduce_node5_input_b"],
        reduce_node5_op_a=v1["reduce_node5_op_b"],
        reduce_node5_input_b=v1["reduce_node5_input_a"],
        reduce_node5_op_b=v1["reduce_node5_op_a"],
    )
    assert swapped != v1 and space.canonical(swapped) == space.canonical(v1)
    # the key is the genotype with every node's edges sorted by input
    assert space.canonical(v1) == space.format(space.canonical_architecture(v1))
    assert "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2)" in (
        space.canonical(v1)
    )


def test_canonical_separates_different_cells(space: DartsSpace) -> None:
    v2 = space.parse(DARTS_V2)
    keys = {space.canonical(v2)} | {space.canonical(n) for n in space.neighbors(v2)}
    assert len(keys) == 1 + len(space.neighbors(v2))  # no neighbour is the same network
    # the same edge set attached to different nodes is a different network
    moved = v2.replace(normal_node4_op_a="sep_conv_5x5", normal_node5_op_a="sep_conv_3x3")
    assert space.canonical(moved) != space.canonical(v2.replace(normal_node4_op_a="sep_conv_5x5"))


# -- operators ---------------------------------------------------------------------------------
def test_space_contract(space: DartsSpace) -> None:
    check_space(space)
    check_space(DartsSpace(nodes=2), seed=1)


def test_neighbors_change_one_op_or_one_input(space: DartsSpace) -> None:
    v2 = space.parse(DARTS_V2)
    # per node k and edge: 6 other ops, and k - 2 other inputs (not its own, not the other edge's)
    expected = 2 * sum(2 * (6 + k - 2) for k in (2, 3, 4, 5))
    assert len(space.neighbors(v2)) == expected == 120


def test_neighbors_repair_a_repeated_input(space: DartsSpace) -> None:
    broken = space.parse(DARTS_V2).replace(reduce_node3_input_a=1)  # both edges of node 3 from input 1
    repairs = space.neighbors(broken)
    assert not space.is_valid(broken) and all(space.is_valid(a) for a in repairs)
    # change either edge's input to one of the other two states (0, 2): 2 x 2 ways
    assert sorted((a["reduce_node3_input_a"], a["reduce_node3_input_b"]) for a in repairs) == [
        (0, 1),
        (1, 0),
        (1, 2),
        (2, 1),
    ]


def test_sample_is_uniform_over_valid_input_pairs() -> None:
    small = DartsSpace(nodes=3)
    rng = np.random.default_rng(0)
    pairs = [
        (a["reduce_node4_input_a"], a["reduce_node4_input_b"])
        for a in (small.sample(rng) for _ in range(3000))
    ]
    counts = {pair: pairs.count(pair) for pair in set(pairs)}
    assert set(counts) == {(a, b) for a in range(4) for b in range(4) if a != b}
    assert max(counts.values()) < 1.3 * min(counts.values())  # 12 pairs, 250 expected each


def test_crossover_copies_whole_nodes(space: DartsSpace) -> None:
    a, b = space.parse(DARTS_V1), space.parse(DARTS_V2)
    rng = np.random.default_rng(3)
    children = [space.crossover(a, b, rng) for _ in range(20)]
    for child in children:
        assert space.is_valid(child)
        for cell in ("normal", "reduce"):
            for node in (2, 3, 4, 5):
                keys = [f"{cell}_node{node}_{part}_{slot}" for part in ("input", "op") for slot in "ab"]
                assert [child[k] for k in keys] in ([a[k] for k in keys], [b[k] for k in keys])
    assert len(set(children)) > 5


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_operators_stay_valid(seed: int) -> None:
    space = DartsSpace()
    rng = np.random.default_rng(seed)
    a, b = space.sample(rng), space.sample(rng)
    for arch in (space.mutate(a, rng), space.crossover(a, b, rng)):
        assert space.is_valid(arch)
    assert space.parse(space.format(a)) == a


# -- encodings ---------------------------------------------------------------------------------
def test_encodings(space: DartsSpace) -> None:
    v1, issue = space.parse(DARTS_V1), space.parse(ISSUE_GENOTYPE)
    assert space.encodings() == ("onehot", "index", "adjacency")
    onehot = space.encode(v1, "onehot")
    # per cell: inputs 2*(2+3+4+5) + ops 8*7 = 84, two cells; one 1 per decision
    assert onehot.shape == (168,) and onehot.sum() == 32
    adjacency = space.encode(v1, "adjacency")
    assert adjacency.shape == (2 * (2 + 3 + 4 + 5) * 7,) and adjacency.sum() == 16
    # normal node 2 block: rows = inputs 0, 1; both sep_conv_3x3 (op index 3)
    assert adjacency[:14].reshape(2, 7)[:, 3].tolist() == [1.0, 1.0]
    for kind in space.encodings():  # swapped edges encode alike
        np.testing.assert_array_equal(space.encode(v1, kind), space.encode(issue, kind))
    with pytest.raises(nf.SpaceError, match="allowed"):
        space.encode(v1, "path")


# -- networks ----------------------------------------------------------------------------------
def test_op_table_keeps_channels_and_halves_resolution() -> None:
    x = torch.randn(2, 4, 7, 7)
    assert set(DARTS_OPS) == set(DARTS_OP_NAMES)
    for name in DARTS_OP_NAMES:
        assert make_darts_op(name, 4, 1)(x).shape == (2, 4, 7, 7)
        assert make_darts_op(name, 4, 2)(x).shape == (2, 4, 4, 4)  # odd sizes round up everywhere
    assert make_darts_op("none", 4, 2)(x).abs().sum() == 0
    assert isinstance(make_darts_op("skip_connect", 4, 2), FactorizedReduce)
    # hand counts for C=16: sep conv = 2 x (depthwise 9C + pointwise C^2 + BN 2C); dil conv = one of them
    assert params(make_darts_op("sep_conv_3x3", 16)) == 2 * (9 * 16 + 16 * 16 + 2 * 16) == 864
    assert params(make_darts_op("sep_conv_5x5", 16)) == 2 * (25 * 16 + 16 * 16 + 2 * 16) == 1376
    assert params(make_darts_op("dil_conv_3x3", 16)) == 9 * 16 + 16 * 16 + 2 * 16 == 432
    assert params(make_darts_op("skip_connect", 16, 2)) == 16 * 16 + 2 * 16  # two 1x1 halves + BN
    # search candidates are non-affine and pools get a batch norm
    assert params(make_search_op("sep_conv_3x3", 16)) == 2 * (9 * 16 + 16 * 16)
    assert isinstance(make_search_op("max_pool_3x3", 4)[1], torch.nn.BatchNorm2d)
    with pytest.raises(ValueError, match="unknown DARTS operation"):
        make_darts_op("conv_7x1_1x7", 4)


def test_cell_counts_and_shapes(space: DartsSpace) -> None:
    genotype = space.genotype(space.parse(DARTS_V2))
    nodes = [[(src, op) for op, src in genotype["normal"][i : i + 2]] for i in range(0, 8, 2)]
    cell = Cell(nodes, 16, 16, 16, reduction=False, reduction_prev=False)
    # preprocessing: two 1x1 ReLUConvBN (256 + 32); ops: 5 sep_conv_3x3, 2 skips, 1 dil_conv_3x3
    assert params(cell) == 2 * (256 + 32) + 5 * 864 + 432 == 5328
    x = torch.randn(2, 16, 8, 8)
    assert cell(x, x).shape == (2, 64, 8, 8)
    reduction = Cell(nodes, 32, 16, 16, reduction=True, reduction_prev=True)
    assert reduction(torch.randn(2, 32, 16, 16), x).shape == (2, 64, 4, 4)
    with pytest.raises(ValueError, match="node 3 cannot take input 3"):
        Cell([[(0, "skip_connect")], [(3, "skip_connect")]], 4, 4, 4, False, False)
    assert reduction_layers(8) == (2, 5) and reduction_layers(20) == (6, 13) and reduction_layers(3) == (1, 2)


def test_build_darts_v2_for_cifar(space: DartsSpace) -> None:
    model = space.build(space.parse(DARTS_V2))
    assert isinstance(model, DartsNetwork)
    # C=16, 8 layers, reductions at cells 2 and 5, no auxiliary head (DARTS's search-size network)
    assert params(model) == 246_106
    assert params(space.build(space.parse(DARTS_V1))) == 232_890
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_evaluation_size_matches_the_paper() -> None:
    # the paper reports 3.3M parameters for DARTS V2 at C=36, 20 layers on CIFAR-10; the count excludes
    # the auxiliary head (DARTS counts it without), which nasflow does not build
    space = DartsSpace(channels=36, layers=20)
    assert params(space.build(space.parse(DARTS_V2))) == 3_349_342
    assert params(space.build(space.parse(DARTS_V1))) == 3_169_414


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 7, 7)])
def test_tiny_build_on_a_task(shape: tuple[int, int, int]) -> None:
    small = DartsSpace(channels=8, layers=3)
    model = small.build(small.parse(DARTS_V2), tiny_task(shape))
    assert len(model.cells) == 3 and [c.reduction for c in model.cells] == [False, True, True]
    # stem: conv in->24 (in*24*9) + BN 48. cell 0 (normal, C=8): two 1x1 preprocessings 24->8 (2 x 208),
    # 5 sep_conv_3x3 (5 x 2 x (72 + 64 + 16)) and a dil_conv_3x3 (152) = 2,088. cell 1 (reduce, C=16):
    # preprocessings 24->16 (416) and 32->16 (544), only pools and identities = 960. cell 2 (reduce after
    # a reduction, C=32): factorized reduce 32->32 (1,088) and 64->32 (2,112) = 3,200. classifier 128*3+3.
    assert (
        params(model) == shape[0] * 24 * 9 + 48 + 2_088 + 960 + 3_200 + 387 == {1: 6_899, 3: 7_331}[shape[0]]
    )
    logits = model(torch.randn(5, *shape))
    assert logits.shape == (5, 3)
    logits.sum().backward()
    assert model.stem[0].weight.grad is not None


def test_build_validates(space: DartsSpace) -> None:
    bad = space.parse(DARTS_V2).replace(normal_node2_input_b=0)
    with pytest.raises(InvalidArchitectureError, match="takes input 0 twice"):
        space.build(bad)
