"""SARDDenoiser: the generator of the diffusion GAN, predicting the clean image from ``x_t``."""

from __future__ import annotations

import torch
from diffusers import UNet2DModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class SARDDenoiser(ModelMixin, ConfigMixin):
    """A UNet that predicts ``x0_hat`` from ``x_t``, the level ``t``, a latent ``z``, the mask, the known
    background and a defect label (DDGAN's generator, conditioned for region-constrained synthesis).

    The network is fully convolutional apart from optional attention in the bottleneck, so it can be
    trained on crops around masks and run on crops of any size (multiples of :attr:`stride`).

    Args:
        image_channels (`int`, defaults to 3): channels of the images it paints (RGB).
        block_out_channels (`tuple[int]`): channels of each UNet level; each level but the last halves
            the resolution.
        layers_per_block (`int`, defaults to 1): ResNet blocks per level.
        mid_attention (`bool`, defaults to True): self-attention in the bottleneck (at 1/stride resolution).
        latent_dim (`int`, defaults to 32): size of the latent ``z`` (DDGAN's ``nz``) that makes each
            sample a different defect.
        defect_types (`list[str]`): the names of the defect types, in label order.
        num_train_timesteps (`int`, defaults to 4): the number of diffusion levels ``T``.
        norm_num_groups (`int`, defaults to 8): groups of the GroupNorm layers.
    """

    @register_to_config
    def __init__(
        self,
        image_channels: int = 3,
        block_out_channels: tuple[int, ...] = (32, 64, 96, 128),
        layers_per_block: int = 1,
        mid_attention: bool = True,
        latent_dim: int = 32,
        defect_types: tuple[str, ...] = ("defect",),
        num_train_timesteps: int = 4,
        norm_num_groups: int = 8,
    ):
        super().__init__()
        if not defect_types:
            raise ValueError("defect_types must name at least one defect type.")
        embedding_dim = block_out_channels[0] * 4
        levels = len(block_out_channels)
        self.unet = UNet2DModel(
            in_channels=2 * image_channels + 1,  # x_t, mask, known background
            out_channels=image_channels,
            block_out_channels=tuple(block_out_channels),
            down_block_types=("DownBlock2D",) * levels,
            up_block_types=("UpBlock2D",) * levels,
            layers_per_block=layers_per_block,
            add_attention=mid_attention,
            attention_head_dim=block_out_channels[-1] // 4,
            norm_num_groups=norm_num_groups,
            # The label and latent embedding is computed below and added to the time embedding as is.
            class_embed_type="identity",
            resnet_time_scale_shift="scale_shift",  # AdaGN-style conditioning, as DDGAN's generator
        )
        self.label_embedding = nn.Embedding(len(defect_types), embedding_dim)
        # DDGAN maps z through an MLP before it conditions the normalisation layers.
        self.latent_mapping = nn.Sequential(
            nn.Linear(latent_dim, embedding_dim), nn.SiLU(), nn.Linear(embedding_dim, embedding_dim)
        )

    @property
    def stride(self) -> int:
        """Input sides must be multiples of this."""
        return 2 ** (len(self.config.block_out_channels) - 1)

    def forward(
        self,
        x_t: torch.Tensor,
        timestep: torch.Tensor,
        z: torch.Tensor,
        mask: torch.Tensor,
        known: torch.Tensor,
        label: torch.Tensor,
    ) -> torch.Tensor:
        """Predict the clean image.

        Args:
            x_t (`torch.Tensor` of shape `(B, C, H, W)`): the sample at level ``t``, in about [-1, 1] plus noise.
            timestep (`torch.Tensor` of shape `(B,)`): integer levels ``t`` in ``1 .. T``.
            z (`torch.Tensor` of shape `(B, latent_dim)`): standard normal latents.
            mask (`torch.Tensor` of shape `(B, 1, H, W)`): 1 = region to synthesise, 0 = background.
            known (`torch.Tensor` of shape `(B, C, H, W)`): the clean background, zero inside the mask.
            label (`torch.Tensor` of shape `(B,)`): defect type indices.

        Returns:
            `torch.Tensor` of shape `(B, C, H, W)`: ``x0_hat`` in [-1, 1].
        """
        condition = self.label_embedding(label) + self.latent_mapping(z)
        inputs = torch.cat([x_t, mask.to(x_t.dtype), known], dim=1)
        return torch.tanh(self.unet(inputs, timestep, class_labels=condition).sample)
