"""The losses of Discriminative Mask Guidance, in DDGAN's non-saturating form (docs/METHOD.md, "DMG")."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..discriminator import high_pass


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over the pixels where ``mask`` is 1 (0 when the mask is empty), over the batch."""
    mask = mask.to(values.dtype).expand_as(values)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def masked_mean_per_image(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """`(B,)`: each image's mean of ``values`` over the pixels where ``weight`` (shaped like ``values``) is 1."""
    return (values * weight).flatten(1).sum(1) / weight.flatten(1).sum(1).clamp(min=1.0)


def logit_mask(mask: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """The mask at the resolution of a logit map: a cell counts if any pixel under it is in the mask,
    so the mask-aware head is pooled over the mask and its border."""
    return F.adaptive_max_pool2d(mask.float(), logits.shape[-2:])


def mask_head_loss(mask_logits: torch.Tensor | None, mask: torch.Tensor, real: bool) -> torch.Tensor:
    """The mask-aware head's non-saturating term, pooled over the mask: ``softplus(-+Dm)`` for real (fake)
    targets; zero when the head is switched off."""
    if mask_logits is None:
        return mask.new_zeros(())
    sign = -1.0 if real else 1.0
    return masked_mean(F.softplus(sign * mask_logits), logit_mask(mask, mask_logits))


def discriminator_loss(
    real: tuple[torch.Tensor, torch.Tensor | None],
    fake: tuple[torch.Tensor, torch.Tensor | None],
    mask: torch.Tensor,
    lambda_mask: float,
    fake_mask: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """``L_D = softplus(-Dg(real)) + softplus(Dg(fake))
    + lambda_m * masked_mean(softplus(-Dm(real)) + softplus(Dm(fake)), m)``, the fakes' term pooled over
    ``fake_mask`` when they have masks of their own (past fakes), else over ``mask``.

    Returns the total as ``"loss"`` and its parts for logging.
    """
    fake_mask = mask if fake_mask is None else fake_mask
    global_loss = F.softplus(-real[0]).mean() + F.softplus(fake[0]).mean()
    mask_loss = mask_head_loss(real[1], mask, real=True) + mask_head_loss(fake[1], fake_mask, real=False)
    return {"loss": global_loss + lambda_mask * mask_loss, "d_global": global_loss, "d_mask": mask_loss}


def generator_adversarial_loss(
    fake: tuple[torch.Tensor, torch.Tensor | None], mask: torch.Tensor, lambda_mask: float
) -> dict[str, torch.Tensor]:
    """``L_G,adv = softplus(-Dg(fake)) + lambda_m * masked_mean(softplus(-Dm(fake)))``."""
    global_loss = F.softplus(-fake[0]).mean()
    mask_loss = mask_head_loss(fake[1], mask, real=True)
    return {"loss": global_loss + lambda_mask * mask_loss, "g_global": global_loss, "g_mask": mask_loss}


def reconstruction_loss(
    x0_hat: torch.Tensor, x0: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """``masked_mean(w * |x0_hat - x0|, m)``: anchors the fill to the real defect's colour and shape.
    ``weight``: `(B,)` per-sample weights ``w`` (None: 1)."""
    error = (x0_hat - x0).abs()
    if weight is not None:
        error = error * weight.reshape(-1, *([1] * (error.ndim - 1)))
    return masked_mean(error, mask)


def mode_seeking_ratio(
    x0_hat: torch.Tensor, other: torch.Tensor, z: torch.Tensor, other_z: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """``masked_mean(|G(z1) - G(z2)|, m) / mean(|z1 - z2|)`` (Mao et al. 2019, MSGAN): how far two latents move
    the fill, per unit of latent distance. The denoiser maximises it so that it does not ignore ``z``."""
    return masked_mean((x0_hat - other).abs(), mask) / (z - other_z).abs().mean().clamp(min=1e-8)


def mode_seeking_shortfall(
    x0_hat: torch.Tensor, other: torch.Tensor, real: torch.Tensor, mask: torch.Tensor, target: float
) -> torch.Tensor:
    """``mean_b relu(target * std_m(real_b) - masked_mean_b |G(z1) - G(z2)|)``: how far two latents' fills fall
    short of differing by ``target`` times the real defect's own spread inside its mask (``std_m``). Unlike the
    ratio it stops pushing once they differ that much, so that the push for variety cannot pull the fills away
    from the real defects' tones (the unbounded ratio darkened the large magnetic-tile defects)."""
    weight = mask.to(real.dtype).expand_as(real)
    mean = masked_mean_per_image(real, weight)
    spread = masked_mean_per_image((real - mean.reshape(-1, *([1] * (real.ndim - 1)))) ** 2, weight).sqrt()
    difference = masked_mean_per_image((x0_hat - other).abs(), weight)
    return F.relu(target * spread.detach() - difference).mean()


def high_frequency_energy(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`(B,)`: each image's mean ``|high_pass(x)|`` inside its mask (over channels too): how much fine texture
    the region holds, wherever it lies."""
    weight = mask.to(x.dtype).expand_as(x)
    return masked_mean_per_image(high_pass(x).abs(), weight)


def high_frequency_gap(fake: torch.Tensor, real: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``mean_b |energy(fake_b) - energy(real_b)|`` (:func:`high_frequency_energy`): the fill should hold as
    much fine texture as the real defect in the same mask, not the same pixels. An L1 to one real defect asks
    for their mean, which is smooth; this asks for their texture's strength, which an average does not have."""
    return (high_frequency_energy(fake, mask) - high_frequency_energy(real, mask)).abs().mean()


def low_frequency_loss(fake: torch.Tensor, real: torch.Tensor, mask: torch.Tensor, size: int = 9) -> torch.Tensor:
    """The masked L1 between the ``size x size`` box blurs of ``fake`` and ``real``: the fill's shading and colour
    follow the real defect's, its fine texture is left free (to the discriminator and the high-frequency gap)."""
    return reconstruction_loss(fake - high_pass(fake, size), real - high_pass(real, size), mask)


def tone_gap(fake: torch.Tensor, real: torch.Tensor, mask: torch.Tensor, label: torch.Tensor | None = None
             ) -> torch.Tensor:
    """``mean_{b,c} |mean_m(fake_bc) - mean_m(real_bc)|``: each image's mean colour inside its mask, per channel,
    should be the real defect's. With the background real, that is the defect's contrast against its
    surroundings, the figure a segmenter learns a crack by; where inside the mask the dark pixels go is left free
    (an L1 pins them to the real defect's pixels, a blur L1 to its blurred shading).

    With ``label`` (`(B,)` defect types) the signed gaps are first averaged over each type's images in the batch:
    a type's fills must be as dark as its real defects on average, and each fill may be lighter or darker than
    the one real defect it stands beside. Per image, the gap asks every fill from a noisy level for the tone of
    a real defect it cannot see. Measured on magnetic_tile, both forms made the fills alike (diversity
    0.43 -> 0.26-0.27): a batch of 16 holds about three crops per type, so the type's mean is nearly each
    image's (docs/dmg_measurements.md, "afternoon")."""
    weight = mask.to(fake.dtype).expand_as(fake).flatten(2)
    gaps = ((fake - real).flatten(2) * weight).sum(2) / weight.sum(2).clamp(min=1.0)  # (B, C), signed
    if label is None:
        return gaps.abs().mean()
    types, group = torch.unique(label, return_inverse=True)
    sums = gaps.new_zeros(len(types), gaps.shape[1]).index_add_(0, group, gaps)
    counts = torch.bincount(group, minlength=len(types)).to(gaps.dtype)
    return (sums / counts[:, None]).abs().mean()


def pooled_mask_logits(mask_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`(B,)`: each image's mask-aware logits averaged over its mask and border (see :func:`logit_mask`)."""
    cells = logit_mask(mask, mask_logits)
    return masked_mean_per_image(mask_logits, cells)


def discriminator_accuracy(
    real: tuple[torch.Tensor, torch.Tensor | None], fake: tuple[torch.Tensor, torch.Tensor | None], mask: torch.Tensor,
    fake_mask: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The share of real inputs each head scores above 0 and of fakes it scores below: ``acc_global``,
    ``acc_mask`` (the mask-aware logits pooled over the mask, ``fake_mask`` for the fakes when given), each the
    mean of its real and fake accuracy."""
    fake_mask = mask if fake_mask is None else fake_mask
    def accuracy(real_logits, fake_logits):
        return ((real_logits > 0).float().mean() + (fake_logits < 0).float().mean()) / 2

    parts = {"acc_global": accuracy(real[0].detach(), fake[0].detach())}
    if real[1] is not None:
        parts["acc_mask"] = accuracy(pooled_mask_logits(real[1].detach(), mask),
                                     pooled_mask_logits(fake[1].detach(), fake_mask))
    return parts


def r1_penalty(logits_sum: torch.Tensor, real_input: torch.Tensor) -> torch.Tensor:
    """``|grad_x D(x)|^2`` on real inputs, averaged over the batch (Mescheder et al. 2018)."""
    (grad,) = torch.autograd.grad(logits_sum, real_input, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()
