"""DRAEM's simulated anomalies (Zavrtanik et al., ICCV 2021): a Perlin-noise mask filled with a foreign
texture, augmented and blended in.

The recipe of their ``data_loader.py``: the texture image is resized to the image, three of ten
augmentations are applied in random order, the mask is Perlin noise (scale 2^[0, 6), threshold 0.5), and
inside it ``out = (1 - beta) * texture + beta * image`` with beta uniform in [0, 0.8). DRAEM draws
textures from DTD; here any folder of images serves (by default, images of the other categories).
"""

from __future__ import annotations

import numpy as np
import PIL.Image
import PIL.ImageEnhance
import PIL.ImageOps

from .perlin import perlin_mask


def _gamma(image: PIL.Image.Image, rng: np.random.Generator) -> PIL.Image.Image:
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    gammas = rng.uniform(0.5, 2.0, size=3)  # imgaug GammaContrast((0.5, 2.0), per_channel=True)
    return PIL.Image.fromarray(np.rint(255.0 * pixels**gammas).astype(np.uint8))


def _brightness(image: PIL.Image.Image, rng: np.random.Generator) -> PIL.Image.Image:
    pixels = np.asarray(image, dtype=np.float32) * rng.uniform(0.8, 1.2) + rng.uniform(-30, 30)
    return PIL.Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))


def _sharpness(image: PIL.Image.Image, rng: np.random.Generator) -> PIL.Image.Image:
    return PIL.ImageEnhance.Sharpness(image).enhance(rng.uniform(0.0, 2.0))


def _hue_saturation(image: PIL.Image.Image, rng: np.random.Generator) -> PIL.Image.Image:
    hsv = np.asarray(image.convert("HSV"), dtype=np.int16)
    shift = rng.integers(-50, 51, size=2)  # imgaug AddToHueAndSaturation((-50, 50), per_channel=True)
    hsv[..., 0] = (hsv[..., 0] + shift[0]) % 256
    hsv[..., 1] = np.clip(hsv[..., 1] + shift[1], 0, 255)
    return PIL.Image.fromarray(hsv.astype(np.uint8), mode="HSV").convert("RGB")


def _solarize(image: PIL.Image.Image, rng: np.random.Generator) -> PIL.Image.Image:
    return PIL.ImageOps.solarize(image, int(rng.integers(32, 129)))


def _posterize(image: PIL.Image.Image, rng: np.random.Generator) -> PIL.Image.Image:
    return PIL.ImageOps.posterize(image, int(rng.integers(1, 9)))


def _invert(image: PIL.Image.Image, rng: np.random.Generator) -> PIL.Image.Image:
    return PIL.ImageOps.invert(image)


def _autocontrast(image: PIL.Image.Image, rng: np.random.Generator) -> PIL.Image.Image:
    return PIL.ImageOps.autocontrast(image)


def _equalize(image: PIL.Image.Image, rng: np.random.Generator) -> PIL.Image.Image:
    return PIL.ImageOps.equalize(image)


def _rotate(image: PIL.Image.Image, rng: np.random.Generator) -> PIL.Image.Image:
    return image.rotate(rng.uniform(-45, 45), resample=PIL.Image.BILINEAR)


TEXTURE_AUGMENTATIONS = (_gamma, _brightness, _sharpness, _hue_saturation, _solarize, _posterize, _invert,
                         _autocontrast, _equalize, _rotate)


def augment_texture(texture: PIL.Image.Image, rng: np.random.Generator, count: int = 3) -> np.ndarray:
    """Three of DRAEM's ten augmentations, drawn without replacement, in random order. Returns uint8 RGB."""
    image = texture.convert("RGB")
    for index in rng.permutation(len(TEXTURE_AUGMENTATIONS))[:count]:
        image = TEXTURE_AUGMENTATIONS[index](image, rng)
    return np.asarray(image)


def draem_anomaly(
    rgb: np.ndarray,
    texture: PIL.Image.Image,
    foreground: np.ndarray,
    rng: np.random.Generator,
    max_beta: float = 0.8,
    threshold: float = 0.5,
    max_tries: int = 100,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """One DRAEM anomaly in the `(H, W, 3)` uint8 image ``rgb``.

    Args:
        texture (`PIL.Image.Image`): the foreign texture, resized to the image.
        foreground (`np.ndarray`): `(H, W)` bool; the mask is the Perlin mask on the foreground.
        max_beta (`float`): beta, the share of the image kept inside the mask, is uniform in [0, max_beta).

    Returns:
        `(image, mask, info)`: the image changes only inside the non-empty mask.

    Raises:
        RuntimeError: no Perlin draw in ``max_tries`` fell on the foreground (a product of a few pixels).
    """
    height, width = rgb.shape[:2]
    for _ in range(max_tries):
        mask = perlin_mask((height, width), rng, threshold=threshold) & foreground
        if mask.any():
            break
    else:
        raise RuntimeError(f"No Perlin mask fell on the product in {max_tries} draws; check the foreground.")
    fill = augment_texture(texture.convert("RGB").resize((width, height), PIL.Image.BILINEAR), rng)
    beta = float(rng.uniform(0.0, max_beta))
    blended = np.rint((1.0 - beta) * fill + beta * rgb.astype(np.float64)).clip(0, 255).astype(np.uint8)
    out = np.where(mask[..., None], blended, rgb)
    return out, mask, {"beta": round(beta, 4)}
