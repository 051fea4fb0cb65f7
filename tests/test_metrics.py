"""The metric code against hand-computed values (mmsegmentation's definitions)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sard.evaluation.harness import HeldOutSet, evaluate_segmenter, metric_rows
from sard.evaluation.metrics import Confusion

# 4 x 4, defect = 1. Target: a 2 x 2 block; prediction: the block's left column and two more pixels.
TARGET = np.array([[0, 0, 0, 0],
                   [0, 1, 1, 0],
                   [0, 1, 1, 0],
                   [0, 0, 0, 0]], dtype=bool)
PRED = np.array([[0, 0, 0, 0],
                 [1, 1, 0, 0],
                 [0, 1, 0, 0],
                 [0, 0, 0, 1]], dtype=bool)
# By hand: TP = 2 ((1,1), (2,1)); FP = 2 ((1,0), (3,3)); FN = 2 ((1,2), (2,2)); TN = 16 - 6 = 10.


def test_counts_by_hand():
    c = Confusion.of(PRED, TARGET)
    assert (c.tp, c.fp, c.fn, c.tn) == (2, 2, 2, 10)
    assert c.iou == pytest.approx(2 / 6)
    assert c.iou_background == pytest.approx(10 / 14)
    assert c.miou == pytest.approx((2 / 6 + 10 / 14) / 2)
    # Per-class accuracy = intersection / ground-truth area: defect 2 of 4, background 10 of 12.
    assert c.accuracy_defect == pytest.approx(2 / 4) and c.accuracy_background == pytest.approx(10 / 12)
    assert c.macc == pytest.approx((2 / 4 + 10 / 12) / 2)  # 0.6667: the papers' "Acc"
    assert c.aacc == pytest.approx(12 / 16)  # 0.75: all pixels right, not the mean over classes


def test_tensors_and_arrays_agree():
    assert Confusion.of(torch.from_numpy(PRED), torch.from_numpy(TARGET)) == Confusion.of(PRED, TARGET)


def test_counts_add_pixels_not_images():
    perfect = Confusion.of(TARGET, TARGET)  # TP 4, TN 12
    total = Confusion.of(PRED, TARGET) + perfect
    assert (total.tp, total.fp, total.fn, total.tn) == (6, 2, 2, 22)
    assert total.iou == pytest.approx(6 / 10)  # not the mean of 2/6 and 1
    assert total.aacc == pytest.approx(28 / 32)
    assert total.macc == pytest.approx((6 / 8 + 22 / 24) / 2)


def test_empty_ground_truth_and_prediction():
    c = Confusion.of(np.zeros((3, 3), bool), np.zeros((3, 3), bool))
    assert math.isnan(c.iou) and c.iou_background == 1.0 and c.miou == 1.0 and c.aacc == 1.0
    assert math.isnan(c.accuracy_defect) and c.macc == 1.0  # no defect in the ground truth: left out of the mean
    c = Confusion.of(np.ones((2, 2), bool), np.zeros((2, 2), bool))  # all false positives
    assert c.iou == 0.0 and c.iou_background == 0.0 and c.miou == 0.0 and c.aacc == 0.0
    # A class absent from the ground truth but predicted: IoU 0 counts in mIoU, accuracy 0/0 stays out of mAcc.
    assert math.isnan(c.accuracy_defect) and c.accuracy_background == 0.0 and c.macc == 0.0


def test_empty_classes_by_hand():
    """mmsegmentation's nanmean: a class with an empty union (IoU) or an empty ground truth (accuracy) is
    left out of mIoU or mAcc; one present in the ground truth but never predicted counts as 0."""
    defect_everywhere = Confusion.of(np.ones((2, 3), bool), np.ones((2, 3), bool))  # no background anywhere
    assert math.isnan(defect_everywhere.iou_background) and defect_everywhere.miou == 1.0
    assert math.isnan(defect_everywhere.accuracy_background) and defect_everywhere.macc == 1.0
    missed = Confusion(tp=0, fp=0, fn=5, tn=95)  # a segmenter that never predicts a defect
    assert missed.iou == 0.0 and missed.iou_background == pytest.approx(95 / 100)
    assert missed.miou == pytest.approx(0.475) and missed.macc == 0.5 and missed.aacc == 0.95
    assert math.isnan(Confusion().miou) and math.isnan(Confusion().macc) and math.isnan(Confusion().aacc)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        Confusion.of(np.zeros((2, 2), bool), np.zeros((2, 3), bool))


class FixedModel(torch.nn.Module):
    """Predicts the given masks in order, one per image it is shown (logits of two classes)."""

    def __init__(self, predictions):
        super().__init__()
        self.predictions, self.seen = torch.as_tensor(np.stack(predictions)), 0

    def forward(self, x):
        pred = self.predictions[self.seen : self.seen + len(x)].float()
        self.seen += len(x)
        return torch.stack([1 - pred, pred], dim=1)


def test_evaluation_counts_per_defect_and_all():
    empty = np.zeros((4, 4), bool)
    defects = ["crack", "crack", "pit", "good"]
    targets = [TARGET, TARGET, empty, empty]  # "pit" has an empty ground-truth mask: all background
    predictions = [PRED, TARGET, empty, PRED]  # the normal image gets 4 false positives
    test = HeldOutSet(defects, torch.zeros(4, 3, 4, 4, dtype=torch.uint8), torch.from_numpy(np.stack(targets)))
    counts = evaluate_segmenter(FixedModel(predictions), test, batch_size=3)
    assert counts["crack"] == Confusion(6, 2, 2, 22)
    assert counts["pit"] == Confusion(0, 0, 0, 16)
    assert counts["good"] == Confusion(0, 4, 0, 12)
    assert counts["all"] == Confusion(6, 6, 2, 50)
    rows = metric_rows("sard", "tile", counts)
    assert [r["defect"] for r in rows] == ["crack", "pit", "all"]
    assert list(rows[0]) == ["method", "category", "defect", "iou", "miou", "macc", "aacc"]
    crack, pit, everything = rows
    assert crack["iou"] == 60.0 and crack["aacc"] == 87.5
    assert crack["miou"] == round(100 * (6 / 10 + 22 / 26) / 2, 2)
    assert crack["macc"] == round(100 * (6 / 8 + 22 / 24) / 2, 2)  # 83.33
    assert math.isnan(pit["iou"]) and pit["miou"] == 100.0 and pit["aacc"] == 100.0 and pit["macc"] == 100.0
    assert everything["iou"] == round(100 * 6 / 14, 2) and everything["aacc"] == round(100 * 56 / 64, 2)
    assert everything["macc"] == round(100 * (6 / 8 + 50 / 56) / 2, 2)
