"""The evaluation protocol: per row (a method's synthetic set, several, or none), train the same segmenter on
it plus the normal images (same seed, same budget), and test it on the held-out real anomalies and the
normal test images.

Two ways to see the images, for training and testing alike (``EvalConfig.crop``):

- whole images (``crop: 0``, the papers' protocol): every image resized to ``resolution`` x ``resolution``
  (bilinear; masks nearest), so metrics are counted on resized ground truth;
- crops at the images' own scale (``crop: C``): images keep their size (at most ``max_side`` on the longer
  side, when set; or, with ``fit_side``, all scaled to that longer side, for data sets whose images show one
  field of view at several resolutions, as ball_screw's do), the segmenter trains on ``C`` x ``C`` crops, a
  share ``defect_crop`` of the anomalous ones placed around a defect pixel and the others at random, and is
  tested on each whole image at that scale (fully convolutional; padded to a multiple of 32), counted
  against the ground truth at that scale. A blowhole of 0.2 % of a tile then stays a blob of some 12 x 12
  pixels instead of 5.

The test set is the protocol split of :mod:`sard.datasets`: per defect type the two thirds after the first
floor(n/3) by file name, empty masks included (all background), plus ``test/good``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

from .. import files, image_io
from ..datasets import DefectDataset, load_rgb
from .config import EvalConfig
from .metrics import Confusion
from .segmenters import build_segmenter


def working_size(size: tuple[int, int], max_side: int = 0, fit_side: int = 0) -> tuple[int, int]:
    """``(width, height)`` of an image at the working scale: its own, scaled down so that its longer side is
    at most ``max_side`` (0: never scaled down), or scaled up or down so that its longer side is ``fit_side``
    (when set; for data sets whose images show the same field of view at different resolutions)."""
    width, height = size
    target = fit_side or (max_side if max_side and max(width, height) > max_side else 0)
    if not target or max(width, height) == target:
        return width, height
    factor = target / max(width, height)
    return max(1, round(width * factor)), max(1, round(height * factor))


def load_image(path: str | Path, resolution: int = 0, max_side: int = 0, fit_side: int = 0) -> torch.Tensor:
    """`(3, H, W)` uint8: resized to ``resolution`` x ``resolution`` (bilinear) when it is set, else at the
    working scale of :func:`working_size`."""
    image = load_rgb(Path(path))
    size = (resolution, resolution) if resolution else working_size(image.size, max_side, fit_side)
    if size != image.size:
        image = image.resize(size, PIL.Image.BILINEAR)
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)


def load_target(path: str | Path | None, resolution: int = 0, size: tuple[int, int] | None = None) -> torch.Tensor:
    """`(H, W)` bool, resized by nearest neighbour to ``resolution`` x ``resolution`` or to ``size``
    ``(width, height)``; None (a normal image) is all background."""
    size = (resolution, resolution) if resolution else size
    if path is None:
        return torch.zeros(size[1], size[0], dtype=torch.bool)
    return torch.from_numpy(image_io.decode_mask(Path(path), None if size is None else (size[1], size[0])))


def load_pairs(records: list[dict], config: EvalConfig) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The images and masks of manifest-like records (``image``, ``mask`` or None) as the config sees them."""
    resolution = 0 if config.crop else config.resolution
    images = [load_image(r["image"], resolution, config.max_side, config.fit_side) for r in records]
    masks = [load_target(r["mask"], resolution, (im.shape[2], im.shape[1])) for r, im in zip(records, images)]
    return images, masks


def random_crop(image: torch.Tensor, mask: torch.Tensor, size: int, rng: np.random.Generator,
                around_defect: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A ``size`` x ``size`` crop of `(3, H, W)` ``image`` and `(H, W)` ``mask``, at a uniformly random place,
    or (``around_defect``, when the mask has a defect pixel) at a random place that holds a defect pixel
    drawn uniformly from the mask. Where the image is smaller than the crop it is padded with zeros and the
    third output, the `(size, size)` bool map of real pixels, is False there."""
    height, width = mask.shape
    span_y, span_x = max(0, height - size), max(0, width - size)
    defect = torch.nonzero(mask) if around_defect else None
    if defect is not None and len(defect):
        y, x = (int(v) for v in defect[int(rng.integers(len(defect)))])
        # the pixel lands anywhere in the crop, the crop stays inside the image where it fits
        top = int(np.clip(y - rng.integers(size), 0, span_y))
        left = int(np.clip(x - rng.integers(size), 0, span_x))
    else:
        top, left = int(rng.integers(span_y + 1)), int(rng.integers(span_x + 1))
    image = image[:, top : top + size, left : left + size]
    mask = mask[top : top + size, left : left + size]
    valid = torch.ones(size, size, dtype=torch.bool)
    h, w = mask.shape
    if (h, w) != (size, size):
        image = F.pad(image, (0, size - w, 0, size - h))
        mask = F.pad(mask, (0, size - w, 0, size - h))
        valid[h:] = False
        valid[:, w:] = False
    return image, mask, valid


@dataclass
class TrainingSet:
    images: list[torch.Tensor]  # (3, H, W) uint8 each; all R x R in whole-image mode
    masks: list[torch.Tensor]  # (H, W) bool each
    anomalous: torch.Tensor  # (N,) bool: an (image, mask) pair (True) or a normal image (False)
    real: torch.Tensor | None = None  # (N,) bool: a pair of the real defects (records of method "real")

    @classmethod
    def from_records(cls, records: list[dict], config: EvalConfig) -> TrainingSet:
        """Records as in a synthetic set's manifest (``image``, ``mask`` or None for a normal image; ``method``, when
        given, marks the real defects' pairs)."""
        images, masks = load_pairs(records, config)
        return cls(images, masks, torch.tensor([r["mask"] is not None for r in records], dtype=torch.bool),
                   torch.tensor([r.get("method") == "real" for r in records], dtype=torch.bool))

    def batch(self, rng: np.random.Generator, size: int, anomaly_fraction: float, hflip: bool, vflip: bool,
              crop: int = 0, defect_crop: float = 0.5, real_share: float = 0.0):
        """``size`` images, each a pair with probability ``anomaly_fraction`` (else a normal image), cropped
        (``crop`` > 0, see :func:`random_crop`) and flipped at random. With ``real_share`` > 0 and both real and
        synthetic pairs, a pair is a real one with that probability; else every pair is as likely as another.
        Returns ``(images, masks, valid)``; ``valid`` (where the pixels are real, not padding) is None without
        crops."""
        pairs, normal = torch.nonzero(self.anomalous).flatten(), torch.nonzero(~self.anomalous).flatten()
        split = None
        if real_share and self.real is not None:
            real, synthetic = pairs[self.real[pairs]], pairs[~self.real[pairs]]
            split = (real, synthetic) if len(real) and len(synthetic) else None
        picks = []
        for _ in range(size):
            pool = pairs if (rng.random() < anomaly_fraction or not len(normal)) and len(pairs) else normal
            if split is not None and pool is pairs:
                # Drawn only with a share set: without one, the draws (and so the committed results) stay as they were.
                pool = split[0] if rng.random() < real_share else split[1]
            picks.append(int(pool[rng.integers(len(pool))]))
        if crop:
            crops = [random_crop(self.images[p], self.masks[p], crop, rng,
                                 around_defect=bool(self.anomalous[p]) and rng.random() < defect_crop) for p in picks]
            images, masks, valid = (torch.stack(list(parts)) for parts in zip(*crops))
        else:
            images, masks, valid = torch.stack([self.images[p] for p in picks]), torch.stack(
                [self.masks[p] for p in picks]), None
        for i in range(size):
            if hflip and rng.random() < 0.5:
                images[i], masks[i] = images[i].flip(-1), masks[i].flip(-1)
                if valid is not None:
                    valid[i] = valid[i].flip(-1)
            if vflip and rng.random() < 0.5:
                images[i], masks[i] = images[i].flip(-2), masks[i].flip(-2)
                if valid is not None:
                    valid[i] = valid[i].flip(-2)
        return images, masks, valid


def to_input(images: torch.Tensor, device, norm: str = "fixed") -> torch.Tensor:
    """`(B, 3, H, W)` uint8 images as the segmenter's input: ``fixed`` maps [0, 255] to [-1, 1]; ``per_image``
    standardises each image to zero mean and unit spread (at least one grey level), so that a defect a few grey
    levels off its surroundings on a dim, low-contrast surface (magnetic_tile's tiles) is as visible to a network
    trained from scratch as on a bright one."""
    x = images.to(device).float()
    if norm == "fixed":
        return x / 127.5 - 1.0
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) / x.std(dim=(1, 2, 3), keepdim=True).clamp_min(1.0)


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, kind: str = "ce+dice",
                      valid: torch.Tensor | None = None, defect_weight: float = 1.0) -> torch.Tensor:
    """Cross-entropy over both classes (the defect class weighted ``defect_weight``), plus (``ce+dice``) the
    soft Dice loss of the defect class over the batch, which keeps defects of 0.1 % of the pixels from being
    drowned by the background. ``valid`` (bool, like ``target``) leaves padding out of both terms."""
    weight = None if defect_weight == 1.0 else torch.tensor([1.0, defect_weight], device=logits.device)
    if valid is None:
        loss = F.cross_entropy(logits, target.long(), weight=weight)
        p, t = logits.softmax(1)[:, 1], target.float()
    else:
        per_pixel = F.cross_entropy(logits, target.long(), weight=weight, reduction="none")
        v = valid.float()
        w = v if weight is None else v * weight[target.long()]
        loss = (per_pixel * v).sum() / w.sum().clamp_min(1.0)
        p, t = logits.softmax(1)[:, 1] * v, target.float() * v
    if kind == "ce+dice":
        loss = loss + 1.0 - (2.0 * (p * t).sum() + 1.0) / (p.sum() + t.sum() + 1.0)
    return loss


def train_segmenter(config: EvalConfig, data: TrainingSet, device="cpu", progress=None) -> torch.nn.Module:
    """Train ``config.segmenter`` on ``data``: AdamW, linear warm-up then linear decay, seeded batches."""
    with torch.random.fork_rng(devices=[]):  # seeded initial weights without touching the caller's RNG
        torch.manual_seed(config.seed)
        model = build_segmenter(config.segmenter, config.pretrained or None, **config.segmenter_kwargs()).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    warmup = max(1, round(config.warmup * config.steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, 1.0 - (step - warmup) / max(1, config.steps - warmup))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    model.train()
    for step in range(config.steps):
        rng = np.random.default_rng([config.seed, step])
        images, masks, valid = data.batch(rng, config.batch_size, config.anomaly_fraction, config.hflip,
                                          config.vflip, config.crop, config.defect_crop, config.real_share)
        loss = segmentation_loss(model(to_input(images, device, config.input_norm)), masks.to(device), config.loss,
                                 None if valid is None else valid.to(device), config.defect_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if progress is not None:
            progress(step, loss.item())
    return model.eval()


def test_items(dataset: DefectDataset) -> list[tuple[str, Path, Path | None]]:
    """``(defect, image, mask)`` of the held-out anomalies (empty masks included) and of ``test/good``."""
    _, held_out = dataset.split("protocol")
    items = [(d, a.image, a.mask) for d in sorted(held_out) for a in held_out[d]]
    return items + [("good", path, None) for path in dataset.test_good]


@dataclass
class HeldOutSet:
    """The test images and masks of a category as the config sees them, loaded once for every row."""

    defects: list[str]  # the defect type of each image, "good" for test/good
    images: list[torch.Tensor] | torch.Tensor  # (3, H, W) uint8 each
    masks: list[torch.Tensor] | torch.Tensor  # (H, W) bool each

    @classmethod
    def load(cls, items: list[tuple[str, Path, Path | None]], config: EvalConfig) -> HeldOutSet:
        images, masks = load_pairs([{"image": path, "mask": mask} for _, path, mask in items], config)
        return cls([d for d, _, _ in items], images, masks)


def _predict(model, images: list[torch.Tensor], device, norm: str = "fixed", multiple: int = 32) -> list[torch.Tensor]:
    """Per image, the predicted defect map `(H, W)` bool. Images of one size share a forward pass; each is
    padded (edge pixels replicated) to a multiple of ``multiple`` and the prediction cropped back."""
    height, width = images[0].shape[-2:]
    if any(im.shape[-2:] != (height, width) for im in images):
        return [p for im in images for p in _predict(model, [im], device, norm, multiple)]
    x = to_input(torch.stack(images), device, norm)
    pad_h, pad_w = -height % multiple, -width % multiple
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    prediction = model(x).argmax(1)[:, :height, :width].cpu().bool()
    return list(prediction)


@torch.no_grad()
def evaluate_segmenter(model, test: HeldOutSet, batch_size: int = 16, device="cpu",
                       norm: str = "fixed") -> dict[str, Confusion]:
    """Pixel confusion counts per defect type, ``good`` and ``all`` (every test image, test/good included);
    ``norm`` is the input normalisation the model was trained with (:func:`to_input`)."""
    counts: dict[str, Confusion] = {}
    for start in range(0, len(test.defects), batch_size):
        images = list(test.images[start : start + batch_size])
        for offset, pred in enumerate(_predict(model, images, device, norm)):
            c = Confusion.of(pred, test.masks[start + offset])
            defect = test.defects[start + offset]
            counts[defect] = counts.get(defect, Confusion()) + c
            counts["all"] = counts.get("all", Confusion()) + c
    return counts


METRICS = ("iou", "miou", "macc", "aacc")


def metric_rows(method: str, category: str, counts: dict[str, Confusion]) -> list[dict]:
    """One row per defect type (not ``good``), then ``all``; :data:`METRICS` in percent."""

    def pct(value: float) -> float:
        return round(100.0 * value, 2) if not math.isnan(value) else math.nan

    defects = sorted(d for d in counts if d not in ("all", "good")) + ["all"]
    return [{"method": method, "category": category, "defect": d, **{m: pct(getattr(counts[d], m)) for m in METRICS}}
            for d in defects]


def save_counts(path: Path, counts: dict[str, Confusion], fingerprint: dict, **extra) -> None:
    """The counts with the fingerprint they were made under (and ``extra`` records), written atomically."""
    body = {"fingerprint": fingerprint, "counts": {k: v.to_dict() for k, v in counts.items()}, **extra}
    files.write_json(path, body)


def load_counts(path: Path, fingerprint: dict) -> dict[str, Confusion] | None:
    """Counts saved by an earlier run with the same fingerprint, else None."""
    if not path.is_file():
        return None
    body = json.loads(path.read_text())
    if body.get("fingerprint") != json.loads(json.dumps(fingerprint)):
        return None
    return {k: Confusion(**v) for k, v in body["counts"].items()}
