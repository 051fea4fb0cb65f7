"""Where the network looks: the working scale of an image, the crop around its mask, and the ring around it.

Region-constrained sampling never changes a pixel outside the mask, so running the network on a
crop around the mask (with some context) instead of the whole frame changes no background pixel;
it only bounds the cost, which then follows the size of the mask, not of the photo. Training uses
the same scale and crops, so the network sees defects at the same pixel scale in both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


def working_scale(height: int, width: int, resolution: int) -> float:
    """The factor that brings an image to the model's working resolution: its longer side becomes at
    most ``resolution`` pixels (smaller images are not enlarged)."""
    return min(1.0, resolution / max(height, width))


@dataclass(frozen=True)
class CropBox:
    """A box of the full-resolution image (``top:bottom, left:right``) and the size it is resampled to
    at working scale (``work_height`` x ``work_width``); ``scale`` is the scale it was cut at (the image's
    working scale, or less for a mask too large for ``max_size``)."""

    top: int
    left: int
    bottom: int
    right: int
    work_height: int
    work_width: int
    scale: float

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.top, self.bottom), slice(self.left, self.right)

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def width(self) -> int:
        return self.right - self.left


def _span(low: int, high: int, length: int, needed: int) -> tuple[int, int]:
    """A window of ``needed`` pixels (at most ``length``) centred on ``[low, high)`` and inside ``[0, length)``."""
    needed = min(needed, length)
    start = (low + high) // 2 - needed // 2
    start = max(0, min(start, length - needed))
    return start, start + needed


def mask_crop_box(mask: np.ndarray, scale: float, min_size: int, context: int, multiple: int = 8,
                  max_size: int | None = None) -> CropBox:
    """The box the network sees for a boolean `(H, W)` mask.

    Args:
        mask: the full-resolution mask; must not be empty.
        scale: the working scale (:func:`working_scale`).
        min_size: the smallest side of the crop at working scale (the training crop size).
        context: pixels of context on each side of the mask's bounding box, at working scale.
        multiple: the crop's sides at working scale are rounded up to this (the network's stride), unless
            the image is smaller than that.
        max_size: the longest side of the crop at working scale, at most (rounded up to ``multiple``); a mask
            whose box needs more is seen at a lower scale, so no defect costs more than one ``max_size`` square
            while small ones keep ``scale``. ``None``: no bound.
    """
    if max_size is not None and max_size < max(min_size, 2 * context + 1):
        raise ValueError(f"max_size ({max_size}) must be at least crop_size ({min_size}) and more than twice "
                         f"the context ({context}).")
    rows, cols = np.any(mask, axis=1), np.any(mask, axis=0)
    top, bottom = (int(i) for i in np.flatnonzero(rows)[[0, -1]])
    left, right = (int(i) for i in np.flatnonzero(cols)[[0, -1]])
    height, width = mask.shape

    def box_at(scale: float) -> CropBox:
        def span(low: int, high: int, length: int) -> tuple[int, int, int]:
            work = max(min_size, math.ceil((high - low) * scale) + 2 * context)
            work = math.ceil(work / multiple) * multiple
            start, stop = _span(low, high, length, math.ceil(work / scale))
            # round(box * scale) can exceed work by one when scale > 1/2: keep the multiple unless the image is
            # smaller.
            if stop - start < math.ceil(work / scale):
                work = max(1, round((stop - start) * scale))
            return start, stop, work

        box_top, box_bottom, work_height = span(top, bottom + 1, height)
        box_left, box_right, work_width = span(left, right + 1, width)
        return CropBox(box_top, box_left, box_bottom, box_right, work_height, work_width, scale)

    box = box_at(scale)
    if max_size is not None and max(box.work_height, box.work_width) > max_size:
        # The factor keeps a box scaled to exactly max_size from rounding one pixel over it.
        box = box_at((max_size - 2 * context) / max(bottom + 1 - top, right + 1 - left) * (1 - 1e-9))
    return box


def ring(mask: np.ndarray, width: int) -> np.ndarray:
    """The pixels outside ``mask`` within ``width`` pixels of it (chessboard distance), as a bool `(H, W)` array."""
    mask = np.asarray(mask, dtype=bool)
    if width < 1:
        raise ValueError(f"The ring width must be at least 1 pixel, got {width}.")
    height, wide = mask.shape
    padded = np.pad(mask, width)
    dilated = np.zeros_like(mask)
    for dy in range(2 * width + 1):  # (2w + 1)² shifted ORs of bools: about 2 ms for a 900 x 900 mask at w = 3
        for dx in range(2 * width + 1):
            dilated |= padded[dy : dy + height, dx : dx + wide]
    return dilated & ~mask


def resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resample a `(B, C, H, W)` float image to ``size``: antialiased bilinear (area-like when shrinking)."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(image, size=size, mode="bilinear", antialias=True, align_corners=False)


def resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resample a `(B, 1, H, W)` {0, 1} mask to ``size``; a working pixel is in the mask if any part of it is,
    so thin cracks and one-pixel pits survive downscaling."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    return (F.interpolate(mask.float(), size=size, mode="area") > 0).to(mask.dtype)


def pad_to(image: torch.Tensor, size: tuple[int, int], mode: str = "replicate") -> torch.Tensor:
    """Pad a `(B, C, H, W)` tensor at the bottom and right to ``size`` (``mode="constant"`` pads zeros)."""
    pad_h, pad_w = size[0] - image.shape[-2], size[1] - image.shape[-1]
    if pad_h == 0 and pad_w == 0:
        return image
    return F.pad(image, (0, pad_w, 0, pad_h), mode=mode)
