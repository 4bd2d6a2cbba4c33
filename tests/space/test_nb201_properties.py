"""Property tests (hypothesis) for the NB201 space: operators, canonical keys and built networks."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import nasflow as nf
from nasflow.objectives.metrics import count_parameters
from nasflow.space.architecture import Architecture
from nasflow.space.nb201 import EDGE_NAMES, OPS

SPACE = nf.get_space("nb201", channels=4, cells_per_stage=1)
cells = st.fixed_dictionaries({edge: st.sampled_from(OPS) for edge in EDGE_NAMES}).map(Architecture)


def swap_nodes_1_and_2(arch: Architecture) -> Architecture:
    """The cell with intermediate nodes 1 and 2 exchanged (same operations, so same parameters).

    NAS-Bench-201 does not count this as the same cell (its fixed topology gives node 2 an extra,
    zero input), so only the network size is compared.
    """
    return Architecture(
        {
            "1<-0": arch["2<-0"],
            "2<-0": arch["1<-0"],
            "2<-1": "none",
            "3<-0": arch["3<-0"],
            "3<-1": arch["3<-2"],
            "3<-2": arch["3<-1"],
        }
    )


@settings(max_examples=200, deadline=None)
@given(cell=cells, dead=st.tuples(st.sampled_from(OPS), st.sampled_from(OPS)))
def test_ops_after_a_dead_node_do_not_change_the_canonical_key(cell: Architecture, dead: tuple) -> None:
    # With 1<-0 = none node 1 is identically zero, so whatever its out-edges do cannot matter.
    cell = cell.replace(**{"1<-0": "none"})
    other = cell.replace(**{"2<-1": dead[0], "3<-1": dead[1]})
    assert SPACE.canonical(other) == SPACE.canonical(cell)


@settings(max_examples=200, deadline=None)
@given(cell=cells)
def test_swapping_a_nonzero_op_changes_the_key_of_a_single_path_cell(cell: Architecture) -> None:
    # A cell whose only live route is 0->3 computes op(x); a different op there is a different network.
    chain = Architecture({edge: "none" for edge in EDGE_NAMES}).replace(**{"3<-0": cell["3<-0"]})
    keys = {SPACE.canonical(chain.replace(**{"3<-0": op})) for op in OPS}
    assert len(keys) == len(OPS)


@settings(max_examples=200, deadline=None)
@given(cell=cells, seed=st.integers(0, 2**32 - 1))
def test_mutation_changes_exactly_one_edge_and_neighbours_are_all_24(cell: Architecture, seed: int) -> None:
    child = SPACE.mutate(cell, np.random.default_rng(seed))
    assert sum(child[e] != cell[e] for e in EDGE_NAMES) == 1
    neighbours = SPACE.neighbors(cell)
    assert len(neighbours) == 6 * 4 and len(set(neighbours)) == 24
    assert SPACE.parse(SPACE.format(child)) == child


@settings(max_examples=40, deadline=None)
@given(cell=cells)
def test_cells_with_one_key_build_networks_of_equal_size(cell: Architecture) -> None:
    cell = cell.replace(**{"2<-1": "none"})
    twin = swap_nodes_1_and_2(cell)
    assert count_parameters(SPACE.build(cell)) == count_parameters(SPACE.build(twin))


@settings(max_examples=100, deadline=None)
@given(cell=cells)
def test_path_encoding_counts_live_paths(cell: Architecture) -> None:
    live = [
        all(cell[e] != "none" for e in route)
        for route in (["3<-0"], ["1<-0", "3<-1"], ["2<-0", "3<-2"], ["1<-0", "2<-1", "3<-2"])
    ]
    assert SPACE.encode(cell, "path").sum() == sum(live)
