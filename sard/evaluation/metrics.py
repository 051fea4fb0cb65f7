"""Segmentation metrics of the field (AnomalyDiffusion, FAST, SARD): IoU of the defect class, mIoU over
defect and background, and pixel accuracy, from pixel confusion counts accumulated over a test set.

For a set of test images, with every pixel counted once (images are not averaged, pixels are):
    IoU(defect)     = TP / (TP + FP + FN)
    IoU(background) = TN / (TN + FN + FP)
    mIoU            = (IoU(defect) + IoU(background)) / 2
    acc             = (TP + TN) / (TP + FP + FN + TN)
where a positive is a defect pixel. A class that is absent from both prediction and ground truth has
IoU 0/0 = NaN, and mIoU is then the IoU of the other class alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Confusion:
    """Pixel counts: ``tp`` defect predicted as defect, ``fp`` background predicted as defect, ``fn`` defect
    predicted as background, ``tn`` background predicted as background."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    @classmethod
    def of(cls, prediction, target) -> Confusion:
        """Counts of bool (or 0/1) arrays or tensors of the same shape, any number of images."""
        p = torch.as_tensor(np.asarray(prediction) if not isinstance(prediction, torch.Tensor) else prediction).bool()
        t = torch.as_tensor(np.asarray(target) if not isinstance(target, torch.Tensor) else target).bool()
        if p.shape != t.shape:
            raise ValueError(f"prediction {tuple(p.shape)} and target {tuple(t.shape)} differ in shape.")
        tp = int((p & t).sum())
        fp = int((p & ~t).sum())
        fn = int((~p & t).sum())
        return cls(tp, fp, fn, p.numel() - tp - fp - fn)

    def __add__(self, other: Confusion) -> Confusion:
        return Confusion(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)

    @property
    def total(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    @property
    def iou(self) -> float:
        """IoU of the defect class."""
        union = self.tp + self.fp + self.fn
        return self.tp / union if union else math.nan

    @property
    def iou_background(self) -> float:
        union = self.tn + self.fn + self.fp
        return self.tn / union if union else math.nan

    @property
    def miou(self) -> float:
        """Mean IoU of defect and background (classes with IoU 0/0 left out)."""
        values = [v for v in (self.iou, self.iou_background) if not math.isnan(v)]
        return sum(values) / len(values) if values else math.nan

    @property
    def accuracy(self) -> float:
        return (self.tp + self.tn) / self.total if self.total else math.nan

    def to_dict(self) -> dict:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn}
