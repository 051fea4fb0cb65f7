"""How a painted defect compares with real ones, and how far a background moved: figures on one image and mask.

All figures are in grey levels (0-255, the luma of RGB) and are taken at one scale for every image compared
(the ablation measures at the model's working scale). For an image ``x`` and a boolean mask ``m``:

- ``ring(m, w)``: the pixels outside ``m`` within ``w`` pixels of it (chessboard distance: ``m`` dilated by a
  ``(2w + 1) x (2w + 1)`` square, minus ``m``), clipped to the image;
- ``contrast = mean(x[m]) - mean(x[ring])``: negative for a defect darker than its surroundings;
- ``energy(R) = mean over R of |L x|``, with ``L`` the 4-neighbour Laplacian (edges replicated): how busy the
  texture is (high-frequency energy); the pixels of ``m`` next to its border count, so a hard seam adds to it;
- ``texture_ratio = energy(m) / energy(ring)``: 1 is as busy as the surroundings, noise-filled masks give
  several times that (docs/METHOD.md measured 4-6 for fills of pure noise and 0.8-1.8 for real defects);
- ``drift(before, after, m, w) = mean over ring(m, w) and the channels of |after - before|``.

A figure with nothing to average over (an empty ring, a flat ring for the ratio) is NaN.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ..cropping import ring

LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601, as PIL's convert("L")


def luma(image: np.ndarray) -> np.ndarray:
    """`(H, W)` float grey levels of an `(H, W)` or `(H, W, 3)` image (same range as the input)."""
    image = np.asarray(image, dtype=np.float64)
    return image @ LUMA if image.ndim == 3 else image


def laplacian(gray: np.ndarray) -> np.ndarray:
    """The 4-neighbour Laplacian ``x[i-1,j] + x[i+1,j] + x[i,j-1] + x[i,j+1] - 4 x[i,j]``, edges replicated."""
    p = np.pad(np.asarray(gray, dtype=np.float64), 1, mode="edge")
    return p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:] - 4.0 * p[1:-1, 1:-1]


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else math.nan


@dataclass
class DefectStats:
    """The figures of one defect (see the module docstring)."""

    contrast: float
    texture_inside: float
    texture_ring: float
    texture_ratio: float

    def to_dict(self) -> dict:
        return asdict(self)


def defect_stats(image: np.ndarray, mask: np.ndarray, ring_width: int = 3) -> DefectStats:
    """Contrast and texture energy of ``image`` (`(H, W)` or `(H, W, 3)`, grey levels) inside ``mask`` against
    the ring of ``ring_width`` pixels around it."""
    gray, mask = luma(image), np.asarray(mask, dtype=bool)
    if gray.shape != mask.shape:
        raise ValueError(f"image {gray.shape} and mask {mask.shape} differ in size.")
    around = ring(mask, ring_width)
    energy = np.abs(laplacian(gray))
    inside, outside = _mean(energy[mask]), _mean(energy[around])
    ratio = inside / outside if outside > 0 else math.nan
    return DefectStats(_mean(gray[mask]) - _mean(gray[around]), inside, outside, ratio)


def drift(before: np.ndarray, after: np.ndarray, mask: np.ndarray, ring_width: int = 3) -> float:
    """Mean absolute change of ``after`` against ``before`` (same shape, `(H, W[, C])`) over the ring of
    ``ring_width`` pixels outside ``mask`` and over the channels."""
    before, after = np.asarray(before, dtype=np.float64), np.asarray(after, dtype=np.float64)
    if before.shape != after.shape:
        raise ValueError(f"before {before.shape} and after {after.shape} differ in shape.")
    return _mean(np.abs(after - before)[ring(mask, ring_width)])


def summarize(stats: list[DefectStats]) -> dict[str, float]:
    """Over several defects: ``n``, the mean contrast and the geometric mean of the texture ratios (ratios
    average on a log scale: 0.5 and 2 are as far from 1); NaN figures are left out."""
    contrasts = [s.contrast for s in stats if not math.isnan(s.contrast)]
    ratios = [s.texture_ratio for s in stats if math.isfinite(s.texture_ratio) and s.texture_ratio > 0]
    return {
        "n": len(stats),
        "contrast": float(np.mean(contrasts)) if contrasts else math.nan,
        "texture_ratio": float(np.exp(np.mean(np.log(ratios)))) if ratios else math.nan,
    }


def gaps(painted: dict[str, float], real: dict[str, float]) -> dict[str, float]:
    """How far a summary of painted defects is from that of the real ones: ``contrast_gap`` (painted minus
    real, grey levels) and ``texture_gap = log2(painted ratio / real ratio)`` (+1: twice as busy as real)."""
    ratio = painted["texture_ratio"] / real["texture_ratio"] if real["texture_ratio"] > 0 else math.nan
    return {
        "contrast_gap": painted["contrast"] - real["contrast"],
        "texture_gap": math.log2(ratio) if ratio > 0 else math.nan,
    }
