"""Training batches: crops around the defect masks, augmented with their masks.

Every batch is a pure function of ``(seed, step, process)``: resuming at step N draws exactly the
batches an uninterrupted run would have drawn, with no data-loader or RNG state to save.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .. import cropping
from ..datasets import Anomaly, load_mask, load_rgb


@dataclass
class Augmentation:
    hflip: bool = True
    vflip: bool = True
    rotate90: bool = False
    scale_jitter: float = 0.15


@dataclass
class _Example:
    image: torch.Tensor  # (3, H, W) uint8 at working scale
    mask: torch.Tensor  # (1, H, W) uint8 in {0, 1}
    pixels: np.ndarray  # (N, 2) coordinates of the mask's pixels, to centre crops on the defect
    label: int


def load_examples(anomalies: list[Anomaly], defect_types: list[str], resolution: int) -> list[_Example]:
    """Read every training anomaly once, at working scale (few-shot sets fit in memory)."""
    examples = []
    for anomaly in anomalies:
        image = torch.from_numpy(np.array(load_rgb(anomaly.image))).permute(2, 0, 1)
        mask = torch.from_numpy(load_mask(anomaly.mask))[None]
        scale = cropping.working_scale(image.shape[1], image.shape[2], resolution)
        size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[2] * scale)))
        image = cropping.resize(image[None].float(), size)[0].round().clamp(0, 255).to(torch.uint8)
        mask = cropping.resize_mask(mask[None].to(torch.uint8), size)[0]
        pixels = torch.nonzero(mask[0]).numpy()
        examples.append(_Example(image, mask, pixels, defect_types.index(anomaly.defect)))
    return examples


def _window(center: int, length: int, window: int, rng: np.random.Generator) -> int:
    """A random start of a ``window`` that contains ``center`` and stays inside ``[0, length)`` if it can."""
    low = max(0, min(center - window + 1, length - window))
    high = max(low, min(center, length - window))
    return int(rng.integers(low, high + 1))


def random_crop(
    example: _Example, crop_size: int, augmentation: Augmentation, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """One augmented crop that contains part of the defect: image `(3, c, c)` in [-1, 1], mask `(1, c, c)`."""
    jitter = augmentation.scale_jitter
    scale = rng.uniform(1.0 - jitter, 1.0 + jitter) if jitter else 1.0
    window = max(1, round(crop_size / scale))
    _, height, width = example.image.shape
    y, x = example.pixels[rng.integers(len(example.pixels))]
    top, left = _window(y, height, window, rng), _window(x, width, window, rng)
    image = example.image[:, top : top + window, left : left + window][None].float() / 127.5 - 1.0
    mask = example.mask[:, top : top + window, left : left + window][None].float()
    # Images smaller than the window: pad, with nothing to synthesise in the padding.
    full = (max(window, image.shape[2]), max(window, image.shape[3]))
    image, mask = cropping.pad_to(image, full), cropping.pad_to(mask, full, mode="constant")
    image = cropping.resize(image, (crop_size, crop_size))[0]
    mask = F.interpolate(mask, size=(crop_size, crop_size), mode="nearest")[0]
    if augmentation.hflip and rng.random() < 0.5:
        image, mask = image.flip(2), mask.flip(2)
    if augmentation.vflip and rng.random() < 0.5:
        image, mask = image.flip(1), mask.flip(1)
    if augmentation.rotate90:
        turns = int(rng.integers(4))
        image, mask = image.rot90(turns, (1, 2)), mask.rot90(turns, (1, 2))
    return image.contiguous(), mask.contiguous()


class CropBatches:
    """Batches of crops around the training masks, drawn with a seed per step.

    Defect types are balanced: each crop first draws a type, then an anomaly of that type.
    """

    def __init__(self, examples: list[_Example], crop_size: int, augmentation: Augmentation, seed: int):
        if not examples:
            raise ValueError("No training anomalies with non-empty masks.")
        self.examples, self.crop_size, self.augmentation, self.seed = examples, crop_size, augmentation, seed
        labels = sorted({e.label for e in examples})
        self.by_label = [[e for e in examples if e.label == label] for label in labels]

    def batch(self, step: int, batch_size: int, process_index: int = 0, draw: int = 0) -> dict[str, torch.Tensor]:
        """The crops of one step; ``draw > 0`` gives that step's further, independent batches (the extra
        discriminator updates of ``disc_steps``)."""
        rng = np.random.default_rng([self.seed, step, process_index] + ([draw] if draw else []))
        images, masks, labels = [], [], []
        for _ in range(batch_size):
            group = self.by_label[rng.integers(len(self.by_label))]
            example = group[rng.integers(len(group))]
            image, mask = random_crop(example, self.crop_size, self.augmentation, rng)
            images.append(image)
            masks.append(mask)
            labels.append(example.label)
        return {"image": torch.stack(images), "mask": torch.stack(masks), "label": torch.tensor(labels)}
