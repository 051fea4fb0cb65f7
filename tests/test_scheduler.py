"""SARDScheduler: a thin wrapper over sard.sampling, with diffusers' scheduler interface."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler
from diffusers.utils.torch_utils import randn_tensor

from sard import SARDScheduler, sampling


def test_schedule_is_stored_float32_from_float64():
    scheduler = SARDScheduler(num_train_timesteps=4)
    assert scheduler.betas.dtype == torch.float32 and scheduler.betas.shape == (4,)
    assert scheduler.alphas_cumprod.dtype == torch.float32 and scheduler.alphas_cumprod.shape == (5,)
    expected = sampling.alphas_cumprod(sampling.vp_betas(4)).float()
    assert torch.equal(scheduler.alphas_cumprod, expected)
    assert scheduler.alphas_cumprod[0] == 1.0
    assert len(scheduler) == 4


def test_set_timesteps_and_previous_timestep():
    scheduler = SARDScheduler(num_train_timesteps=4)
    assert scheduler.timesteps.tolist() == [4, 3, 2, 1]
    scheduler.set_timesteps(2)
    assert scheduler.timesteps.tolist() == [4, 2] and scheduler.num_inference_steps == 2
    assert scheduler.previous_timestep(4) == 2 and scheduler.previous_timestep(2) == 0
    scheduler.set_timesteps(None)
    assert scheduler.timesteps.tolist() == [4, 3, 2, 1]
    assert [scheduler.previous_timestep(t) for t in (4, 3, 2, 1)] == [3, 2, 1, 0]
    for bad in (0, 5):
        with pytest.raises(ValueError):
            scheduler.set_timesteps(bad)


@pytest.mark.parametrize("steps", [1, 2, 3, 4])
def test_step_is_the_posterior_sample_to_the_next_level(steps):
    scheduler = SARDScheduler(num_train_timesteps=4)
    scheduler.set_timesteps(steps)
    abar = scheduler.alphas_cumprod
    g = torch.Generator().manual_seed(0)
    x0_hat, x_t, noise = (torch.randn(2, 3, 4, 4, generator=g) for _ in range(3))
    for t in scheduler.timesteps:
        s = scheduler.previous_timestep(int(t))
        out = scheduler.step(x0_hat, t, x_t, variance_noise=noise).prev_sample
        expected = sampling.posterior_sample(
            x0_hat, x_t, torch.full((2,), int(t)), abar, s=torch.full((2,), s), noise=noise
        )
        assert torch.equal(out, expected)


def test_step_generator_equals_variance_noise_from_the_same_seed():
    scheduler = SARDScheduler(num_train_timesteps=4)
    g = torch.Generator().manual_seed(0)
    x0_hat, x_t = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 3, 4, 4, generator=g)
    with_generator = scheduler.step(x0_hat, 3, x_t, generator=torch.Generator().manual_seed(7)).prev_sample
    noise = randn_tensor(x_t.shape, generator=torch.Generator().manual_seed(7))
    assert torch.equal(with_generator, scheduler.step(x0_hat, 3, x_t, variance_noise=noise).prev_sample)
    other = scheduler.step(x0_hat, 3, x_t, generator=torch.Generator().manual_seed(8)).prev_sample
    assert not torch.equal(with_generator, other)
    # A list of generators: one per sample.
    gens = [torch.Generator().manual_seed(7), torch.Generator().manual_seed(9)]
    per_sample = scheduler.step(x0_hat, 3, x_t, generator=gens).prev_sample
    first = scheduler.step(x0_hat[:1], 3, x_t[:1], generator=torch.Generator().manual_seed(7)).prev_sample
    assert torch.equal(per_sample[:1], first)
    # return_dict=False gives a tuple.
    (tup,) = scheduler.step(x0_hat, 3, x_t, variance_noise=noise, return_dict=False)
    assert torch.equal(tup, with_generator)


def test_add_noise_is_q_sample():
    scheduler = SARDScheduler(num_train_timesteps=4)
    g = torch.Generator().manual_seed(1)
    x0, noise = torch.rand(3, 3, 4, 4, generator=g), torch.randn(3, 3, 4, 4, generator=g)
    t = torch.tensor([1, 3, 4])
    expected = sampling.q_sample(x0, t, scheduler.alphas_cumprod, noise)
    assert torch.equal(scheduler.add_noise(x0, noise, t), expected)
    # One level for the whole batch.
    assert torch.equal(
        scheduler.add_noise(x0, noise, torch.tensor(2)),
        sampling.q_sample(x0, torch.tensor([2, 2, 2]), scheduler.alphas_cumprod, noise),
    )


def test_full_chain_parity_with_diffusers_ddpm():
    """A whole T-step chain with a fixed x0 prediction: the same samples as DDPMScheduler step by step."""
    scheduler = SARDScheduler(num_train_timesteps=4)
    betas = sampling.vp_betas(4)
    ddpm = DDPMScheduler(
        num_train_timesteps=4,
        trained_betas=betas.tolist(),
        prediction_type="sample",
        variance_type="fixed_small",
        clip_sample=False,
    )
    ddpm.set_timesteps(4)
    x0_hat = torch.rand(1, 3, 5, 5, generator=torch.Generator().manual_seed(2)) * 2 - 1
    ours = theirs = torch.randn(1, 3, 5, 5, generator=torch.Generator().manual_seed(3))
    for t, t_ddpm in zip(scheduler.timesteps, ddpm.timesteps):
        assert int(t_ddpm) == int(t) - 1
        ours = scheduler.step(x0_hat, t, ours, generator=torch.Generator().manual_seed(int(t))).prev_sample
        theirs = ddpm.step(x0_hat, t_ddpm, theirs, generator=torch.Generator().manual_seed(int(t))).prev_sample
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours, x0_hat, rtol=1e-5, atol=1e-5)  # the last step lands on x0_hat: abar_0 = 1


def test_config_round_trip(tmp_path):
    scheduler = SARDScheduler(num_train_timesteps=6, beta_min=0.2, beta_max=10.0)
    scheduler.save_pretrained(tmp_path)
    loaded = SARDScheduler.from_pretrained(tmp_path)
    assert loaded.config.num_train_timesteps == 6 and loaded.config.beta_max == 10.0
    assert torch.equal(loaded.alphas_cumprod, scheduler.alphas_cumprod)
