"""The sampling math against closed forms and against diffusers' DDPMScheduler."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import DDPMScheduler
from diffusers.utils.torch_utils import randn_tensor

from sard import sampling


def _abar(T: int = 4) -> torch.Tensor:
    return sampling.alphas_cumprod(sampling.vp_betas(T))


def _ddpm(betas: torch.Tensor, **kwargs) -> DDPMScheduler:
    return DDPMScheduler(
        num_train_timesteps=len(betas),
        trained_betas=betas.tolist(),
        prediction_type="sample",
        variance_type="fixed_small",
        clip_sample=False,
        **kwargs,
    )


# --- the schedule ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("T", [1, 2, 4, 10])
def test_vp_betas_match_the_vp_sde_marginals(T):
    """abar_k = exp(2 (log_mean_coeff(t_k) - log_mean_coeff(t_0))) on DDGAN's grid t_k = eps + k (1 - eps) / T."""
    betas = sampling.vp_betas(T)
    assert betas.dtype == torch.float64 and betas.shape == (T,)
    assert ((betas > 0) & (betas < 1)).all()

    def log_mean_coeff(u):
        return -0.25 * u**2 * (20.0 - 0.1) - 0.5 * u * 0.1

    grid = [1e-3 + k * (1 - 1e-3) / T for k in range(T + 1)]
    abar = sampling.alphas_cumprod(betas)
    expected = torch.tensor(
        [math.exp(2 * (log_mean_coeff(u) - log_mean_coeff(grid[0]))) for u in grid], dtype=torch.float64
    )
    torch.testing.assert_close(abar, expected, rtol=1e-12, atol=1e-15)


def test_vp_betas_default_T4_values_and_errors():
    abar = _abar(4)
    assert abar[0] == 1.0 and (abar[1:] < abar[:-1]).all()
    assert abar[-1] < 1e-3  # the last level is nearly pure noise
    with pytest.raises(ValueError):
        sampling.vp_betas(0)


def test_alphas_cumprod_is_the_cumulative_product():
    betas = torch.tensor([0.1, 0.2, 0.5], dtype=torch.float64)
    torch.testing.assert_close(
        sampling.alphas_cumprod(betas), torch.tensor([1.0, 0.9, 0.9 * 0.8, 0.9 * 0.8 * 0.5], dtype=torch.float64)
    )


# --- forward process ------------------------------------------------------------------------------------------


def test_q_sample_closed_form_with_given_noise():
    abar = _abar()
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(3, 3, 5, 7, generator=g) * 2 - 1
    noise = torch.randn(3, 3, 5, 7, generator=g)
    t = torch.tensor([1, 2, 4])
    out = sampling.q_sample(x0, t, abar, noise)
    for i in range(3):
        a = float(abar[t[i]])
        torch.testing.assert_close(out[i], math.sqrt(a) * x0[i] + math.sqrt(1 - a) * noise[i])
    # Level 0 is the clean image.
    torch.testing.assert_close(sampling.q_sample(x0, torch.zeros(3), abar, noise), x0)


@pytest.mark.parametrize("t", [1, 2, 3, 4])
def test_q_sample_mean_and_variance(t):
    """Empirical moments of q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)."""
    abar = _abar()
    torch.manual_seed(t)
    n = 200_000
    x0 = torch.full((n, 1, 1, 1), 0.7, dtype=torch.float64)
    x_t = sampling.q_sample(x0, torch.full((n,), t), abar)
    a = float(abar[t])
    mean, var = math.sqrt(a) * 0.7, 1 - a
    assert abs(float(x_t.mean()) - mean) < 5 * math.sqrt(var / n)
    assert abs(float(x_t.var()) - var) < 5 * math.sqrt(2 / n) * var


@pytest.mark.parametrize("t", [1, 2, 4])
def test_q_sample_pair_is_one_forward_step(t):
    abar = _abar()
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(2, 3, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
    eps1 = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    eps2 = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    tt = torch.full((2,), t)
    x_prev, x_t = sampling.q_sample_pair(x0, tt, abar, eps1, eps2)
    alpha = float(abar[t] / abar[t - 1])
    torch.testing.assert_close(x_prev, sampling.q_sample(x0, tt - 1, abar, eps1))
    torch.testing.assert_close(x_t, math.sqrt(alpha) * x_prev + math.sqrt(1 - alpha) * eps2)
    # The pair's x_t is a draw of q(x_t | x_0): the composed noise has unit variance.
    combined = (math.sqrt(alpha * (1 - float(abar[t - 1]))) * eps1 + math.sqrt(1 - alpha) * eps2) / math.sqrt(
        1 - float(abar[t])
    )
    torch.testing.assert_close(x_t, sampling.q_sample(x0, tt, abar, combined))


def test_q_sample_pair_marginals():
    abar = _abar()
    torch.manual_seed(0)
    n = 100_000
    x0 = torch.full((n, 1, 1, 1), -0.4, dtype=torch.float64)
    x_prev, x_t = sampling.q_sample_pair(x0, torch.full((n,), 2), abar)
    for x, level in ((x_prev, 1), (x_t, 2)):
        a = float(abar[level])
        assert abs(float(x.mean()) + 0.4 * math.sqrt(a)) < 5 * math.sqrt((1 - a) / n)
        assert abs(float(x.var()) - (1 - a)) < 5 * math.sqrt(2 / n) * (1 - a)


# --- posterior ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("t", [1, 2, 3, 4])
def test_posterior_coefficients_are_ddpm_eq7(t):
    betas = [float(b) for b in sampling.vp_betas(4)]
    abar = [1.0]
    for b in betas:
        abar.append(abar[-1] * (1 - b))
    beta, alpha = betas[t - 1], 1 - betas[t - 1]
    A = math.sqrt(abar[t - 1]) * beta / (1 - abar[t])
    B = math.sqrt(alpha) * (1 - abar[t - 1]) / (1 - abar[t])
    var = beta * (1 - abar[t - 1]) / (1 - abar[t])
    coef_x0, coef_xt, variance = sampling.posterior_coefficients(_abar(), torch.tensor(t), torch.tensor(t - 1))
    assert float(coef_x0) == pytest.approx(A, rel=1e-12)
    assert float(coef_xt) == pytest.approx(B, rel=1e-12)
    assert float(variance) == pytest.approx(var, rel=1e-12, abs=1e-300)
    if t == 1:
        assert float(variance) == 0.0 and float(coef_x0) == pytest.approx(1.0)


@pytest.mark.parametrize("t,s", [(4, 3), (4, 2), (4, 1), (4, 0), (3, 1), (2, 0)])
def test_posterior_preserves_the_marginals(t, s):
    """If x_t ~ q(x_t | x_0), then A x_0 + B x_t + N(0, var) ~ q(x_s | x_0) for any s < t (fewer-step sampling)."""
    abar = _abar()
    A, B, var = sampling.posterior_coefficients(abar, torch.tensor(t), torch.tensor(s))
    torch.testing.assert_close(A + B * abar[t].sqrt(), abar[s].sqrt())
    torch.testing.assert_close(B**2 * (1 - abar[t]) + var, 1 - abar[s])


def test_posterior_sample_mean_and_noise():
    abar = _abar()
    g = torch.Generator().manual_seed(2)
    x0_hat, x_t, noise = (torch.randn(3, 3, 4, 4, generator=g) for _ in range(3))
    t = torch.tensor([4, 2, 1])
    out = sampling.posterior_sample(x0_hat, x_t, t, abar, noise=noise)
    for i in range(3):
        A, B, var = (float(c) for c in sampling.posterior_coefficients(abar, t[i], t[i] - 1))
        torch.testing.assert_close(out[i], A * x0_hat[i] + B * x_t[i] + math.sqrt(var) * noise[i])
    # No noise at the last step: x_0 is the mean, whatever the noise.
    last = sampling.posterior_sample(x0_hat, x_t, torch.tensor([1, 1, 1]), abar, noise=noise * 100)
    torch.testing.assert_close(
        last, sampling.posterior_sample(x0_hat, x_t, torch.tensor([1, 1, 1]), abar, noise=torch.zeros_like(noise))
    )
    # Skipping to s = 0 also adds no noise.
    skip = sampling.posterior_sample(x0_hat, x_t, t, abar, s=torch.zeros(3), noise=noise * 100)
    torch.testing.assert_close(
        skip, sampling.posterior_sample(x0_hat, x_t, t, abar, s=torch.zeros(3), noise=torch.zeros_like(noise))
    )
    # And with s < t - 1 it uses the coefficients of q(x_s | x_t, x_0).
    s = torch.tensor([2, 1, 0])
    out = sampling.posterior_sample(x0_hat, x_t, t, abar, s=s, noise=noise)
    A, B, var = (float(c) for c in sampling.posterior_coefficients(abar, torch.tensor(4), torch.tensor(2)))
    torch.testing.assert_close(out[0], A * x0_hat[0] + B * x_t[0] + math.sqrt(var) * noise[0])


@pytest.mark.parametrize("T", [4, 6])
def test_posterior_parity_with_diffusers_ddpm(T):
    """Same mean and, with the same noise, the same sample as DDPMScheduler(prediction_type="sample").

    diffusers' timestep index is ``t - 1`` in sard's 1-based levels.
    """
    betas = sampling.vp_betas(T)
    abar = sampling.alphas_cumprod(betas)
    ddpm = _ddpm(betas)
    ddpm.set_timesteps(T)
    assert ddpm.timesteps.tolist() == [t - 1 for t in sampling.timesteps_for(T, T)]
    g = torch.Generator().manual_seed(3)
    x0_hat = torch.rand(2, 3, 6, 5, generator=g) * 2 - 1
    x_t = torch.randn(2, 3, 6, 5, generator=g)
    for t in range(T, 0, -1):
        expected = ddpm.step(x0_hat, t - 1, x_t, generator=torch.Generator().manual_seed(t)).prev_sample
        noise = randn_tensor(x_t.shape, generator=torch.Generator().manual_seed(t), dtype=x_t.dtype)
        ours = sampling.posterior_sample(x0_hat, x_t, torch.full((2,), t), abar, noise=noise)
        torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
        # The means agree too: subtract each side's own noise term.
        A, B, var = sampling.posterior_coefficients(abar, torch.tensor(t), torch.tensor(t - 1))
        ddpm_std = float(ddpm._get_variance(t - 1)) ** 0.5 if t > 1 else 0.0
        assert math.sqrt(float(var)) == pytest.approx(ddpm_std, rel=1e-4, abs=1e-7)
        torch.testing.assert_close(
            float(A) * x0_hat + float(B) * x_t, expected - ddpm_std * noise, rtol=1e-5, atol=1e-5
        )


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_fewer_step_parity_with_diffusers_ddpm(n):
    """An n-step sampler on a T-step schedule: the same posterior as DDPMScheduler with the same levels."""
    T = 4
    betas = sampling.vp_betas(T)
    abar = sampling.alphas_cumprod(betas)
    levels = sampling.timesteps_for(n, T)
    ddpm = _ddpm(betas)
    ddpm.set_timesteps(timesteps=[t - 1 for t in levels])
    g = torch.Generator().manual_seed(4)
    x_t = torch.randn(1, 3, 4, 4, generator=g)
    ref = x_t.clone()
    for i, t in enumerate(levels):
        s = levels[i + 1] if i + 1 < len(levels) else 0
        x0_hat = torch.tanh(x_t)  # any prediction, the same on both sides
        noise = randn_tensor(x_t.shape, generator=torch.Generator().manual_seed(10 + i))
        x_t = sampling.posterior_sample(x0_hat, x_t, torch.tensor([t]), abar, s=torch.tensor([s]), noise=noise)
        ref = ddpm.step(torch.tanh(ref), t - 1, ref, generator=torch.Generator().manual_seed(10 + i)).prev_sample
        torch.testing.assert_close(x_t, ref, rtol=1e-5, atol=1e-5)


# --- blending and timesteps -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mask_dtype", [torch.bool, torch.float32, torch.float64])
def test_blend_known_is_exact_outside_the_mask(mask_dtype):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 7, 9, generator=g)
    known = torch.rand(2, 3, 7, 9, generator=g) * 2 - 1
    mask = torch.rand(2, 1, 7, 9, generator=g) > 0.6
    out = sampling.blend_known(x, known, mask.to(mask_dtype))
    m = mask.expand_as(x)
    assert torch.equal(out[~m], known[~m])  # bit for bit
    assert torch.equal(out[m], x[m])
    assert m.any() and (~m).any()
    # Copied, not recomputed: even non-finite values of x outside the mask do not leak (0 * inf is NaN).
    x[~m] = float("inf")
    x[0, 0, 0, 0] = float("nan")
    out = sampling.blend_known(x, known, mask.to(mask_dtype))
    assert torch.equal(out[~m], known[~m])


def test_timesteps_for():
    assert sampling.timesteps_for(4, 4) == [4, 3, 2, 1]
    assert sampling.timesteps_for(1, 4) == [4]
    assert sampling.timesteps_for(2, 4) == [4, 2]
    for T in range(1, 12):
        for n in range(1, T + 1):
            levels = sampling.timesteps_for(n, T)
            assert len(levels) == n and levels[0] == T and levels[-1] >= 1
            assert all(a > b for a, b in zip(levels, levels[1:]))
    for bad in (0, 5, -1):
        with pytest.raises(ValueError, match="between 1 and 4"):
            sampling.timesteps_for(bad, 4)


# --- the RCD sampler ------------------------------------------------------------------------------------------


class _Oracle:
    """A denoiser that always predicts ``target``, recording the levels it is called at."""

    def __init__(self, target: torch.Tensor):
        self.target, self.levels = target, []

    def __call__(self, x_t: torch.Tensor, t: int) -> torch.Tensor:
        self.levels.append(t)
        return self.target


def _rcd_inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    known = torch.rand(2, 3, 8, 8, generator=g) * 2 - 1
    target = torch.rand(2, 3, 8, 8, generator=g) * 2 - 1
    mask = torch.zeros(2, 1, 8, 8)
    mask[:, :, 2:6, 1:5] = 1.0
    draws = []

    def noise_sampler():
        draws.append(torch.randn(2, 3, 8, 8, generator=g))
        return draws[-1]

    return known, target, mask, noise_sampler, draws


@pytest.mark.parametrize("background", ["clean", "noised"])
@pytest.mark.parametrize("levels", [[4, 3, 2, 1], [4, 2], [4]])
def test_rcd_with_an_oracle_returns_the_prediction_inside_and_the_input_outside(background, levels):
    """The last step goes to level 0, where the posterior is x0_hat itself (A = 1, B = 0, no noise): the result is
    the oracle's prediction inside the mask and the known image outside, bit for bit."""
    known, target, mask, noise_sampler, draws = _rcd_inputs()
    oracle = _Oracle(target)
    x0 = sampling.sample_rcd(oracle, known, mask, levels, _abar(4), noise_sampler, background=background)
    inside = mask.bool().expand_as(known)
    assert torch.equal(x0[~inside], known[~inside])
    torch.testing.assert_close(x0[inside], target[inside], rtol=0, atol=1e-6)
    assert oracle.levels == levels
    # One draw for x_T, one posterior draw per step, and with a noised background one more per step above 0.
    assert len(draws) == 1 + len(levels) + (len(levels) - 1) * (background == "noised")


def test_rcd_starts_from_noise_inside_the_mask_and_the_background_outside():
    known, target, mask, noise_sampler, draws = _rcd_inputs(1)
    seen = []
    sampling.sample_rcd(lambda x_t, t: seen.append(x_t.clone()) or target, known, mask, [4], _abar(4), noise_sampler)
    inside = mask.bool().expand_as(known)
    assert torch.equal(seen[0][inside], draws[0][inside]) and torch.equal(seen[0][~inside], known[~inside])


def test_rcd_without_the_region_constraint_changes_the_background():
    known, target, mask, noise_sampler, _ = _rcd_inputs(2)
    x0 = sampling.sample_rcd(_Oracle(target), known, mask, [4, 2], _abar(4), noise_sampler, region_constraint=False)
    torch.testing.assert_close(x0, target, rtol=0, atol=1e-6)  # the whole image is the network's
    with pytest.raises(ValueError, match="background must be one of"):
        sampling.sample_rcd(_Oracle(target), known, mask, [4], _abar(4), noise_sampler, background="blurred")
