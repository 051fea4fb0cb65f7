"""The downstream segmenters, trained from scratch: a SegFormer-B0-like network and a small U-Net.

:class:`SegFormer` follows SegFormer (Xie et al., NeurIPS 2021): a MiT encoder of four stages (overlapping
patch embeddings, efficient self-attention with sequence reduction, Mix-FFN with a 3 x 3 depth-wise
convolution) and the all-MLP decoder. ``SegFormer()`` is MiT-B0 (hidden sizes 32/64/160/256, depths
2/2/2/2, heads 1/2/5/8, reduction ratios 8/4/2/1, decoder 256). The encoder's parameter names are those
of ``transformers``' ``SegformerModel``, so an ImageNet-pretrained MiT-B0 saved locally (``model.safetensors``
of ``nvidia/mit-b0``, or a whole ``SegformerForSemanticSegmentation``) loads into it with
:func:`load_pretrained`; nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


class _PatchEmbed(nn.Module):
    def __init__(self, in_channels: int, hidden: int, patch: int, stride: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, hidden, patch, stride, patch // 2)
        self.layer_norm = nn.LayerNorm(hidden)

    def forward(self, x):
        x = self.proj(x)
        h, w = x.shape[-2:]
        return self.layer_norm(x.flatten(2).transpose(1, 2)), h, w


class _SelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, reduction: int):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.reduction = reduction
        if reduction > 1:  # efficient self-attention: keys and values from a reduced sequence
            self.sr = nn.Conv2d(hidden, hidden, reduction, reduction)
            self.layer_norm = nn.LayerNorm(hidden)

    def forward(self, x, h, w):
        b, n, c = x.shape
        kv = x
        if self.reduction > 1:
            kv = self.sr(x.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)
            kv = self.layer_norm(kv)

        def split(t):
            return t.reshape(b, -1, self.heads, c // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.query(x)), split(self.key(kv)), split(self.value(kv)))
        return out.transpose(1, 2).reshape(b, n, c)


class _AttentionOutput(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)


class _Attention(nn.Module):
    def __init__(self, hidden: int, heads: int, reduction: int):
        super().__init__()
        self.self = _SelfAttention(hidden, heads, reduction)
        self.output = _AttentionOutput(hidden)

    def forward(self, x, h, w):
        return self.output.dense(self.self(x, h, w))


class _DWConv(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.dwconv = nn.Conv2d(channels, channels, 3, 1, 1, groups=channels)

    def forward(self, x, h, w):
        b, n, c = x.shape
        return self.dwconv(x.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)


class _MixFFN(nn.Module):
    def __init__(self, hidden: int, ratio: int = 4):
        super().__init__()
        self.dense1, self.dwconv, self.dense2 = nn.Linear(hidden, hidden * ratio), _DWConv(hidden * ratio), \
            nn.Linear(hidden * ratio, hidden)

    def forward(self, x, h, w):
        return self.dense2(F.gelu(self.dwconv(self.dense1(x), h, w)))


class _Layer(nn.Module):
    def __init__(self, hidden: int, heads: int, reduction: int):
        super().__init__()
        self.layer_norm_1 = nn.LayerNorm(hidden)
        self.attention = _Attention(hidden, heads, reduction)
        self.layer_norm_2 = nn.LayerNorm(hidden)
        self.mlp = _MixFFN(hidden)

    def forward(self, x, h, w):
        x = x + self.attention(self.layer_norm_1(x), h, w)
        return x + self.mlp(self.layer_norm_2(x), h, w)


class _Encoder(nn.Module):
    def __init__(self, hidden, depths, heads, reductions):
        super().__init__()
        channels = (3, *hidden[:-1])
        self.patch_embeddings = nn.ModuleList(
            _PatchEmbed(c, d, 7 if i == 0 else 3, 4 if i == 0 else 2) for i, (c, d) in enumerate(zip(channels, hidden))
        )
        self.block = nn.ModuleList(
            nn.ModuleList(_Layer(d, n, r) for _ in range(depth))
            for d, depth, n, r in zip(hidden, depths, heads, reductions)
        )
        self.layer_norm = nn.ModuleList(nn.LayerNorm(d) for d in hidden)

    def forward(self, x):
        features = []
        for embed, layers, norm in zip(self.patch_embeddings, self.block, self.layer_norm):
            x, h, w = embed(x)
            for layer in layers:
                x = layer(x, h, w)
            x = norm(x).transpose(1, 2).reshape(x.shape[0], -1, h, w)
            features.append(x)
        return features


class _MiT(nn.Module):
    def __init__(self, hidden, depths, heads, reductions):
        super().__init__()
        self.encoder = _Encoder(hidden, depths, heads, reductions)


class _MLP(nn.Module):
    def __init__(self, hidden: int, decoder: int):
        super().__init__()
        self.proj = nn.Linear(hidden, decoder)


class _DecodeHead(nn.Module):
    """The all-MLP decoder: each stage projected to ``decoder`` channels, upsampled to 1/4, fused."""

    def __init__(self, hidden, decoder: int, num_classes: int):
        super().__init__()
        self.linear_c = nn.ModuleList(_MLP(d, decoder) for d in hidden)
        self.linear_fuse = nn.Conv2d(decoder * len(hidden), decoder, 1, bias=False)
        self.batch_norm = nn.BatchNorm2d(decoder)
        self.classifier = nn.Conv2d(decoder, num_classes, 1)

    def forward(self, features):
        size = features[0].shape[-2:]
        fused = []
        for feature, mlp in zip(features, self.linear_c):
            y = mlp.proj(feature.flatten(2).transpose(1, 2)).transpose(1, 2)
            y = y.reshape(feature.shape[0], -1, *feature.shape[-2:])
            fused.append(F.interpolate(y, size=size, mode="bilinear", align_corners=False))
        return self.classifier(F.relu(self.batch_norm(self.linear_fuse(torch.cat(fused[::-1], dim=1)))))


class SegFormer(nn.Module):
    """SegFormer with a MiT encoder; defaults are B0. Input `(B, 3, H, W)` in [-1, 1] (H, W multiples of
    32); output logits `(B, num_classes, H, W)` (the decoder's 1/4-resolution logits, upsampled)."""

    def __init__(self, num_classes: int = 2, hidden=(32, 64, 160, 256), depths=(2, 2, 2, 2), heads=(1, 2, 5, 8),
                 reductions=(8, 4, 2, 1), decoder: int = 256):
        super().__init__()
        self.segformer = _MiT(hidden, depths, heads, reductions)
        self.decode_head = _DecodeHead(hidden, decoder, num_classes)

    def forward(self, x):
        logits = self.decode_head(self.segformer.encoder(x))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """A small U-Net (Ronneberger et al., 2015) with batch norm. Input `(B, 3, H, W)` (H, W multiples of
    2 ** (len(channels) - 1)); output logits `(B, num_classes, H, W)`."""

    def __init__(self, num_classes: int = 2, channels=(16, 32, 64, 128)):
        super().__init__()
        self.down = nn.ModuleList(_block(c_in, c_out) for c_in, c_out in zip((3, *channels[:-1]), channels))
        self.up = nn.ModuleList(nn.ConvTranspose2d(hi, lo, 2, 2) for hi, lo in zip(channels[:0:-1], channels[-2::-1]))
        self.merge = nn.ModuleList(_block(2 * lo, lo) for lo in channels[-2::-1])
        self.head = nn.Conv2d(channels[0], num_classes, 1)

    def forward(self, x):
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for up, merge, skip in zip(self.up, self.merge, skips[-2::-1]):
            x = merge(torch.cat([up(x), skip], dim=1))
        return self.head(x)


SEGMENTERS = {"segformer": SegFormer, "unet": UNet}


def build_segmenter(name: str, pretrained: str | None = None, **kwargs) -> nn.Module:
    """A segmenter by name ("segformer" or "unet"), optionally with weights from a local file."""
    if name not in SEGMENTERS:
        raise ValueError(f"Unknown segmenter {name!r}; choose one of {', '.join(SEGMENTERS)}.")
    model = SEGMENTERS[name](**kwargs)
    if pretrained:
        load_pretrained(model, pretrained)
    return model


def load_pretrained(model: nn.Module, path: str | Path) -> list[str]:
    """Load the weights of a local ``.safetensors`` file (or a folder holding ``model.safetensors``) whose
    names and shapes match; a classifier of another size is left as initialised. Returns the names loaded.

    Raises:
        FileNotFoundError / ValueError: no such file, or not one weight of it fits the model.
    """
    from safetensors.torch import load_file

    path = Path(path)
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"No pretrained weights at {path}; pass a .safetensors file or its folder.")
    own = model.state_dict()
    tensors = {k: v for k, v in load_file(str(path)).items() if k in own and own[k].shape == v.shape}
    if not tensors:
        raise ValueError(f"None of the weights in {path} fits a {type(model).__name__}; is it the right model?")
    model.load_state_dict(tensors, strict=False)
    return sorted(tensors)
