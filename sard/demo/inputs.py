"""The demo's inputs, checked: uploaded files, the seed, and the options of a request against its model."""

from __future__ import annotations

import math
import os
import secrets

import numpy as np
import PIL.Image

from .. import image_io
from ..pipeline import SARDPipeline

MAX_VARIATIONS = 4
MAX_SEED = 2**31 - 1


def file_path(value) -> str | None:
    """The local path of an uploaded file, as Gradio passes it: a path, a ``FileData`` or its dict."""
    if value is None or isinstance(value, (str, os.PathLike)):
        return None if value is None else os.fspath(value)
    if isinstance(value, dict):
        return value.get("path")
    return getattr(value, "path", None)


def read_image(path: str | os.PathLike | None) -> PIL.Image.Image:
    """The uploaded image with its own pixels and mode (16-bit stays 16-bit); palette images come as RGB(A).

    Raises:
        ValueError: no file, not an image, or too large.
    """
    if path is None:
        raise ValueError("Upload an image first (or pick an example), then paint the region for the defect.")
    decoded = image_io.decode_image(path)
    return image_io.encode_image(decoded.pixels, decoded, "pil")


def read_mask(path: str | os.PathLike | None, image_size: tuple[int, int]) -> np.ndarray:
    """A mask file as a boolean `(H, W)` array (white, or opaque paint, = defect) of the image's ``(W, H)`` size.

    Raises:
        ValueError: no file, not an image, another size than the image, or nothing marked.
    """
    if path is None:
        raise ValueError("Pass a mask image as well: white where the defect should go, black elsewhere.")
    mask = image_io.decode_mask(path)
    if mask.shape[::-1] != tuple(image_size):
        raise ValueError(
            f"The mask is {mask.shape[1]} x {mask.shape[0]} pixels but the image is {image_size[0]} x "
            f"{image_size[1]}: pass a mask of the image's size (white = defect)."
        )
    return check_mask(mask)


def check_mask(mask: np.ndarray) -> np.ndarray:
    """``mask`` itself, unless nothing is marked in it.

    Raises:
        ValueError: an empty mask.
    """
    if not mask.any():
        raise ValueError("The mask is empty: paint over the region where the defect should appear.")
    return mask


def _whole_number(value, low: int, high: int) -> int | None:
    """``value`` (a number or its text, as API clients may send it) as an int in ``[low, high]``, else None:
    NaN, infinities, fractions, other types and out-of-range values all end in one clear message."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if not math.isfinite(number) or number != math.floor(number) or not low <= number <= high:
        return None
    return int(number)


def resolve_seed(seed, randomize: bool) -> int:
    """The seed to use: a fresh random one when ``randomize``, else ``seed`` checked to be in ``[0, MAX_SEED]``."""
    if randomize:
        return secrets.randbelow(MAX_SEED + 1)
    checked = _whole_number(seed, 0, MAX_SEED)
    if checked is None:
        raise ValueError(f"The seed must be a whole number from 0 to {MAX_SEED}, got {seed!r:.40}.")
    return checked


def check_options(pipe: SARDPipeline, defect: str | None, steps, count) -> tuple[str | None, int, int]:
    """``defect``, ``steps`` and ``count`` checked against the checkpoint. An empty ``defect`` means any type."""
    if defect and defect not in pipe.defect_types:
        raise ValueError(f"Unknown defect type {defect!r}; this model knows: {', '.join(pipe.defect_types)}.")
    most = pipe.scheduler.config.num_train_timesteps
    checked_steps = most if steps is None or _whole_number(steps, 0, 0) == 0 else _whole_number(steps, 1, most)
    if checked_steps is None:
        raise ValueError(f"Steps must be a whole number from 1 to {most}, got {steps!r:.40}.")
    checked_count = _whole_number(count, 1, MAX_VARIATIONS)
    if checked_count is None:
        raise ValueError(f"Variations must be from 1 to {MAX_VARIATIONS}, got {count!r:.40}.")
    return defect or None, checked_steps, checked_count
