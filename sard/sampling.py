"""The sampling math of SARD as pure tensor functions, and the region-constrained sampler itself.

Notation follows ``docs/METHOD.md``: levels ``t = 0 .. T`` with ``x_0`` the clean image,
``abar_t`` the cumulative product of ``alpha_t = 1 - beta_t`` (``abar_0 = 1``), masks with
1 = region to synthesise. Every function here is stateless; :class:`sard.SARDScheduler` is a
thin wrapper that holds the schedule, and :func:`sample_rcd` is the method's sampler (RCD).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import torch

# DDGAN evaluates the VP schedule on t in [eps, 1] so the first level is not exactly noise-free.
_VP_EPS = 1e-3


def vp_betas(num_timesteps: int, beta_min: float = 0.1, beta_max: float = 20.0) -> torch.Tensor:
    """The discretised variance-preserving schedule of DDGAN (Xiao et al. 2022, ``get_sigma_schedule``).

    Returns ``betas[1..T]`` as a float64 tensor of length ``num_timesteps``.
    """
    if num_timesteps < 1:
        raise ValueError(f"num_timesteps must be at least 1, got {num_timesteps}.")
    t = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    t = t * (1.0 - _VP_EPS) + _VP_EPS
    # Song et al. 2021, eq. 33: log of the mean coefficient of the VP SDE.
    log_mean_coeff = -0.25 * t**2 * (beta_max - beta_min) - 0.5 * t * beta_min
    alpha_bars = torch.exp(2.0 * log_mean_coeff)
    return 1.0 - alpha_bars[1:] / alpha_bars[:-1]


def alphas_cumprod(betas: torch.Tensor) -> torch.Tensor:
    """``abar_t`` for ``t = 0 .. T`` (length T + 1, ``abar_0 = 1``)."""
    one = torch.ones(1, dtype=betas.dtype, device=betas.device)
    return torch.cat([one, torch.cumprod(1.0 - betas, dim=0)])


def _expand(values: torch.Tensor, t: torch.Tensor, ndim: int) -> torch.Tensor:
    """Gather per-sample schedule values at integer levels ``t`` and shape them for broadcasting."""
    t = torch.as_tensor(t, device=values.device).long().reshape(-1)
    return values[t].reshape(-1, *([1] * (ndim - 1)))


def q_sample(
    x0: torch.Tensor, t: torch.Tensor, abar: torch.Tensor, noise: torch.Tensor | None = None
) -> torch.Tensor:
    """Forward diffusion ``q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)`` (Ho et al. 2020, eq. 4)."""
    noise = torch.randn_like(x0) if noise is None else noise
    a = _expand(abar, t, x0.ndim).to(x0.dtype)
    return a.sqrt() * x0 + (1.0 - a).sqrt() * noise


def q_sample_pair(
    x0: torch.Tensor,
    t: torch.Tensor,
    abar: torch.Tensor,
    noise: torch.Tensor | None = None,
    noise_step: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A real pair ``(x_{t-1}, x_t)`` for ``t >= 1`` (DDGAN's ``q_sample_pairs``).

    ``x_{t-1} ~ q(x_{t-1} | x_0)`` and then one forward step
    ``x_t = sqrt(alpha_t) x_{t-1} + sqrt(beta_t) eps``.
    """
    x_prev = q_sample(x0, t - 1, abar, noise)
    alpha = _expand(abar[1:] / abar[:-1], t - 1, x0.ndim).to(x0.dtype)
    noise_step = torch.randn_like(x0) if noise_step is None else noise_step
    x_t = alpha.sqrt() * x_prev + (1.0 - alpha).sqrt() * noise_step
    return x_prev, x_t


def posterior_coefficients(
    abar: torch.Tensor, t: torch.Tensor, s: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Coefficients ``(A, B, var)`` of ``q(x_s | x_t, x_0) = N(A x_0 + B x_t, var I)`` for levels ``s < t``.

    With ``s = t - 1`` these are DDPM's posterior (Ho et al. 2020, eq. 7):
    ``A = sqrt(abar_{t-1}) beta_t / (1 - abar_t)``, ``B = sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t)``,
    ``var = beta_t (1 - abar_{t-1}) / (1 - abar_t)``. For ``s < t - 1`` the same formulas hold with
    ``alpha_{t|s} = abar_t / abar_s`` in place of ``alpha_t``, which lets a T-step model sample in fewer steps.
    """
    t = torch.as_tensor(t, device=abar.device).long()
    s = torch.as_tensor(s, device=abar.device).long()
    abar_t, abar_s = abar[t], abar[s]
    alpha_ts = abar_t / abar_s
    beta_ts = 1.0 - alpha_ts
    coef_x0 = abar_s.sqrt() * beta_ts / (1.0 - abar_t)
    coef_xt = alpha_ts.sqrt() * (1.0 - abar_s) / (1.0 - abar_t)
    variance = beta_ts * (1.0 - abar_s) / (1.0 - abar_t)
    return coef_x0, coef_xt, variance


def posterior_sample(
    x0_hat: torch.Tensor,
    x_t: torch.Tensor,
    t: torch.Tensor,
    abar: torch.Tensor,
    s: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Draw ``x_s ~ q(x_s | x_t, x0_hat)``; ``s`` defaults to ``t - 1``. No noise is added where ``s = 0``."""
    t = torch.as_tensor(t, device=abar.device).long().reshape(-1)
    s = t - 1 if s is None else torch.as_tensor(s, device=abar.device).long().reshape(-1)
    coef_x0, coef_xt, variance = (c.to(x_t.dtype) for c in posterior_coefficients(abar, t, s))
    shape = (-1, *([1] * (x_t.ndim - 1)))
    mean = coef_x0.reshape(shape) * x0_hat + coef_xt.reshape(shape) * x_t
    noise = torch.randn_like(x_t) if noise is None else noise
    std = (variance.clamp(min=1e-20).sqrt() * (s > 0).to(x_t.dtype)).reshape(shape)
    return mean + std * noise


def blend_known(x: torch.Tensor, known: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Keep ``x`` inside the mask and ``known`` outside: ``mask * x + (1 - mask) * known``.

    Written with ``torch.where`` so that pixels outside the mask are copied, not recomputed:
    the background stays bit for bit what it was.
    """
    return torch.where(mask.bool(), x, known)


def timesteps_for(num_inference_steps: int, num_train_timesteps: int) -> list[int]:
    """Evenly spaced levels ``T = t_0 > t_1 > ... > t_{n-1} >= 1`` for an ``n``-step sampler."""
    if not 1 <= num_inference_steps <= num_train_timesteps:
        raise ValueError(
            f"num_inference_steps must be between 1 and {num_train_timesteps} (the steps this model was "
            f"trained with), got {num_inference_steps}."
        )
    step = num_train_timesteps / num_inference_steps
    return [num_train_timesteps - math.floor(i * step) for i in range(num_inference_steps)]


BACKGROUND_MODES = ("clean", "noised")


def sample_rcd(
    denoise: Callable[[torch.Tensor, int], torch.Tensor],
    known: torch.Tensor,
    mask: torch.Tensor,
    timesteps: Sequence[int],
    abar: torch.Tensor,
    noise_sampler: Callable[[], torch.Tensor],
    background: str = "clean",
    region_constraint: bool = True,
    progress: Callable[[list], Iterable] = iter,
) -> torch.Tensor:
    """Region-constrained diffusion (RCD; SARD, Wang et al. 2025, docs/METHOD.md "RCD"): sample ``x_0`` updating
    only the pixels inside the mask, the background passed through unchanged at every step.

    Starting from ``x_T`` = noise inside the mask and ``known`` outside, each step predicts
    ``x0_hat = denoise(x_t, t)``, draws ``x_s ~ q(x_s | x_t, x0_hat)`` for the next level ``s`` and puts the
    known background back: ``x_s <- mask * x_s + (1 - mask) * known``. Outside the mask the result is
    ``known`` bit for bit.

    Args:
        denoise: ``(x_t (B, C, H, W), t int) -> x0_hat`` of the same shape: the network with its conditions
            (mask, known background, latent, label) bound.
        known (`torch.Tensor`): `(B, C, H, W)` in [-1, 1], the image whose background is kept.
        mask (`torch.Tensor`): `(B, 1, H, W)` in {0, 1}, 1 = region to synthesise.
        timesteps: the levels ``T >= t_0 > ... > t_{n-1} >= 1`` (:func:`timesteps_for`); the last step goes to 0.
        abar (`torch.Tensor`): ``abar_t`` for ``t = 0 .. T`` (:func:`alphas_cumprod`), on the device of ``known``.
        noise_sampler: ``() -> noise`` shaped like ``known``, standard normal, fresh at every call (drawn for
            ``x_T``, then once per step for the posterior, and once more per step with ``background="noised"``).
        background (`str`, defaults to `"clean"`): the background the network sees at each step: the clean
            ``known`` (SARD), or ``known`` diffused to the step's level (``"noised"``, as RePaint; an ablation).
        region_constraint (`bool`, defaults to True): False lets the network update the whole image from a fully
            noised start, with no background put back (an ablation: inpainting without RCD; paste the inside
            of the mask afterwards).
        progress: wraps the list of ``(t, s)`` steps for display (e.g. ``DiffusionPipeline.progress_bar``).
    """
    if background not in BACKGROUND_MODES:
        raise ValueError(f"background must be one of {BACKGROUND_MODES}, got {background!r}.")
    batch_size = known.shape[0]
    levels = [int(t) for t in timesteps]

    # x_T: noise inside the mask in every mode; outside it the clean background, or for the ablations the
    # background diffused to level T with the same noise. (Diffusing the whole image would also leak
    # sqrt(abar_T) of the pixels under the mask into x_T: a second difference between the modes.)
    noise = noise_sampler()
    start_background = known
    if background == "noised" or not region_constraint:
        start_background = q_sample(known, torch.full((batch_size,), levels[0]), abar, noise)
    x_t = blend_known(noise, start_background, mask)

    # Reverse steps t -> s: predict x0, draw the posterior sample, put the background back. The levels are
    # Python ints, so that no step waits on a GPU to read one.
    for t, s in progress(list(zip(levels, [*levels[1:], 0]))):
        x0_hat = denoise(x_t, t)
        x_t = posterior_sample(x0_hat, x_t, torch.full((batch_size,), t), abar, torch.full((batch_size,), s),
                               noise_sampler())
        if region_constraint:
            if background == "noised" and s > 0:
                x_t = blend_known(x_t, q_sample(known, torch.full((batch_size,), s), abar, noise_sampler()), mask)
            else:
                x_t = blend_known(x_t, known, mask)
    return x_t
