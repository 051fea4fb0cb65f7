"""Differentiable augmentation of what the discriminator sees (DiffAugment; Zhao et al., NeurIPS 2020).

With a few dozen real defects the discriminator learns them by heart within a few hundred steps; the denoiser
then has no way to win but to paint less (measured on bottle, 20 training defects: docs/dmg_measurements.md).
DiffAugment shows the discriminator real and fake crops through the same family of random, differentiable
transforms, in its own update and in the denoiser's, so that it cannot key on the exact pixels of the few real
defects, and the denoiser's gradients still pass through to the fill.

Every transform moves the mask with the image, so the mask-aware head pools over the moved defect. The
randomness is an argument (``draws``, uniform in [0, 1)), drawn with the batch's other noises, so a training
step stays a pure function of its batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

POLICIES = ("color", "translation", "cutout")
DRAWS_PER_IMAGE = 7  # color: 3 (brightness, saturation, contrast), translation: 2, cutout: 2


def parse_policy(policy: str) -> tuple[str, ...]:
    """``"color,translation"`` -> ``("color", "translation")``; empty: no augmentation."""
    names = tuple(p.strip() for p in policy.split(",") if p.strip())
    unknown = [n for n in names if n not in POLICIES]
    if unknown:
        raise ValueError(f"Unknown DiffAugment policy {', '.join(unknown)}; choose from {', '.join(POLICIES)}.")
    return names


def diff_augment(x: torch.Tensor, mask: torch.Tensor, draws: torch.Tensor, policy: tuple[str, ...],
                 translation: float = 0.125, cutout: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment images and their masks with the transforms of ``policy``, DiffAugment's recipe.

    Args:
        x (`torch.Tensor` of shape `(B, C, H, W)`): images in [-1, 1]; gradients flow through.
        mask (`torch.Tensor` of shape `(B, 1, H, W)`): 1 = defect; moved with the image.
        draws (`torch.Tensor` of shape `(B, DRAWS_PER_IMAGE)`): uniform numbers in [0, 1).
        policy: names from :data:`POLICIES`, applied in that order.
        translation: largest shift, as a fraction of the side (DiffAugment: 1/8); the image is zero-padded.
        cutout: side of the erased square, as a fraction of the side (DiffAugment: 1/2). The mask is kept where
            the image is erased: the discriminator must judge the defect from what is left of it.

    Returns:
        ``(x, mask)`` augmented.
    """
    d = draws.to(x.dtype)[:, :, None, None, None]  # (B, K, 1, 1, 1): one number per image and draw
    if "color" in policy:
        x = x + (d[:, 0] - 0.5)  # brightness
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (d[:, 1] * 2) + mean  # saturation (no-op on one channel)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * (d[:, 2] + 0.5) + mean  # contrast
    if "translation" in policy:
        x, mask = _translate(x, mask, draws[:, 3:5], translation)
    if "cutout" in policy:
        x = x * _cutout_keep(x, draws[:, 5:7], cutout)
    return x, mask


def _translate(x: torch.Tensor, mask: torch.Tensor, draws: torch.Tensor, fraction: float):
    """Shift each image and its mask by up to ``fraction`` of their size, zero-padded (a gather: differentiable)."""
    _, _, height, width = x.shape
    limit_y, limit_x = round(height * fraction), round(width * fraction)
    shift_y = (draws[:, 0] * (2 * limit_y + 1)).long().clamp(max=2 * limit_y) - limit_y
    shift_x = (draws[:, 1] * (2 * limit_x + 1)).long().clamp(max=2 * limit_x) - limit_x
    padded_x = F.pad(x, (limit_x, limit_x, limit_y, limit_y))
    padded_m = F.pad(mask, (limit_x, limit_x, limit_y, limit_y))
    out_x, out_m = [], []
    for i in range(x.shape[0]):
        top, left = limit_y - int(shift_y[i]), limit_x - int(shift_x[i])
        out_x.append(padded_x[i, :, top : top + height, left : left + width])
        out_m.append(padded_m[i, :, top : top + height, left : left + width])
    return torch.stack(out_x), torch.stack(out_m)


def _cutout_keep(x: torch.Tensor, draws: torch.Tensor, fraction: float) -> torch.Tensor:
    """`(B, 1, H, W)`: 0 inside a square of ``fraction`` of the side at a random place, 1 elsewhere."""
    _, _, height, width = x.shape
    size_y, size_x = max(1, round(height * fraction)), max(1, round(width * fraction))
    # The square's centre anywhere in the image (it may hang over the edge), as in DiffAugment.
    centre_y = (draws[:, 0] * height).long()
    centre_x = (draws[:, 1] * width).long()
    top = (centre_y - size_y // 2)[:, None, None]
    left = (centre_x - size_x // 2)[:, None, None]
    rows = torch.arange(height, device=x.device)[None, :, None]
    cols = torch.arange(width, device=x.device)[None, None, :]
    inside = (rows >= top) & (rows < top + size_y) & (cols >= left) & (cols < left + size_x)
    return (~inside).to(x.dtype)[:, None]
