"""Grain matching: the photo's fine texture, restored inside a painted mask.

The network paints smoother than the photo it paints into. Resampling a crop to the working scale and back
alone takes away most of the pixel-scale texture (the fidelity tables' "texture of real at working scale":
0.22-0.75 of the real defects' own on bottle, 0.35-0.78 on three magnetic-tile types), and the denoiser's
clean prediction is smoother still. Compositors add the plate's grain to a rendered element for the same
reason. Here the mask is covered with tiles of 8 x 8 pixels, and each tile gets the fine-texture residual (the
pixel minus the mean of its 3 x 3 neighbours, all channels together) of a random 8 x 8 window of the crop
outside the mask: grain with the photo's own spatial grain size, which grain drawn pixel by pixel does not have
(a classifier told such fills from real defects more easily than smooth ones). The grain is scaled so that the
fill's own residual (inside the mask, without its border's step) is as strong as that of the ring around the
mask times the defect type's strength: how much finer the real defects of that type are than their own
surroundings, the median over the training defects (:func:`type_strengths`; 1.5 for bottle's breaks, 0.7 for
the magnetic tile's frays). A fill that already holds that much is left as it is. Windows much busier than the
ring (an edge of the product) are not drawn from. Only the inside of the mask changes, and the residual has no
mean, so a defect's tone and colour stay the network's.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable

import numpy as np

from .cropping import ring

# Wide enough that a blowhole of a few pixels still has about a hundred pixels to draw grain from.
RING_WIDTH = 4
TILE = 8
# A window busier than the ring by more than this holds structure (an edge, a thread), not grain.
CALM = 1.25
_LUMA = np.array([0.299, 0.587, 0.114])


def _box_sum(image: np.ndarray) -> np.ndarray:
    """The sum over each pixel's 3 x 3 neighbourhood of an `(H, W, C)` array, zero beyond its edges."""
    padded = np.pad(image, ((1, 1), (1, 1), (0, 0)))
    height, width = image.shape[:2]
    return sum(padded[dy : dy + height, dx : dx + width] for dy in range(3) for dx in range(3))


def masked_fine_residual(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`(H, W, C)` float: ``image`` minus the mean of its 3 x 3 neighbours inside ``mask``, zero outside it: the
    texture of a fill alone, without the step at the mask's border (which a smooth dark fill has too).

    The same figure as :func:`sard.discriminator.masked_high_pass` at size 3, on an `(H, W, C)` array; that one
    divides before it sums, and leaves a flat fill about 1e-15 instead of 0."""
    inside = mask[..., None].astype(image.dtype)
    mean = _box_sum(image * inside) / _box_sum(inside).clip(min=1.0)
    return (image - mean) * inside


def _strength(residual: np.ndarray) -> float:
    """Root mean square of the residuals' luma, `(N, 3)` -> float."""
    luma = residual @ _LUMA
    return float(np.sqrt(np.mean(luma**2))) if luma.size else 0.0


def _window_sums(values: np.ndarray, size: int) -> np.ndarray:
    """`(H - size + 1, W - size + 1)`: the sum of `(H, W)` ``values`` over every ``size x size`` window."""
    total = np.pad(values.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    return total[size:, size:] - total[:-size, size:] - total[size:, :-size] + total[:-size, :-size]


def _tiled(residual: np.ndarray, outside: np.ndarray, mask: np.ndarray, ring_strength: float,
           rng: np.random.Generator, tile: int) -> np.ndarray | None:
    """Grain for ``mask``: each ``tile x tile`` tile over it copies ``residual`` from a random window of the same
    size that lies wholly in ``outside`` and is at most ``CALM`` times as busy (root mean square) as the ring
    (``ring_strength``). None when no window lies wholly outside the mask."""
    size = min(tile, *mask.shape)
    clean = _window_sums(outside.astype(np.float64), size) == size * size
    calm = clean & (_window_sums((residual @ _LUMA) ** 2, size) <= (CALM * ring_strength) ** 2 * size * size)
    choices = np.flatnonzero(calm if calm.any() else clean)
    if not choices.size:
        return None
    grain = np.zeros_like(residual)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    for top in range(rows[0], rows[-1] + 1, size):
        for left in range(cols[0], cols[-1] + 1, size):
            height, width = min(size, mask.shape[0] - top), min(size, mask.shape[1] - left)
            if mask[top : top + height, left : left + width].any():
                y, x = divmod(int(choices[rng.integers(len(choices))]), clean.shape[1])
                grain[top : top + height, left : left + width] = residual[y : y + height, x : x + width]
    return grain


def match_grain(fill: np.ndarray, known: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
                strength: float = 1.0, ring_width: int = RING_WIDTH, tile: int = TILE) -> np.ndarray:
    """``fill`` with the grain of ``known``'s surroundings of ``mask`` added inside ``mask`` where it lacks it.

    Args:
        fill: `(H, W, 3)` float RGB in [0, 1], the painted crop at full resolution (only its mask is used).
        known: `(H, W, 3)` float RGB in [0, 1], the input's pixels of the same crop.
        mask: `(H, W)` bool, where the defect is painted.
        rng: draws the window each tile's grain comes from.
        strength: the fill's residual is brought to ``strength`` times the ring's (:func:`defect_strength`).
        ring_width: pixels of the ring whose grain strength the fill is brought to.
        tile: side of the tiles, pixels. A crop with no window of that size outside the mask (a mask filling its
            image) draws its grain pixel by pixel from the ring instead.

    Returns:
        `(H, W, 3)` float: ``fill`` with grain added inside ``mask`` (unchanged outside it, and unchanged where
        the mask has no ring, or its fill already holds ``strength`` times the ring's fine texture).
    """
    mask = np.asarray(mask, dtype=bool)
    around = ring(mask, ring_width)
    if not mask.any() or not around.any():
        return fill
    # The residual against the pixels outside the mask only: the normal surface under it lends nothing.
    outside = ~mask
    residual = masked_fine_residual(known, outside)
    ring_strength = _strength(residual[around])
    wanted = strength * ring_strength
    have = _strength(masked_fine_residual(fill, mask)[mask])
    if have >= wanted:
        return fill
    grain = _tiled(residual, outside, mask, ring_strength, rng, tile)
    if grain is None:
        grain = np.zeros_like(fill)
        grain[mask] = residual[around][rng.integers(int(around.sum()), size=int(mask.sum()))]
    # Measured as placed: the tiles' seams and the mask's border change its strength a little.
    placed = _strength(masked_fine_residual(grain, mask)[mask])
    if placed == 0.0:
        return fill
    # Independent textures add in power: this brings the mask's residual to the wanted strength.
    scale = np.sqrt(wanted**2 - have**2) / placed
    return np.where(mask[..., None], fill + scale * grain, fill)


def defect_strength(image: np.ndarray, mask: np.ndarray, ring_width: int = RING_WIDTH) -> float:
    """How much finer a defect's texture is than its surroundings': the strength (root mean square of the luma) of
    :func:`masked_fine_residual` inside ``mask`` over that of the ring around it, for `(H, W, 3)` float ``image``.
    NaN when the mask is empty or its ring is flat."""
    mask = np.asarray(mask, dtype=bool)
    around = ring(mask, ring_width) if mask.any() else mask
    outside = _strength(masked_fine_residual(image, ~mask)[around])
    return _strength(masked_fine_residual(image, mask)[mask]) / outside if outside > 0 else math.nan


def type_strengths(defects: dict[str, Iterable[tuple[np.ndarray, np.ndarray]]]) -> dict[str, float]:
    """Per defect type, the median :func:`defect_strength` of its ``(image, mask)`` pairs (float `(H, W, 3)` images
    at full resolution, read as they are iterated); types with none measurable are left out, and are painted with
    strength 1 (as fine as the surroundings)."""
    strengths = {}
    for defect, pairs in defects.items():
        values = [v for v in (defect_strength(image, mask) for image, mask in pairs) if math.isfinite(v)]
        if values:
            strengths[defect] = round(statistics.median(values), 4)
    return strengths
