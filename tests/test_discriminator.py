"""MaskAwareDiscriminator: shapes, the optional mask-aware head, gradients (it is trained, never sampled)."""

from __future__ import annotations

import pytest
import torch

from sard import MaskAwareDiscriminator


def _pair(batch=2, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x_prev, x_t = torch.randn(batch, 3, size, size, generator=g), torch.randn(batch, 3, size, size, generator=g)
    mask = (torch.rand(batch, 1, size, size, generator=g) > 0.7).float()
    return x_prev, x_t, torch.tensor([1, 4][:batch] + [2] * max(0, batch - 2)), mask


@pytest.mark.parametrize("size", [16, 24])
def test_output_shapes(tiny_discriminator, size):
    x_prev, x_t, t, mask = _pair(size=size)
    global_logits, mask_logits = tiny_discriminator(x_prev, x_t, t, mask, label=torch.tensor([0, 1]))
    assert global_logits.shape == (2,)
    assert mask_logits.shape == (2, 1, size // 4, size // 4)  # two blocks, each halves the resolution
    assert torch.isfinite(global_logits).all() and torch.isfinite(mask_logits).all()


def test_three_blocks_and_bool_mask():
    torch.manual_seed(0)
    disc = MaskAwareDiscriminator(channels=(4, 8, 8), num_train_timesteps=4)
    x_prev, x_t, t, mask = _pair(batch=3, size=32)
    global_logits, mask_logits = disc(x_prev, x_t, t, mask.bool())
    assert global_logits.shape == (3,) and mask_logits.shape == (3, 1, 4, 4)


def test_mask_head_off_gives_none():
    torch.manual_seed(0)
    disc = MaskAwareDiscriminator(channels=(4, 8), num_train_timesteps=4, mask_head=False)
    x_prev, x_t, t, mask = _pair()
    global_logits, mask_logits = disc(x_prev, x_t, t, mask)
    assert mask_logits is None and global_logits.shape == (2,)
    assert disc.config.mask_head is False


def test_gradients_flow_to_every_parameter_and_to_the_inputs(tiny_discriminator):
    x_prev, x_t, t, mask = _pair()
    x_prev.requires_grad_(True)
    global_logits, mask_logits = tiny_discriminator(x_prev, x_t, t, mask, label=torch.tensor([0, 1]))
    loss = (
        torch.nn.functional.softplus(-global_logits).mean()
        + (mask_logits * torch.nn.functional.interpolate(mask, size=mask_logits.shape[-2:], mode="area")).mean()
    )
    loss.backward()
    for name, parameter in tiny_discriminator.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
    trunk = [p for n, p in tiny_discriminator.named_parameters() if n.startswith("stem")]
    assert any(p.grad.abs().sum() > 0 for p in trunk)
    assert x_prev.grad is not None and x_prev.grad.abs().sum() > 0  # what the R1 penalty needs


def test_inputs_and_label_matter(tiny_discriminator):
    x_prev, x_t, t, mask = _pair()
    base, base_map = tiny_discriminator(x_prev, x_t, t, mask, label=torch.tensor([0, 0]))
    other_label, other_map = tiny_discriminator(x_prev, x_t, t, mask, label=torch.tensor([1, 1]))
    assert not torch.allclose(base, other_label)  # the projection term
    assert torch.equal(base_map, other_map)  # the mask-aware head does not see the label
    assert not torch.allclose(
        base, tiny_discriminator(x_prev, x_t, torch.tensor([2, 3]), mask, label=torch.tensor([0, 0]))[0]
    )
    assert not torch.allclose(base, tiny_discriminator(x_prev, x_t, t, 1 - mask, label=torch.tensor([0, 0]))[0])
    # Each sample is scored on its own.
    single, _ = tiny_discriminator(x_prev[:1], x_t[:1], t[:1], mask[:1], label=torch.tensor([0]))
    torch.testing.assert_close(single, base[:1])


def test_save_load_round_trip(tiny_discriminator, tmp_path):
    tiny_discriminator.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").is_file()
    loaded = MaskAwareDiscriminator.from_pretrained(tmp_path)
    x_prev, x_t, t, mask = _pair()
    expected = tiny_discriminator(x_prev, x_t, t, mask, label=torch.tensor([0, 1]))
    actual = loaded(x_prev, x_t, t, mask, label=torch.tensor([0, 1]))
    assert torch.equal(expected[0], actual[0]) and torch.equal(expected[1], actual[1])
