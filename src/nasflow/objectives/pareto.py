"""Pareto dominance and non-dominated sorting (all values oriented so that larger is better)."""

from __future__ import annotations

from collections.abc import Sequence

Point = Sequence[float]


def dominates(a: Point, b: Point) -> bool:
    """True when ``a`` is at least as good as ``b`` everywhere and better somewhere."""
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


def nondominated_sort(points: Sequence[Point]) -> list[list[int]]:
    """Indices of ``points`` grouped into fronts, best front first (Deb et al.'s fast sort)."""
    n = len(points)
    dominated_by: list[list[int]] = [[] for _ in range(n)]
    counts = [0] * n
    for i in range(n):
        for j in range(i + 1, n):
            if dominates(points[i], points[j]):
                dominated_by[i].append(j)
                counts[j] += 1
            elif dominates(points[j], points[i]):
                dominated_by[j].append(i)
                counts[i] += 1
    fronts: list[list[int]] = []
    current = [i for i in range(n) if counts[i] == 0]
    while current:
        fronts.append(current)
        following = []
        for i in current:
            for j in dominated_by[i]:
                counts[j] -= 1
                if counts[j] == 0:
                    following.append(j)
        current = sorted(following)
    return fronts


def pareto_ranks(points: Sequence[Point]) -> list[int]:
    """The front index (0 = non-dominated) of each point."""
    ranks = [0] * len(points)
    for rank, front in enumerate(nondominated_sort(points)):
        for i in front:
            ranks[i] = rank
    return ranks
