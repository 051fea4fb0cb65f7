"""The evaluation's settings: one dataclass, loaded from YAML with command-line overrides (:mod:`sard.config`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from ..config import ConfigError
from ..synthesis.masks import MaskAugmentation
from .segmenters import SEGMENTERS

INPUT_NORMS = ("fixed", "per_image")  # the segmenter's input normalisation: harness.to_input

LOSSES = ("ce", "ce+dice")


@dataclass
class EvalConfig:
    """Everything an evaluation run depends on; the same for every method it compares.

    Synthesis: ``n_per_defect`` pairs per defect type and method, plus the normal images.
    Segmenter: trained from scratch (or from ``pretrained``, a local file) for ``steps`` steps of
    ``batch_size`` images, with the same seed for every method; each image of a batch is a synthetic pair
    with probability ``anomaly_fraction``, else a normal image; in a union with ``real`` (``real+sard``) a pair
    is a real one with probability ``real_share`` (0: every set of the union as often as the others). Images
    are seen whole at ``resolution`` x ``resolution`` (``crop: 0``, the papers' protocol), or at their own
    scale (at most ``max_side`` on the
    longer side when set, or all scaled to ``fit_side``) as ``crop`` x ``crop`` crops for training, a share
    ``defect_crop`` of the pairs' crops around a defect, and whole for testing (see :mod:`.harness`).
    """

    # Synthesis
    n_per_defect: int = 40
    seed: int = 0
    foreground: bool = True
    rotate90: bool = False
    max_rotation: float = 15.0
    scale_jitter: float = 0.25
    shift: float = 0.1
    match_surroundings: int = 0  # sard: placements drawn per mask, the one most like its training defect's kept
    sard_batch_size: int = 8
    num_inference_steps: int = 0  # 0: the model's own
    background: str = "clean"  # sard: clean | noised (re-noised as in RePaint; an ablation)
    region_constraint: bool = True  # sard: False lets the network update the whole crop (an ablation)
    texture_dir: str = ""  # DRAEM; empty: the other categories' normal images
    data_format: str = "auto"

    # Segmenter
    segmenter: str = "segformer"  # segformer | unet
    pretrained: str = ""  # a local .safetensors file (e.g. MiT-B0 ImageNet weights); empty: from scratch
    resolution: int = 128  # whole-image mode (crop: 0): every image resized to resolution x resolution
    crop: int = 0  # > 0: train on crop x crop crops at the images' own scale, test on whole images at that scale
    max_side: int = 0  # with crops: images larger than this scaled down to this longer side (0: their own size)
    fit_side: int = 0  # with crops: every image scaled up or down to this longer side (0: see max_side)
    defect_crop: float = 0.5  # with crops: the share of a pair's crops placed around one of its defect pixels
    unet_width: int = 16  # unet: channels of its first level (then x2, x4, x8)
    steps: int = 600
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: float = 0.05  # fraction of the steps with a linear warm-up, then polynomial decay (power 1)
    loss: str = "ce+dice"
    defect_weight: float = 1.0  # the defect class's weight in the cross-entropy (class-balanced loss)
    input_norm: str = "fixed"  # fixed: [0, 255] -> [-1, 1] | per_image: each image to zero mean, unit spread
    anomaly_fraction: float = 0.5
    real_share: float = 0.0  # a union with real: the share of its pairs drawn from the real ones; 0: sets alike
    hflip: bool = True
    vflip: bool = True
    eval_batch_size: int = 16
    num_threads: int = 0  # CPU threads per process; 0: torch's default
    save_segmenter: bool = False  # keep each run's trained segmenter (OUT/runs/CAT/ROW/seed-S/segmenter.safetensors)

    def augmentation(self) -> MaskAugmentation:
        return MaskAugmentation(rotate90=self.rotate90, max_rotation=self.max_rotation,
                                scale_jitter=self.scale_jitter, shift=self.shift,
                                match_surroundings=self.match_surroundings)

    def segmenter_kwargs(self) -> dict:
        if self.segmenter == "unet" and self.unet_width != 16:
            w = self.unet_width
            return {"channels": (w, 2 * w, 4 * w, 8 * w)}
        return {}

    def validate(self) -> None:
        errors = []
        for name in ("n_per_defect", "steps", "batch_size", "eval_batch_size", "sard_batch_size"):
            if getattr(self, name) < 1:
                errors.append(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.segmenter not in SEGMENTERS:
            errors.append(f"segmenter must be one of {', '.join(SEGMENTERS)}, got {self.segmenter!r}")
        if self.resolution < 32 or self.resolution % 32:
            errors.append(f"resolution must be a multiple of 32 (at least 32), got {self.resolution}")
        if self.crop and (self.crop < 32 or self.crop % 32):
            errors.append(f"crop must be 0 or a multiple of 32 (at least 32), got {self.crop}")
        for name in ("max_side", "fit_side"):
            value = getattr(self, name)
            if value < 0 or (value and value < self.crop):
                errors.append(f"{name} must be 0 or at least the crop ({self.crop}), got {value}")
        if self.max_side and self.fit_side:
            errors.append(f"max_side and fit_side exclude each other, got {self.max_side} and {self.fit_side}")
        if not 0.0 <= self.defect_crop <= 1.0:
            errors.append(f"defect_crop must be in [0, 1], got {self.defect_crop}")
        if self.defect_weight <= 0.0:
            errors.append(f"defect_weight must be positive, got {self.defect_weight}")
        if self.unet_width < 1:
            errors.append(f"unet_width must be at least 1, got {self.unet_width}")
        if self.background not in ("clean", "noised"):
            errors.append(f"background must be clean or noised, got {self.background!r}")
        if self.input_norm not in INPUT_NORMS:
            errors.append(f"input_norm must be one of {', '.join(INPUT_NORMS)}, got {self.input_norm!r}")
        if self.loss not in LOSSES:
            errors.append(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if not 0.0 < self.anomaly_fraction <= 1.0:
            errors.append(f"anomaly_fraction must be in (0, 1], got {self.anomaly_fraction}")
        if not 0.0 <= self.real_share < 1.0:
            errors.append(f"real_share must be in [0, 1) (0: every set of a union alike), got {self.real_share}")
        if not 0.0 <= self.warmup < 1.0:
            errors.append(f"warmup must be in [0, 1), got {self.warmup}")
        if self.match_surroundings < 0:
            errors.append(f"match_surroundings must be 0 or more, got {self.match_surroundings}")
        if not 0.0 <= self.scale_jitter < 1.0:
            errors.append(f"scale_jitter must be in [0, 1), got {self.scale_jitter}")
        if self.pretrained and not Path(self.pretrained).exists():
            errors.append(f"pretrained {self.pretrained!r} does not exist (a local .safetensors file or folder)")
        if self.texture_dir and not Path(self.texture_dir).is_dir():
            errors.append(f"texture_dir {self.texture_dir!r} is not a folder")
        if errors:
            raise ConfigError("Invalid evaluation configuration:\n  " + "\n  ".join(errors))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def identity(self) -> dict:
        """The keys that decide the numbers (not the threads or the batch sizes of inference)."""
        values = self.to_dict()
        for key in ("num_threads", "eval_batch_size", "sard_batch_size", "save_segmenter"):
            values.pop(key)
        # Recorded where it acts, in the SARD sets' identity: the rows without SARD stay valid when it changes.
        values.pop("match_surroundings")
        # Keys added later only count when used: runs finished before they existed stay valid.
        for key, default in (("background", "clean"), ("region_constraint", True), ("crop", 0), ("max_side", 0),
                             ("fit_side", 0), ("defect_crop", 0.5), ("unet_width", 16), ("defect_weight", 1.0),
                             ("input_norm", "fixed"), ("real_share", 0.0)):
            if values[key] == default:
                values.pop(key)
        return values
