"""What the Gradio demo (``app.py``) does, without Gradio: reading uploads, checking inputs, display copies,
outlines, and the (image, mask) PNG files to download.

``app.py`` only wires these functions to widgets, so all of this is tested without a browser. Errors are
``ValueError`` with a message that says what to do; the app shows them as ``gr.Error``.

The browser only ever sees 8-bit display copies (at most :data:`MAX_DISPLAY_SIDE` pixels on a side): the
image editor paints on such a copy. The pipeline gets the uploaded file itself, in its own mode and bit depth,
and the painted mask scaled back to the file's size, so the downloaded result equals the upload outside the mask.
"""

from __future__ import annotations

import math
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageFilter
import torch

from . import image_io
from .pipeline import SARDPipeline

# The editor and the result views get copies with at most this many pixels on a side: a 6000 x 4000 photo
# stays responsive in the browser, while the pipeline still works on (and returns) the full-size file.
MAX_DISPLAY_SIDE = 1024
MAX_VARIATIONS = 4
MAX_SEED = 2**31 - 1
# Semi-transparent red: the paint of the mask brush and of the example masks, so the surface stays visible.
MASK_PAINT = (255, 59, 48, 150)
OUTLINE_COLOR = (255, 59, 48)
# Download folders older than this are deleted when new ones are written: long enough to download, and the
# disk use of a long-running demo stays bounded.
OUTPUT_MAX_AGE_S = 3600


class LazyPipeline:
    """A pipeline loaded on first use, once, also when several requests ask for it at the same time.

    Args:
        pipe_or_loader ([`SARDPipeline`] or callable): a pipeline, or a function without arguments that
            returns one (e.g. ``lambda: SARDPipeline.from_pretrained(path)``).
    """

    def __init__(self, pipe_or_loader: SARDPipeline | Callable[[], SARDPipeline]):
        self._pipe = pipe_or_loader if isinstance(pipe_or_loader, SARDPipeline) else None
        self._loader = None if self._pipe is not None else pipe_or_loader
        self._lock = threading.Lock()

    def get(self) -> SARDPipeline:
        with self._lock:
            if self._pipe is None:
                self._pipe = self._loader()
            return self._pipe


@dataclass
class Generation:
    """One press of Generate: display copies for the page and the full-size files for download."""

    seed: int
    before: PIL.Image.Image  # the input, display copy
    afters: list[PIL.Image.Image]  # one display copy per variation
    mask: PIL.Image.Image  # the binary mask at display size, "L"
    outlined: list[PIL.Image.Image]  # each variation with the mask's outline drawn around it
    files: list[str]  # one PNG per variation, then the mask PNG, all at the input's size


def checkpoint_problem(checkpoint: str) -> str | None:
    """Why ``checkpoint`` cannot be loaded as a checkpoint, or None. A hub id (``owner/name``) is only
    checked when it is loaded."""
    path = Path(checkpoint).expanduser()
    if path.is_dir():
        if (path / "model_index.json").is_file():
            return None
        return (f"{checkpoint} is not a SARD checkpoint (it has no model_index.json): pass the folder that "
                "train_sard.py saved the pipeline to, or one of its checkpoint-* folders.")
    if path.exists():
        return f"{checkpoint} is a file: pass a checkpoint folder or a Hugging Face Hub id (owner/name)."
    if checkpoint.count("/") == 1 and not checkpoint.startswith((".", "/", "~")):
        return None
    return f"There is no folder {checkpoint}: pass a checkpoint folder or a Hugging Face Hub id (owner/name)."


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
    if not mask.any():
        raise ValueError("The mask is empty: paint over the region where the defect should appear.")
    return mask


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


def editor_value(image: PIL.Image.Image, mask: np.ndarray | None = None) -> dict:
    """What the image editor shows for ``image``: its display copy, and ``mask`` (if given) painted on a layer."""
    background = display_copy(image)
    layers = [paint_layer(mask, background.size)] if mask is not None else []
    return {"background": background, "layers": layers, "composite": None}


def paint_layer(mask: np.ndarray, size: tuple[int, int] | None = None) -> PIL.Image.Image:
    """An RGBA editor layer with :data:`MASK_PAINT` where the boolean `(H, W)` ``mask`` is set, transparent
    elsewhere, resized (nearest) to ``size = (W, H)`` if given. Read back by ``mask_from_editor``."""
    mask = np.asarray(mask, dtype=bool)
    layer = np.zeros((*mask.shape, 4), np.uint8)
    layer[mask] = MASK_PAINT
    image = PIL.Image.fromarray(layer)
    return image if size is None or size == image.size else image.resize(size, PIL.Image.NEAREST)


def editor_mask(value: dict | None, image_size: tuple[int, int]) -> np.ndarray:
    """The mask painted in the editor as a boolean `(H, W)` array at the image's ``(W, H)`` size.

    Raises:
        ValueError: no image, nothing painted, or a canvas that does not belong to this image.
    """
    painted = image_io.mask_from_editor(value)
    if painted.size not in (tuple(image_size), display_size(image_size)):
        raise ValueError(
            f"The canvas is {painted.size[0]} x {painted.size[1]} pixels and does not belong to the "
            f"{image_size[0]} x {image_size[1]} image: upload the image again and repaint the mask."
        )
    mask = check_mask(np.asarray(painted) > 0)
    if painted.size != tuple(image_size):  # painted on the display copy: back to the file's size
        mask = np.asarray(PIL.Image.fromarray(mask).resize(image_size, PIL.Image.NEAREST))
    return mask


def outline(image: PIL.Image.Image, mask: np.ndarray, color=OUTLINE_COLOR) -> PIL.Image.Image:
    """``image`` as RGB with a ring drawn just outside the boolean ``mask`` (same size), so that the
    synthesised pixels themselves stay visible. The ring is about 1/200 of the longer side thick."""
    width = max(1, round(max(image.size) / 200))
    region = PIL.Image.fromarray(np.asarray(mask, dtype=bool).astype(np.uint8) * 255)
    grown = np.asarray(region.filter(PIL.ImageFilter.MaxFilter(2 * width + 1))) > 0
    rgb = np.array(image.convert("RGB"))
    rgb[grown & ~np.asarray(mask, dtype=bool)] = color
    return PIL.Image.fromarray(rgb)


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


def prune_outputs(directory: str | os.PathLike, max_age_s: float = OUTPUT_MAX_AGE_S) -> None:
    """Delete the download folders (``sard-*``) in ``directory`` that are older than ``max_age_s`` seconds."""
    cutoff = time.time() - max_age_s
    for folder in Path(directory).glob("sard-*"):
        try:
            if folder.is_dir() and folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:  # deleted meanwhile by another request
            pass


def write_pngs(images: dict[str, PIL.Image.Image], directory: str | os.PathLike | None = None) -> list[str]:
    """Save each ``{file name stem: image}`` as PNG (TIFF for float and 32-bit images, which PNG cannot hold)
    into a new ``sard-*`` folder in ``directory`` (default: ``sard-demo`` in the system's temporary folder),
    after deleting that directory's download folders older than :data:`OUTPUT_MAX_AGE_S`. Each file is written
    under a temporary name and renamed when complete, so a failed save leaves no partial file behind."""
    directory = Path(directory) if directory is not None else Path(tempfile.gettempdir()) / "sard-demo"
    directory.mkdir(parents=True, exist_ok=True)
    prune_outputs(directory)
    folder = Path(tempfile.mkdtemp(prefix="sard-", dir=directory))
    paths = []
    for stem, image in images.items():
        lossless_png = image.mode != "F" and not (image.mode == "I" and image.getextrema()[1] > 65535)
        path = folder / f"{stem}.{'png' if lossless_png else 'tiff'}"
        partial = path.with_name(f".{path.name}.partial")
        image.save(partial, format="PNG" if lossless_png else "TIFF")
        os.replace(partial, path)
        paths.append(str(path))
    return paths


def generate(
    pipe: SARDPipeline,
    image: PIL.Image.Image,
    mask: np.ndarray,
    defect: str | None,
    seed: int,
    steps: int,
    count: int = 1,
    stem: str = "image",
    directory: str | os.PathLike | None = None,
) -> Generation:
    """Paint ``count`` variations (seeds ``seed``, ``seed + 1``, ...) of ``defect`` into ``mask`` on ``image``.

    Args:
        pipe ([`SARDPipeline`]): the model.
        image (`PIL.Image.Image`): the full-size input, any mode (see :func:`read_image`).
        mask (`np.ndarray`): boolean `(H, W)`, the image's size, True = defect.
        defect (`str`, *optional*): one of ``pipe.defect_types``; None: any.
        seed (`int`), steps (`int`), count (`int`): as checked by :func:`resolve_seed` and :func:`check_options`.
        stem (`str`): the start of the downloaded files' names, e.g. the upload's name.
        directory (`str`, *optional*): where the download folder is created.
    """
    defect, steps, count = check_options(pipe, defect, steps, count)
    generators = [torch.Generator().manual_seed(seed + i) for i in range(count)]
    results = pipe([image] * count, mask, defect=defect, num_inference_steps=steps, generator=generators).images
    levels = display_levels(image)
    before = display_copy(image, levels)
    shown_mask = np.asarray(PIL.Image.fromarray(mask).resize(before.size, PIL.Image.NEAREST))
    afters = [display_copy(result, levels) for result in results]
    # "Any type" of a one-type model is that type; with several, each variation draws its own.
    types = pipe.defect_types
    name = f"{stem}_{defect or (types[0] if len(types) == 1 else 'defect')}"
    pngs = {f"{name}_seed{seed + i}": result for i, result in enumerate(results)}
    pngs[f"{stem}_mask"] = PIL.Image.fromarray(mask.astype(np.uint8) * 255)
    return Generation(
        seed=seed,
        before=before,
        afters=afters,
        mask=PIL.Image.fromarray(shown_mask.astype(np.uint8) * 255),
        outlined=[outline(after, shown_mask) for after in afters],
        files=write_pngs(pngs, directory),
    )
