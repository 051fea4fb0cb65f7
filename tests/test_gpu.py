"""What holds on a GPU: the bundled bottle model in bfloat16 keeps the background bit for bit and paints what float32
paints on the CPU, CUDA generators reproduce, and a bf16 training run resumes and saves weights that load on a
CPU. Skipped where no GPU is visible (CI); on a GPU machine: ``python -m pytest -q tests/test_gpu.py``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fixtures import make_dataset
from safetensors.torch import load_file
from test_train import DEBUG, REPO_ROOT, _assert_paints_only_inside_the_mask

from sard import SARDPipeline
from sard.training.config import parse_args
from sard.training.trainer import train

# The bottle model: the one that paints the largest images (900 x 900).
CHECKPOINT = REPO_ROOT / "sard" / "checkpoints" / "bottle"

pytestmark = [
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU visible to torch"),
    pytest.mark.filterwarnings("ignore:1 empty mask"),
]


def _tile_and_mask(size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = np.clip(rng.normal(128, 20, (size, size, 3)), 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[:size, :size]
    mask = ((yy - size / 2) / 30) ** 2 + ((xx - size / 2) / 20) ** 2 <= 1  # the bench's 60 x 40 ellipse
    return image, mask


def _paint(pipe: SARDPipeline, image: np.ndarray, mask: np.ndarray, generator: torch.Generator) -> np.ndarray:
    return pipe(image, mask, defect=pipe.defect_types[0], generator=generator, output_type="np").images[0]


def test_bfloat16_on_the_gpu_keeps_the_background_and_paints_what_float32_paints_on_the_cpu():
    image, mask = _tile_and_mask()
    cpu = SARDPipeline.from_pretrained(CHECKPOINT)
    gpu = SARDPipeline.from_pretrained(CHECKPOINT).to("cuda", torch.bfloat16)
    for pipe in (cpu, gpu):
        pipe.set_progress_bar_config(disable=True)
    # The same CPU generator on both: the noise is drawn on the CPU and moved, so only the arithmetic differs.
    reference = _paint(cpu, image, mask, torch.Generator().manual_seed(0))
    painted = _paint(gpu, image, mask, torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(painted[~mask], image[~mask])
    assert (painted[mask] != image[mask]).any()
    gap = np.abs(painted[mask].astype(int) - reference[mask].astype(int))
    print(f"bf16 GPU vs fp32 CPU inside the mask: mean |diff| {gap.mean():.2f}, max {gap.max()} of 255")
    assert gap.mean() < 6, f"bf16 on the GPU paints {gap.mean():.2f} grey levels away from fp32 on the CPU"


def test_cuda_generators_reproduce():
    image, mask = _tile_and_mask()
    pipe = SARDPipeline.from_pretrained(CHECKPOINT).to("cuda", torch.bfloat16)
    pipe.set_progress_bar_config(disable=True)
    first, second, other = (_paint(pipe, image, mask, torch.Generator("cuda").manual_seed(s)) for s in (0, 0, 1))
    np.testing.assert_array_equal(first, second)
    assert (first[mask] != other[mask]).any()


def test_a_bf16_training_run_on_the_gpu_resumes_and_loads_on_a_cpu(tmp_path):
    data = make_dataset(tmp_path / "data", "mvtec", defects={"scratch": 6, "dent": 3}, problems=["empty_mask"])
    options = ["--config", DEBUG, "--data_root", str(data.data_root), "--category", data.category,
               "--mixed_precision", "bf16", "--disc_view", "clean", "--disc_augment", "color,translation",
               "--disc_warmup_steps", "1", "--checkpoint_every", "2", "--checkpoints_total_limit", "5"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(parse_args([*options, "--output_dir", str(straight), "--max_steps", "4"]))
    train(parse_args([*options, "--output_dir", str(resumed), "--max_steps", "2"]))
    train(parse_args([*options, "--output_dir", str(resumed), "--max_steps", "4", "--resume", "latest"]))

    weights = "checkpoint-4/training_state/denoiser.safetensors"
    left, right = load_file(straight / weights), load_file(resumed / weights)
    gap = max((left[k].float() - right[k].float()).abs().max().item() for k in left)
    print(f"straight vs resumed denoiser after 4 bf16 steps on the GPU: max |diff| {gap:.3g}")
    assert gap < 1e-3, f"a resumed GPU run drifts from a straight one by {gap:.3g}"
    for values in left.values():
        assert torch.isfinite(values).all()
    _assert_paints_only_inside_the_mask(straight, data.images("scratch")[0])  # loads on the CPU, float32
