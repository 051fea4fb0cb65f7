"""The realism probe: held-out real masks filled by a SARD pipeline and measured against the real defects.

Per defect type, up to ``per_defect`` held-out anomalies with a non-empty mask (spread evenly over the type's
held-out list, sorted by file name). Each real mask is placed on the normal training image closest in size
(resized, nearest neighbour; ties go round the images) and painted with :meth:`SARDPipeline.sample_crops`.
Everything is measured on the working crop, at the scale the network paints at:

- the painted defect: the sample inside the mask, the input outside (what is pasted; its luma for a grey
  image, as the pipeline returns it), with :func:`~sard.evaluation.realism.defect_stats`;
- the background drift: :func:`~sard.evaluation.realism.drift` of the sample against the input in the ring
  around the mask, before the paste (zero, bit for bit, under the region constraint);
- the real defect: the same figures on the real anomaly's own working crop.

Item j of a type draws its noise from a generator seeded with ``(seed, type index, j)``: every variant fills
the same masks on the same images with the same seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from .. import image_io
from ..datasets import Anomaly, DatasetError, DefectDataset, load_mask, load_rgb
from ..seeding import seeded_generator
from . import realism


@dataclass(frozen=True)
class ProbeItem:
    """The j-th probed held-out anomaly of a defect type and the normal image its mask is painted on."""

    defect: str
    defect_index: int
    j: int
    anomaly: Anomaly
    canvas: Path

    def generator(self, seed: int) -> torch.Generator:
        return seeded_generator(seed, self.defect_index, self.j, 2)


def _size(path: Path) -> tuple[int, int]:
    with PIL.Image.open(path) as image:  # reads the header only
        return image.size


def probe_items(dataset: DefectDataset, per_defect: int) -> list[ProbeItem]:
    """Up to ``per_defect`` held-out anomalies per defect type (protocol split, empty masks left out)."""
    _, held_out = dataset.split("protocol")
    empty = set(dataset.empty_masks)
    normals = dataset.train_good
    if not normals:
        raise DatasetError(f"{dataset.root} has no normal training images to paint the held-out masks on.")
    sizes = [_size(p) for p in normals]
    items = []
    for d, defect in enumerate(dataset.defect_types):
        candidates = [a for a in held_out.get(defect, []) if a not in empty]
        if not candidates:
            continue
        picks = np.unique(np.linspace(0, len(candidates) - 1, min(per_defect, len(candidates))).round().astype(int))
        for j, index in enumerate(picks):
            anomaly = candidates[int(index)]
            width, height = _size(anomaly.image)
            best = min(range(len(normals)), key=lambda i: (abs(sizes[i][0] - width) + abs(sizes[i][1] - height),
                                                           (i - j) % len(normals)))
            items.append(ProbeItem(defect, d, j, anomaly, normals[best]))
    return items


def resize_mask_inclusive(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A bool mask resized to ``size`` (width, height): a pixel is in it if any part of it was (box filter), so
    thin cracks and one-pixel pits survive shrinking."""
    image = PIL.Image.fromarray(mask.astype(np.uint8) * 255)
    return np.asarray(image.resize(size, PIL.Image.BOX)) > 0


def working_crop(rgb: np.ndarray, mask: np.ndarray, pipe) -> tuple[np.ndarray, np.ndarray]:
    """The crop ``pipe`` works on for an `(H, W, 3)` uint8 image and its bool mask, at working scale
    (:meth:`~sard.SARDPipeline.working_crop`): ``(image (h, w, 3) float grey levels, mask (h, w) bool)``,
    what ``sample_crops`` returns as ``known``."""
    crop = pipe.working_crop(rgb, mask)
    return to_grey_levels(crop.known[0]), crop.work_mask[0, 0].numpy() > 0


def to_grey_levels(crop: torch.Tensor) -> np.ndarray:
    """`(3, h, w)` in [-1, 1] -> `(h, w, 3)` float64 in [0, 255] (not rounded: the figures are exact)."""
    return (crop.permute(1, 2, 0).double().numpy() + 1.0) * 127.5


def as_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


@dataclass
class ProbeTile:
    """What the figure shows for one item: the input crop, the pasted crop and the raw sample (uint8)."""

    known: np.ndarray
    painted: np.ndarray
    sample: np.ndarray
    mask: np.ndarray


def run_probe(pipe, items: list[ProbeItem], seed: int = 0, background: str = "clean", region_constraint: bool = True,
              num_inference_steps: int | None = None, ring_width: int = 3, batch_size: int = 8,
              keep_tiles=()) -> tuple[list[dict], dict[tuple[str, int], ProbeTile]]:
    """Fill every item's mask with ``pipe`` and measure it.

    Returns:
        ``(records, tiles)``: one record per item (defect, j, image, mask, canvas, the painted defect's
        :class:`~sard.evaluation.realism.DefectStats` and ``drift``), and the crops of the items whose
        ``(defect, j)`` is in ``keep_tiles``.
    """
    records, tiles = [], {}
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        images, masks = [], []
        for item in batch:
            canvas = load_rgb(item.canvas)
            images.append(canvas)
            masks.append(resize_mask_inclusive(load_mask(item.anomaly.mask), canvas.size))
        crops = pipe.sample_crops(
            images, masks, defect=[i.defect for i in batch], generator=[i.generator(seed) for i in batch],
            num_inference_steps=num_inference_steps, background=background, region_constraint=region_constraint,
        )
        for item, crop in zip(batch, crops):
            known, sample = to_grey_levels(crop.known), to_grey_levels(crop.sample)
            if image_io.is_grayscale(known):
                # A grey image (one channel, or RGB with equal channels) gets the luma of the network's output.
                known, sample = (np.repeat(realism.luma(x)[..., None], 3, axis=2) for x in (known, sample))
            mask = crop.mask[0].numpy() > 0
            painted = np.where(mask[..., None], sample, known)
            stats = realism.defect_stats(painted, mask, ring_width)
            records.append({"defect": item.defect, "j": item.j, "image": str(item.anomaly.image),
                            "mask": str(item.anomaly.mask), "canvas": str(item.canvas), **stats.to_dict(),
                            "drift": realism.drift(known, sample, mask, ring_width)})
            if (item.defect, item.j) in keep_tiles:
                tiles[(item.defect, item.j)] = ProbeTile(as_uint8(known), as_uint8(painted), as_uint8(sample), mask)
    return records, tiles


def real_records(items: list[ProbeItem], pipe, ring_width: int = 3, keep_tiles=()) -> tuple[list[dict], dict]:
    """The same figures on the real held-out defects, each on its own working crop."""
    records, tiles = [], {}
    for item in items:
        rgb, mask = np.asarray(load_rgb(item.anomaly.image)), load_mask(item.anomaly.mask)
        image, work_mask = working_crop(rgb, mask, pipe)
        stats = realism.defect_stats(image, work_mask, ring_width)
        records.append({"defect": item.defect, "j": item.j, "image": str(item.anomaly.image),
                        "mask": str(item.anomaly.mask), **stats.to_dict()})
        if (item.defect, item.j) in keep_tiles:
            tiles[(item.defect, item.j)] = ProbeTile(as_uint8(image), as_uint8(image), as_uint8(image), work_mask)
    return records, tiles


def summaries(records: list[dict]) -> dict[str, dict[str, float]]:
    """Per defect type and ``all``: ``n``, mean contrast, geometric-mean texture ratio and, where measured, the
    mean drift (see :func:`~sard.evaluation.realism.summarize`)."""
    groups = {}
    for record in records:
        groups.setdefault(record["defect"], []).append(record)
    groups["all"] = records
    out = {}
    for defect, group in groups.items():
        stats = [realism.DefectStats(r["contrast"], r["texture_inside"], r["texture_ring"], r["texture_ratio"])
                 for r in group]
        summary = realism.summarize(stats)
        drifts = [r["drift"] for r in group if "drift" in r and not math.isnan(r["drift"])]
        if drifts:
            summary["drift"] = float(np.mean(drifts))
        out[defect] = summary
    return out
