"""Gradio's image editor and masks: the editor's value (a background and painted layers) read as a mask, and
an image shown in the editor.

The editor's value is ``{"background": image, "layers": [image, ...], "composite": image}``; the paint of a
layer is its alpha (the eraser makes pixels transparent again).
"""

from __future__ import annotations

import numpy as np
import PIL.Image

from .. import image_io
from .display import display_copy, display_size
from .inputs import check_mask

# How far (mean absolute difference, grey levels of 255) the editor's background may be from the display copy
# of the image it is meant to show. The editor hands its canvas back unchanged for the examples (difference 0);
# two different magnetic-tile examples differ by 8.7 to 30.
SAME_IMAGE_TOLERANCE = 3.0


def mask_from_editor(editor_value: dict, threshold: int = 0) -> PIL.Image.Image:
    """The mask painted in an image editor (Gradio's ``ImageEditor`` value) as an "L" image, 255 = defect.

    A pixel belongs to the mask where any drawn layer is painted: its alpha is above ``threshold`` (of 255); a
    layer without alpha is paint wherever it is not black. The eraser makes pixels transparent again. Layers
    of another size are resized (nearest) to the background, whose size the mask has.

    Raises:
        ValueError: when no image was uploaded, or a layer is not an image.
    """
    background = editor_value.get("background") if isinstance(editor_value, dict) else None
    if background is None:
        raise ValueError("Upload an image first, then paint the region for the defect.")
    height, width = image_io.decode_image(background).size
    union = np.zeros((height, width), dtype=bool)
    for layer in editor_value.get("layers") or []:
        if layer is None:
            continue
        paint = _paint(layer)
        if paint.shape != (height, width):
            paint = np.asarray(PIL.Image.fromarray(paint).resize((width, height), PIL.Image.NEAREST))
        union |= paint > threshold
    return PIL.Image.fromarray(union.astype(np.uint8) * 255, mode="L")


def _paint(layer) -> np.ndarray:
    """How much paint a layer (any image :func:`sard.image_io.decode_image` reads) holds: `(H, W)` uint8."""
    decoded = image_io.decode_image(layer, "mask layer")
    pixels = decoded.pixels
    if pixels.shape[2] in (2, 4):  # the last channel is alpha
        alpha = pixels[..., -1].astype(np.float32) / decoded.value_range
        return np.rint(np.clip(alpha, 0.0, 1.0) * 255).astype(np.uint8)
    return (pixels > 0).any(axis=2).astype(np.uint8) * 255


def editor_mask(value: dict | None, image_size: tuple[int, int]) -> np.ndarray:
    """The mask painted in the editor as a boolean `(H, W)` array at the image's ``(W, H)`` size.

    Raises:
        ValueError: no image, nothing painted, or a canvas that does not belong to this image.
    """
    painted = mask_from_editor(value)
    if painted.size not in (tuple(image_size), display_size(image_size)):
        raise ValueError(
            f"The canvas is {painted.size[0]} x {painted.size[1]} pixels and does not belong to the "
            f"{image_size[0]} x {image_size[1]} image: upload the image again and repaint the mask."
        )
    mask = check_mask(np.asarray(painted) > 0)
    if painted.size != tuple(image_size):  # painted on the display copy: back to the file's size
        mask = np.asarray(PIL.Image.fromarray(mask).resize(image_size, PIL.Image.NEAREST))
    return mask


def editor_value(image: PIL.Image.Image) -> dict:
    """What the image editor shows for ``image``: its display copy, with nothing painted yet."""
    return {"background": display_copy(image), "layers": [], "composite": None}


def painted_mask(value: dict | None, image: PIL.Image.Image) -> np.ndarray:
    """The mask painted in the editor on ``image`` (the upload), as a boolean `(H, W)` array of its size.

    Raises:
        ValueError: no image, nothing painted, or the editor shows another image (see :func:`check_background`).
    """
    check_background(value, image)
    return editor_mask(value, image.size)


def check_background(value: dict | None, image: PIL.Image.Image) -> None:
    """Make sure the editor shows ``image``, the upload: its canvas, and the paint on it, must not belong to
    another image (one that the editor still showed while the upload arrived, say).

    Raises:
        ValueError: the editor's background is not the display copy of ``image``.
    """
    background = value.get("background") if isinstance(value, dict) else None
    if background is None:
        raise ValueError("Upload an image first, then paint the region for the defect.")
    shown = _premultiplied_gray(image_io.decode_image(background))
    expected = _premultiplied_gray(image_io.decode_image(display_copy(image)))
    if shown.shape != expected.shape or float(np.abs(shown - expected).mean()) > SAME_IMAGE_TOLERANCE:
        raise ValueError(
            "The editor still shows another image than the one uploaded: wait until it shows yours (and paint the "
            "region there), then press Generate again."
        )


def _premultiplied_gray(decoded: image_io.DecodedImage) -> np.ndarray:
    """Grey levels (0-255) times alpha, so that transparent pixels compare equal whatever their colour."""
    rgb = image_io.to_unit_rgb(decoded.pixels, decoded)
    gray = image_io.to_gray_rgb(rgb)[..., 0] * 255.0
    channels = decoded.pixels.shape[2]
    if channels in (2, 4):
        gray = gray * (decoded.pixels[..., -1].astype(np.float32) / decoded.value_range)
    return gray
