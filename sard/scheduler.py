"""SARDScheduler: the few-step VP schedule and the DDPM posterior, as a diffusers scheduler."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

from . import sampling


@dataclass
class SARDSchedulerOutput(BaseOutput):
    """``prev_sample``: the sample at the next (lower) noise level, shape ``(B, C, H, W)``."""

    prev_sample: torch.Tensor


class SARDScheduler(SchedulerMixin, ConfigMixin):
    """Thin stateful wrapper around :mod:`sard.sampling` (DDGAN's discretised VP schedule).

    The denoiser predicts the clean image; :meth:`step` draws the posterior sample from it.

    Args:
        num_train_timesteps (`int`, defaults to 4): the number of levels ``T`` the denoiser was trained on.
        beta_min (`float`, defaults to 0.1) and beta_max (`float`, defaults to 20.0): the VP SDE's range.
    """

    config_name = "scheduler_config.json"
    order = 1

    @register_to_config
    def __init__(self, num_train_timesteps: int = 4, beta_min: float = 0.1, beta_max: float = 20.0):
        betas = sampling.vp_betas(num_train_timesteps, beta_min, beta_max)  # float64
        self.betas = betas.float()
        self.alphas_cumprod = sampling.alphas_cumprod(betas).float()  # length T + 1, abar_0 = 1
        self.set_timesteps(num_train_timesteps)

    def set_timesteps(self, num_inference_steps: int | None = None, device: str | torch.device | None = None):
        """Choose ``num_inference_steps`` (at most ``T``; defaults to ``T``) evenly spaced levels."""
        steps = self.config.num_train_timesteps if num_inference_steps is None else num_inference_steps
        self.num_inference_steps = steps
        self.timesteps = torch.tensor(
            sampling.timesteps_for(steps, self.config.num_train_timesteps), dtype=torch.long, device=device
        )

    def previous_timestep(self, timestep: int) -> int:
        """The level the sampler goes to from ``timestep`` (0 after the last step)."""
        levels = self.timesteps.tolist()
        index = levels.index(int(timestep))
        return levels[index + 1] if index + 1 < len(levels) else 0

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """``q(x_t | x_0)`` at integer levels ``timesteps`` (one per sample, or one for all)."""
        abar = self.alphas_cumprod.to(original_samples.device)
        timesteps = torch.as_tensor(timesteps, device=original_samples.device).reshape(-1)
        timesteps = timesteps.expand(original_samples.shape[0])
        return sampling.q_sample(original_samples, timesteps, abar, noise)

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | list[torch.Generator] | None = None,
        variance_noise: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> SARDSchedulerOutput | tuple:
        """One reverse step: ``x_s ~ q(x_s | x_t, x0_hat)`` with ``s`` the next level of :attr:`timesteps`.

        Args:
            model_output (`torch.Tensor`): the denoiser's clean-image prediction ``x0_hat``, in [-1, 1].
            timestep (`int`): the current level ``t``.
            sample (`torch.Tensor`): ``x_t``.
            generator: a `torch.Generator`, or a list with one per sample, for the posterior noise.
            variance_noise (`torch.Tensor`, *optional*): the posterior noise itself, instead of drawing it
                with ``generator`` (as in diffusers' DDIM scheduler).
        """
        t = int(timestep)
        s = self.previous_timestep(t)
        noise = variance_noise
        if noise is None:
            noise = randn_tensor(sample.shape, generator=generator, device=sample.device, dtype=sample.dtype)
        batch = sample.shape[0]
        abar = self.alphas_cumprod.to(sample.device)
        prev_sample = sampling.posterior_sample(
            model_output, sample, torch.full((batch,), t), abar, s=torch.full((batch,), s), noise=noise
        )
        if not return_dict:
            return (prev_sample,)
        return SARDSchedulerOutput(prev_sample=prev_sample)

    def __len__(self) -> int:
        return self.config.num_train_timesteps
