"""Validation: perturbations on hand-made inputs, the robustness table, accuracy and seed statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from nasflow.errors import ConfigError
from nasflow.export.validate import (
    DIRECTIONS,
    accuracy,
    gaussian_noise,
    mean_std,
    occlude,
    occlusion_side,
    predict,
    robustness,
    score,
    shift,
)

GRID = np.arange(1, 10, dtype=np.float32).reshape(1, 1, 3, 3)  # [[1 2 3] [4 5 6] [7 8 9]]


def test_shift_moves_pixels_and_fills_with_zeros() -> None:
    down = shift(GRID, 1, 0)[0, 0]
    np.testing.assert_array_equal(down, [[0, 0, 0], [1, 2, 3], [4, 5, 6]])
    up = shift(GRID, -1, 0)[0, 0]
    np.testing.assert_array_equal(up, [[4, 5, 6], [7, 8, 9], [0, 0, 0]])
    right = shift(GRID, 0, 2)[0, 0]
    np.testing.assert_array_equal(right, [[0, 0, 1], [0, 0, 4], [0, 0, 7]])
    left = shift(GRID, 0, -1)[0, 0]
    np.testing.assert_array_equal(left, [[2, 3, 0], [5, 6, 0], [8, 9, 0]])
    np.testing.assert_array_equal(shift(GRID, 3, 0), np.zeros_like(GRID))  # moved out entirely
    np.testing.assert_array_equal(shift(GRID, 0, 0), GRID)
    assert GRID[0, 0, 0, 0] == 1  # the input is not modified


def test_occlusion_side_is_a_fraction_of_the_shorter_side() -> None:
    assert occlusion_side(0.25, 8, 8) == 2
    assert occlusion_side(0.5, 8, 8) == 4
    assert occlusion_side(0.5, 32, 16) == 8
    assert occlusion_side(0.01, 8, 8) == 1  # never empty
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ConfigError, match="occlusion fraction"):
            occlusion_side(bad, 8, 8)


def test_occlusion_zeroes_a_square_at_positions_drawn_from_the_generator() -> None:
    x = np.ones((3, 2, 4, 5), dtype=np.float32)
    out = occlude(x, 2, np.random.default_rng(7))
    reference = np.random.default_rng(7)
    tops, lefts = reference.integers(0, 3, size=3), reference.integers(0, 4, size=3)
    expected = np.ones_like(x)
    for i in range(3):
        expected[i, :, tops[i] : tops[i] + 2, lefts[i] : lefts[i] + 2] = 0
    np.testing.assert_array_equal(out, expected)
    assert (out == 0).sum() == 3 * 2 * 4  # images x channels x square pixels
    np.testing.assert_array_equal(occlude(x, 2, np.random.default_rng(7)), out)  # reproducible


def test_gaussian_noise_has_the_requested_std_and_zero_gives_the_input() -> None:
    x = np.zeros((200, 1, 10, 10), dtype=np.float32)
    np.testing.assert_array_equal(gaussian_noise(x, 0.0, np.random.default_rng(0)), x)
    noisy = gaussian_noise(x, 0.5, np.random.default_rng(0))
    assert noisy.dtype == np.float32
    assert abs(noisy.std() - 0.5) < 0.01 and abs(noisy.mean()) < 0.01  # 20,000 draws
    with pytest.raises(ConfigError, match="noise std"):
        gaussian_noise(x, -1.0, np.random.default_rng(0))


def test_mean_std_uses_the_sample_standard_deviation() -> None:
    assert mean_std([90.0, 92.0, 94.0]) == (92.0, 2.0)  # deviations -2, 0, 2: variance 8 / 2
    assert mean_std([97.5]) == (97.5, 0.0)
    with pytest.raises(ConfigError):
        mean_std([])


class _Brightness(nn.Module):
    """Class 1 when the image's mean pixel is above 0.5, else class 0 (logits -m, m - 0.5 style)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([0.5 - m, m - 0.5], dim=1)


def test_score_predict_and_accuracy_agree_on_a_hand_made_model() -> None:
    x = np.stack([np.full((1, 2, 2), v, dtype=np.float32) for v in (0.1, 0.9, 0.7, 0.2)])
    y = np.array([0, 1, 0, 0])  # the third is labelled 0 but is bright: 3 of 4 right
    logits = predict(_Brightness(), x)
    np.testing.assert_allclose(logits[:, 1], [-0.4, 0.4, 0.2, -0.3], atol=1e-6)
    assert accuracy(logits, y) == 75.0
    acc, loss = score(_Brightness(), x, y)
    assert acc == 75.0
    expected = np.mean([-np.log(np.exp(lg[t]) / np.exp(lg).sum()) for lg, t in zip(logits, y)])
    assert loss == pytest.approx(expected, rel=1e-5)


def test_robustness_rows_and_severity_zero_noise_equals_clean_accuracy(space, cells, digits) -> None:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = space.build(space.parse(cells["cell"]), digits).eval()
    x, y = digits.x_test, digits.y_test
    clean, _ = score(model, x, y)
    rows = robustness(
        model, x, y, data_std=0.3, seed=1, noise_levels=(0.0, 0.5), shifts=(1,), occlusions=(0.25,)
    )
    assert [(r["perturbation"], r["severity"]) for r in rows] == [
        ("gaussian_noise", 0.0),
        ("gaussian_noise", 0.5),
        ("shift", 1.0),
        ("occlusion", 0.25),
    ]
    assert rows[0]["accuracy"] == clean
    per_direction = [accuracy(predict(model, shift(x, dr, dc)), y) for dr, dc in DIRECTIONS]
    assert rows[2]["accuracy"] == pytest.approx(np.mean(per_direction))
    assert rows[3]["pixels"] == 2
    again = robustness(
        model, x, y, data_std=0.3, seed=1, noise_levels=(0.0, 0.5), shifts=(1,), occlusions=(0.25,)
    )
    assert again == rows  # seeded: the same table twice
    defaults = robustness(model, x, y, data_std=0.3, seed=1)
    assert [r["perturbation"] for r in defaults] == ["gaussian_noise"] * 4 + ["shift"] * 2 + ["occlusion"] * 2
    assert all(0.0 <= r["accuracy"] <= 100.0 for r in defaults)
