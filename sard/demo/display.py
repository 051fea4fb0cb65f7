"""The 8-bit copies of images that the browser shows, and the mask's outline drawn on results."""

from __future__ import annotations

import numpy as np
import PIL.Image

from .. import figures

# The editor and the result views get copies with at most this many pixels on a side: a 6000 x 4000 photo
# stays responsive in the browser, while the pipeline still works on (and returns) the full-size file.
MAX_DISPLAY_SIDE = 1024


def display_size(size: tuple[int, int], max_side: int = MAX_DISPLAY_SIDE) -> tuple[int, int]:
    """``(W, H)`` of the display copy of an image of ``size = (W, H)``: the longer side at most ``max_side``."""
    scale = min(1.0, max_side / max(size))
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def display_levels(image: PIL.Image.Image) -> tuple[float, float]:
    """The input values shown as black and white. 8-bit images: 0 and 255. Images of more bits are
    stretched from their darkest to their brightest value, since 12-bit data in a 16-bit file would
    otherwise look black; the same levels are used for the results, so before and after compare."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        low, high = image.getextrema()
        return (float(low), float(high)) if high > low else (0.0, 1.0 if image.mode == "F" else 65535.0)
    return 0.0, 255.0


def display_copy(
    image: PIL.Image.Image, levels: tuple[float, float] | None = None, max_side: int = MAX_DISPLAY_SIDE
) -> PIL.Image.Image:
    """An 8-bit copy (L, LA, RGB or RGBA) for the browser, at most ``max_side`` pixels on a side."""
    low, high = levels or display_levels(image)
    if (low, high) == (0.0, 255.0) and image.mode in ("L", "LA", "RGB", "RGBA"):
        copy = image.copy()
    else:
        unit = (np.asarray(image, dtype=np.float64) - low) / (high - low)
        copy = PIL.Image.fromarray(np.rint(np.clip(unit, 0.0, 1.0) * 255).astype(np.uint8))
    size = display_size(copy.size, max_side)
    return copy if size == copy.size else copy.resize(size, PIL.Image.BILINEAR)


def outline(image: PIL.Image.Image, mask: np.ndarray) -> PIL.Image.Image:
    """``image`` as RGB with a ring drawn just outside the boolean ``mask`` (same size), so that the
    synthesised pixels themselves stay visible. The ring is about 1/200 of the longer side thick."""
    return figures.outline(image, mask, width=max(1, round(max(image.size) / 200)))
