"""MaskAwareDiscriminator: the two-branch discriminator of Discriminative Mask Guidance (training only)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

VIEWS = ("pair", "clean")
HIGH_PASS_MODES = ("image", "mask", "fill")


def high_pass(x: torch.Tensor, size: int = 5) -> torch.Tensor:
    """``x`` minus its ``size x size`` box blur (edges replicated): the fine texture, without the shading.

    A smooth fill and a real defect of the same shape and shade differ here and hardly anywhere else.
    """
    pad = size // 2
    return x - F.avg_pool2d(F.pad(x, (pad, pad, pad, pad), mode="replicate"), size, stride=1)


def masked_high_pass(x: torch.Tensor, mask: torch.Tensor, size: int = 3) -> torch.Tensor:
    """``x`` minus the mean of its ``size x size`` neighbours inside ``mask``, zero outside the mask: the texture of
    the fill alone, without the step at the mask's border (as large in a smooth fill as in a real defect) that
    dominates :func:`high_pass` near it. The classifier two-sample test's texture channel
    (:func:`sard.evaluation.c2st.defect_crop`)."""
    pad = size // 2
    inside = mask.to(x.dtype)
    total = F.avg_pool2d(F.pad(x * inside, (pad,) * 4), size, stride=1)
    count = F.avg_pool2d(F.pad(inside, (pad,) * 4), size, stride=1)
    return (x - total / count.clamp(min=1.0 / size**2)) * inside


def ring_relative(x: torch.Tensor, mask: torch.Tensor, width: int = 3) -> torch.Tensor:
    """``x`` minus its mean over the ring of pixels within ``width`` of the mask (per image and channel), inside
    the mask, zero outside: the fill's tone against the surface around it, the classifier two-sample test's grey
    channel (:func:`sard.evaluation.c2st.defect_crop`). A mask with no ring (it fills the crop) is taken against
    its own mean."""
    inside = mask.to(x.dtype)
    around = F.max_pool2d(inside, 2 * width + 1, stride=1, padding=width) - inside
    ring_area, area = around.sum((2, 3)), inside.sum((2, 3))
    level = torch.where(ring_area > 0, (x * around).sum((2, 3)) / ring_area.clamp(min=1.0),
                        (x * inside).sum((2, 3)) / area.clamp(min=1.0))
    return (x - level[..., None, None]) * inside


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
    """Judges an image given its mask and level: a shared trunk with two heads.

    What it is shown depends on ``view``:

    - ``"pair"`` (DDGAN): the pair ``(x_{t-1}, x_t)``. Measured on this project's data it never leaves chance:
      at ``t >= 2`` the real/fake difference inside a small mask is far below the noise of ``x_t``;
    - ``"clean"``: the clean image ``x_0`` (a real defect, or the denoiser's prediction ``x0_hat`` from level
      ``t`` pasted into the real background) beside its high-pass residual scaled by ``high_pass_scale``, so the
      fine texture that tells a painted defect from a real one is as large as the shading. The residual is
      ``high_pass_mode``'s: ``"image"``, :func:`high_pass` of the whole crop; ``"mask"``,
      :func:`masked_high_pass`, the texture inside the mask alone; ``"fill"``, the fill alone as the classifier
      two-sample test sees it: :func:`masked_high_pass` beside :func:`ring_relative` (scaled by
      ``high_pass_scale / 4``, the test's ratio) instead of the crop, zero outside the mask, so the tone of a
      fill counts against its surroundings, not as an absolute level the surface's own brightness varies.

    The heads:

    - the global head returns one logit per image (realism of the whole crop), with a projection term
      for the defect label (Miyato & Koyama 2018) when there is more than one type;
    - the mask-aware head returns a logit map at 1/``2**len(channels)`` resolution, with the same label
      projection at every location, whose values are pooled over the mask and its border by the loss, for
      localised feedback on texture and edges.

    Args:
        image_channels (`int`, defaults to 3): channels of the judged image.
        channels (`tuple[int]`): channels of the trunk's blocks; each halves the resolution.
        num_train_timesteps (`int`, defaults to 4): the number of diffusion levels ``T``.
        num_defect_types (`int`, defaults to 1): size of the label projection (none for 1).
        mask_head (`bool`, defaults to True): build the mask-aware head (False: global head only).
        view (`str`, defaults to `"pair"`): `"pair"` or `"clean"`, see above.
        high_pass_scale (`float`, defaults to 10.0): gain of the high-pass channels of the clean view.
        high_pass_mode (`str`, defaults to `"image"`): `"image"`, `"mask"` or `"fill"`, see above.
    """

    @register_to_config
    def __init__(
        self,
        image_channels: int = 3,
        channels: tuple[int, ...] = (32, 64, 128),
        num_train_timesteps: int = 4,
        num_defect_types: int = 1,
        mask_head: bool = True,
        view: str = "pair",
        high_pass_scale: float = 10.0,
        high_pass_mode: str = "image",
    ):
        super().__init__()
        if view not in VIEWS:
            raise ValueError(f"view must be one of {VIEWS}, got {view!r}.")
        if high_pass_mode not in HIGH_PASS_MODES:
            raise ValueError(f"high_pass_mode must be one of {HIGH_PASS_MODES}, got {high_pass_mode!r}.")
        embedding_dim = channels[-1]
        self.time_embedding = nn.Sequential(
            nn.Embedding(num_train_timesteps + 1, embedding_dim), nn.Linear(embedding_dim, embedding_dim), nn.SiLU()
        )
        # pair: x_{t-1}, x_t, mask; clean: x_0, its high-pass residual, mask.
        self.stem = nn.Conv2d(2 * image_channels + 1, channels[0], 3, padding=1)
        widths = (channels[0], *channels)
        self.blocks = nn.ModuleList(
            _DownBlock(widths[i], widths[i + 1], embedding_dim) for i in range(len(channels))
        )
        self.global_head = nn.Linear(channels[-1], 1)
        self.label_projection = nn.Embedding(num_defect_types, channels[-1]) if num_defect_types > 1 else None
        self.mask_logits_head = nn.Conv2d(channels[-1], 1, 1) if mask_head else None

    def forward(
        self,
        x: torch.Tensor,
        timestep: torch.Tensor,
        mask: torch.Tensor,
        label: torch.Tensor | None = None,
        x_t: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Score images.

        Args:
            x (`torch.Tensor` of shape `(B, C, H, W)`): the judged image, real or generated: ``x_{t-1}`` in the
                pair view, ``x_0`` in the clean view.
            timestep (`torch.Tensor` of shape `(B,)`): the level ``t`` of ``x_t``.
            mask (`torch.Tensor` of shape `(B, 1, H, W)`): 1 = synthesised region.
            label (`torch.Tensor` of shape `(B,)`, *optional*): defect type indices.
            x_t (`torch.Tensor` of shape `(B, C, H, W)`): the pair view only: ``x_t``, the sample ``x`` was
                denoised from.

        Returns:
            ``(global_logits, mask_logits)``: shapes `(B,)` and `(B, 1, h, w)`; ``mask_logits`` is None
            when the mask-aware head is switched off.
        """
        if (self.config.view == "pair") != (x_t is not None):
            raise ValueError(f"The {self.config.view} view takes x_t {'' if x_t is None else 'not '}as input.")
        if x_t is not None:
            second = x_t
        elif self.config.high_pass_mode in ("mask", "fill"):
            second = masked_high_pass(x, mask) * self.config.high_pass_scale
            if self.config.high_pass_mode == "fill":
                x = ring_relative(x, mask) * (self.config.high_pass_scale / 4)
        else:
            second = high_pass(x) * self.config.high_pass_scale
        embedding = self.time_embedding(timestep.long())
        h = self.stem(torch.cat([x, second, mask.to(x.dtype)], dim=1))
        for block in self.blocks:
            h = block(h, embedding)
        h = F.leaky_relu(h, 0.2)
        pooled = h.mean(dim=(2, 3))
        global_logits = self.global_head(pooled).squeeze(1)
        if self.label_projection is not None and label is not None:
            global_logits = global_logits + (self.label_projection(label) * pooled).sum(dim=1)
        mask_logits = None
        if self.mask_logits_head is not None:
            mask_logits = self.mask_logits_head(h)
            if self.label_projection is not None and label is not None:
                # The same projection per location: what a real crack looks like is not what a real pit does.
                mask_logits = mask_logits + (self.label_projection(label)[:, :, None, None] * h).sum(1, keepdim=True)
        return global_logits, mask_logits
