"""Pareto dominance and non-dominated sorting (all values oriented so that larger is better)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

from nasflow.errors import ConfigError

Point = Sequence[float]
#: rows of the pairwise comparison computed at once (bounds the temporary arrays' size)
_BLOCK = 256


def dominates(a: Point, b: Point) -> bool:
    """True when ``a`` is at least as good as ``b`` everywhere and better somewhere."""
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


def nondominated_sort(points: Sequence[Point]) -> list[list[int]]:
    """Indices of ``points`` grouped into fronts, best front first, each in index order.

    Deb et al.'s (2002) fast non-dominated sort: every pair is compared once (in numpy, row blocks
    at a time), then fronts are peeled off by counting how many points dominate each point.
    """
    n = len(points)
    if n == 0:
        return []
    values = np.asarray(points, dtype=float).reshape(n, -1)
    dominance = np.zeros((n, n), dtype=bool)  # [i, j]: i dominates j
    for start in range(0, n, _BLOCK):
        block = values[start : start + _BLOCK, None, :]
        dominance[start : start + _BLOCK] = (block >= values[None]).all(-1) & (block > values[None]).any(-1)
    counts = dominance.sum(axis=0)
    fronts: list[list[int]] = []
    current = np.flatnonzero(counts == 0)
    while current.size:
        fronts.append(current.tolist())
        counts = counts - dominance[current].sum(axis=0)
        counts[current] = -1  # placed: never selected again
        current = np.flatnonzero(counts == 0)
    return fronts


def pareto_ranks(points: Sequence[Point]) -> list[int]:
    """The front index (0 = non-dominated) of each point."""
    ranks = [0] * len(points)
    for rank, front in enumerate(nondominated_sort(points)):
        for i in front:
            ranks[i] = rank
    return ranks


def crowding_distance(points: Sequence[Point]) -> list[float]:
    """Deb et al.'s (2002) crowding distance of each point within one front.

    For every objective the points are sorted by value; the two boundary points get ``inf`` and
    every other point adds the gap between its two neighbours divided by the objective's range over
    the front. An objective on which all points are equal adds nothing and marks no boundary. Fronts
    of one or two distinct points are all boundary (``inf``). Repeated points are measured once, at
    their first position, and their later copies get 0, so that selection by crowding does not
    favour copies (as in pymoo).
    """
    first: dict[tuple[float, ...], int] = {}
    for i, point in enumerate(points):
        first.setdefault(tuple(point), i)
    unique = list(first.values())
    distances = [0.0] * len(points)
    if len(unique) <= 2:
        for i in unique:
            distances[i] = math.inf
        return distances
    for m in range(len(points[unique[0]])):
        order = sorted(unique, key=lambda i: points[i][m])
        low, high = points[order[0]][m], points[order[-1]][m]
        if high == low:
            continue
        distances[order[0]] = distances[order[-1]] = math.inf
        for position in range(1, len(order) - 1):
            gap = points[order[position + 1]][m] - points[order[position - 1]][m]
            distances[order[position]] += gap / (high - low)
    return distances


def constrained_dominates(a: Point, b: Point, violation_a: float = 0.0, violation_b: float = 0.0) -> bool:
    """Deb's (2000) constrained domination: feasibility first, then less violation, then Pareto.

    A feasible point (violation 0) dominates every infeasible one; of two infeasible points the one
    with the smaller summed violation dominates; two feasible points compare by :func:`dominates`.
    """
    if violation_a == 0 and violation_b == 0:
        return dominates(a, b)
    return violation_a < violation_b


def constrained_sort(points: Sequence[Point], violations: Sequence[float]) -> list[list[int]]:
    """Fronts under :func:`constrained_dominates`, best first.

    The feasible points' fronts come first (:func:`nondominated_sort`), then the infeasible points
    grouped by violation, smallest first (equal violations share a front; ``inf`` comes last).
    """
    if len(points) != len(violations):
        raise ConfigError(f"{len(points)} points but {len(violations)} violations")
    feasible = [i for i, v in enumerate(violations) if v == 0]
    fronts = [[feasible[i] for i in front] for front in nondominated_sort([points[i] for i in feasible])]
    infeasible = sorted((v, i) for i, v in enumerate(violations) if v != 0)
    for _, group in itertools.groupby(infeasible, key=lambda item: item[0]):
        fronts.append([i for _, i in group])
    return fronts


def crowded_order(points: Sequence[Point], violations: Sequence[float] | None = None) -> list[int]:
    """Indices of ``points`` from best to worst by (constrained) front, then crowding distance.

    This is NSGA-II's crowded-comparison order (Deb et al. 2002); ties keep index order.
    """
    violations = [0.0] * len(points) if violations is None else violations
    order: list[int] = []
    for front in constrained_sort(points, violations):
        distance = crowding_distance([points[i] for i in front])
        order.extend(i for _, i in sorted(zip(distance, front), key=lambda item: (-item[0], item[1])))
    return order
