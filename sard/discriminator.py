"""MaskAwareDiscriminator: the two-branch discriminator of Discriminative Mask Guidance (training only)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class _DownBlock(nn.Module):
    """conv - time bias - LeakyReLU - strided conv, with a strided 1x1 skip (DDGAN's ``DownConvBlock``)."""

    def __init__(self, in_channels: int, out_channels: int, embedding_dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time_bias = nn.Linear(embedding_dim, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1, stride=2, bias=False)

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.conv1(F.leaky_relu(x, 0.2)), 0.2)
        h = h + self.time_bias(embedding)[:, :, None, None]
        h = self.conv2(h)
        # Dividing by sqrt(2) keeps the residual sum at unit variance (StyleGAN2, DDGAN).
        return (h + self.skip(x)) / 2**0.5


class MaskAwareDiscriminator(ModelMixin, ConfigMixin):
    """Judges a pair ``(x_{t-1}, x_t)`` at level ``t`` given the mask: a shared trunk with two heads.

    - the global head returns one logit per image (realism of the whole crop), with a projection term
      for the defect label (Miyato & Koyama 2018) when there is more than one type;
    - the mask-aware head returns a logit map at 1/``2**len(channels)`` resolution whose values are
      pooled over the mask and its border by the loss, for localised feedback on texture and edges.

    Args:
        image_channels (`int`, defaults to 3): channels of each image of the pair.
        channels (`tuple[int]`): channels of the trunk's blocks; each halves the resolution.
        num_train_timesteps (`int`, defaults to 4): the number of diffusion levels ``T``.
        num_defect_types (`int`, defaults to 1): size of the label projection (none for 1).
        mask_head (`bool`, defaults to True): build the mask-aware head (False: global head only).
    """

    @register_to_config
    def __init__(
        self,
        image_channels: int = 3,
        channels: tuple[int, ...] = (32, 64, 128),
        num_train_timesteps: int = 4,
        num_defect_types: int = 1,
        mask_head: bool = True,
    ):
        super().__init__()
        embedding_dim = channels[-1]
        self.time_embedding = nn.Sequential(
            nn.Embedding(num_train_timesteps + 1, embedding_dim), nn.Linear(embedding_dim, embedding_dim), nn.SiLU()
        )
        self.stem = nn.Conv2d(2 * image_channels + 1, channels[0], 3, padding=1)  # x_{t-1}, x_t, mask
        widths = (channels[0], *channels)
        self.blocks = nn.ModuleList(
            _DownBlock(widths[i], widths[i + 1], embedding_dim) for i in range(len(channels))
        )
        self.global_head = nn.Linear(channels[-1], 1)
        self.label_projection = nn.Embedding(num_defect_types, channels[-1]) if num_defect_types > 1 else None
        self.mask_logits_head = nn.Conv2d(channels[-1], 1, 1) if mask_head else None

    def forward(
        self,
        x_prev: torch.Tensor,
        x_t: torch.Tensor,
        timestep: torch.Tensor,
        mask: torch.Tensor,
        label: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Score a pair.

        Args:
            x_prev (`torch.Tensor` of shape `(B, C, H, W)`): ``x_{t-1}``, real or generated.
            x_t (`torch.Tensor` of shape `(B, C, H, W)`): ``x_t``, the sample it was denoised from.
            timestep (`torch.Tensor` of shape `(B,)`): the level ``t`` of ``x_t``.
            mask (`torch.Tensor` of shape `(B, 1, H, W)`): 1 = synthesised region.
            label (`torch.Tensor` of shape `(B,)`, *optional*): defect type indices.

        Returns:
            ``(global_logits, mask_logits)``: shapes `(B,)` and `(B, 1, h, w)`; ``mask_logits`` is None
            when the mask-aware head is switched off.
        """
        embedding = self.time_embedding(timestep.long())
        h = self.stem(torch.cat([x_prev, x_t, mask.to(x_t.dtype)], dim=1))
        for block in self.blocks:
            h = block(h, embedding)
        h = F.leaky_relu(h, 0.2)
        pooled = h.mean(dim=(2, 3))
        global_logits = self.global_head(pooled).squeeze(1)
        if self.label_projection is not None and label is not None:
            global_logits = global_logits + (self.label_projection(label) * pooled).sum(dim=1)
        mask_logits = self.mask_logits_head(h) if self.mask_logits_head is not None else None
        return global_logits, mask_logits
