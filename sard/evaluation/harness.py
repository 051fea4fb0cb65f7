"""The evaluation protocol: per method, synthesise a training set, train the same segmenter on it (same
seed, same budget), and test it on the held-out real anomalies and the normal test images.

Everything happens at ``resolution`` x ``resolution``: images are resized bilinearly, masks by nearest
neighbour, for training and for testing alike, so metrics are counted on resized ground truth.
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

from ..datasets import DefectDataset, load_rgb
from .config import EvalConfig
from .metrics import Confusion
from .segmenters import build_segmenter


def load_image(path: str | Path, resolution: int) -> torch.Tensor:
    """`(3, R, R)` uint8."""
    image = load_rgb(Path(path)).resize((resolution, resolution), PIL.Image.BILINEAR)
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)


def load_target(path: str | Path | None, resolution: int) -> torch.Tensor:
    """`(R, R)` bool; None (a normal image) is all background."""
    if path is None:
        return torch.zeros(resolution, resolution, dtype=torch.bool)
    with PIL.Image.open(path) as opened:
        mask = opened.convert("L").resize((resolution, resolution), PIL.Image.NEAREST)
    return torch.from_numpy(np.asarray(mask) > 127)


@dataclass
class TrainingSet:
    images: torch.Tensor  # (N, 3, R, R) uint8
    masks: torch.Tensor  # (N, R, R) bool
    anomalous: torch.Tensor  # (N,) bool: a synthetic pair (True) or a normal image (False)

    @classmethod
    def from_manifest(cls, records: list[dict], resolution: int) -> TrainingSet:
        images = torch.stack([load_image(r["image"], resolution) for r in records])
        masks = torch.stack([load_target(r["mask"], resolution) for r in records])
        return cls(images, masks, torch.tensor([r["mask"] is not None for r in records]))

    def batch(self, rng: np.random.Generator, size: int, anomaly_fraction: float, hflip: bool, vflip: bool):
        """``size`` images, each a synthetic pair with probability ``anomaly_fraction``, flipped at random."""
        pools = [torch.nonzero(self.anomalous).flatten(), torch.nonzero(~self.anomalous).flatten()]
        picks = []
        for _ in range(size):
            pool = pools[0] if (rng.random() < anomaly_fraction or not len(pools[1])) and len(pools[0]) else pools[1]
            picks.append(int(pool[rng.integers(len(pool))]))
        images, masks = self.images[picks].clone(), self.masks[picks].clone()
        for i in range(size):
            if hflip and rng.random() < 0.5:
                images[i], masks[i] = images[i].flip(-1), masks[i].flip(-1)
            if vflip and rng.random() < 0.5:
                images[i], masks[i] = images[i].flip(-2), masks[i].flip(-2)
        return images, masks


def to_input(images: torch.Tensor, device) -> torch.Tensor:
    return images.to(device).float() / 127.5 - 1.0


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, kind: str = "ce+dice") -> torch.Tensor:
    """Cross-entropy over both classes, plus (``ce+dice``) the soft Dice loss of the defect class over the
    batch, which keeps defects of 0.1 % of the pixels from being drowned by the background."""
    loss = F.cross_entropy(logits, target.long())
    if kind == "ce+dice":
        p = logits.softmax(1)[:, 1]
        t = target.float()
        loss = loss + 1.0 - (2.0 * (p * t).sum() + 1.0) / (p.sum() + t.sum() + 1.0)
    return loss


def train_segmenter(config: EvalConfig, data: TrainingSet, device="cpu", progress=None) -> torch.nn.Module:
    """Train ``config.segmenter`` on ``data``: AdamW, linear warm-up then linear decay, seeded batches."""
    with torch.random.fork_rng(devices=[]):  # seeded initial weights without touching the caller's RNG
        torch.manual_seed(config.seed)
        model = build_segmenter(config.segmenter, config.pretrained or None).to(device)
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
        images, masks = data.batch(rng, config.batch_size, config.anomaly_fraction, config.hflip, config.vflip)
        loss = segmentation_loss(model(to_input(images, device)), masks.to(device), config.loss)
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
    """The test images and masks of a category at ``resolution``, loaded once for every method."""

    defects: list[str]  # the defect type of each image, "good" for test/good
    images: torch.Tensor  # (N, 3, R, R) uint8
    masks: torch.Tensor  # (N, R, R) bool

    @classmethod
    def load(cls, items: list[tuple[str, Path, Path | None]], resolution: int) -> HeldOutSet:
        images = torch.stack([load_image(path, resolution) for _, path, _ in items])
        masks = torch.stack([load_target(mask, resolution) for _, _, mask in items])
        return cls([d for d, _, _ in items], images, masks)


@torch.no_grad()
def evaluate_segmenter(model, test: HeldOutSet, batch_size: int = 16, device="cpu") -> dict[str, Confusion]:
    """Pixel confusion counts per defect type, ``good`` and ``all`` (every test image, test/good included)."""
    counts: dict[str, Confusion] = {}
    for start in range(0, len(test.defects), batch_size):
        prediction = model(to_input(test.images[start : start + batch_size], device)).argmax(1).cpu().bool()
        for offset, pred in enumerate(prediction):
            c = Confusion.of(pred, test.masks[start + offset])
            defect = test.defects[start + offset]
            counts[defect] = counts.get(defect, Confusion()) + c
            counts["all"] = counts.get("all", Confusion()) + c
    return counts


def metric_rows(method: str, category: str, counts: dict[str, Confusion]) -> list[dict]:
    """One row per defect type (not ``good``), then ``all``; metrics in percent."""

    def pct(value: float) -> float:
        return round(100.0 * value, 2) if not math.isnan(value) else math.nan

    defects = sorted(d for d in counts if d not in ("all", "good")) + ["all"]
    return [{"method": method, "category": category, "defect": d, "iou": pct(counts[d].iou),
             "miou": pct(counts[d].miou), "acc": pct(counts[d].accuracy)} for d in defects]


def save_counts(path: Path, counts: dict[str, Confusion], fingerprint: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"fingerprint": fingerprint, "counts": {k: v.to_dict() for k, v in counts.items()}}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(body, indent=2))
    tmp.replace(path)


def load_counts(path: Path, fingerprint: dict) -> dict[str, Confusion] | None:
    """Counts saved by an earlier run with the same fingerprint, else None."""
    if not path.is_file():
        return None
    body = json.loads(path.read_text())
    if body.get("fingerprint") != json.loads(json.dumps(fingerprint)):
        return None
    return {k: Confusion(**v) for k, v in body["counts"].items()}
