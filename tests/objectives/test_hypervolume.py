"""Exact hypervolume on hand-computed sets, reference points, and the per-trial trajectory."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from nasflow.errors import ConfigError
from nasflow.objectives.hypervolume import (
    hypervolume,
    hypervolume_trajectory,
    nadir_reference,
    reference_from_trials,
)
from nasflow.objectives.spec import Objective
from nasflow.space.architecture import Architecture
from nasflow.trial import FrozenTrial, TrialState


def test_two_dimensional_staircase() -> None:
    # columns of width 1 and heights 3, 2, 1
    assert hypervolume([(1, 3), (2, 2), (3, 1)], (0, 0)) == 6.0
    # reference (1, 1): (1, 3) and (3, 1) lie on its edges and span nothing; (2, 2) spans 1 x 1
    assert hypervolume([(1, 3), (2, 2), (3, 1)], (1, 1)) == 1.0
    # boxes [1,2] x [1,3] and [1,3] x [1,2], each of area 2, overlapping in [1,2] x [1,2]: 2 + 2 - 1
    assert hypervolume([(2, 3), (3, 2)], (1, 1)) == 3.0


def test_three_dimensional_boxes() -> None:
    # three boxes of volume 2 whose pairwise and triple intersections are the unit cube:
    # inclusion-exclusion 3 * 2 - 3 * 1 + 1 = 4
    assert hypervolume([(2, 1, 1), (1, 2, 1), (1, 1, 2)], (0, 0, 0)) == 4.0
    # 2*2*1 + 1*1*3 - overlap 1*1*1 = 6
    assert hypervolume([(2, 2, 1), (1, 1, 3)], (0, 0, 0)) == 6.0
    # reference not at the origin: boxes 3x1x1 and 1x1x3 from (1,1,1), overlap 1x1x1 -> 5
    assert hypervolume([(4, 2, 2), (2, 2, 4)], (1, 1, 1)) == 5.0


def test_dominated_and_duplicate_points_add_nothing() -> None:
    base = [(1, 3), (2, 2), (3, 1)]
    assert hypervolume([*base, (1, 1), (2, 2), (0.5, 2.5), (3, 1)], (0, 0)) == 6.0
    assert hypervolume([(2, 2, 1), (2, 2, 1), (1, 1, 1), (1, 1, 3)], (0, 0, 0)) == 6.0


def test_points_not_strictly_better_than_the_reference_are_ignored() -> None:
    assert hypervolume([(5, 0)], (0, 0)) == 0.0  # on the reference's edge: a box of zero height
    assert hypervolume([(-1, 5), (5, -1)], (0, 0)) == 0.0
    assert hypervolume([(2, 2), (9, -1), (-3, 9)], (0, 0)) == 4.0


def test_single_point_empty_set_and_one_objective() -> None:
    assert hypervolume([(3, 2, 0.5)], (1, 1, 0)) == 2 * 1 * 0.5
    assert hypervolume([], (0, 0)) == 0.0
    assert hypervolume([(3,), (7,), (5,)], (2,)) == 5.0
    # minimised objectives are negated: params 4 and 2 against a reference of 10, accuracy 50 and 40
    assert hypervolume([(50, -4), (40, -2)], (0, -10)) == 380.0


def _inclusion_exclusion(points: list[list[float]], ref: list[float]) -> float:
    """The union of boxes by inclusion-exclusion over every subset (exponential, for small sets)."""
    boxes = [p for p in points if all(v > r for v, r in zip(p, ref))]
    total = 0.0
    for size in range(1, len(boxes) + 1):
        for subset in itertools.combinations(boxes, size):
            corner = np.min(np.array(subset), axis=0)
            total += (-1) ** (size + 1) * float(np.prod(corner - np.array(ref)))
    return total


@pytest.mark.parametrize("dims", [2, 3, 4, 5])
def test_exact_against_inclusion_exclusion(dims: int) -> None:
    rng = np.random.default_rng(dims)
    for _ in range(25):
        points = rng.integers(0, 6, size=(int(rng.integers(1, 9)), dims)).astype(float).tolist()
        reference = [0.5] * dims
        assert hypervolume(points, reference) == pytest.approx(_inclusion_exclusion(points, reference))


def test_bad_input_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="2 objective"):
        hypervolume([(1, 2)], (0, 0, 0))
    with pytest.raises(ConfigError, match="NaN"):
        hypervolume([(1, math.nan)], (0, 0))
    with pytest.raises(ConfigError, match="at least one objective"):
        hypervolume([], ())


def test_nadir_reference() -> None:
    # front (1,3), (3,1): nadir (1,1), range 2 on both -> 10% below
    assert nadir_reference([(1, 3), (3, 1), (0.5, 0.5)]) == pytest.approx((0.8, 0.8))
    assert nadir_reference([(5, -4)], margin=0.5) == (2.5, -6.0)  # empty range: margin * |nadir|
    assert nadir_reference([(0, 0)]) == (-0.1, -0.1)  # |nadir| < 1 uses 1
    with pytest.raises(ConfigError, match="margin"):
        nadir_reference([(1, 1)], margin=0.0)
    with pytest.raises(ConfigError, match="at least one point"):
        nadir_reference([])


def _trial(number: int, accuracy: float, params: float, violation: float = 0.0, failed: bool = False):
    return FrozenTrial(
        number=number,
        arch=Architecture({"x": number}),
        arch_str=str(number),
        canonical=str(number),
        state=TrialState.FAILED if failed else TrialState.COMPLETE,
        metrics={} if failed else {"accuracy": accuracy, "params": params},
        values=None if failed else (accuracy, params),
        violation=violation,
    )


TWO = [Objective("accuracy", "max"), Objective("params", "min")]
TRIALS = [
    _trial(0, 50, 4),  # box 50 x (10 - 4) = 300
    _trial(1, 90, 1, violation=0.5),  # infeasible: ignored
    _trial(2, 0, 0, failed=True),  # failed: ignored
    _trial(3, 40, 2),  # box 40 x 8 = 320, overlap 40 x 6 = 240 -> 380
    _trial(4, 30, 5),  # dominated by trial 0
    _trial(5, 60, 12),  # params beyond the reference: no box
]


def test_trajectory_counts_feasible_completed_trials_only() -> None:
    assert hypervolume_trajectory(TRIALS, TWO, (0.0, 10.0)) == [300.0, 300.0, 300.0, 380.0, 380.0, 380.0]
    assert hypervolume_trajectory(TRIALS, ["accuracy:max", "params:min"], (0.0, 10.0))[-1] == 380.0
    assert hypervolume_trajectory([], TWO, (0.0, 10.0)) == []
    with pytest.raises(ConfigError, match="one per objective"):
        hypervolume_trajectory(TRIALS, TWO, (0.0,))


def test_reference_from_trials_is_in_the_objectives_units() -> None:
    # feasible front: (50, 4), (40, 2), (60, 12); nadir accuracy 40, params 12; ranges 20 and 10
    assert reference_from_trials(TRIALS, TWO) == pytest.approx((38.0, 13.0))
    with pytest.raises(ConfigError, match="no feasible"):
        reference_from_trials(TRIALS[1:3], TWO)
