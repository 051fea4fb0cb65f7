"""CutPaste's synthetic anomalies (Li, Sohn, Yoon, Pfister, CVPR 2021): a patch of the image itself, colour
jittered and pasted elsewhere ("patch"), or a thin rotated strip ("scar").

The recipe of the paper (sizes for 256 x 256 images, scaled here with the square root of the image's area):
patch area 2-15 % of the image, aspect ratio log-uniform in [0.3, 1/0.3]; scar width 2-16 px, height
10-25 px, rotation in [-45, 45] degrees; colour jitter of brightness, contrast, saturation and hue 0.1
(torchvision's ``ColorJitter(0.1, 0.1, 0.1, 0.1)``, in random order). The mask is the pasted region; the
paste position is drawn again until ``min_keep`` of it lies on the product.
"""

from __future__ import annotations

import math

import numpy as np
import PIL.Image
import PIL.ImageEnhance

REFERENCE_SIDE = 256


def color_jitter(patch: PIL.Image.Image, rng: np.random.Generator, strength: float = 0.1) -> PIL.Image.Image:
    """torchvision's ``ColorJitter(strength, strength, strength, strength)``: the four in random order."""
    for index in rng.permutation(4):
        if index == 0:
            patch = PIL.ImageEnhance.Brightness(patch).enhance(rng.uniform(1 - strength, 1 + strength))
        elif index == 1:
            patch = PIL.ImageEnhance.Contrast(patch).enhance(rng.uniform(1 - strength, 1 + strength))
        elif index == 2:
            patch = PIL.ImageEnhance.Color(patch).enhance(rng.uniform(1 - strength, 1 + strength))
        else:
            hsv = np.asarray(patch.convert("HSV")).copy()
            hsv[..., 0] = (hsv[..., 0].astype(np.int16) + round(rng.uniform(-strength, strength) * 255)) % 256
            patch = PIL.Image.fromarray(hsv, mode="HSV").convert("RGB")
    return patch


def _paste(rgb, patch, shape_mask, foreground, rng, min_keep, max_tries):
    """Paste ``patch`` (RGB, with its bool ``shape_mask``) at a random place, mostly on the foreground."""
    height, width = rgb.shape[:2]
    ph, pw = shape_mask.shape
    for attempt in range(max_tries + 1):
        top, left = int(rng.integers(0, height - ph + 1)), int(rng.integers(0, width - pw + 1))
        on_product = foreground[top : top + ph, left : left + pw][shape_mask].mean()
        if on_product >= min_keep or attempt == max_tries:
            break
    mask = np.zeros((height, width), dtype=bool)
    mask[top : top + ph, left : left + pw] = shape_mask
    out = rgb.copy()
    region = out[top : top + ph, left : left + pw]
    region[shape_mask] = np.asarray(patch)[shape_mask]
    return out, mask, {"top": top, "left": left}


def cutpaste_patch(
    rgb: np.ndarray,
    foreground: np.ndarray,
    rng: np.random.Generator,
    area_ratio: tuple[float, float] = (0.02, 0.15),
    aspect_ratio: float = 0.3,
    min_keep: float = 0.5,
    max_tries: int = 20,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """CutPaste: a rectangle of the `(H, W, 3)` uint8 image, jittered and pasted. Returns (image, mask, info)."""
    height, width = rgb.shape[:2]
    area = rng.uniform(*area_ratio) * height * width
    ratio = math.exp(rng.uniform(math.log(aspect_ratio), math.log(1 / aspect_ratio)))
    cut_w = int(np.clip(round(math.sqrt(area * ratio)), 1, width))
    cut_h = int(np.clip(round(math.sqrt(area / ratio)), 1, height))
    top, left = int(rng.integers(0, height - cut_h + 1)), int(rng.integers(0, width - cut_w + 1))
    patch = color_jitter(PIL.Image.fromarray(rgb[top : top + cut_h, left : left + cut_w]), rng)
    out, mask, info = _paste(rgb, patch, np.ones((cut_h, cut_w), dtype=bool), foreground, rng, min_keep, max_tries)
    return out, mask, {"kind": "patch", "from": [top, left], "size": [cut_h, cut_w], **info}


def cutpaste_scar(
    rgb: np.ndarray,
    foreground: np.ndarray,
    rng: np.random.Generator,
    width_range: tuple[float, float] = (2, 16),
    height_range: tuple[float, float] = (10, 25),
    max_rotation: float = 45.0,
    min_keep: float = 0.5,
    max_tries: int = 20,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """CutPaste-scar: a thin strip of the image, jittered, rotated and pasted. Returns (image, mask, info)."""
    height, width = rgb.shape[:2]
    scale = math.sqrt(height * width) / REFERENCE_SIDE
    cut_w = int(np.clip(round(rng.uniform(*width_range) * scale), 1, width))
    cut_h = int(np.clip(round(rng.uniform(*height_range) * scale), 1, height))
    top, left = int(rng.integers(0, height - cut_h + 1)), int(rng.integers(0, width - cut_w + 1))
    patch = color_jitter(PIL.Image.fromarray(rgb[top : top + cut_h, left : left + cut_w]), rng).convert("RGBA")
    angle = float(rng.uniform(-max_rotation, max_rotation))
    patch = patch.rotate(angle, resample=PIL.Image.NEAREST, expand=True)  # transparent corners
    if patch.width > width or patch.height > height:  # a rotated strip longer than a tiny image: undo
        patch = patch.crop((0, 0, min(patch.width, width), min(patch.height, height)))
    shape_mask = np.asarray(patch)[..., 3] > 0
    if not shape_mask.any():
        shape_mask[shape_mask.shape[0] // 2, shape_mask.shape[1] // 2] = True
    out, mask, info = _paste(rgb, patch.convert("RGB"), shape_mask, foreground, rng, min_keep, max_tries)
    return out, mask, {"kind": "scar", "from": [top, left], "size": [cut_h, cut_w], "angle": round(angle, 2),
                       **info}


def cutpaste(rgb: np.ndarray, foreground: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict]:
    """CutPaste (3-way's two anomaly kinds): a patch or a scar with probability 0.5 each."""
    if rng.random() < 0.5:
        return cutpaste_patch(rgb, foreground, rng)
    return cutpaste_scar(rgb, foreground, rng)
