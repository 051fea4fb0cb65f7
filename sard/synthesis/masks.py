"""Masks for synthesis, drawn from the training masks and augmented, kept on the product.

A training mask is taken as a shape (its bounding box) at a position relative to its image. The shape is
flipped, turned, rotated and scaled; the position is flipped and turned with it (a chipped corner stays at a
corner, an edge defect at an edge) and then shifted. The shape is sized to the target image by the square
root of the area ratio of the two images, so a round pit stays round on an image of another aspect ratio.
The placed mask is cut to the target's frame and foreground; a draw that keeps less than ``min_keep`` of the
shape is drawn again.

:func:`warp_pair` applies the same kind of transform to a whole image and its mask together: that is how
the ``real`` method augments the training anomalies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

from .. import image_io
from ..cropping import ring


@dataclass
class MaskAugmentation:
    """How training masks are varied.

    Attributes:
        hflip / vflip: mirror with probability 0.5.
        rotate90: turn by a random multiple of 90 degrees (textures without a preferred direction).
        max_rotation: rotate by an angle drawn uniformly in [-max_rotation, max_rotation] degrees.
        scale_jitter: scale by a factor drawn uniformly in [1 - j, 1 + j].
        shift: move by up to this fraction of the image's height and width.
        min_keep: the fraction of the placed shape that must stay on the image and its foreground.
        max_tries: draws before falling back to the training mask as it is.
        match_surroundings: when above 1, draw this many placements (within ``max_tries``) and keep the one
            whose surroundings are most like its training defect's (:func:`surroundings_tone`: a pit from the
            thread's dark groove goes to a dark groove, not onto a bright flank); 0 or 1: the first draw.
    """

    hflip: bool = True
    vflip: bool = True
    rotate90: bool = False
    max_rotation: float = 15.0
    scale_jitter: float = 0.25
    shift: float = 0.1
    min_keep: float = 0.5
    max_tries: int = 20
    match_surroundings: int = 0


@dataclass
class Transform:
    """One draw of :class:`MaskAugmentation`."""

    hflip: bool = False
    vflip: bool = False
    turns: int = 0
    angle: float = 0.0
    scale: float = 1.0
    dy: float = 0.0
    dx: float = 0.0

    def to_dict(self) -> dict:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in self.__dict__.items()}


def draw_transform(augmentation: MaskAugmentation, rng: np.random.Generator) -> Transform:
    a = augmentation
    return Transform(
        hflip=bool(a.hflip and rng.random() < 0.5),
        vflip=bool(a.vflip and rng.random() < 0.5),
        turns=int(rng.integers(4)) if a.rotate90 else 0,
        angle=float(rng.uniform(-a.max_rotation, a.max_rotation)) if a.max_rotation else 0.0,
        scale=float(rng.uniform(1 - a.scale_jitter, 1 + a.scale_jitter)) if a.scale_jitter else 1.0,
        dy=float(rng.uniform(-a.shift, a.shift)) if a.shift else 0.0,
        dx=float(rng.uniform(-a.shift, a.shift)) if a.shift else 0.0,
    )


def place_mask(source: np.ndarray, size: tuple[int, int], transform: Transform) -> tuple[np.ndarray, int]:
    """The shape of the non-empty bool mask ``source``, transformed and placed on a ``size`` frame.

    Returns:
        `(placed, area)`: the `(H, W)` bool mask, cut to the frame, and the shape's area before the cut.
    """
    rows, cols = np.nonzero(source)
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    shape = source[top:bottom, left:right]
    v = (top + bottom) / 2 / source.shape[0]  # the shape's centre, relative to its image
    u = (left + right) / 2 / source.shape[1]
    if transform.hflip:
        shape, u = shape[:, ::-1], 1.0 - u
    if transform.vflip:
        shape, v = shape[::-1], 1.0 - v
    for _ in range(transform.turns):  # np.rot90 turns counter-clockwise: (v, u) -> (1 - u, v)
        shape, (v, u) = np.rot90(shape), (1.0 - u, v)
    height, width = size
    factor = math.sqrt(height * width / (source.shape[0] * source.shape[1])) * transform.scale
    scaled = (max(1, round(shape.shape[0] * factor)), max(1, round(shape.shape[1] * factor)))
    image = PIL.Image.fromarray(np.ascontiguousarray(shape).astype(np.uint8) * 255)
    image = image.resize((scaled[1], scaled[0]), PIL.Image.NEAREST)
    if transform.angle:
        image = image.rotate(transform.angle, resample=PIL.Image.NEAREST, expand=True)
    shape = image_io.decode_mask(image)
    cy, cx = (v + transform.dy) * height, (u + transform.dx) * width
    r0, c0 = round(cy - shape.shape[0] / 2), round(cx - shape.shape[1] / 2)
    placed = np.zeros(size, dtype=bool)
    rs, cs = slice(max(r0, 0), min(r0 + shape.shape[0], height)), slice(max(c0, 0), min(c0 + shape.shape[1], width))
    if rs.start < rs.stop and cs.start < cs.stop:
        placed[rs, cs] = shape[rs.start - r0 : rs.stop - r0, cs.start - c0 : cs.stop - c0]
    return placed, int(shape.sum())


def surroundings_tone(gray: np.ndarray, mask: np.ndarray, width: int = 3) -> float:
    """The mean grey level of :func:`ring` ``(mask, width)`` minus that of the whole image ``gray`` `(H, W)`: where
    on the product a defect sits, darker (negative) or lighter than the product's average. NaN when the mask leaves
    no ring."""
    around = ring(mask, width)
    return float(gray[around].mean() - gray.mean()) if around.any() else math.nan


def draw_mask(
    sources: list[np.ndarray],
    size: tuple[int, int],
    foreground: np.ndarray,
    augmentation: MaskAugmentation,
    rng: np.random.Generator,
    gray: np.ndarray | None = None,
    source_tones: list[float] | None = None,
) -> tuple[np.ndarray, dict]:
    """A mask for a ``size`` image from one of the non-empty training masks ``sources``.

    With ``augmentation.match_surroundings`` above 1, the target image's grey levels ``gray`` `(H, W)` and each
    source's :func:`surroundings_tone` in its own image (``source_tones``), the placement kept is the one of
    that many whose surroundings' tone is closest to its source's.

    Returns:
        `(mask, info)`: the `(H, W)` bool mask, never empty, and what was drawn (``source``: the index into
        ``sources``, ``transform``, ``fallback``: True when no augmented draw stayed on the foreground).
    """
    matching = augmentation.match_surroundings > 1 and gray is not None and source_tones is not None
    best = None  # (gap, mask, info) of the best placement so far, when matching
    found = 0
    for _ in range(augmentation.max_tries):
        index = int(rng.integers(len(sources)))
        transform = draw_transform(augmentation, rng)
        placed, area = place_mask(sources[index], size, transform)
        kept = placed & foreground
        if kept.any() and kept.sum() >= augmentation.min_keep * area:
            info = {"source": index, "transform": transform.to_dict(), "fallback": False}
            if not matching:
                return kept, info
            gap = abs(surroundings_tone(gray, kept) - source_tones[index])
            gap = math.inf if math.isnan(gap) else gap  # no ring here or around the source: any other wins
            if best is None or gap < best[0]:
                best = (gap, kept, info)
            found += 1
            if found == augmentation.match_surroundings:
                break
    if best is not None:
        return best[1], best[2]
    # A product too small or masks too large for the augmentation: the training mask as it is.
    index = int(rng.integers(len(sources)))
    placed, _ = place_mask(sources[index], size, Transform())
    kept = placed & foreground
    return (kept if kept.any() else placed), {"source": index, "transform": Transform().to_dict(), "fallback": True}


def warp_pair(rgb: np.ndarray, mask: np.ndarray, transform: Transform) -> tuple[np.ndarray, np.ndarray]:
    """Apply ``transform`` to a whole image `(H, W, 3)` uint8 and its `(H, W)` bool mask together.

    The image is flipped, turned, then rotated by ``angle`` and scaled about its centre and shifted by
    ``(dy, dx)`` of its size; what comes in from outside the frame is the frame mirrored (image and mask
    alike, so the labels stay true).
    """
    if transform.hflip:
        rgb, mask = rgb[:, ::-1], mask[:, ::-1]
    if transform.vflip:
        rgb, mask = rgb[::-1], mask[::-1]
    rgb, mask = np.rot90(rgb, transform.turns), np.rot90(mask, transform.turns)
    height, width = mask.shape
    # Output pixel p samples input pixel c + (s R)^-1 (p - c - t), in pixel units (non-square frames).
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                            indexing="ij")
    cy, cx = (height - 1) / 2, (width - 1) / 2
    py, px = ys - cy - transform.dy * height, xs - cx - transform.dx * width
    theta = math.radians(transform.angle)
    cos, sin = math.cos(theta) / transform.scale, math.sin(theta) / transform.scale
    # PIL's rotate is counter-clockwise for positive angles; rows grow downwards, hence the signs.
    sx = cx + cos * px - sin * py
    sy = cy + sin * px + cos * py
    grid = torch.stack([(2 * sx + 1) / width - 1, (2 * sy + 1) / height - 1], dim=-1)[None].float()
    image = torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].float()
    warped = F.grid_sample(image, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    labels = torch.from_numpy(np.array(mask))[None, None].float()
    warped_mask = F.grid_sample(labels, grid, mode="nearest", padding_mode="reflection", align_corners=False)
    out = warped[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
    return out, warped_mask[0, 0].numpy() > 0.5
