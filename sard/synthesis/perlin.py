"""Perlin noise and DRAEM's anomaly masks (Zavrtanik et al., ICCV 2021, ``perlin.py`` of their code)."""

from __future__ import annotations

import math

import numpy as np
import PIL.Image


def _fade(t: np.ndarray) -> np.ndarray:
    return 6 * t**5 - 15 * t**4 + 10 * t**3  # Perlin's improved quintic interpolant


def rand_perlin_2d(shape: tuple[int, int], res: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """2-D Perlin noise of ``shape`` with ``res`` lattice cells per axis (DRAEM's ``rand_perlin_2d_np``).

    Any ``shape`` works: the noise is drawn on the next multiple of ``res`` and cropped. Values lie in about
    [-0.7, 0.7].
    """
    padded = (-(-shape[0] // res[0]) * res[0], -(-shape[1] // res[1]) * res[1])
    d = (padded[0] // res[0], padded[1] // res[1])
    ys = (np.arange(padded[0]) / d[0]) % 1  # position inside the cell
    xs = (np.arange(padded[1]) / d[1]) % 1
    grid = np.stack(np.meshgrid(ys, xs, indexing="ij"), axis=-1)
    angles = 2 * math.pi * rng.random((res[0] + 1, res[1] + 1))
    gradients = np.stack((np.cos(angles), np.sin(angles)), axis=-1)

    def corner(dy: int, dx: int) -> np.ndarray:
        g = gradients[dy : dy + res[0], dx : dx + res[1]].repeat(d[0], 0).repeat(d[1], 1)
        return ((grid - np.array([dy, dx])) * g).sum(axis=-1)

    t = _fade(grid)
    n0 = corner(0, 0) + t[..., 0] * (corner(1, 0) - corner(0, 0))
    n1 = corner(0, 1) + t[..., 0] * (corner(1, 1) - corner(0, 1))
    return (math.sqrt(2) * (n0 + t[..., 1] * (n1 - n0)))[: shape[0], : shape[1]]


def perlin_mask(
    shape: tuple[int, int],
    rng: np.random.Generator,
    min_scale: int = 0,
    max_scale: int = 6,
    threshold: float = 0.5,
    max_rotation: float = 90.0,
) -> np.ndarray:
    """DRAEM's anomaly mask: Perlin noise with ``2 ** k`` cells per axis, k drawn per axis from
    ``[min_scale, max_scale)``, rotated by up to ``max_rotation`` degrees, thresholded at ``threshold``.
    May be empty (callers draw again). Returns `(H, W)` bool."""
    scale_y = 2 ** int(rng.integers(min_scale, max_scale))
    scale_x = 2 ** int(rng.integers(min_scale, max_scale))
    noise = rand_perlin_2d(shape, (scale_y, scale_x), rng).astype(np.float32)
    angle = float(rng.uniform(-max_rotation, max_rotation))
    noise = np.asarray(PIL.Image.fromarray(noise, mode="F").rotate(angle, resample=PIL.Image.BILINEAR))
    return noise > threshold
