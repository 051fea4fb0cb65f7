"""DiffAugment for the discriminator: each transform against its closed form, the mask moving with the image,
gradients to the fake, and the discriminator still learning texture through it."""

from __future__ import annotations

import pytest
import torch
from test_discriminator import held_out_accuracy_after_training

from sard import MaskAwareDiscriminator
from sard.training.diffaugment import DRAWS_PER_IMAGE, diff_augment, parse_policy
from sard.training.dmg import DMGLoss


def _neutral(batch: int) -> torch.Tensor:
    """Draws at which colour and translation change nothing (brightness +0, saturation and contrast x1, no
    shift)."""
    return torch.full((batch, DRAWS_PER_IMAGE), 0.5)


def _image_and_mask(batch=2, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 3, size, size, generator=g) * 2 - 1
    mask = torch.zeros(batch, 1, size, size)
    mask[:, :, 4:8, 6:10] = 1
    return x, mask


def test_neutral_draws_change_nothing():
    x, mask = _image_and_mask()
    out, out_mask = diff_augment(x, mask, _neutral(2), ("color", "translation"))
    assert torch.allclose(out, x, atol=1e-6) and torch.equal(out_mask, mask)


def test_colour_is_brightness_saturation_contrast():
    x, mask = _image_and_mask(batch=1)
    draws = _neutral(1)
    draws[0, :3] = torch.tensor([0.75, 0.5, 1.0])  # brightness +0.25, saturation x1, contrast x1.5
    out, out_mask = diff_augment(x, mask, draws, ("color",))
    shifted = x + 0.25
    expected = (shifted - shifted.mean()) * 1.5 + shifted.mean()
    assert torch.allclose(out, expected, atol=1e-5) and torch.equal(out_mask, mask)
    draws[0, :3] = torch.tensor([0.5, 0.0, 0.5])  # saturation x0: every channel becomes the pixel's grey level
    grey, _ = diff_augment(x, mask, draws, ("color",))
    assert torch.allclose(grey, x.mean(dim=1, keepdim=True).expand_as(x), atol=1e-6)


def test_translation_moves_the_mask_with_the_image_and_pads_with_zeros():
    x, mask = _image_and_mask(batch=1, size=16)
    draws = _neutral(1)
    draws[0, 3:5] = torch.tensor([0.99, 0.0])  # the largest shifts: 2 px down (16 / 8), 2 px left
    out, out_mask = diff_augment(x, mask, draws, ("translation",))
    assert torch.equal(out[..., 2:, :14], x[..., :14, 2:]) and torch.equal(out_mask[..., 2:, :14], mask[..., :14, 2:])
    assert (out[..., :2, :] == 0).all() and (out[..., :, 14:] == 0).all()
    assert out_mask.sum() == mask.sum()  # the defect is inside the image before and after


def test_cutout_erases_a_square_of_half_the_side_and_keeps_the_mask():
    x, mask = _image_and_mask(batch=1, size=16)
    draws = _neutral(1)
    draws[0, 5:7] = 0.5  # centred
    out, out_mask = diff_augment(x + 2.0, mask, draws, ("cutout",))  # shifted off zero to count the erased
    assert (out == 0).sum() == 3 * 8 * 8 and (out[..., 4:12, 4:12] == 0).all()
    assert torch.equal(out_mask, mask)


def test_gradients_reach_the_augmented_image():
    x, mask = _image_and_mask()
    x.requires_grad_(True)
    draws = torch.rand(2, DRAWS_PER_IMAGE, generator=torch.Generator().manual_seed(1))
    out, _ = diff_augment(x, mask, draws, ("color", "translation", "cutout"))
    out.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_unknown_policy_is_refused():
    assert parse_policy(" color, translation ") == ("color", "translation") and parse_policy("") == ()
    with pytest.raises(ValueError, match="Unknown DiffAugment policy rotate"):
        parse_policy("color,rotate")


def test_the_discriminator_still_learns_texture_through_the_augmentation():
    """Trained on augmented real and fake crops (one draw per pair), it tells held-out, unaugmented real
    defects from their blurred copies: the augmentation hides the exact pixels, not the texture."""
    policy = parse_policy("color,translation")

    def augment(real, fake, mask, generator):
        draws = torch.rand(real.shape[0], DRAWS_PER_IMAGE, generator=generator)
        (real, seen_mask), (fake, _) = diff_augment(real, mask, draws, policy), diff_augment(fake, mask, draws, policy)
        return real, fake, seen_mask

    accuracy = held_out_accuracy_after_training(augment)
    assert accuracy["acc_mask"] > 0.8 and accuracy["acc_global"] > 0.8


def test_dmg_loss_augments_in_training_only(tiny_denoiser):
    """With ``augment`` the batch carries its draws and both losses run through them; the held-out accuracy is
    measured on the crops as they are; without it the batch's random stream is what it always was."""
    alphas_cumprod = torch.linspace(1.0, 0.01, 5)
    disc = MaskAwareDiscriminator(channels=(8, 16), num_train_timesteps=4, num_defect_types=2, view="clean")
    x, mask = _image_and_mask(batch=4)
    batch = {"image": x, "mask": mask, "label": torch.tensor([0, 1, 0, 1])}
    plain = DMGLoss(alphas_cumprod, tiny_denoiser.config.latent_dim, view="clean")
    augmented = DMGLoss(alphas_cumprod, tiny_denoiser.config.latent_dim, view="clean", augment=("color",
                                                                                                  "translation"))
    plain_batch = plain.micro_batches(batch, 1, torch.Generator().manual_seed(0), "cpu")[0]
    aug_batch = augmented.micro_batches(batch, 1, torch.Generator().manual_seed(0), "cpu")[0]
    assert "augment" not in plain_batch and aug_batch["augment"].shape == (2, 4, DRAWS_PER_IMAGE)
    assert all(torch.equal(plain_batch[k], aug_batch[k]) for k in plain_batch)  # drawn last: the rest unchanged
    d_plain = plain.discriminator_loss(disc, tiny_denoiser, plain_batch)["loss"]
    d_aug = augmented.discriminator_loss(disc, tiny_denoiser, aug_batch)["loss"]
    assert torch.isfinite(d_aug) and not torch.allclose(d_plain, d_aug)
    g_aug = augmented.denoiser_loss(disc, tiny_denoiser, aug_batch)["loss"]
    g_aug.backward()
    assert all(p.grad is not None for p in tiny_denoiser.parameters() if p.requires_grad)
    assert plain.accuracy_by_level(disc, tiny_denoiser, plain_batch) == augmented.accuracy_by_level(
        disc, tiny_denoiser, aug_batch)


def test_dmg_loss_refuses_augmenting_the_pair_view():
    """Only the clean view augments real and fake alike (the pair view's x_t would have to move too)."""
    with pytest.raises(ValueError, match="augment needs the clean view"):
        DMGLoss(torch.linspace(1.0, 0.01, 5), 8, view="pair", augment=("color",))
