"""Side-by-side figures of synthesised and real defects on held-out masks.

One row per defect type: a normal image with a held-out real mask outlined on it, SARD results for
a few seeds, and the real held-out defect that mask came from. Training writes this grid every
``sample_every`` steps; the repository's ``scripts/defect_figure.py`` makes the README figures with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from ..datasets import Anomaly, DefectDataset, load_mask, load_rgb
from ..figures import outline, tile_grid


@dataclass
class PreviewRow:
    defect: str
    normal: Path
    anomaly: Anomaly


def preview_rows(dataset: DefectDataset, held_out: dict[str, list[Anomaly]], index: int = 0) -> list[PreviewRow]:
    """For each defect type, its ``index``-th held-out anomaly (with a non-empty mask) and the normal test
    image closest to it in size, so the mask can be placed on it without much resizing."""
    normals = dataset.test_good or dataset.train_good
    sizes = [load_rgb(p).size for p in normals]
    empty = set(dataset.empty_masks)
    rows = []
    for defect in dataset.defect_types:
        candidates = [a for a in held_out.get(defect, []) if a not in empty] or [
            a for a in dataset.anomalies[defect] if a not in empty
        ]
        if not candidates:
            continue
        anomaly = candidates[index % len(candidates)]
        width, height = load_rgb(anomaly.image).size
        best = min(range(len(normals)), key=lambda i: abs(sizes[i][0] - width) + abs(sizes[i][1] - height))
        rows.append(PreviewRow(defect, normals[best], anomaly))
    return rows


def _view_box(mask: np.ndarray, min_side: int) -> tuple[int, int, int, int]:
    """A square-ish box around the mask, at least ``min_side`` pixels, inside the image."""
    ys, xs = np.nonzero(mask)
    height, width = mask.shape
    side = max(min_side, int(np.ptp(ys)) + 1 + min_side // 2, int(np.ptp(xs)) + 1 + min_side // 2)
    boxes = []
    for center, length in ((int(ys.mean()), height), (int(xs.mean()), width)):
        size = min(side, length)
        start = max(0, min(center - size // 2, length - size))
        boxes.append((start, start + size))
    (top, bottom), (left, right) = boxes
    return left, top, right, bottom


def defect_grid(pipe, rows: list[PreviewRow], seeds: tuple[int, ...] = (0, 1), tile: int = 160) -> PIL.Image.Image:
    """The figure: per row ``normal + mask | SARD seed s ... | real held-out defect``, cropped around the mask."""
    titles = ["normal + held-out mask", *[f"SARD, seed {s}" for s in seeds], "real held-out defect"]
    grid_rows = []
    for row in rows:
        normal = load_rgb(row.normal)
        real = load_rgb(row.anomaly.image)
        real_mask = load_mask(row.anomaly.mask)
        mask_image = PIL.Image.fromarray(real_mask).resize(normal.size, PIL.Image.NEAREST)
        mask = np.asarray(mask_image)
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        results = pipe([normal] * len(seeds), mask_image, defect=row.defect, generator=generators).images
        box, real_box = _view_box(mask, 64), _view_box(real_mask, 64)
        tiles = [outline(normal, mask).crop(box), *[r.crop(box) for r in results], real.crop(real_box)]
        grid_rows.append((row.defect, tiles))
    return tile_grid(titles, grid_rows, tile, resample=PIL.Image.LANCZOS)
