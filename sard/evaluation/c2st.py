"""Classifier two-sample test (C2ST; Lopez-Paz and Oquab, "Revisiting Classifier Two-Sample Tests", ICLR 2017).

Can a small network, trained from scratch, tell real defect crops from painted ones? Under the null hypothesis
(the two samples come from one distribution) no classifier beats chance on held-out data, so the held-out
accuracy is the statistic: 0.5 = indistinguishable, 1.0 = always told apart.

- :func:`defect_crop`: the classifier's view of one defect: a window at the image's own scale centred on the
  mask, the grey levels minus the mean of a ring around the mask and their high-pass, both zero outside the
  mask, and the mask.
- :func:`c2st`: k-fold cross-validation over *groups* (a real defect and its painted counterpart share the
  mask, and so one group: the classifier is never tested on a mask it was trained on), a tiny CNN
  (:class:`TinyClassifier`) trained from scratch in each fold, the held-out accuracy per fold and per sample.

Everything is seeded by one integer; global random state is left as it was (the weights are drawn inside
``torch.random.fork_rng``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .realism import ring

GREY_SCALE = 64.0  # grey levels are divided by this: a defect 64 levels darker than its ring is -1


def _box(mask: np.ndarray, margin: float, min_side: int) -> tuple[int, int, int]:
    """``(centre row, centre column, side)`` of the square box around ``mask``'s bounding box: the longer side
    of the bounding box plus ``margin`` of it on each side, at least ``min_side`` pixels."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    longer = max(bottom - top, right - left)
    side = max(min_side, int(math.ceil(longer * (1 + 2 * margin))))
    return (top + bottom) // 2, (left + right) // 2, side


def largest_component(mask: np.ndarray, grid: int = 64) -> np.ndarray:
    """The pixels of a bool `(H, W)` mask in its largest 8-connected component (ties: the last in raster order).

    Components are found on the mask's bounding box pooled to at most ``grid`` pixels a side (a coarse cell is
    in the mask if any pixel of it is), by spreading labels with 3 x 3 max-pooling until they settle; parts
    of the mask closer than a coarse cell count as one component. That is enough to centre a crop, and fast.
    """
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not rows.size:
        return mask.copy()
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    box = torch.from_numpy(np.ascontiguousarray(mask[top:bottom, left:right], dtype=np.float32))[None, None]
    factor = max(1, math.ceil(max(box.shape[-2:]) / grid))
    inside = F.max_pool2d(box, factor, ceil_mode=True)[0, 0] > 0
    labels = torch.where(inside, torch.arange(1, inside.numel() + 1, dtype=torch.float32).view(inside.shape), 0.0)
    while True:
        spread = torch.where(inside, F.max_pool2d(labels[None, None], 3, stride=1, padding=1)[0, 0], 0.0)
        if torch.equal(spread, labels):
            break
        labels = spread
    fine = labels.repeat_interleave(factor, 0).repeat_interleave(factor, 1)[: bottom - top, : right - left]
    fine = torch.where(box[0, 0] > 0, fine, 0.0)
    values, counts = torch.unique(fine[fine > 0], return_counts=True)
    best = values[counts == counts.max()].max()
    out = np.zeros_like(mask)
    out[top:bottom, left:right] = (fine == best).numpy()
    return out


def _cut(image: np.ndarray, centre: tuple[int, int], side: int, mode: str = "edge") -> np.ndarray:
    """The ``side x side`` window of a 2-D array centred on ``centre``, padded (``np.pad`` mode) where it
    leaves the array."""
    top, left = centre[0] - side // 2, centre[1] - side // 2
    pad = max(0, -top, -left, top + side - image.shape[0], left + side - image.shape[1])
    padded = np.pad(image, pad, mode=mode)
    return padded[top + pad : top + pad + side, left + pad : left + pad + side]


def _highpass(gray: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``x`` minus the mean of its 3 x 3 neighbours inside ``mask`` (itself included): the texture of what is
    inside the mask, without its shading and without the pixels around it (zero outside the mask)."""
    def box(x):
        p = np.pad(x, 1)
        return sum(p[dy : dy + x.shape[0], dx : dx + x.shape[1]] for dy in range(3) for dx in range(3))

    inside = mask.astype(np.float32)
    mean = box(gray * inside) / np.maximum(box(inside), 1.0)
    return np.where(mask, gray - mean, 0.0)


def defect_crop(gray: np.ndarray, mask: np.ndarray, size: int = 48, context: int = 0, ring_width: int = 3,
                scale: str = "native", margin: float = 0.25, min_side: int = 16) -> np.ndarray:
    """The classifier's view of one defect: a `(3, size, size)` float32 array: grey levels, high-pass, mask.

    The window is centred on the mask's largest connected component (a mask of several pits far apart is
    seen at one of them, not as a few pixels each); other parts of the mask in the window stay in view. The
    grey levels are those minus the mean of the ring around the mask, divided by :data:`GREY_SCALE`, and zero
    farther than ``context`` pixels from the mask; the high-pass channel is the grey levels minus the mean of
    their 3 x 3 neighbours inside the mask, divided by ``GREY_SCALE / 4``, zero outside the mask (the texture
    of the fill alone, which a network this small, from this few samples, learns to extract only slowly:
    bundled ball-screw model, 128 held-out masks, 0.82 held-out accuracy without this channel, 1.00 with it).

    Args:
        gray: `(H, W)` grey levels (0-255) of the full-resolution image.
        mask: `(H, W)` bool, the defect's mask; must not be empty.
        size: the side of the crop the classifier sees.
        context: pixels around the mask that stay visible (default 0: the inside of the mask only). Real
            masks are drawn by hand and the real defect often bleeds past them, into a surface that is not the
            normal image's: with 3 pixels of context (and an earlier form of the high-pass channel that saw
            them too) a classifier told the real defects from the same real defects pasted into the normal
            images 96 % of the time on ball_screw, 128 masks (61 % with none).
        ring_width: the ring (image pixels) whose mean grey level is subtracted: the surface's brightness is no
            cue, the defect's contrast against it is.
        scale: ``"native"``: a ``size`` x ``size`` window at the image's own scale, not resampled: the texture
            at the scale it is measured at (a large defect is seen in part). ``"fit"``: the box around the
            component (its longer side plus ``margin`` of it each side, at least ``min_side`` pixels)
            resampled to ``size`` (antialiased; the whole shape, its texture blurred by the shrinking).
    """
    if scale not in ("fit", "native"):
        raise ValueError(f"scale must be 'fit' or 'native', got {scale!r}.")
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        raise ValueError("The mask is empty: there is no defect to crop.")
    around = ring(mask, ring_width)
    level = float(gray[around].mean()) if around.any() else float(gray[mask].mean())
    centre_row, centre_col, side = _box(largest_component(mask), margin, min_side)
    side = size if scale == "native" else side
    centre = (centre_row, centre_col)
    window = _cut(np.asarray(gray, dtype=np.float32) - level, centre, side)
    window_mask = _cut(mask.astype(np.float32), centre, side, mode="constant")
    if side != size:
        pixels = torch.from_numpy(np.ascontiguousarray(window))[None, None]
        window = F.interpolate(pixels, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        window = window[0, 0].numpy()
        pooled = F.interpolate(torch.from_numpy(np.ascontiguousarray(window_mask))[None, None], size=(size, size),
                               mode="area")
        window_mask = (pooled[0, 0].numpy() > 0).astype(np.float32)  # any part of a pixel: one-pixel pits survive
    crop_mask = window_mask > 0
    visible = crop_mask | ring(crop_mask, context) if context > 0 else crop_mask
    grey = np.where(visible, window / GREY_SCALE, 0.0)
    texture = _highpass(window, crop_mask) / (GREY_SCALE / 4)
    return np.stack([grey, texture, crop_mask]).astype(np.float32)


class TinyClassifier(nn.Module):
    """Three 3 x 3 conv blocks (``width``, 2 and 4 times ``width`` channels, ReLU, 2 x 2 max-pool), an average
    of the last features over the mask (the last input channel, max-pooled to their size), one logit: about
    24k parameters at width 16; the logit is positive for "real".

    Pooling over the mask and not the whole crop, so that a pit of a few pixels counts as much as a defect
    that fills the window (on ball_screw's crops a global average did as well: 1.00 either way; without the
    high-pass channel 0.82 masked, 0.75 global). No normalisation layer: a per-sample one (GroupNorm)
    divides out the defect's contrast, a cue the test must keep, and BatchNorm's running statistics after a
    few hundred steps made held-out predictions worse than training-mode ones.
    """

    def __init__(self, in_channels: int = 3, width: int = 16):
        super().__init__()
        layers, channels = [], in_channels
        for out in (width, 2 * width, 4 * width):
            layers += [nn.Conv2d(channels, out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            channels = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.features(x)
        weight = F.adaptive_max_pool2d(x[:, -1:], features.shape[-2:])
        pooled = (features * weight).sum(dim=(2, 3)) / weight.sum(dim=(2, 3)).clamp_min(1.0)
        return self.head(pooled)[:, 0]


def _dihedral(batch: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Each crop flipped and rotated by one of the 8 symmetries of the square (augmentation for few samples)."""
    out = batch.clone()
    for i, k in enumerate(rng.integers(0, 8, len(batch))):
        crop = torch.rot90(batch[i], int(k % 4), dims=(1, 2))
        out[i] = torch.flip(crop, dims=(2,)) if k >= 4 else crop
    return out


def train_classifier(crops: np.ndarray, labels: np.ndarray, seed: int, steps: int = 200, batch_size: int = 32,
                     lr: float = 3e-3, weight_decay: float = 1e-4, width: int = 16) -> TinyClassifier:
    """A :class:`TinyClassifier` trained from scratch on `(N, C, S, S)` crops and 0/1 labels (Adam, binary
    cross-entropy, dihedral augmentation, a fixed number of steps: nothing is tuned on held-out data)."""
    rng = np.random.default_rng(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TinyClassifier(crops.shape[1], width)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    x, y = torch.from_numpy(crops), torch.from_numpy(labels.astype(np.float32))
    model.train()
    order, position = rng.permutation(len(x)), 0
    for _ in range(steps):
        if position + batch_size > len(x):  # a new pass over the crops in a new order
            order, position = rng.permutation(len(x)), 0
        index = torch.from_numpy(order[position : position + batch_size])
        position += batch_size
        loss = F.binary_cross_entropy_with_logits(model(_dihedral(x[index], rng)), y[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def group_folds(groups: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """Sample indices split into ``k`` folds (fewer when there are fewer groups); every group in one fold,
    groups dealt out in a seeded random order so the folds differ in size by at most one group."""
    unique = np.unique(groups)
    order = np.random.default_rng(seed).permutation(unique)
    k = min(k, len(unique))
    return [np.flatnonzero(np.isin(groups, order[f::k])) for f in range(k)]


@dataclass
class C2STResult:
    """Held-out accuracies of a classifier two-sample test.

    Attributes:
        accuracy: the mean of the folds' held-out accuracies (0.5: the samples cannot be told apart).
        std: their standard deviation over the folds (ddof 0).
        fold_accuracies: one per fold.
        correct: `(N,)` bool, whether each sample was classified right by the fold that held it out.
    """

    accuracy: float
    std: float
    fold_accuracies: list[float]
    correct: np.ndarray

    def accuracy_of(self, index: np.ndarray) -> float:
        """The held-out accuracy on a subset of the samples (e.g. one defect type); NaN for none."""
        return float(self.correct[index].mean()) if len(index) else math.nan


def c2st(real: np.ndarray, fake: np.ndarray, groups_real=None, groups_fake=None, folds: int = 5, seed: int = 0,
         steps: int = 200, width: int = 16) -> C2STResult:
    """Classifier two-sample test between `(N, C, S, S)` real and `(M, C, S, S)` fake crops.

    Args:
        groups_real, groups_fake: integer group per crop (default: each real crop its own group, and fake
            crop i in the group of real crop i, for paired samples); a group is never split across folds.
        folds: the k of k-fold cross-validation.
        seed: seeds the folds, the weights and the batches of every fold.
        steps: optimiser steps (batches of 32) in each fold.
        width: the classifier's first channel count (:class:`TinyClassifier`).

    Returns:
        :class:`C2STResult`; samples come first real then fake in ``correct``.
    """
    if len(real) < 2 or len(fake) < 2:
        raise ValueError(f"A two-sample test needs at least 2 crops a side, got {len(real)} real, {len(fake)} fake.")
    groups_real = np.arange(len(real)) if groups_real is None else np.asarray(groups_real)
    groups_fake = np.arange(len(fake)) if groups_fake is None else np.asarray(groups_fake)
    crops = np.concatenate([real, fake]).astype(np.float32)
    labels = np.concatenate([np.ones(len(real)), np.zeros(len(fake))])
    groups = np.concatenate([groups_real, groups_fake])
    correct = np.zeros(len(crops), dtype=bool)
    accuracies = []
    for f, test in enumerate(group_folds(groups, folds, seed)):
        train = np.setdiff1d(np.arange(len(crops)), test)
        model = train_classifier(crops[train], labels[train], seed=seed * 1000 + f, steps=steps, width=width)
        with torch.no_grad():
            predicted = (model(torch.from_numpy(crops[test])) > 0).numpy()
        correct[test] = predicted == labels[test].astype(bool)
        accuracies.append(float(correct[test].mean()))
    return C2STResult(float(np.mean(accuracies)), float(np.std(accuracies)), accuracies, correct)
