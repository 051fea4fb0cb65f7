"""Segmentation metrics of the field (AnomalyDiffusion, FAST, SARD) as mmsegmentation defines them, from
pixel confusion counts accumulated over a test set.

For a set of test images, with every pixel counted once (images are not averaged, pixels are), a positive
being a defect pixel:
    IoU(defect)     = TP / (TP + FP + FN)
    IoU(background) = TN / (TN + FN + FP)
    mIoU            = mean of the two IoUs
    Acc(defect)     = TP / (TP + FN)          (mmsegmentation: intersection / ground-truth area)
    Acc(background) = TN / (TN + FP)
    mAcc            = mean of the two accuracies: the papers' "Acc" (FAST, AnomalyDiffusion)
    aAcc            = (TP + TN) / (TP + FP + FN + TN), the share of all pixels that are right
The means leave out NaN classes, as mmsegmentation's ``nanmean`` does: a class absent from both the
prediction and the ground truth has IoU 0/0 = NaN, and a class absent from the ground truth has accuracy
0/0 = NaN however much of it is predicted. aAcc is about 99 % for any method on these data sets (defects
cover a few per cent of the pixels): it is kept for reference, and is not the papers' Acc.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


def _mean_of_defined(*values: float) -> float:
    """The mean of the values that are not NaN (a class absent from both prediction and truth); NaN if none."""
    defined = [v for v in values if not math.isnan(v)]
    return sum(defined) / len(defined) if defined else math.nan


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
        return _mean_of_defined(self.iou, self.iou_background)

    @property
    def accuracy_defect(self) -> float:
        """Share of the defect pixels found (recall of the defect class)."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else math.nan

    @property
    def accuracy_background(self) -> float:
        return self.tn / (self.tn + self.fp) if self.tn + self.fp else math.nan

    @property
    def macc(self) -> float:
        """Mean of the per-class accuracies of the classes present in the ground truth (mmsegmentation's mAcc)."""
        return _mean_of_defined(self.accuracy_defect, self.accuracy_background)

    @property
    def aacc(self) -> float:
        """Overall pixel accuracy (mmsegmentation's aAcc); not the papers' Acc, which is :attr:`macc`."""
        return (self.tp + self.tn) / self.total if self.total else math.nan

    def to_dict(self) -> dict:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn}
