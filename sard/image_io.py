"""Reading images and masks of any kind into arrays, and writing synthesised pixels back.

The pipeline never edits a converted copy of the user's image: it decodes the input into a
:class:`DecodedImage` whose ``pixels`` keep the input's own dtype and values, and writes new values
into that array only where the mask is set. That is what makes the background bit-exact.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch

# Larger inputs are refused with a clear message instead of exhausting memory (24 MP is a 6000 x 4000 photo).
MAX_IMAGE_PIXELS = 50_000_000

# ITU-R 601-2 luma, the weights PIL uses for convert("L").
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

_NATIVE_PIL_MODES = {"L": 1, "LA": 1, "RGB": 3, "RGBA": 3, "I;16": 1, "I": 1, "F": 1}


@dataclass
class DecodedImage:
    """An input image as an array, with what is needed to give it back in the same form.

    Attributes:
        pixels: `(H, W, C)` array in the input's dtype; the first ``color_channels`` channels are colour,
            a last channel beyond them is alpha (passed through untouched).
        color_channels: 1 (grayscale) or 3 (RGB).
        value_range: the value of white: 255 for 8-bit, 65535 for 16-bit, 1.0 for floats.
        kind: "pil", "np" or "pt": the type the input came as.
        pil_mode: the PIL mode of the output when ``kind == "pil"``.
        squeezed: the input array had no channel axis.
        tensor_dtype: the dtype of an input tensor that numpy cannot hold (bfloat16), restored on output.
    """

    pixels: np.ndarray
    color_channels: int
    value_range: float
    kind: str
    pil_mode: str | None = None
    squeezed: bool = False
    tensor_dtype: torch.dtype | None = None

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)``."""
        return self.pixels.shape[0], self.pixels.shape[1]


def _check_size(height: int, width: int, what: str = "image") -> None:
    if height < 1 or width < 1:
        raise ValueError(f"The {what} is empty ({width} x {height} pixels); pass an image with pixels in it.")
    if height * width > MAX_IMAGE_PIXELS:
        raise ValueError(
            f"The {what} is {width} x {height} = {height * width:,} pixels; SARD accepts up to {MAX_IMAGE_PIXELS:,} "
            f"({MAX_IMAGE_PIXELS / 1e6:g} megapixels). Downscale it or cut out the region around the defect first."
        )


def _open_path(path: str | os.PathLike, what: str = "image") -> PIL.Image.Image:
    try:
        with PIL.Image.open(path) as opened:
            _check_size(opened.height, opened.width, what)
            opened.load()
            return opened.copy()
    except (OSError, PIL.Image.DecompressionBombError) as error:
        name = os.fspath(path)
        reason = getattr(error, "strerror", None) or str(error).replace(f" {name!r}", "")  # the path once is enough
        raise ValueError(f"Could not read {name!r} as the {what} ({reason}).") from None


def _decode_pil(image: PIL.Image.Image, what: str) -> DecodedImage:
    _check_size(image.height, image.width, what)
    try:  # an image opened lazily from a truncated file fails only here
        image.load()
    except OSError as error:
        raise ValueError(f"Could not read the {what}'s pixels ({error}); the file is damaged.") from None
    mode = image.mode
    if mode.startswith("I;16"):
        pixels = np.asarray(image).astype(np.uint16)  # native byte order whatever the file's
        return DecodedImage(pixels[..., None], 1, 65535.0, "pil", "I;16")
    if mode == "1":
        image, mode = image.convert("L"), "L"
    elif mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in image.info
        mode = "RGBA" if has_alpha else "RGB"
        image = image.convert(mode)
    elif mode in ("La", "RGBa"):  # premultiplied alpha: PIL converts these only to their straight-alpha modes
        image, mode = image.convert(mode.upper()), mode.upper()
    elif mode not in _NATIVE_PIL_MODES:  # CMYK, YCbCr, LAB, HSV
        image, mode = image.convert("RGB"), "RGB"
    pixels = np.asarray(image)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if mode == "I":
        value_range = 65535.0  # 16-bit PNGs open as "I" in some Pillow versions
    elif mode == "F":
        _check_finite(pixels, what)
        value_range = 1.0
    else:
        value_range = 255.0
    return DecodedImage(pixels.copy(), _NATIVE_PIL_MODES[mode], value_range, "pil", mode)


def _check_finite(pixels: np.ndarray, what: str) -> None:
    if np.issubdtype(pixels.dtype, np.floating) and not np.isfinite(pixels).all():
        raise ValueError(f"The {what} contains NaN or infinite values; pass finite values in [0, 1].")


def _decode_array(pixels: np.ndarray, kind: str, what: str) -> DecodedImage:
    squeezed = pixels.ndim == 2
    if squeezed:
        pixels = pixels[..., None]
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 2, 3, 4):
        raise ValueError(
            f"Expected the {what} as an array of shape (H, W) or (H, W, C) with C in 1-4 (tensors: (C, H, W)), "
            f"got shape {tuple(pixels.shape)}."
        )
    _check_size(pixels.shape[0], pixels.shape[1], what)
    if pixels.dtype == np.uint8:
        value_range = 255.0
    elif pixels.dtype == np.uint16:
        value_range = 65535.0
    elif np.issubdtype(pixels.dtype, np.floating):
        _check_finite(pixels, what)
        value_range = 1.0
    else:
        raise ValueError(f"Unsupported {what} dtype {pixels.dtype}; use uint8, uint16 or floats in [0, 1].")
    color_channels = 1 if pixels.shape[2] <= 2 else 3
    return DecodedImage(np.array(pixels), color_channels, value_range, kind, squeezed=squeezed)


def decode_image(image, what: str = "image") -> DecodedImage:
    """Decode one image: a PIL image of any mode, a path, a numpy array `(H, W[, C])` (uint8, uint16 or
    floats in [0, 1]) or a tensor `(C, H, W)` or `(H, W)` of the same value types.

    Args:
        what: how error messages name the input ("image", "mask", ...).

    Raises:
        ValueError: with what to do, for unreadable files, empty or oversized images, non-finite
            values and unsupported shapes or dtypes.
    """
    if isinstance(image, (str, os.PathLike)):
        return _decode_pil(_open_path(image, what), what)
    if isinstance(image, PIL.Image.Image):
        return _decode_pil(image, what)
    if isinstance(image, torch.Tensor):
        array = image.detach().cpu()
        if array.ndim == 3:
            array = array.permute(1, 2, 0)
        if array.dtype == torch.bfloat16:  # exact in float32, and numpy has no bfloat16
            if array.ndim in (2, 3):
                _check_size(array.shape[0], array.shape[1], what)  # before the float32 copy
            decoded = _decode_array(array.float().numpy(), "pt", what)
            decoded.tensor_dtype = torch.bfloat16
            return decoded
        return _decode_array(array.numpy(), "pt", what)
    if isinstance(image, np.ndarray):
        return _decode_array(image, "np", what)
    raise ValueError(
        f"Expected a PIL image, a file path, a numpy array or a torch tensor as the {what}, "
        f"got {type(image).__name__}."
    )


def to_unit_rgb(pixels: np.ndarray, decoded: DecodedImage) -> np.ndarray:
    """Colour channels of ``pixels`` (a crop of ``decoded.pixels``) as float32 RGB in [0, 1], `(H, W, 3)`."""
    color = pixels[..., : decoded.color_channels].astype(np.float32) / decoded.value_range
    color = np.clip(color, 0.0, 1.0)
    return np.repeat(color, 3, axis=2) if decoded.color_channels == 1 else color


def is_grayscale(pixels: np.ndarray) -> bool:
    """Whether the colour channels of an `(H, W, C>=3)` array are equal everywhere."""
    return bool((pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all())


def to_gray_rgb(rgb: np.ndarray) -> np.ndarray:
    """Float RGB `(H, W, 3)` with each pixel replaced by its luma in all three channels."""
    return np.repeat((rgb @ _LUMA)[..., None], 3, axis=2)


def from_unit_rgb(rgb: np.ndarray, decoded: DecodedImage) -> np.ndarray:
    """Float RGB in [0, 1], `(H, W, 3)`, as colour channels in the dtype and range of ``decoded``."""
    rgb = np.clip(rgb, 0.0, 1.0)
    color = (rgb @ _LUMA)[..., None] if decoded.color_channels == 1 else rgb
    color = color * decoded.value_range
    dtype = decoded.pixels.dtype
    if np.issubdtype(dtype, np.integer):
        color = np.rint(color)
    return color.astype(dtype)


def encode_image(pixels: np.ndarray, decoded: DecodedImage, output_type: str):
    """Give ``pixels`` (same layout as ``decoded.pixels``) back as ``output_type``.

    ``"pil"`` keeps the input's PIL mode (palette and bilevel images come back as RGB(A) and L);
    ``"np"`` and ``"pt"`` keep the input's dtype and layout, so no value outside the mask is converted.
    """
    if output_type == "pil":
        if decoded.kind == "pil":
            return PIL.Image.fromarray(pixels[..., 0] if pixels.shape[2] == 1 else pixels, mode=None)
        return array_to_pil(pixels, decoded.value_range)
    array = pixels[..., 0] if decoded.squeezed else pixels
    if output_type == "np":
        return array
    if output_type == "pt":
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        if decoded.tensor_dtype is not None:
            tensor = tensor.to(decoded.tensor_dtype)
        return tensor if tensor.ndim == 2 else tensor.permute(2, 0, 1)
    raise ValueError(f"output_type must be 'pil', 'np' or 'pt', got {output_type!r}.")


def array_to_pil(pixels: np.ndarray, value_range: float) -> PIL.Image.Image:
    """An `(H, W, C)` array of any supported dtype as an 8-bit PIL image (L, LA, RGB or RGBA)."""
    unit = pixels.astype(np.float32) / value_range
    uint8 = np.rint(np.clip(unit, 0.0, 1.0) * 255.0).astype(np.uint8)
    return PIL.Image.fromarray(uint8[..., 0] if uint8.shape[2] == 1 else uint8)


def decode_mask(mask, size: tuple[int, int] | None = None) -> np.ndarray:
    """A boolean `(H, W)` mask at ``size = (H, W)`` (default: its own): 1 / white = synthesise, binarised at 0.5.

    Accepts what :func:`decode_image` accepts. Where the mask has an alpha channel that is not fully
    opaque (a painted layer), the alpha is the mask; otherwise the luminance is. A mask of another size
    is resized to the image with nearest-neighbour sampling.
    """
    if isinstance(mask, np.ndarray) and mask.dtype == np.bool_:
        mask = mask.astype(np.uint8) * 255
    elif isinstance(mask, torch.Tensor) and mask.dtype == torch.bool:
        mask = mask.to(torch.uint8) * 255
    decoded = decode_image(mask, "mask")
    pixels = decoded.pixels
    if pixels.shape[2] in (2, 4) and (pixels[..., -1] < decoded.value_range).any():
        unit = pixels[..., -1].astype(np.float32) / decoded.value_range
    elif decoded.color_channels == 3:
        unit = to_unit_rgb(pixels, decoded) @ _LUMA
    else:
        unit = pixels[..., 0].astype(np.float32) / decoded.value_range
    binary = unit >= 0.5
    if size is not None and binary.shape != tuple(size):
        resized = PIL.Image.fromarray(binary).resize((size[1], size[0]), PIL.Image.NEAREST)
        binary = np.array(resized, dtype=bool)  # a writable copy (torch warns about read-only arrays)
    return binary
