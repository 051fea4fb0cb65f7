"""Small shared fixtures: a tiny, seeded, CPU pipeline (a few thousand parameters, milliseconds per call)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sard import MaskAwareDiscriminator, SARDDenoiser, SARDPipeline, SARDScheduler

DEFECT_TYPES = ("a", "b")
T = 4

# The networks here are tiny: one thread is fastest, and it does not fight a training run for the cores
# (two threads on a busy two-core machine make these tests about 50 times slower).
torch.set_num_threads(1)


def make_denoiser(seed: int = 0, defect_types=DEFECT_TYPES, steps: int = T) -> SARDDenoiser:
    torch.manual_seed(seed)  # the weights of an untrained test network: tests may seed, the library never does
    return SARDDenoiser(
        block_out_channels=(8, 16), norm_num_groups=4, latent_dim=4, defect_types=defect_types,
        num_train_timesteps=steps,
    ).eval()


def make_pipeline(seed: int = 0, defect_types=DEFECT_TYPES, steps: int = T) -> SARDPipeline:
    pipe = SARDPipeline(
        make_denoiser(seed, defect_types, steps), SARDScheduler(num_train_timesteps=steps), resolution=32,
        crop_size=16, context=4,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture
def tiny_denoiser() -> SARDDenoiser:
    return make_denoiser()


@pytest.fixture
def tiny_pipeline() -> SARDPipeline:
    return make_pipeline()


@pytest.fixture
def tiny_discriminator() -> MaskAwareDiscriminator:
    torch.manual_seed(0)
    return MaskAwareDiscriminator(channels=(4, 8), num_train_timesteps=T, num_defect_types=len(DEFECT_TYPES))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def box_mask(height: int, width: int, top: float = 0.3, left: float = 0.4, size: float = 0.3) -> np.ndarray:
    """A boolean (H, W) mask with a rectangle of at least one pixel."""
    mask = np.zeros((height, width), dtype=bool)
    r0, c0 = int(top * height), int(left * width)
    mask[r0 : r0 + max(1, int(size * height)), c0 : c0 + max(1, int(size * width))] = True
    return mask


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)
