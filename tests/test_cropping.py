"""The working scale and the crop the network sees around a mask."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sard import cropping


def test_working_scale():
    assert cropping.working_scale(100, 50, 256) == 1.0  # small images are not enlarged
    assert cropping.working_scale(512, 1024, 256) == 0.25  # the longer side becomes the resolution
    assert cropping.working_scale(1024, 300, 256) == 0.25
    assert cropping.working_scale(256, 256, 256) == 1.0
    assert cropping.working_scale(333, 517, 32) == pytest.approx(32 / 517)


def _random_mask(rng, height, width):
    mask = np.zeros((height, width), dtype=bool)
    h, w = rng.integers(1, height + 1), rng.integers(1, width + 1)
    top, left = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
    mask[top : top + h, left : left + w] = rng.random((h, w)) < 0.5
    mask[top, left] = mask[top + h - 1, left + w - 1] = True  # the bounding box is exactly that rectangle
    return mask, (top, left, top + h, left + w)


def test_mask_crop_box_properties():
    """For random masks, images and scales: the box holds the mask's bounding box, lies inside the image,
    and its working size is a multiple of ``multiple`` (unless the image itself is smaller), large enough
    for ``min_size`` and the context, and the box's size times the scale (within one pixel)."""
    rng = np.random.default_rng(0)
    for _ in range(500):
        height, width = (int(v) for v in rng.integers(1, 400, 2))
        mask, (top, left, bottom, right) = _random_mask(rng, height, width)
        resolution = int(rng.choice([16, 32, 64, 256]))
        scale = cropping.working_scale(height, width, resolution)
        min_size, context, multiple = (
            int(rng.choice([8, 16, 64])),
            int(rng.integers(0, 20)),
            int(rng.choice([1, 4, 8])),
        )
        box = cropping.mask_crop_box(mask, scale, min_size, context, multiple)
        assert 0 <= box.top <= top and bottom <= box.bottom <= height
        assert 0 <= box.left <= left and right <= box.right <= width
        assert box.height == box.bottom - box.top and box.width == box.right - box.left
        assert box.slices == (slice(box.top, box.bottom), slice(box.left, box.right))
        for work, side, extent, length in (
            (box.work_height, box.height, bottom - top, height),
            (box.work_width, box.width, right - left, width),
        ):
            assert isinstance(work, int) and work >= 1
            assert abs(work - side * scale) <= 1, (work, side, scale)
            if side < length:  # the box was not clamped to the image: the documented sizes hold
                assert work % multiple == 0, (work, multiple, box, scale)
                assert work >= max(min_size, math.ceil(extent * scale) + 2 * context)
            else:  # clamped: the whole side of the image, at working scale
                assert work == max(1, round(length * scale)) or work % multiple == 0


@pytest.mark.parametrize("scale", [1.0, 0.9, 0.75, 0.6, 0.5, 0.3, 0.1])
def test_work_size_is_a_multiple_for_any_scale(scale):
    mask = np.zeros((2000, 2000), dtype=bool)
    mask[1000:1010, 990:1013] = True
    box = cropping.mask_crop_box(mask, scale, min_size=64, context=16, multiple=8)
    assert box.work_height % 8 == 0 and box.work_width % 8 == 0
    assert box.work_height >= 64 and box.work_width >= 64
    assert box.top <= 1000 and box.bottom >= 1010 and box.left <= 990 and box.right >= 1013


def test_max_size_bounds_large_crops_and_leaves_small_ones_alone():
    """With ``max_size``, no crop's longer working side exceeds it (rounded up to the stride); a mask whose
    crop fits keeps exactly the box it has without the bound; a larger one is seen whole, at a lower scale."""
    rng = np.random.default_rng(1)
    for _ in range(300):
        height, width = (int(v) for v in rng.integers(64, 1000, 2))
        mask, (top, left, bottom, right) = _random_mask(rng, height, width)
        scale = cropping.working_scale(height, width, int(rng.choice([256, 512, 1000])))
        max_size, multiple = int(rng.choice([64, 100, 256])), int(rng.choice([1, 8]))
        free = cropping.mask_crop_box(mask, scale, 64, 16, multiple)
        bounded = cropping.mask_crop_box(mask, scale, 64, 16, multiple, max_size=max_size)
        assert max(bounded.work_height, bounded.work_width) <= math.ceil(max_size / multiple) * multiple
        assert bounded.top <= top and bottom <= bounded.bottom and bounded.left <= left and right <= bounded.right
        if max(free.work_height, free.work_width) <= max_size:
            assert bounded == free
    mask = np.zeros((900, 900), dtype=bool)
    mask[100:700, 200:500] = True  # a 600 x 300 px break on a 900 px photo, at full scale
    box = cropping.mask_crop_box(mask, 1.0, min_size=64, context=16, multiple=8, max_size=256)
    assert (box.work_height, box.work_width) == (256, 144)  # 600 px -> 224 px + 2 x 16 context
    assert box.height >= 600 and box.width >= 300


def test_max_size_below_the_crop_size_is_refused():
    mask = np.ones((10, 10), dtype=bool)
    with pytest.raises(ValueError, match="max_size"):
        cropping.mask_crop_box(mask, 1.0, min_size=64, context=16, max_size=48)


def test_crop_is_centred_and_shifted_inside_the_image():
    mask = np.zeros((100, 100), dtype=bool)
    mask[48:52, 48:52] = True
    box = cropping.mask_crop_box(mask, 1.0, min_size=16, context=2, multiple=8)
    assert (box.top, box.bottom, box.left, box.right) == (42, 58, 42, 58)
    assert (box.work_height, box.work_width) == (16, 16)
    corner = np.zeros((100, 100), dtype=bool)
    corner[0, 99] = True
    box = cropping.mask_crop_box(corner, 1.0, min_size=16, context=2, multiple=8)
    assert (box.top, box.bottom, box.left, box.right) == (0, 16, 84, 100)
    # An image smaller than the crop: the whole image.
    tiny = np.ones((7, 13), dtype=bool)
    box = cropping.mask_crop_box(tiny, 1.0, min_size=16, context=2, multiple=8)
    assert (box.top, box.bottom, box.left, box.right, box.work_height, box.work_width) == (0, 7, 0, 13, 7, 13)


def test_resize_and_resize_mask():
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert cropping.resize(image, (8, 8)) is image
    small = cropping.resize(image, (4, 4))
    assert small.shape == (1, 3, 4, 4)
    constant = torch.full((1, 3, 9, 13), 0.25)
    torch.testing.assert_close(cropping.resize(constant, (4, 5)), torch.full((1, 3, 4, 5), 0.25))
    # Antialiased: a one-pixel checkerboard shrinks to grey instead of aliasing to black or white.
    board = ((torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2).float()[None, None]
    assert (cropping.resize(board, (3, 3)) - 0.5).abs().max() < 0.1
    mask = torch.zeros(1, 1, 16, 16)
    mask[0, 0, 5, 9] = 1  # a one-pixel pit survives a 4x downscale
    down = cropping.resize_mask(mask, (4, 4))
    assert down.sum() == 1 and down[0, 0, 1, 2] == 1 and down.dtype == mask.dtype
    assert cropping.resize_mask(mask, (16, 16)) is mask


def test_pad_to():
    image = torch.arange(6, dtype=torch.float32).reshape(1, 1, 2, 3)
    padded = cropping.pad_to(image, (4, 5))
    assert padded.shape == (1, 1, 4, 5)
    assert torch.equal(padded[..., :2, :3], image)
    assert torch.equal(padded[..., 3, :3], image[..., 1, :])  # replicate
    zeros = cropping.pad_to(image, (3, 3), mode="constant")
    assert zeros[..., 2, :].abs().sum() == 0
    assert cropping.pad_to(image, (2, 3)) is image
