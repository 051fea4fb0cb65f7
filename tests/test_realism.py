"""sard.evaluation.realism: ring, Laplacian, contrast, texture ratio and drift against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sard.evaluation.realism import DefectStats, defect_stats, drift, gaps, laplacian, luma, ring, summarize


def _dot(size: int = 5, at: tuple[int, int] = (2, 2)) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[at] = True
    return mask


def test_ring_is_the_square_dilation_minus_the_mask_clipped_to_the_image():
    assert ring(_dot(7, (3, 3)), 1).sum() == 8  # 3 x 3 - 1
    assert ring(_dot(7, (3, 3)), 2).sum() == 24  # 5 x 5 - 1
    assert ring(_dot(7, (0, 0)), 1).sum() == 3  # a corner: 2 x 2 - 1
    expected = np.zeros((5, 5), dtype=bool)
    expected[1:4, 1:4] = True
    expected[2, 2] = False
    np.testing.assert_array_equal(ring(_dot(), 1), expected)
    block = np.zeros((6, 6), dtype=bool)
    block[2:4, 2:4] = True
    assert ring(block, 1).sum() == 16 - 4 and not (ring(block, 1) & block).any()
    with pytest.raises(ValueError, match="at least 1"):
        ring(block, 0)


def test_laplacian_of_a_bright_pixel_and_of_a_ramp():
    image = np.zeros((5, 5))
    image[2, 2] = 1.0
    expected = np.zeros((5, 5))
    expected[2, 2] = -4.0
    expected[1, 2] = expected[3, 2] = expected[2, 1] = expected[2, 3] = 1.0
    np.testing.assert_array_equal(laplacian(image), expected)
    ramp = np.tile(np.arange(6.0), (4, 1))  # linear inside; replicated edges bend it at both ends
    lap = laplacian(ramp)
    np.testing.assert_array_equal(lap[:, 1:-1], 0.0)
    np.testing.assert_array_equal(lap[:, 0], 1.0)  # 0 + 0 + 0 + 1 - 0 (the left neighbour is the edge copy)
    np.testing.assert_array_equal(lap[:, -1], -1.0)


def test_luma_weights():
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 10, 10]]], dtype=np.uint8)
    np.testing.assert_allclose(luma(rgb), [[76.245, 149.685, 29.07, 10.0]])
    gray = np.arange(6, dtype=np.uint8).reshape(2, 3)
    np.testing.assert_array_equal(luma(gray), gray)


def test_defect_stats_of_a_bright_dot_on_a_flat_background():
    image = np.full((5, 5), 10.0)
    image[2, 2] = 50.0
    stats = defect_stats(image, _dot(), ring_width=1)
    # Inside: 50; ring: 8 pixels of 10. Laplacian: |4 * 10 - 4 * 50| = 160 at the dot; the ring's four edge
    # neighbours see 50 + 3 * 10 - 4 * 10 = 40 and its four corners 0, so energy(ring) = 4 * 40 / 8 = 20.
    assert stats == DefectStats(contrast=40.0, texture_inside=160.0, texture_ring=20.0, texture_ratio=8.0)
    rgb = np.repeat(image[..., None], 3, axis=2)  # a grey RGB image gives the same figures
    assert defect_stats(rgb, _dot(), ring_width=1) == stats


def test_defect_stats_of_a_dark_block_in_a_textured_ring():
    image = np.zeros((6, 6))
    image[::2, ::2] = image[1::2, 1::2] = 8.0  # a checkerboard: |Laplacian| = 32 everywhere inside the frame
    mask = np.zeros((6, 6), dtype=bool)
    mask[2:4, 2:4] = True
    image[mask] = 0.0
    stats = defect_stats(image, mask, ring_width=1)
    around = ring(mask, 1)
    assert stats.contrast == pytest.approx(0.0 - image[around].mean())
    assert image[around].mean() == 4.0  # 6 of the 12 ring pixels are 8
    lap = np.abs(laplacian(image))
    assert stats.texture_inside == lap[mask].mean() and stats.texture_ring == lap[around].mean()
    # By hand: (2, 2) and (3, 3) have only zeros around them -> 0; (2, 3) and (3, 2) have two ring neighbours
    # of 8 and two mask neighbours of 0 -> 16; the mean is 8, a quarter of the checkerboard's 32.
    assert stats.texture_inside == 8.0
    # The ring's 8 pixels of 8 still have only zeros around them -> 32; its 4 zeros beside the block lost the
    # 8 that (2, 2) or (3, 3) was -> 24. energy(ring) = (8 * 32 + 4 * 24) / 12, and the ratio 8 / that = 3 / 11.
    assert stats.texture_ring == pytest.approx(352 / 12)
    assert stats.texture_ratio == pytest.approx(3 / 11)


def test_undefined_figures_are_nan():
    everything = np.ones((4, 4), dtype=bool)
    stats = defect_stats(np.zeros((4, 4)), everything)  # no ring at all
    assert math.isnan(stats.contrast) and math.isnan(stats.texture_ratio)
    flat = defect_stats(np.zeros((5, 5)), _dot())  # a flat ring has no energy to compare with
    assert flat.contrast == 0.0 and math.isnan(flat.texture_ratio)
    with pytest.raises(ValueError, match="differ in size"):
        defect_stats(np.zeros((4, 5)), np.zeros((5, 4), dtype=bool))


def test_drift_counts_the_ring_only():
    mask = _dot(7, (3, 3))
    before = np.zeros((7, 7, 3))
    after = before.copy()
    after[mask] = 100.0  # changes inside the mask are the defect, not drift
    after[0, 0] = 100.0  # outside the ring of width 1
    assert drift(before, after, mask, 1) == 0.0
    after[2, 2, 0] = 24.0  # one ring pixel, one channel: 24 / (8 pixels x 3 channels)
    assert drift(before, after, mask, 1) == 1.0
    assert drift(before, after, mask, 3) == pytest.approx((24.0 + 300.0) / (48 * 3))
    with pytest.raises(ValueError, match="differ in shape"):
        drift(before, after[..., 0], mask)


def test_summaries_average_ratios_on_a_log_scale_and_gaps():
    stats = [DefectStats(-10.0, 1, 1, 0.5), DefectStats(-30.0, 1, 1, 2.0), DefectStats(math.nan, 0, 0, math.nan)]
    summary = summarize(stats)
    assert summary == {"n": 3, "contrast": -20.0, "texture_ratio": pytest.approx(1.0)}
    painted = {"contrast": -5.0, "texture_ratio": 4.0}
    assert gaps(painted, {"contrast": -20.0, "texture_ratio": 1.0}) == {"contrast_gap": 15.0, "texture_gap": 2.0}
    assert gaps(painted, {"contrast": -20.0, "texture_ratio": 8.0})["texture_gap"] == -1.0
    assert math.isnan(gaps(painted, {"contrast": math.nan, "texture_ratio": math.nan})["texture_gap"])
    assert math.isnan(summarize([])["contrast"])
