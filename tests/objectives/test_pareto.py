"""Pareto dominance, non-dominated sorting, crowding distance and constrained domination."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nasflow.errors import ConfigError
from nasflow.objectives.pareto import (
    constrained_dominates,
    constrained_sort,
    crowded_order,
    crowding_distance,
    dominates,
    nondominated_sort,
    pareto_ranks,
)

INF = math.inf


def test_dominates_needs_better_somewhere_and_worse_nowhere() -> None:
    assert dominates((2, 2), (1, 2))
    assert not dominates((2, 2), (2, 2))  # equal points do not dominate each other
    assert not dominates((3, 1), (1, 3))
    assert not dominates((1, 2), (2, 2))


def test_nondominated_sort_on_a_hand_made_set() -> None:
    points = [(1, 1), (3, 1), (2, 2), (1, 3), (0, 0), (2, 2), (1, 2)]
    # front 0: (3,1), (2,2), (1,3) and the duplicate (2,2); front 1: (1,2), dominated by (2,2);
    # front 2: (1,1), dominated by (1,2); front 3: (0,0)
    assert nondominated_sort(points) == [[1, 2, 3, 5], [6], [0], [4]]
    assert pareto_ranks(points) == [2, 0, 0, 0, 3, 0, 1]
    assert nondominated_sort([]) == []


def _brute_force_fronts(points: list[list[float]]) -> list[list[int]]:
    """Fronts by repeatedly taking the points that no remaining point dominates."""
    remaining = list(range(len(points)))
    fronts = []
    while remaining:
        front = [i for i in remaining if not any(dominates(points[j], points[i]) for j in remaining)]
        fronts.append(front)
        remaining = [i for i in remaining if i not in front]
    return fronts


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_nondominated_sort_matches_the_definition(dims: int) -> None:
    rng = np.random.default_rng(dims)
    for _ in range(40):
        # small integer grids make ties and duplicates common
        points = rng.integers(0, 4, size=(int(rng.integers(1, 30)), dims)).astype(float).tolist()
        assert nondominated_sort(points) == _brute_force_fronts(points)


def test_crowding_distance_by_hand() -> None:
    # ranges are 4 on both objectives; sorted on f1: (1,5) (2,3) (4,2) (5,1)
    # (2,3): f1 (4-1)/4 + f2 (5-2)/4 = 1.5; (4,2): f1 (5-2)/4 + f2 (3-1)/4 = 1.25
    assert crowding_distance([(1, 5), (2, 3), (4, 2), (5, 1)]) == [INF, 1.5, 1.25, INF]


def test_crowding_distance_edge_cases() -> None:
    assert crowding_distance([]) == []
    assert crowding_distance([(1, 2)]) == [INF]
    assert crowding_distance([(1, 2), (2, 1)]) == [INF, INF]
    # the second objective is constant: it neither adds distance nor marks boundaries
    assert crowding_distance([(0, 7), (1, 7), (3, 7)]) == [INF, 1.0, INF]
    assert crowding_distance([(5, 5), (5, 5), (5, 5)]) == [INF, 0.0, 0.0]  # one distinct point
    # copies of a point: the first is measured, later copies get 0
    assert crowding_distance([(0, 2), (0, 2), (2, 0)]) == [INF, 0.0, INF]
    assert crowding_distance([(1, 5), (2, 3), (4, 2), (2, 3), (5, 1)]) == [INF, 1.5, 1.25, 0.0, INF]


def test_constrained_domination_cases() -> None:
    # both feasible: plain Pareto dominance
    assert constrained_dominates((2, 2), (1, 1))
    assert not constrained_dominates((2, 0), (0, 2))
    # feasible beats infeasible whatever the objectives say
    assert constrained_dominates((0, 0), (9, 9), 0.0, 0.1)
    assert not constrained_dominates((9, 9), (0, 0), 0.1, 0.0)
    # both infeasible: smaller violation wins; equal violations are incomparable
    assert constrained_dominates((0, 0), (9, 9), 0.5, 2.0)
    assert not constrained_dominates((9, 9), (0, 0), 2.0, 0.5)
    assert not constrained_dominates((9, 9), (0, 0), 1.0, 1.0)
    assert constrained_dominates((0, 0), (0, 0), 3.0, INF)  # a missing metric is the worst violation


def test_constrained_sort_puts_feasible_fronts_first_then_violation_levels() -> None:
    points = [(9, 9), (1, 1), (2, 0), (0, 2), (9, 9), (5, 5), (0, 0)]
    violations = [1.0, 0.0, 0.0, 0.0, 0.5, 1.0, INF]
    assert constrained_sort(points, violations) == [[1, 2, 3], [4], [0, 5], [6]]
    with pytest.raises(ConfigError, match="2 points but 1 violations"):
        constrained_sort([(1,), (2,)], [0.0])


def test_crowded_order_ranks_by_front_then_crowding() -> None:
    points = [(4, 1), (3, 2), (2, 3), (1, 4), (2, 2), (9, 9)]
    violations = [0, 0, 0, 0, 0, 1.0]
    # front 0: boundaries (4,1) and (1,4) first, then (3,2) and (2,3) tied at 4/3 (index order);
    # then the dominated (2,2); the infeasible (9,9) last
    assert crowded_order(points, violations) == [0, 3, 1, 2, 4, 5]
    assert crowded_order(points[:5]) == [0, 3, 1, 2, 4]
