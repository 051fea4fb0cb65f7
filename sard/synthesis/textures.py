"""Procedural textures: DRAEM's foreign textures when no texture images are at hand.

DRAEM fills its masks with images of the Describable Textures Dataset. A data root that holds a single
category has no other category to borrow from, and nothing may be downloaded, so :func:`procedural_texture`
draws one of four families instead, each from the caller's generator: fractal Perlin noise between two
random colours (stains, clouds), thresholded Perlin blobs (spots, marbling), oriented stripes with a
Perlin warp (scratches, weaves) and a rotated grid (meshes, tiles). They are not DTD: a benchmark that
uses them says so (see :func:`sard.synthesis.methods.texture_source`).
"""

from __future__ import annotations

import math

import numpy as np
import PIL.Image

from .perlin import rand_perlin_2d

KINDS = ("fractal", "blobs", "stripes", "grid")


def _fractal(size: int, rng: np.random.Generator, octaves: int = 4) -> np.ndarray:
    """Perlin noise summed over ``octaves`` doubling frequencies (halving amplitudes), scaled to [0, 1]."""
    base = 2 ** int(rng.integers(0, 3))
    noise = sum(0.5**o * rand_perlin_2d((size, size), (base * 2**o, base * 2**o), rng) for o in range(octaves))
    low, high = noise.min(), noise.max()
    return (noise - low) / (high - low) if high > low else np.zeros_like(noise)


def procedural_texture(rng: np.random.Generator, size: int = 256) -> tuple[PIL.Image.Image, str]:
    """A random RGB texture of ``size`` x ``size`` and the name of its family (one of :data:`KINDS`)."""
    kind = KINDS[int(rng.integers(len(KINDS)))]
    if kind == "fractal":
        field = _fractal(size, rng)
    elif kind == "blobs":
        field = (_fractal(size, rng) > rng.uniform(0.35, 0.65)).astype(np.float64)
    else:
        angle = rng.uniform(0.0, math.pi)
        ys, xs = np.mgrid[0:size, 0:size] / size
        along = xs * math.cos(angle) + ys * math.sin(angle)
        frequency = rng.uniform(4.0, 32.0)
        warp = 0.05 * rand_perlin_2d((size, size), (4, 4), rng)
        if kind == "stripes":
            field = 0.5 + 0.5 * np.sin(2 * math.pi * frequency * (along + warp))
        else:
            across = -xs * math.sin(angle) + ys * math.cos(angle)
            lines = np.minimum(np.abs(np.sin(math.pi * frequency * along)),
                               np.abs(np.sin(math.pi * frequency * across)))
            field = (lines > rng.uniform(0.2, 0.6)).astype(np.float64)
    grain = 0.1 * rng.standard_normal((size, size))
    colours = rng.integers(0, 256, size=(2, 3)).astype(np.float64)
    t = np.clip(field + grain, 0.0, 1.0)[..., None]
    pixels = (1.0 - t) * colours[0] + t * colours[1]
    return PIL.Image.fromarray(np.rint(pixels).clip(0, 255).astype(np.uint8)), kind
