"""Hypervolume: the size of the objective-space region a set of points dominates.

Convention (the same as :mod:`nasflow.objectives.pareto`): :func:`hypervolume` takes *oriented* values,
larger is better for every objective, and an oriented reference point. The hypervolume is the volume
of the union of the boxes ``[reference, p]`` over the points ``p`` (Zitzler & Thiele 1998, "the size
of the space covered"). A point that is not strictly better than the reference in every objective
spans no box and is ignored. Functions that read trials (:func:`hypervolume_trajectory`,
:func:`reference_from_trials`) take and return the reference in the objectives' own units and
directions, e.g. ``(0.0, 2e6)`` for ``["accuracy:max", "params:min"]``, and orient it themselves.

Comparing hypervolumes is only meaningful with the same reference point: fix one per benchmark
setting (for instance from the true front of a tabular benchmark) rather than deriving it from each
run's own results.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from nasflow.errors import ConfigError
from nasflow.objectives.pareto import Point, dominates, nondominated_sort
from nasflow.objectives.spec import Objective
from nasflow.trial import FrozenTrial, TrialState


def hypervolume(points: Sequence[Point], reference: Point) -> float:
    """Exact hypervolume dominated by ``points`` (oriented, larger is better) above ``reference``.

    One objective: the best value minus the reference. Two: a sweep in O(n log n). Three or more:
    slicing along the last objective (HSO, "hypervolume by slicing objectives", While et al. 2006),
    each slice solved exactly one dimension lower after dropping dominated points; the cost grows
    like O(n^(d-1)) for n non-dominated points in d objectives, which is quick for the fronts a NAS
    run finds in 3-4 objectives (hundreds of points) but exponential in d for large fronts.

    Raises:
        ConfigError: points and reference differ in length, or a value is NaN.
    """
    ref = tuple(float(r) for r in reference)
    if not ref:
        raise ConfigError("the hypervolume reference point needs at least one objective")
    kept: list[tuple[float, ...]] = []
    for point in points:
        values = tuple(float(v) for v in point)
        if len(values) != len(ref):
            raise ConfigError(
                f"point {list(values)} has {len(values)} objective(s) but the reference {list(ref)} "
                f"has {len(ref)}"
            )
        if any(math.isnan(v) for v in (*values, *ref)):
            raise ConfigError(f"hypervolume of NaN values: point {list(values)}, reference {list(ref)}")
        if all(v > r for v, r in zip(values, ref)):
            kept.append(values)
    if not kept:
        return 0.0
    return _volume(_nondominated(kept), ref)


def _nondominated(points: list[tuple[float, ...]]) -> list[tuple[float, ...]]:
    """The distinct points that no other point dominates."""
    unique = sorted(set(points), reverse=True)  # a dominating point sorts before what it dominates
    front: list[tuple[float, ...]] = []
    for point in unique:
        if not any(dominates(other, point) for other in front):
            front.append(point)
    return front


def _volume(points: list[tuple[float, ...]], ref: tuple[float, ...]) -> float:
    dims = len(ref)
    if dims == 1:
        return max(p[0] for p in points) - ref[0]
    if dims == 2:
        return _area(points, ref)
    # Slice along the last objective: between two consecutive levels z_i > z_(i+1), the points at
    # level z_i or above cover the same (d-1)-dimensional region; add region x slab thickness.
    ordered = sorted(points, key=lambda p: p[-1], reverse=True)
    total = 0.0
    for i, point in enumerate(ordered):
        below = ordered[i + 1][-1] if i + 1 < len(ordered) else ref[-1]
        thickness = point[-1] - below
        if thickness > 0:
            section = _nondominated([p[:-1] for p in ordered[: i + 1]])
            total += thickness * _volume(section, ref[:-1])
    return total


def _area(points: list[tuple[float, ...]], ref: tuple[float, ...]) -> float:
    """Union of the rectangles ``[ref, p]``: sweep from the largest first objective down."""
    ordered = sorted(points, reverse=True)
    area = 0.0
    height = ref[1]
    for i, (x, y) in enumerate(ordered):
        height = max(height, y)
        following = ordered[i + 1][0] if i + 1 < len(ordered) else ref[0]
        area += (x - following) * (height - ref[1])
    return area


def nadir_reference(points: Sequence[Point], margin: float = 0.1) -> tuple[float, ...]:
    """A reference point just worse than the front's nadir (oriented values in and out).

    Per objective: the worst value among the non-dominated ``points`` minus ``margin`` times the
    front's range on that objective (``margin`` times ``max(|nadir|, 1)`` when the range is 0), so
    every front member, its extremes included, adds volume. Meant for reporting one set of results;
    comparisons across runs need one fixed reference (see the module docstring).
    """
    if not points:
        raise ConfigError("a reference point needs at least one point")
    if not (math.isfinite(margin) and margin > 0):
        raise ConfigError(f"margin must be a positive number, got {margin!r}")
    values = [tuple(float(v) for v in p) for p in points]
    front = [values[i] for i in nondominated_sort(values)[0]]
    reference = []
    for m in range(len(front[0])):
        worst, best = min(p[m] for p in front), max(p[m] for p in front)
        span = best - worst if best > worst else max(abs(worst), 1.0)
        reference.append(worst - margin * span)
    return tuple(reference)


def _oriented(trial: FrozenTrial, objectives: Sequence[Objective]) -> tuple[float, ...] | None:
    """Oriented objective values of a feasible completed trial, else None."""
    if trial.state is not TrialState.COMPLETE or trial.values is None or not trial.feasible:
        return None
    return tuple(o.oriented(v) for o, v in zip(objectives, trial.values))


def _orient_reference(reference: Point, objectives: Sequence[Objective]) -> tuple[float, ...]:
    if len(reference) != len(objectives):
        raise ConfigError(
            f"the reference point {list(reference)} has {len(reference)} value(s) but there are "
            f"{len(objectives)} objectives ({', '.join(map(str, objectives))}); give one per objective"
        )
    return tuple(o.oriented(float(r)) for o, r in zip(objectives, reference))


def hypervolume_trajectory(
    trials: Iterable[FrozenTrial], objectives: Sequence[Objective], reference: Point
) -> list[float]:
    """The hypervolume of the feasible completed trials among the first k, for every k.

    ``reference`` is in the objectives' own units (e.g. ``(0.0, 2e6)`` for accuracy:max, params:min).
    Infeasible, failed, pruned and running trials keep the previous value; the list has one entry
    per trial, in the order given.
    """
    objectives = [Objective.parse(o) for o in objectives]
    ref = _orient_reference(reference, objectives)
    front: list[tuple[float, ...]] = []
    current = 0.0
    trajectory = []
    for trial in trials:
        point = _oriented(trial, objectives)
        # only a point that beats the reference and is not dominated by the front changes the volume
        if (
            point is not None
            and all(v > r for v, r in zip(point, ref))
            and not any(f == point or dominates(f, point) for f in front)
        ):
            front = [f for f in front if not dominates(point, f)] + [point]
            current = _volume(front, ref)
        trajectory.append(current)
    return trajectory


def reference_from_trials(
    trials: Iterable[FrozenTrial], objectives: Sequence[Objective], margin: float = 0.1
) -> tuple[float, ...]:
    """:func:`nadir_reference` of the feasible completed trials, in the objectives' own units."""
    objectives = [Objective.parse(o) for o in objectives]
    points = [p for p in (_oriented(t, objectives) for t in trials) if p is not None]
    if not points:
        raise ConfigError("no feasible completed trial to derive a reference point from")
    return tuple(o.oriented(r) for o, r in zip(objectives, nadir_reference(points, margin)))
