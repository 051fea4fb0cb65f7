"""One press of Generate: the variations, their display copies for the page, and the PNG files to download."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from ..files import atomic_path
from ..pipeline import SARDPipeline
from .display import display_copy, display_levels, outline
from .inputs import check_options

# Download folders older than this are deleted when new ones are written: long enough to download, and the
# disk use of a long-running demo stays bounded.
OUTPUT_MAX_AGE_S = 3600


@dataclass
class Generation:
    """One press of Generate: display copies for the page and the full-size files for download."""

    seed: int
    before: PIL.Image.Image  # the input, display copy
    afters: list[PIL.Image.Image]  # one display copy per variation
    mask: PIL.Image.Image  # the binary mask at display size, "L"
    outlined: list[PIL.Image.Image]  # each variation with the mask's outline drawn around it
    files: list[str]  # one PNG per variation, then the mask PNG, all at the input's size


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
        with atomic_path(path) as temporary:
            image.save(temporary, format="PNG" if lossless_png else "TIFF")
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
        image (`PIL.Image.Image`): the full-size input, any mode (see :func:`sard.demo.inputs.read_image`).
        mask (`np.ndarray`): boolean `(H, W)`, the image's size, True = defect.
        defect (`str`, *optional*): one of ``pipe.defect_types``; None: any.
        seed (`int`), steps (`int`), count (`int`): as checked by :func:`~sard.demo.inputs.resolve_seed` and
            :func:`~sard.demo.inputs.check_options`.
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
