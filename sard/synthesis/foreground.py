"""Where the product is in a normal image, so that synthetic defects stay on it.

MVTec-AD objects (a screw, a pill, a bottle) lie on a plain background; textures and close-ups (a tile,
a ball screw's thread) fill the frame. The estimate is the classic one for a product on a plain
background: the background colour is the median of the image's border, the product is whatever differs
from it by more than an Otsu threshold, closed and with its holes filled. A border that is not plain means
the product touches it all round: the whole frame is the product. :meth:`Foreground.check` then tests the
estimator on the training anomalies, whose defects lie on the product by definition: if the estimate
misses their masks, the category is treated as filling the frame.
"""

from __future__ import annotations

import numpy as np
import PIL.Image
import PIL.ImageDraw
import PIL.ImageFilter

from .. import image_io


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """The threshold that maximises the between-class variance of ``values`` (Otsu, 1979)."""
    hist, edges = np.histogram(values, bins=bins)
    centers = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(hist).astype(np.float64)
    total = weight[-1]
    if total == 0:
        return float(edges[0])
    mean = np.cumsum(hist * centers)
    w0, w1 = weight, total - weight
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mean[-1] * w0 / total - mean) ** 2 / (w0 * w1)
    between[~np.isfinite(between)] = 0.0
    return float(centers[int(np.argmax(between))])


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` with every region not connected to the border through background filled in."""
    padded = np.pad(mask, 1).astype(np.uint8) * 255
    image = PIL.Image.fromarray(padded).copy()  # a copy: an image sharing the array's buffer ignores the fill
    PIL.ImageDraw.floodfill(image, (0, 0), 128)  # the background reachable from outside
    return (np.asarray(image) != 128)[1:-1, 1:-1]


def estimate_foreground(
    rgb: np.ndarray,
    work_size: int = 128,
    border: float = 0.03,
    max_border_spread: float = 20.0,
    min_contrast: float = 24.0,
) -> np.ndarray:
    """The product's pixels in one image.

    Args:
        rgb (`np.ndarray`): `(H, W, 3)` uint8.
        work_size (`int`): the estimate is made with the longer side at most this long, then resized back.
        border (`float`): width of the border ring that gives the background colour, as a fraction of the
            shorter side.
        max_border_spread (`float`): the 90th percentile of the ring's distances to its median colour above
            which the border is not plain (the product fills the frame), in 8-bit levels.
        min_contrast (`float`): the smallest colour distance that counts as product, in 8-bit levels.

    Returns:
        `np.ndarray`: `(H, W)` bool; all True when the product fills the frame or nothing stands out.
    """
    height, width = rgb.shape[:2]
    full = np.ones((height, width), dtype=bool)
    scale = min(1.0, work_size / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = np.asarray(PIL.Image.fromarray(rgb).resize(size, PIL.Image.BILINEAR), dtype=np.float32)
    h, w = small.shape[:2]
    b = max(1, round(border * min(h, w)))
    if 2 * b >= min(h, w):
        return full
    ring = np.concatenate([small[:b].reshape(-1, 3), small[-b:].reshape(-1, 3),
                           small[b:-b, :b].reshape(-1, 3), small[b:-b, -b:].reshape(-1, 3)])
    background = np.median(ring, axis=0)
    if np.percentile(np.linalg.norm(ring - background, axis=1), 90) > max_border_spread:
        return full
    distance = np.linalg.norm(small - background, axis=2)
    product = distance > max(otsu_threshold(distance), min_contrast)
    # Close small gaps (a dark stripe across a bright product), then fill what the outline encloses.
    k = 2 * max(1, round(0.02 * max(h, w))) + 1
    image = PIL.Image.fromarray(product.astype(np.uint8) * 255)
    image = image.filter(PIL.ImageFilter.MaxFilter(k)).filter(PIL.ImageFilter.MinFilter(k))
    product = _fill_holes(image_io.decode_mask(image))
    if not 0.01 <= product.mean() <= 0.95:
        return full
    resized = PIL.Image.fromarray(product.astype(np.uint8) * 255).resize((width, height), PIL.Image.NEAREST)
    return image_io.decode_mask(resized)


class Foreground:
    """Foreground masks of a category's images, or the whole frame where the product fills it.

    Args:
        enabled (`bool`): False: every pixel is foreground.
        min_coverage (`float`): :meth:`check` disables the estimate when the median fraction of the
            training masks it covers is below this.
    """

    def __init__(self, enabled: bool = True, min_coverage: float = 0.9):
        self.enabled = enabled
        self.min_coverage = min_coverage
        self.coverage: float | None = None

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        if not self.enabled:
            return np.ones(rgb.shape[:2], dtype=bool)
        return estimate_foreground(rgb)

    def check(self, pairs: list[tuple[np.ndarray, np.ndarray]], limit: int = 24) -> Foreground:
        """Test the estimator on anomalous images ``(rgb, mask)``: their defects lie on the product. Sets
        :attr:`coverage` and disables the estimate when it misses the masks. Returns self."""
        if not self.enabled or not pairs:
            return self
        step = max(1, len(pairs) // limit)
        covered = []
        for rgb, mask in pairs[::step][:limit]:
            if mask.any():
                covered.append(float((estimate_foreground(rgb) & mask).sum() / mask.sum()))
        self.coverage = float(np.median(covered)) if covered else None
        if self.coverage is not None and self.coverage < self.min_coverage:
            self.enabled = False
        return self

    def describe(self) -> str:
        if self.coverage is None:
            return "estimated per image" if self.enabled else "off (whole frame)"
        state = "estimated per image" if self.enabled else "whole frame (the estimate missed the training masks)"
        return f"{state}; median coverage of the training masks {self.coverage:.2f}"
