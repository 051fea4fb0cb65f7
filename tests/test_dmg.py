"""DMGLoss (sard/training/dmg.py): the finished samples it shows the discriminator (``lambda_sample``)."""

from __future__ import annotations

import pytest
import torch
from conftest import make_denoiser

from sard import SARDScheduler
from sard.discriminator import MaskAwareDiscriminator
from sard.training.dmg import DMGLoss

T = 4


def _batch(dmg: DMGLoss) -> dict:
    image = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    mask = torch.zeros(2, 1, 16, 16)
    mask[:, :, 4:10, 5:12] = 1.0
    raw = {"image": image, "mask": mask, "label": torch.tensor([0, 1])}
    return dmg.micro_batches(raw, 1, torch.Generator().manual_seed(1), "cpu")[0]


def _dmg(**options) -> DMGLoss:
    return DMGLoss(SARDScheduler(num_train_timesteps=T).alphas_cumprod, 4, view="clean", **options)


def test_a_finished_sample_runs_every_level_and_keeps_the_gradient_of_the_last_step_only():
    dmg, denoiser = _dmg(lambda_sample=1.0), make_denoiser()
    batch = _batch(dmg)
    calls = []
    forward = denoiser.forward

    def recording(x_t, t, *args, **kwargs):
        calls.append((int(t[0]), torch.is_grad_enabled()))
        return forward(x_t, t, *args, **kwargs)

    denoiser.forward = recording
    sample = dmg.finished_sample(denoiser, batch, 1, grad=True)
    assert calls == [(4, False), (3, False), (2, False), (1, True)]
    outside = batch["mask"].expand_as(sample) == 0
    assert torch.equal(sample[outside], batch["image"][outside])  # the real background, bit for bit
    assert not torch.equal(sample, batch["image"])
    sample.sum().backward()
    assert all(p.grad is not None for p in denoiser.parameters() if p.requires_grad)
    # The two blocks' chains draw their own noises and latents.
    calls.clear()
    assert not torch.equal(dmg.finished_sample(denoiser, batch, 0), sample.detach())
    assert all(not grad for _, grad in calls)


def test_lambda_sample_adds_the_finished_samples_to_both_blocks():
    denoiser = make_denoiser()
    torch.manual_seed(0)
    discriminator = MaskAwareDiscriminator(channels=(8, 16), num_train_timesteps=T, num_defect_types=2, view="clean")
    without, weighted = _dmg(), _dmg(lambda_sample=2.0)
    batch = _batch(weighted)
    base, extra = (dmg.discriminator_loss(discriminator, denoiser, batch) for dmg in (without, weighted))
    assert "d_sample" not in base and extra["d_sample"].item() > 0
    assert extra["loss"].item() == pytest.approx(base["loss"].item() + extra["d_sample"].item(), rel=1e-5)
    assert 0.0 <= extra["acc_mask_sample"].item() <= 1.0
    base, extra = (dmg.denoiser_loss(discriminator, denoiser, batch) for dmg in (without, weighted))
    assert extra["loss"].item() == pytest.approx(base["loss"].item() + 2.0 * extra["g_sample"].item(), rel=1e-5)
    levels = weighted.accuracy_by_level(discriminator, denoiser, batch)
    assert {"acc_global_t0", "acc_mask_t0"} <= levels.keys() and "acc_mask_t0" not in without.accuracy_by_level(
        discriminator, denoiser, batch)
    with pytest.raises(ValueError, match="lambda_sample needs the clean view"):
        DMGLoss(SARDScheduler(num_train_timesteps=T).alphas_cumprod, 4, lambda_sample=1.0)
