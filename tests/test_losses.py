"""The DMG loss formulas (sard/training/losses.py) against closed forms on constant logits and linear critics."""

from __future__ import annotations

import math

import pytest
import torch

from sard.training import losses


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def _mask(n: int = 2, size: int = 8) -> torch.Tensor:
    mask = torch.zeros(n, 1, size, size)
    mask[:, :, 1:3, 5:8] = 1.0  # 6 pixels per image
    return mask


def test_masked_mean_is_the_mean_over_the_mask_and_zero_when_it_is_empty():
    values = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    mask = _mask()
    expected = values[mask.bool().expand_as(values)].mean()
    assert losses.masked_mean(values, mask) == pytest.approx(expected.item())
    assert losses.masked_mean(values, torch.zeros_like(mask)).item() == 0.0


def test_logit_mask_marks_every_cell_that_touches_the_mask():
    mask = torch.zeros(1, 1, 8, 8)
    mask[0, 0, 3, 4] = 1.0  # one pixel, in cell (1, 2) of a 4 x 4 logit map
    cells = losses.logit_mask(mask, torch.zeros(1, 1, 4, 4))
    assert cells.shape == (1, 1, 4, 4) and cells.sum() == 1 and cells[0, 0, 1, 2] == 1


@pytest.mark.parametrize("real", [True, False])
def test_mask_head_loss_on_constant_logits(real):
    mask, c = _mask(), 0.7
    logits = torch.full((2, 1, 4, 4), c)
    logits[:, :, 3, 0] = 100.0  # a cell outside the mask does not count
    expected = softplus(-c if real else c)
    assert losses.mask_head_loss(logits, mask, real).item() == pytest.approx(expected, rel=1e-6)
    assert losses.mask_head_loss(None, mask, real).item() == 0.0  # the head switched off


def test_discriminator_loss_closed_form():
    mask, a, b, m_real, m_fake, lam = _mask(), 1.5, -0.5, 0.3, 2.0, 0.25
    real = (torch.full((2,), a), torch.full((2, 1, 4, 4), m_real))
    fake = (torch.full((2,), b), torch.full((2, 1, 4, 4), m_fake))
    parts = losses.discriminator_loss(real, fake, mask, lam)
    d_global = softplus(-a) + softplus(b)
    d_mask = softplus(-m_real) + softplus(m_fake)
    assert parts["d_global"].item() == pytest.approx(d_global, rel=1e-6)
    assert parts["d_mask"].item() == pytest.approx(d_mask, rel=1e-6)
    assert parts["loss"].item() == pytest.approx(d_global + lam * d_mask, rel=1e-6)
    # A global-only discriminator: the mask term is zero and the loss is the global term.
    parts = losses.discriminator_loss((real[0], None), (fake[0], None), mask, lam)
    assert parts["d_mask"].item() == 0.0 and parts["loss"].item() == pytest.approx(d_global, rel=1e-6)


def test_past_fakes_are_pooled_over_their_own_masks():
    """With ``fake_mask`` (fakes from the history, each with its own mask) the fakes' mask term and accuracy are
    pooled there: logits outside it do not count."""
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :] = 1.0
    fake_mask = 1.0 - mask
    real = (torch.ones(1), torch.ones(1, 1, 4, 4))
    fake_logits = torch.full((1, 1, 4, 4), 5.0)  # wrong (fake scored real) inside fake_mask only
    fake_logits[..., :2, :] = -5.0
    parts = losses.discriminator_loss(real, (-torch.ones(1), fake_logits), mask, 1.0, fake_mask)
    assert parts["d_mask"].item() == pytest.approx(softplus(-1.0) + softplus(5.0), rel=1e-6)
    accuracy = losses.discriminator_accuracy(real, (-torch.ones(1), fake_logits), mask, fake_mask)
    assert accuracy["acc_mask"].item() == 0.5  # real right, fake wrong where its own mask is


def test_generator_adversarial_loss_closed_form():
    mask, b, m_fake, lam = _mask(), -0.5, 2.0, 3.0
    fake = (torch.full((2,), b), torch.full((2, 1, 4, 4), m_fake))
    parts = losses.generator_adversarial_loss(fake, mask, lam)
    # Non-saturating: the generator is rewarded where the discriminator says "real" (softplus(-D)).
    assert parts["g_global"].item() == pytest.approx(softplus(-b), rel=1e-6)
    assert parts["g_mask"].item() == pytest.approx(softplus(-m_fake), rel=1e-6)
    assert parts["loss"].item() == pytest.approx(softplus(-b) + lam * softplus(-m_fake), rel=1e-6)


def test_reconstruction_loss_is_the_masked_l1():
    mask = _mask()
    x0 = torch.zeros(2, 3, 8, 8)
    x0_hat = torch.full((2, 3, 8, 8), 5.0)  # wrong by 5 everywhere outside the mask: not counted
    x0_hat[mask.bool().expand_as(x0_hat)] = -0.25
    assert losses.reconstruction_loss(x0_hat, x0, mask).item() == pytest.approx(0.25)


def test_reconstruction_weights_scale_each_image():
    mask = _mask()
    x0, x0_hat = torch.zeros(2, 3, 8, 8), torch.ones(2, 3, 8, 8)
    # Both images have the same mask area, so the masked mean is the mean of the two weights.
    assert losses.reconstruction_loss(x0_hat, x0, mask, torch.tensor([1.0, 3.0])).item() == pytest.approx(2.0)


def test_mode_seeking_ratio_is_fill_distance_over_latent_distance():
    mask = _mask()
    a, b = torch.zeros(2, 3, 8, 8), torch.full((2, 3, 8, 8), 9.0)
    b[mask.bool().expand_as(b)] = 0.5  # outside the mask the fills may differ as they like
    z, other_z = torch.zeros(2, 4), torch.full((2, 4), 0.25)
    assert losses.mode_seeking_ratio(a, b, z, other_z, mask).item() == pytest.approx(0.5 / 0.25)


def test_mode_seeking_shortfall_stops_at_the_real_spread():
    mask = _mask()
    inside = mask.bool().expand(2, 3, 8, 8)
    real = torch.zeros(2, 3, 8, 8)
    real[0][inside[0]] = torch.tensor([1.0, -1.0]).repeat(inside[0].sum().item() // 2)  # spread 1 inside the mask
    real[0][~inside[0]] = 50.0  # outside it the real image does not count
    a, b = torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 8)
    b[inside] = 0.2
    # Image 0: 0.5 x spread 1 - difference 0.2; image 1: a flat real defect asks for nothing.
    assert losses.mode_seeking_shortfall(a, b, real, mask, 0.5).item() == pytest.approx((0.3 + 0.0) / 2)
    b[inside] = 0.7  # past the target: no push at all, and no gradient
    b.requires_grad_(True)
    shortfall = losses.mode_seeking_shortfall(a, b, real, mask, 0.5)
    shortfall.backward()
    assert shortfall.item() == 0.0 and b.grad.abs().sum().item() == 0.0


def test_high_frequency_gap_compares_texture_strength_per_image():
    # Columns alternating 1, 0: a 5 x 5 box mean of 3/5 on the ones and 2/5 on the zeros, so |high-pass| = 0.4
    # away from the border; a constant image has none.
    stripes = torch.zeros(2, 3, 12, 12)
    stripes[..., ::2] = 1.0
    flat = torch.full((2, 3, 12, 12), 0.3)
    mask = torch.zeros(2, 1, 12, 12)
    mask[:, :, 4:8, 4:8] = 1.0
    assert losses.high_frequency_energy(stripes, mask).tolist() == pytest.approx([0.4, 0.4])
    assert losses.high_frequency_energy(flat, mask).tolist() == pytest.approx([0.0, 0.0], abs=1e-6)
    # Per image, so a fill smoother than its real defect and one rougher than its own do not cancel.
    fake, real = torch.stack([flat[0], stripes[1]]), torch.stack([stripes[0], flat[1]])
    assert losses.high_frequency_gap(fake, real, mask).item() == pytest.approx(0.4)
    # The same texture shifted by a column: other pixels, the same strength, no gap.
    assert losses.high_frequency_gap(stripes.roll(1, dims=3), stripes, mask).item() == pytest.approx(0.0, abs=1e-6)


def test_r1_penalty_is_the_squared_gradient_norm_per_sample():
    """D(x) = <w_i, x_i^2> / 2 per sample: grad_x D = w x, so R1 = mean_i |w_i x_i|^2, and R1 stays differentiable
    (create_graph) so that it can train the discriminator."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, 2, 4, 4, generator=g, requires_grad=True)
    x = torch.randn(3, 2, 4, 4, generator=g, requires_grad=True)
    penalty = losses.r1_penalty((w * x.pow(2) / 2).sum(), x)
    assert penalty.item() == pytest.approx((w * x).pow(2).flatten(1).sum(1).mean().item(), rel=1e-6)
    penalty.backward()
    # d/dw mean_i sum (w x)^2 = 2 w x^2 / n
    torch.testing.assert_close(w.grad, 2 * w.detach() * x.detach().pow(2) / 3)


@pytest.mark.parametrize(("option", "part"), [("lambda_hf", "hf"), ("lambda_low", "low"), ("lambda_tone", "tone")])
def test_the_denoiser_loss_adds_each_weighted_term(option, part):
    from conftest import make_denoiser

    from sard import SARDScheduler
    from sard.training.dmg import DMGLoss

    denoiser, alphas = make_denoiser(), SARDScheduler(num_train_timesteps=4).alphas_cumprod
    image = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    mask = torch.zeros(2, 1, 16, 16)
    mask[:, :, 4:10, 5:12] = 1.0
    raw = {"image": image, "mask": mask, "label": torch.tensor([0, 1])}
    batch = DMGLoss(alphas, 4).micro_batches(raw, 1, torch.Generator().manual_seed(1), "cpu")[0]
    without = DMGLoss(alphas, 4, lambda_adv=0.0, view="clean").denoiser_loss(None, denoiser, batch)
    weighted = DMGLoss(alphas, 4, lambda_adv=0.0, view="clean", **{option: 2.0}).denoiser_loss(None, denoiser, batch)
    assert part not in without and weighted[part].item() > 0
    assert weighted["loss"].item() == pytest.approx(without["loss"].item() + 2.0 * weighted[part].item(), rel=1e-5)


def test_low_frequency_loss_sees_colour_and_shading_and_not_fine_texture():
    mask = torch.zeros(1, 1, 24, 24)
    mask[..., 6:18, 6:18] = 1.0
    grey = torch.full((1, 3, 24, 24), 0.1)
    rust = grey.clone()
    rust[:, 0] += 0.4 * mask[:, 0]  # a red stain inside the mask
    # A checkerboard of +-0.3 averages out in a 9 x 9 blur (up to its odd corner), so it costs nearly nothing.
    checker = grey + 0.3 * ((torch.arange(24)[:, None] + torch.arange(24)[None]) % 2 * 2 - 1) * mask
    assert losses.low_frequency_loss(grey, grey, mask).item() == 0.0
    stain = losses.low_frequency_loss(grey, rust, mask).item()
    assert stain > 0.05
    assert losses.low_frequency_loss(checker, grey, mask).item() < 0.1 * stain


def test_tone_gap_compares_mean_colour_inside_the_mask_not_where_it_lies():
    mask = torch.zeros(2, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1.0
    tile = torch.zeros(2, 3, 8, 8)
    crack = tile.clone()
    crack[:, :, 3, 2:6] = -0.8  # a dark line, a quarter of the mask: its mean is -0.2 in every channel
    assert losses.tone_gap(crack, crack, mask).item() == 0.0
    assert losses.tone_gap(tile, crack, mask).item() == pytest.approx(0.2)  # the crack lightened away
    # The same darkness spread evenly, or the line moved by a row: the same tone, no gap.
    assert losses.tone_gap(tile - 0.2 * mask, crack, mask).item() == pytest.approx(0.0, abs=1e-7)
    assert losses.tone_gap(crack.roll(1, dims=2), crack, mask).item() == pytest.approx(0.0, abs=1e-7)
    # Per channel: a red stain of the same grey level still differs in colour; outside the mask nothing counts.
    red = tile.clone()
    red[:, 0] += 0.6 * mask[:, 0]
    assert losses.tone_gap(red, tile, mask).item() == pytest.approx(0.2)
    assert losses.tone_gap(tile + (1 - mask), tile, mask).item() == 0.0


def test_tone_gap_per_type_leaves_each_fill_its_own_tone_but_not_the_types_average():
    mask = torch.ones(4, 1, 2, 2)
    real = torch.zeros(4, 1, 2, 2)
    label = torch.tensor([0, 0, 1, 1])
    # Type 0: one fill darker, one lighter than its real defect by as much: on average right, no gap per type.
    fake = torch.tensor([-0.3, 0.3, 0.0, 0.0]).reshape(4, 1, 1, 1).expand(4, 1, 2, 2)
    assert losses.tone_gap(fake, real, mask).item() == pytest.approx(0.15)  # per image: 0.6 / 4
    assert losses.tone_gap(fake, real, mask, label).item() == pytest.approx(0.0, abs=1e-7)
    # Type 1 lighter on average by 0.2 (0.1 and 0.3): the types' gaps 0 and 0.2, averaged.
    fake = torch.tensor([-0.3, 0.3, 0.1, 0.3]).reshape(4, 1, 1, 1).expand(4, 1, 2, 2)
    assert losses.tone_gap(fake, real, mask, label).item() == pytest.approx(0.1)
    # Labels need not be contiguous or sorted.
    assert losses.tone_gap(fake, real, mask, torch.tensor([7, 7, 2, 2])).item() == pytest.approx(0.1)
