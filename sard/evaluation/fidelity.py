"""Fidelity of a SARD model: held-out real masks painted into held-out normal images, at full resolution.

What is painted and compared (per defect type of one category):

- **Items.** Up to ``per_defect`` held-out anomalies of the protocol split (the first third of each type trains
  the generator; these come from the other two thirds), empty masks left out, spread evenly over the type's
  list sorted by file name. Each is paired with a held-out normal image (``test/good``; ``train/good``, with a
  note, where a root has none), the one closest in size (ties go round the images).
- **One pixel grid per pair.** Where the normal image has another size than the anomaly, the anomaly (image
  and mask) is resized to the normal image's size (antialiased bilinear; the mask by area, a pixel in it if at
  least half of it was), so that the real defect and the painted one have the very same mask, pixel for pixel,
  and the same scale. On the real data sets the factor is 0.95-1.05 for most magnetic tiles; a ball screw of
  770 x 322 is shrunk to 565 x 230 (0.73), never enlarged there.
- **Painted.** ``pipe(image, mask).images``: the full-resolution output a user gets, in the normal image's
  own mode; seed 0 of every item for the figures and the classifier test, ``seeds`` seeds for the first
  ``diversity_masks`` items (spread evenly) for the diversity.

The figures, in grey levels (luma, 0-255) at the image's own scale except ``colour``, with
:func:`~sard.evaluation.realism.defect_stats` (ring of ``ring_width`` pixels):

- ``texture_ratio``: mean |Laplacian| inside the mask over that in the ring; per type the geometric mean of
  the painted defects, against the real defects' p10, median and p90 (``texture_in_range``: p10 <= painted
  <= p90).
- ``contrast``: mean inside minus mean of the ring; per type the mean, against the real p10..p90.
- ``colour``: the one figure in colour (:func:`hue_difference`, :func:`along_real_hue`): how far the inside's
  mean colour differs in hue, not brightness, from the ring's, measured along the hue the type's real defects
  have against their rings (their mean), in levels 0-255; per type the mean, against the real p10..p90. A
  grey fill where real defects are rust-coloured scores near 0, or below 0 on a rust-lit surface, and falls
  out of range; every figure above is blind to it. 0 on grey-level images.
- ``diversity = seed_std / real_std``: ``seed_std`` is the per-pixel standard deviation across the seeds
  (ddof 1, an unbiased variance per pixel) inside the mask, averaged over the mask and then over the items;
  ``real_std`` is the real defects' spatial standard deviation of grey levels inside their masks (ddof 0),
  averaged over the items. 1 would be a model whose fills vary from seed to seed as much as a real defect
  varies across its own pixels.
- ``c2st``: the classifier two-sample test of :mod:`.c2st` on real against painted crops (seed 0), per
  category (mean held-out accuracy over the folds; ``c2st_std`` its spread over the folds); a defect type's
  row gives the held-out accuracy of the category's classifiers on that type's crops. ``c2st_se`` is the
  binomial standard error ``sqrt(p (1 - p) / 2n)`` of an accuracy on the 2n crops: with 32 masks about 0.06,
  so two models closer than about 0.15 are not told apart; ranking models needs more masks.
- ``c2st_paste``: the first control: the same test between the real defects and the same real defects pasted
  into the normal images inside the same masks (copy-paste of the real defect itself). The classifier sees
  the same pixels inside the mask; what tells them apart is their level against a ring of another surface.
- ``c2st_roundtrip`` and ``texture_roundtrip``: the second control: the real defects resampled to the model's
  working scale and back (:func:`working_round_trip`), each in its own image: what a model that painted the
  real defect exactly at its working resolution would give, the ceiling its resolution sets. A C2ST near
  this one and a texture ratio near this one mean the model does what its resolution allows.
- ``background_max``: the largest |output - input| outside the mask over every output, in grey levels
  (0-255 of the image's own range): 0 under the region constraint, bit for bit.

Known biases (documented, not corrected): the real images are JPEG (magnetic_tile, ball_screw), so their
defects carry JPEG's 8 x 8 artefacts and painted ones do not; the normal images' own JPEG artefacts stay
outside the mask. The classifier sees the inside of the mask only, at the image's own scale (see
:func:`~sard.evaluation.c2st.defect_crop`): not the background, which differs between anomalous and normal
images for reasons that have nothing to do with the model (real defects bleed past their hand-drawn masks),
and not the seam; the seam's sharpness shows in the texture ratio (the ring's side of the Laplacian).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from .. import cropping, image_io
from ..datasets import Anomaly, DatasetError, DefectDataset, load_mask, load_rgb
from ..seeding import seeded_generator
from . import c2st as c2st_module
from . import realism

C2ST_GOAL = 0.70  # issue #17: a classifier tells painted from real at most this often
DIVERSITY_GOAL = 0.5  # issue #17: seed std at least half the real defects' spatial std
COLUMNS = ("category", "defect", "n", "c2st", "c2st_se", "c2st_std", "c2st_paste", "c2st_roundtrip",
           "texture_ratio", "texture_real_p10", "texture_real_median", "texture_real_p90", "texture_in_range",
           "texture_roundtrip", "contrast", "contrast_real_p10", "contrast_real_median", "contrast_real_p90",
           "contrast_in_range", "seed_std", "real_std", "diversity", "diversity_n", "seeds", "background_max",
           "colour", "colour_real_p10", "colour_real_median", "colour_real_p90", "colour_in_range", "meets_goals")
ITEM_COLUMNS = ("defect", "j", "image", "mask", "canvas", "resized", "real_contrast", "real_texture_ratio",
                "real_std", "roundtrip_texture_ratio", "contrast", "texture_ratio", "seed_std", "background_max",
                "real_colour", "colour", "c2st_real_correct", "c2st_painted_correct")


@dataclass(frozen=True)
class FidelityItem:
    """The j-th held-out anomaly of a defect type and the normal image its mask is painted into."""

    defect: str
    defect_index: int
    j: int
    anomaly: Anomaly
    canvas: Path
    diversity: bool  # painted with every seed, not only seed 0

    def generator(self, seed: int, s: int) -> torch.Generator:
        """The generator of seed ``s`` of this item (a function of ``(seed, type, j, s)`` only)."""
        return seeded_generator(seed, self.defect_index, self.j, s, 17)


def _size(path: Path) -> tuple[int, int]:
    with PIL.Image.open(path) as image:  # reads the header only
        return image.size


def spread(count: int, wanted: int) -> np.ndarray:
    """Up to ``wanted`` indices of ``range(count)`` spread evenly, first and last included."""
    return np.unique(np.linspace(0, count - 1, min(wanted, count)).round().astype(int)) if count else np.zeros(0, int)


def fidelity_items(dataset: DefectDataset, per_defect: int, diversity_masks: int,
                   defect_types: list[str] | None = None) -> tuple[list[FidelityItem], list[str]]:
    """The items (see the module docstring) and notes on what was left out or fell back.

    Args:
        per_defect: held-out anomalies per defect type, at most.
        diversity_masks: of those, how many (spread evenly) are painted with every seed.
        defect_types: the types to measure (default: all of the data set's).
    """
    notes = []
    canvases = dataset.test_good
    if not canvases:
        canvases = dataset.train_good
        notes.append(f"{dataset.root} has no held-out normal images (test/good): painted into the normal "
                     "training images instead.")
    if not canvases:
        raise DatasetError(f"{dataset.root} has no normal images to paint the held-out masks into.")
    sizes = np.log(np.array([_size(p) for p in canvases], dtype=np.float64))
    _, held_out = dataset.split("protocol")
    empty = set(dataset.empty_masks)
    items = []
    for d, defect in enumerate(dataset.defect_types):
        if defect_types is not None and defect not in defect_types:
            continue
        candidates = [a for a in held_out.get(defect, []) if a not in empty and a.mask is not None]
        if not candidates:
            notes.append(f"{defect}: no held-out anomaly with a non-empty mask; not measured.")
            continue
        picks = spread(len(candidates), per_defect)
        diverse = set(spread(len(picks), diversity_masks).tolist())
        for j, index in enumerate(picks):
            anomaly = candidates[int(index)]
            distance = np.abs(sizes - np.log(np.array(_size(anomaly.image), dtype=np.float64))).sum(axis=1)
            # The closest size; among equally close ones, item j takes the j-th (round the images).
            ties = np.flatnonzero(distance <= distance.min() + 1e-12)
            canvas = canvases[int(ties[j % len(ties)])]
            items.append(FidelityItem(defect, d, j, anomaly, canvas, j in diverse))
    return items, notes


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A bool mask resized to ``size = (width, height)``: a pixel is in it if at least half of its area was
    (box filter), or, where that leaves nothing (a pit thinner than the new pixels), the pixel most covered."""
    if mask.shape == (size[1], size[0]):
        return mask.copy()
    cover = np.asarray(PIL.Image.fromarray(mask.astype(np.float32)).resize(size, PIL.Image.BOX))
    resized = cover >= 0.5
    if not resized.any() and mask.any():
        resized[np.unravel_index(int(np.argmax(cover)), cover.shape)] = True
    return resized


def colour_levels(image) -> np.ndarray:
    """`(H, W, 3)` float64 RGB in levels 0-255 of an image of any mode or dtype (PIL, array, path); a grey-level
    image gives three equal channels."""
    decoded = image_io.decode_image(image)
    return image_io.to_unit_rgb(decoded.pixels, decoded).astype(np.float64) * 255.0


def grey_levels(image) -> np.ndarray:
    """`(H, W)` float64 luma in grey levels 0-255 of an image of any mode or dtype (PIL, array, path)."""
    return realism.luma(colour_levels(image))


def hue_difference(rgb: np.ndarray, mask: np.ndarray, ring_width: int = 3) -> np.ndarray:
    """`(3,)`: the mean colour inside ``mask`` minus that of the ring around it, without its grey part, in levels.

    ``d`` = mean RGB inside minus mean RGB of the ring; ``d - mean(d)`` drops the same change in every channel
    (a darker or brighter fill) and keeps the change of hue. A rust-coloured stain on grey metal gives tens of
    levels towards red, a grey fill of any brightness on grey metal 0. NaNs without a ring (a mask that covers
    the image)."""
    around = realism.ring(mask, ring_width)
    if not around.any() or not mask.any():
        return np.full(3, math.nan)
    r, g, b = rgb[mask].mean(axis=0) - rgb[around].mean(axis=0)
    # d - mean(d) from the channels' differences, so that equal channels give exactly 0 (no rounding of a mean)
    return np.array([(r - g) + (r - b), (g - r) + (g - b), (b - r) + (b - g)]) / 3.0


def along_real_hue(real: list[np.ndarray], hues: list[np.ndarray]) -> list[float]:
    """Each of ``hues`` (:func:`hue_difference`) measured along the mean of ``real`` (the hue that real defects
    of one type have against their surface): positive where a fill leans the same way, in levels. All 0 where
    the real defects have no hue (grey-level images), and for NaN hues NaN."""
    finite = [h for h in real if np.isfinite(h).all()]
    direction = np.mean(finite, axis=0) if finite else np.zeros(3)
    length = float(np.linalg.norm(direction))
    if length == 0.0:
        return [math.nan if not np.isfinite(h).all() else 0.0 for h in hues]
    return [float(np.dot(h, direction) / length) for h in hues]


def colour_along_real_hue(results: list[ItemResult]) -> tuple[list[float], list[float]]:
    """The real and the painted defects' hues measured along their own type's real mean hue (a row of several
    types measures each item along its type's)."""
    real, painted = [math.nan] * len(results), [math.nan] * len(results)
    for defect in dict.fromkeys(r.item.defect for r in results):
        index = [i for i, r in enumerate(results) if r.item.defect == defect]
        reals = [results[i].real_hue for i in index]
        for i, a, b in zip(index, along_real_hue(reals, reals),
                           along_real_hue(reals, [results[i].painted_hue for i in index])):
            real[i], painted[i] = a, b
    return real, painted


def background_change(before, after, mask: np.ndarray) -> float:
    """The largest |after - before| outside ``mask`` over the colour channels, in grey levels (0-255 of the
    image's own range, so 16-bit images compare on the same scale)."""
    a, b = image_io.decode_image(before), image_io.decode_image(after)
    if a.pixels.shape != b.pixels.shape:
        raise ValueError(f"The output {b.pixels.shape} does not have the input's shape {a.pixels.shape}.")
    diff = np.abs(b.pixels.astype(np.float64) - a.pixels.astype(np.float64))[~mask]
    return float(diff.max() / a.value_range * 255.0) if diff.size else 0.0


def seed_std(outputs: list[np.ndarray], mask: np.ndarray) -> float:
    """Per-pixel standard deviation across the seeds' `(H, W)` grey-level outputs (ddof 1), averaged over
    ``mask``; NaN for fewer than two outputs."""
    if len(outputs) < 2:
        return math.nan
    stack = np.stack(outputs)[:, mask].astype(np.float64)
    deviation = stack - stack[:1]  # from the first seed: identical seeds give exactly 0
    n = len(outputs)
    variance = (np.square(deviation).sum(axis=0) - np.square(deviation.sum(axis=0)) / n) / (n - 1)
    return float(np.sqrt(np.maximum(variance, 0.0)).mean())


def spatial_std(gray: np.ndarray, mask: np.ndarray) -> float:
    """Standard deviation of the grey levels inside ``mask`` (ddof 0): how much a real defect varies."""
    return float(np.std(gray[mask]))


def in_range(value: float, low: float, high: float) -> bool:
    """``low <= value <= high``; False for a NaN anywhere."""
    return bool(low <= value <= high)


def percentiles(values) -> tuple[float, float, float]:
    """p10, median and p90 (linear interpolation) of the finite values; NaNs when none."""
    values = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)
    if not values.size:
        return math.nan, math.nan, math.nan
    p10, p50, p90 = np.percentile(values, [10, 50, 90])
    return float(p10), float(p50), float(p90)


@dataclass
class ItemResult:
    """What one item gave: the real defect's figures, the painted one's (seed 0), the diversity, the
    classifier's crops (real, painted, and the two controls: the real defect pasted into the normal image, and
    the real defect through the model's working scale in its own image)."""

    item: FidelityItem
    resized: bool
    real: realism.DefectStats
    real_std: float
    painted: realism.DefectStats
    seed_std: float
    background_max: float
    real_crop: np.ndarray
    painted_crop: np.ndarray
    pasted_crop: np.ndarray  # the real defect's pixels pasted into the normal image inside the mask
    roundtrip: realism.DefectStats  # the real defect resampled to the working scale and back, in its own image
    roundtrip_crop: np.ndarray
    real_hue: np.ndarray  # hue_difference of the real defect and of the painted one (seed 0)
    painted_hue: np.ndarray


def _load(path: Path) -> PIL.Image.Image:
    with PIL.Image.open(path) as image:
        image.load()
        return image.copy()


def real_on_canvas(item: FidelityItem, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, bool]:
    """The real anomaly's colour levels `(H, W, 3)` and mask on the canvas's pixel grid (``size = (width,
    height)``), and whether it was resized."""
    image, mask = _load(item.anomaly.image), load_mask(item.anomaly.mask)
    if image.size == size:
        return colour_levels(image), mask, False
    rgb = load_rgb(item.anomaly.image)  # 8-bit RGB whatever the mode, then antialiased bilinear
    return colour_levels(rgb.resize(size, PIL.Image.BILINEAR)), resize_mask(mask, size), True


def working_round_trip(gray: np.ndarray, scale: float) -> np.ndarray:
    """`(H, W)` grey levels resampled by ``scale`` (the scale of the crop the pipeline paints a mask at) and back
    to full size, as the pipeline resamples its crop (antialiased bilinear, :func:`sard.cropping.resize`): the
    detail a model working at that scale can give back at most. Unchanged at scale 1 or more."""
    height, width = gray.shape
    if scale >= 1.0:
        return np.array(gray, dtype=np.float64)
    image = torch.from_numpy(np.ascontiguousarray(gray, dtype=np.float32))[None, None]
    down = cropping.resize(image, (max(1, round(height * scale)), max(1, round(width * scale))))
    return cropping.resize(down, (height, width))[0, 0].double().numpy()


def as_jpeg(image: PIL.Image.Image, quality: int) -> PIL.Image.Image:
    """``image`` saved as a JPEG of ``quality`` (4:4:4, no chroma subsampling) and read back."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality, subsampling=0)
    buffer.seek(0)
    return _load(buffer)


def paint_items(pipe, items: list[FidelityItem], seeds: int, seed: int = 0, ring_width: int = 3,
                crop_size: int = 48, num_inference_steps: int | None = None, batch_size: int = 8,
                progress=None, crop_scale: str = "native", context: int = 0,
                jpeg_quality: int = 0, resolution: int | None = None,
                max_crop_size: int | None = None, grain: bool | None = None) -> list[ItemResult]:
    """Paint every item (seed 0, and ``seeds`` seeds for the diversity items) with ``pipe`` and measure it.

    Args:
        crop_size, crop_scale, context: the classifier's crops (:func:`~sard.evaluation.c2st.defect_crop`).
        jpeg_quality: if set (1-100), every output is saved as a JPEG of this quality and read back before it is
            measured, as the real images were (the background check still compares the output itself).
        resolution, max_crop_size: the working resolution to paint at and the bound on a crop's longer side
            (default: the model's; see :class:`~sard.SARDPipeline`); the working-scale control follows the scale
            each mask is painted at.
        grain: match the surroundings' grain inside the mask (:mod:`sard.grain`; default: the model's setting).
        progress: called with the number of items done, if given.
    """
    resolution = resolution or pipe.config.resolution
    jobs = [(i, s) for i, item in enumerate(items) for s in range(seeds if item.diversity else 1)]
    prepared = {}
    outputs: dict[int, list[np.ndarray]] = {i: [] for i in range(len(items))}
    background = dict.fromkeys(range(len(items)), 0.0)
    hue: dict[int, np.ndarray] = {}  # of each item's first (seed 0) output
    results = []
    done = 0
    for start in range(0, len(jobs), batch_size):
        batch = jobs[start : start + batch_size]
        for i, _ in batch:
            if i not in prepared:
                canvas = _load(items[i].canvas)
                real_rgb, mask, resized = real_on_canvas(items[i], canvas.size)
                prepared[i] = (canvas, real_rgb, mask, resized)
        images = pipe(
            [prepared[i][0] for i, _ in batch], [prepared[i][2] for i, _ in batch],
            defect=[items[i].defect for i, _ in batch], generator=[items[i].generator(seed, s) for i, s in batch],
            num_inference_steps=num_inference_steps, resolution=resolution, max_crop_size=max_crop_size,
            grain=grain,
        ).images
        for (i, _), image in zip(batch, images):
            canvas, _, mask, _ = prepared[i]
            background[i] = max(background[i], background_change(canvas, image, mask))
            if jpeg_quality:
                image = as_jpeg(image, jpeg_quality)
            rgb = colour_levels(image)
            hue.setdefault(i, hue_difference(rgb, mask, ring_width))
            outputs[i].append(realism.luma(rgb))
        finished = sorted({i for i, _ in batch if all(j[0] != i for j in jobs[start + len(batch) :])})
        for i in finished:
            canvas, real_rgb, mask, resized = prepared.pop(i)
            real_gray, painted_gray = realism.luma(real_rgb), outputs[i][0]
            pasted_gray = np.where(mask, real_gray, grey_levels(canvas))
            box = pipe.crop_box(mask, resolution, max_crop_size)
            roundtrip_gray = np.where(mask, working_round_trip(real_gray, box.scale), real_gray)

            def crop(gray, mask=mask):
                return c2st_module.defect_crop(gray, mask, crop_size, context, ring_width, crop_scale)

            results.append(ItemResult(
                items[i], resized, realism.defect_stats(real_gray, mask, ring_width), spatial_std(real_gray, mask),
                realism.defect_stats(painted_gray, mask, ring_width), seed_std(outputs.pop(i), mask),
                background[i], crop(real_gray), crop(painted_gray), crop(pasted_gray),
                realism.defect_stats(roundtrip_gray, mask, ring_width), crop(roundtrip_gray),
                hue_difference(real_rgb, mask, ring_width), hue.pop(i),
            ))
            done += 1
            if progress is not None:
                progress(done)
    return results


AGAINST = ("painted", "pasted", "roundtrip")


def run_c2st(results: list[ItemResult], folds: int = 5, seed: int = 0, steps: int = 200, against: str = "painted"):
    """The classifier two-sample test on the results' crops, each real crop paired with its ``painted`` one, or
    for the controls with its ``pasted`` one (the real defect pasted into the normal image) or its
    ``roundtrip`` one (the real defect through the model's working scale, in its own image)."""
    if against not in AGAINST:
        raise ValueError(f"against must be one of {', '.join(AGAINST)}, got {against!r}.")
    real = np.stack([r.real_crop for r in results])
    other = np.stack([getattr(r, f"{against}_crop") for r in results])
    groups = np.arange(len(results))
    return c2st_module.c2st(real, other, groups, groups, folds=folds, seed=seed, steps=steps)


def _geomean(values) -> float:
    values = [v for v in values if math.isfinite(v) and v > 0]
    return float(np.exp(np.mean(np.log(values)))) if values else math.nan


def _mean(values) -> float:
    values = [v for v in values if math.isfinite(v)]
    return float(np.mean(values)) if values else math.nan


def binomial_se(accuracy: float, count: int) -> float:
    """The standard error ``sqrt(p (1 - p) / N)`` of an accuracy measured on ``count`` held-out samples."""
    return math.sqrt(accuracy * (1 - accuracy) / count) if count and math.isfinite(accuracy) else math.nan


def summary_row(category: str, defect: str, results: list[ItemResult], c2st: float, c2st_std: float,
                seeds: int, c2st_paste: float = math.nan, c2st_roundtrip: float = math.nan) -> dict:
    """One row of ``fidelity.csv`` (see :data:`COLUMNS` and the module docstring) for a group of results."""
    texture = _geomean(r.painted.texture_ratio for r in results)
    contrast = _mean(r.painted.contrast for r in results)
    t10, t50, t90 = percentiles(r.real.texture_ratio for r in results)
    c10, c50, c90 = percentiles(r.real.contrast for r in results)
    diverse = [r for r in results if math.isfinite(r.seed_std)]
    seed_spread = _mean(r.seed_std for r in diverse)
    real_spread = _mean(r.real_std for r in results)
    diversity = seed_spread / real_spread if real_spread > 0 else math.nan
    background = max((r.background_max for r in results), default=math.nan)
    real_colour, painted_colour = colour_along_real_hue(results)
    colour = _mean(painted_colour)
    h10, h50, h90 = percentiles(real_colour)
    row = {"category": category, "defect": defect, "n": len(results), "c2st": c2st,
           "c2st_se": binomial_se(c2st, 2 * len(results)), "c2st_std": c2st_std,
           "c2st_paste": c2st_paste, "c2st_roundtrip": c2st_roundtrip,
           "texture_ratio": texture, "texture_real_p10": t10, "texture_real_median": t50, "texture_real_p90": t90,
           "texture_in_range": in_range(texture, t10, t90),
           "texture_roundtrip": _geomean(r.roundtrip.texture_ratio for r in results),
           "contrast": contrast, "contrast_real_p10": c10,
           "contrast_real_median": c50, "contrast_real_p90": c90, "contrast_in_range": in_range(contrast, c10, c90),
           "seed_std": seed_spread, "real_std": real_spread, "diversity": diversity, "diversity_n": len(diverse),
           "seeds": seeds if diverse else 1, "background_max": background,
           "colour": colour, "colour_real_p10": h10, "colour_real_median": h50, "colour_real_p90": h90,
           "colour_in_range": in_range(colour, h10, h90)}
    row["meets_goals"] = bool(row["texture_in_range"] and diversity >= DIVERSITY_GOAL and background == 0)
    return row


def fidelity_rows(category: str, results: list[ItemResult], tests: dict, seeds: int) -> list[dict]:
    """One row per defect type (in the results' order) and a row ``all`` for the category.

    ``tests`` maps ``painted`` and, where run, the controls ``pasted`` and ``roundtrip`` to their
    :class:`~sard.evaluation.c2st.C2STResult` (see :func:`run_c2st`). A type's ``c2st`` is the held-out accuracy
    on its crops of the category's classifiers (``c2st_std`` NaN); the category row has the test's mean and
    spread over folds. ``c2st_paste`` and ``c2st_roundtrip`` are the same for the controls (NaN if not run).
    A type meets the goals when its texture ratio is inside the real p10..p90, its diversity is at least
    :data:`DIVERSITY_GOAL` and the background is exact; the category when every type does and ``c2st`` is at
    most :data:`C2ST_GOAL`.
    """
    n = len(results)
    defects = list(dict.fromkeys(r.item.defect for r in results))
    rows = []
    for defect in defects:
        index = np.array([i for i, r in enumerate(results) if r.item.defect == defect])
        both = np.concatenate([index, index + n])
        accuracy = {k: tests[k].accuracy_of(both) if k in tests else math.nan for k in AGAINST}
        rows.append(summary_row(category, defect, [results[i] for i in index], accuracy["painted"], math.nan,
                                seeds, accuracy["pasted"], accuracy["roundtrip"]))
    accuracy = {k: tests[k].accuracy if k in tests else math.nan for k in AGAINST}
    spread = tests["painted"].std if "painted" in tests else math.nan
    total = summary_row(category, "all", results, accuracy["painted"], spread, seeds, accuracy["pasted"],
                        accuracy["roundtrip"])
    total["meets_goals"] = bool(all(r["meets_goals"] for r in rows) and total["c2st"] <= C2ST_GOAL
                                and total["background_max"] == 0)
    return [*rows, total]


def item_rows(results: list[ItemResult], c2st_result) -> list[dict]:
    """One row per item of ``fidelity_items.csv`` (see :data:`ITEM_COLUMNS`)."""
    n, rows = len(results), []
    real_colour, painted_colour = colour_along_real_hue(results)
    for i, r in enumerate(results):
        rows.append({
            "defect": r.item.defect, "j": r.item.j, "image": str(r.item.anomaly.image),
            "mask": str(r.item.anomaly.mask), "canvas": str(r.item.canvas), "resized": r.resized,
            "real_contrast": r.real.contrast, "real_texture_ratio": r.real.texture_ratio, "real_std": r.real_std,
            "roundtrip_texture_ratio": r.roundtrip.texture_ratio,
            "contrast": r.painted.contrast, "texture_ratio": r.painted.texture_ratio, "seed_std": r.seed_std,
            "background_max": r.background_max, "real_colour": real_colour[i], "colour": painted_colour[i],
            "c2st_real_correct": bool(c2st_result.correct[i]) if c2st_result else "",
            "c2st_painted_correct": bool(c2st_result.correct[i + n]) if c2st_result else "",
        })
    return rows
