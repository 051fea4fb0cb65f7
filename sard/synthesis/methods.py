"""One synthesiser per method. Each turns planned items ``(defect, k)`` into (image, mask) pairs.

Every choice an item makes (its normal image, its mask, its texture, its noise) comes from generators
seeded with ``(seed, defect index, k)``: the output does not depend on the batch, the number of processes
or what was written before, which is what makes runs reproducible, resumable and shardable. Item k of a
defect type draws its normal image first, with the same stream in every method, so all methods paint into
the same normal images.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from ..datasets import IMAGE_EXTENSIONS, DefectDataset, load_mask, load_rgb
from ..seeding import seeded_generator
from .cutpaste import cutpaste
from .draem import draem_anomaly
from .foreground import Foreground
from .masks import MaskAugmentation, draw_mask, draw_transform, surroundings_tone, warp_pair
from .textures import procedural_texture

METHODS = ("sard", "cutpaste", "draem", "real")
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


@dataclass(frozen=True)
class Item:
    """The k-th pair of a defect type; ``defect_index`` is the type's place in the sorted list of types."""

    defect: str
    defect_index: int
    k: int

    def rng(self, seed: int) -> np.random.Generator:
        return np.random.default_rng([seed, self.defect_index, self.k])

    def generator(self, seed: int) -> torch.Generator:
        return seeded_generator(seed, self.defect_index, self.k, 1)


@dataclass
class Result:
    image: PIL.Image.Image
    mask: np.ndarray  # (H, W) bool, not empty
    record: dict = field(default_factory=dict)


def is_grayscale_file(path: Path) -> bool:
    """Whether an image file is stored with one grey channel (L, I, ... modes)."""
    with PIL.Image.open(path) as image:
        return image.mode in _GRAY_MODES


def gray_levels(image: PIL.Image.Image) -> np.ndarray:
    """`(H, W)` float grey levels (ITU-R BT.601 luma, as PIL's ``convert("L")``)."""
    return np.asarray(image.convert("L"), dtype=np.float64)


def as_output(rgb: np.ndarray, gray: bool) -> PIL.Image.Image:
    """Pixels back in the source's kind: grayscale sources give grayscale outputs (luma)."""
    image = PIL.Image.fromarray(rgb)
    return image.convert("L") if gray else image


class Synthesizer:
    """Shared state of the methods: the data set, its training masks, the foreground estimate."""

    method = ""
    batch_size = 1
    needs_masks = False

    def __init__(self, dataset: DefectDataset, seed: int = 0, augmentation: MaskAugmentation | None = None,
                 foreground: bool = True):
        self.dataset, self.seed = dataset, seed
        self.augmentation = augmentation or MaskAugmentation()
        self.training = dataset.training_anomalies("protocol")
        missing = [d for d in dataset.defect_types if not self.training.get(d)]
        if self.needs_masks and missing:
            raise ValueError(
                f"No training anomaly with a non-empty mask for defect type(s) {', '.join(missing)}: the "
                f"{self.method} method draws its masks from the first third of each type. Add anomalies of "
                "those types or remove their folders."
            )
        self.masks = {d: [load_mask(a.mask) for a in items] for d, items in self.training.items()}
        # The foreground estimate is checked on up to 24 training anomalies, spread over the types.
        flat = [(a, self.masks[d][i]) for d, items in self.training.items() for i, a in enumerate(items)]
        flat = flat[:: max(1, len(flat) // 24)][:24] if foreground else []
        self.foreground = Foreground(enabled=foreground).check([(np.asarray(load_rgb(a.image)), m) for a, m in flat])
        self._foreground = lru_cache(maxsize=64)(self._estimate)

    def _estimate(self, path: Path) -> np.ndarray:
        return self.foreground(np.asarray(load_rgb(path)))

    def source(self, rng: np.random.Generator) -> Path:
        """The normal image an item paints into: the first draw of every item's stream, in every method."""
        return self.dataset.train_good[int(rng.integers(len(self.dataset.train_good)))]

    def record(self, item: Item, source: Path, **extra) -> dict:
        return {"method": self.method, "defect": item.defect, "k": item.k, "seed": self.seed,
                "source": str(source), **extra}

    def __call__(self, items: list[Item]) -> list[Result]:
        return [self.one(item) for item in items]

    def one(self, item: Item) -> Result:
        raise NotImplementedError


class SardSynthesizer(Synthesizer):
    """SARD: a training mask, augmented and kept on the product, painted by the pipeline."""

    method, needs_masks = "sard", True

    def __init__(self, dataset, pipeline, seed=0, augmentation=None, foreground=True, batch_size=8,
                 num_inference_steps=None, background="clean", region_constraint=True):
        super().__init__(dataset, seed, augmentation, foreground)
        self.background, self.region_constraint = background, region_constraint  # the pipeline's ablations
        unknown = [d for d in dataset.defect_types if d not in pipeline.defect_types]
        if unknown:
            raise ValueError(
                f"The checkpoint knows the defect types {', '.join(pipeline.defect_types)}, not "
                f"{', '.join(unknown)} of {dataset.root}. Pass a checkpoint trained on this category."
            )
        self.pipeline, self.batch_size, self.num_inference_steps = pipeline, batch_size, num_inference_steps
        # Where each training defect sits on its image, for placements that match it (match_surroundings).
        self.tones = {d: [surroundings_tone(gray_levels(load_rgb(a.image)), m) for a, m in zip(items, self.masks[d])]
                      for d, items in self.training.items()} if self.augmentation.match_surroundings > 1 else None

    def __call__(self, items: list[Item]) -> list[Result]:
        images, masks, records = [], [], []
        for item in items:
            rng = item.rng(self.seed)
            source = self.source(rng)
            with PIL.Image.open(source) as opened:
                image = opened.copy()
            mask, info = draw_mask(self.masks[item.defect], (image.height, image.width),
                                   self._foreground(source), self.augmentation, rng,
                                   *((gray_levels(image), self.tones[item.defect]) if self.tones else ()))
            images.append(image)
            masks.append(mask)
            mask_source = self.training[item.defect][info.pop("source")].mask
            records.append(self.record(item, source, mask_source=str(mask_source), **info))
        outputs = self.pipeline(images, [PIL.Image.fromarray(m.astype(np.uint8) * 255) for m in masks],
                                defect=[i.defect for i in items], generator=[i.generator(self.seed) for i in items],
                                num_inference_steps=self.num_inference_steps, background=self.background,
                                region_constraint=self.region_constraint).images
        return [Result(o, m, r) for o, m, r in zip(outputs, masks, records)]


class CutPasteSynthesizer(Synthesizer):
    """CutPaste: patch or scar (see :mod:`.cutpaste`); the defect type only names the folder."""

    method = "cutpaste"

    def one(self, item: Item) -> Result:
        rng = item.rng(self.seed)
        source = self.source(rng)
        rgb = np.asarray(load_rgb(source))
        out, mask, info = cutpaste(rgb, self._foreground(source), rng)
        return Result(as_output(out, is_grayscale_file(source)), mask, self.record(item, source, **info))


PROCEDURAL = "procedural"
_warned: set[str] = set()  # data roots already warned about, once per process


def texture_images(texture_dir: str | Path | None, dataset: DefectDataset) -> list[Path]:
    """DRAEM's foreign textures: the images under ``texture_dir`` (e.g. DTD), or else the normal training
    images of every other category beside ``dataset`` under the same root (maybe none)."""
    if texture_dir:
        return sorted(p for p in Path(texture_dir).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    siblings = sorted(p for p in dataset.root.parent.iterdir() if p.is_dir() and p != dataset.root)
    return [p for s in siblings for p in sorted((s / "train" / "good").glob("*"))
            if p.suffix.lower() in IMAGE_EXTENSIONS]


def texture_source(texture_dir: str | Path | None, dataset: DefectDataset) -> tuple[list[Path], str]:
    """DRAEM's textures and a one-line description of where they come from, for the records.

    ``texture_dir`` must hold images. Without it the other categories' normal images serve; a data root
    with no other category falls back to :func:`sard.synthesis.textures.procedural_texture` (an empty
    list here), with one warning per process and data root.

    Raises:
        ValueError: ``texture_dir`` holds no image.
    """
    found = texture_images(texture_dir, dataset)
    if texture_dir:
        if not found:
            raise ValueError(f"No texture images in {texture_dir}: pass a folder of images (e.g. the Describable "
                             "Textures Dataset) as --texture_dir, or leave it out.")
        return found, f"{len(found)} images under {texture_dir}"
    if found:
        return found, f"the normal training images of the other categories under {dataset.root.parent} ({len(found)})"
    where = str(dataset.root.parent)
    if where not in _warned:
        _warned.add(where)
        warnings.warn(
            f"DRAEM: no other category under {where} to take textures from and no --texture_dir; using procedural "
            "textures (Perlin noise, blobs, stripes, grids) instead of DTD. The results record it.", stacklevel=2
        )
    return [], f"{PROCEDURAL} (no other category under {where} and no texture_dir)"


class DraemSynthesizer(Synthesizer):
    """DRAEM: a Perlin-noise mask filled with an augmented foreign texture (see :mod:`.draem`); the textures
    of :func:`texture_source` (``self.texture_source`` says which)."""

    method = "draem"

    def __init__(self, dataset, seed=0, augmentation=None, foreground=True, texture_dir=None):
        super().__init__(dataset, seed, augmentation, foreground)
        self.textures, self.texture_source = texture_source(texture_dir, dataset)

    def one(self, item: Item) -> Result:
        rng = item.rng(self.seed)
        source = self.source(rng)
        if self.textures:
            texture_path = self.textures[int(rng.integers(len(self.textures)))]
            texture, name = load_rgb(texture_path), str(texture_path)
        else:
            texture, kind = procedural_texture(rng)
            name = f"{PROCEDURAL}:{kind}"
        rgb = np.asarray(load_rgb(source))
        out, mask, info = draem_anomaly(rgb, texture, self._foreground(source), rng)
        record = self.record(item, source, texture=name, **info)
        return Result(as_output(out, is_grayscale_file(source)), mask, record)


class RealSynthesizer(Synthesizer):
    """Real-only: the training third of the real anomalies, image and mask augmented together."""

    method, needs_masks = "real", True

    def one(self, item: Item) -> Result:
        rng = item.rng(self.seed)
        self.source(rng)  # keep the stream aligned with the other methods
        anomalies = self.training[item.defect]
        for _ in range(self.augmentation.max_tries):
            index = int(rng.integers(len(anomalies)))
            transform = draw_transform(self.augmentation, rng)
            out, mask = warp_pair(np.asarray(load_rgb(anomalies[index].image)), self.masks[item.defect][index],
                                  transform)
            if mask.any():
                break
        else:  # every draw pushed the defect out of the frame: the anomaly as it is
            out, mask = np.asarray(load_rgb(anomalies[index].image)), self.masks[item.defect][index]
        source = anomalies[index].image
        record = self.record(item, source, mask_source=str(anomalies[index].mask), transform=transform.to_dict())
        return Result(as_output(out, is_grayscale_file(source)), mask, record)


def build_synthesizer(method: str, dataset: DefectDataset, seed: int = 0, augmentation=None, foreground=True,
                      checkpoint=None, pipeline=None, texture_dir=None, batch_size=8, num_inference_steps=None,
                      device=None, background="clean", region_constraint=True) -> Synthesizer:
    """The synthesiser of ``method`` (one of :data:`METHODS`). ``sard`` needs ``checkpoint`` (a folder or hub
    id for ``SARDPipeline.from_pretrained``) or a loaded ``pipeline``; ``background`` and ``region_constraint``
    are passed to it."""
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    if method == "sard":
        if pipeline is None:
            if not checkpoint:
                raise ValueError("The sard method needs --checkpoint (a SARD pipeline folder or hub id).")
            from ..pipeline import SARDPipeline

            pipeline = SARDPipeline.from_pretrained(checkpoint)
            if device is not None:
                pipeline = pipeline.to(device)
            pipeline.set_progress_bar_config(disable=True)
        return SardSynthesizer(dataset, pipeline, seed, augmentation, foreground, batch_size, num_inference_steps,
                               background, region_constraint)
    if method == "cutpaste":
        return CutPasteSynthesizer(dataset, seed, augmentation, foreground)
    if method == "draem":
        return DraemSynthesizer(dataset, seed, augmentation, foreground, texture_dir)
    return RealSynthesizer(dataset, seed, augmentation, foreground)
