"""save_pretrained / from_pretrained: folders, dtypes and a Hugging Face Hub id loaded offline from the cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import box_mask, make_pipeline, seeded

from sard import SARDDenoiser, SARDPipeline, SARDScheduler

REPO_ROOT = Path(__file__).resolve().parents[1]


def _inputs():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (18, 22, 3), dtype=np.uint8), box_mask(18, 22)


def _paint(pipe, seed=0):
    image, mask = _inputs()
    return pipe(image, mask, defect="b", generator=seeded(seed), output_type="np").images[0]


@pytest.fixture
def saved(tmp_path) -> Path:
    path = tmp_path / "pipe"
    make_pipeline().save_pretrained(path)
    return path


def test_save_pretrained_writes_components_and_safetensors_only(saved):
    index = json.loads((saved / "model_index.json").read_text())
    assert index["_class_name"] == "SARDPipeline"
    assert index["denoiser"] == ["sard.denoiser", "SARDDenoiser"]
    assert index["scheduler"] == ["sard.scheduler", "SARDScheduler"]
    for key, value in index.items():
        if isinstance(value, list):
            assert None not in value, f"{key} was saved as {value}"
    assert "null" not in (saved / "model_index.json").read_text()
    assert (index["resolution"], index["crop_size"], index["context"]) == (32, 16, 4)
    files = {p.relative_to(saved).as_posix() for p in saved.rglob("*") if p.is_file()}
    assert "denoiser/diffusion_pytorch_model.safetensors" in files
    assert "denoiser/config.json" in files and "scheduler/scheduler_config.json" in files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))]
    assert json.loads((saved / "denoiser" / "config.json").read_text())["defect_types"] == ["a", "b"]


def test_round_trip_gives_identical_outputs(saved):
    loaded = SARDPipeline.from_pretrained(saved)
    loaded.set_progress_bar_config(disable=True)
    assert isinstance(loaded.denoiser, SARDDenoiser) and isinstance(loaded.scheduler, SARDScheduler)
    assert loaded.defect_types == ["a", "b"]
    assert (loaded.config.resolution, loaded.config.crop_size, loaded.config.context) == (32, 16, 4)
    original = make_pipeline()
    for a, b in zip(original.denoiser.state_dict().values(), loaded.denoiser.state_dict().values()):
        assert torch.equal(a, b)
    assert np.array_equal(_paint(loaded), _paint(original))
    assert not np.array_equal(_paint(loaded), _paint(make_pipeline(seed=1)))  # the weights matter


def test_from_pretrained_dtype(saved):
    loaded = SARDPipeline.from_pretrained(saved, dtype=torch.float64)
    loaded.set_progress_bar_config(disable=True)
    assert loaded.denoiser.dtype == torch.float64
    for name, weight in make_pipeline().denoiser.state_dict().items():
        assert torch.equal(loaded.denoiser.state_dict()[name], weight.double()), name
    out = _paint(loaded)
    image, mask = _inputs()
    assert np.array_equal(out[~mask], image[~mask]) and not np.array_equal(out[mask], image[mask])
    assert np.array_equal(out, _paint(loaded))  # float64 noise is drawn from the generator too: reproducible
    assert SARDPipeline.from_pretrained(saved).denoiser.dtype == torch.float32  # the default


def test_weights_are_never_read_from_pickles(saved):
    """A stray pickle next to the safetensors file is never loaded (ignored or refused); without the
    safetensors file, loading fails."""
    loaded_before = _paint(SARDPipeline.from_pretrained(saved))
    torch.save(make_pipeline(seed=1).denoiser.state_dict(), saved / "denoiser" / "diffusion_pytorch_model.bin")
    try:
        with_pickle = SARDPipeline.from_pretrained(saved)
    except ValueError as error:  # refused, with a message that says why
        assert "pickle" in str(error) or "safetensors" in str(error)
    else:
        assert np.array_equal(_paint(with_pickle), loaded_before)
    (saved / "denoiser" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises((OSError, ValueError)):
        SARDPipeline.from_pretrained(saved)


@pytest.mark.slow  # a fresh interpreter imports torch and diffusers: a few seconds
def test_hub_id_loads_offline_from_the_cache(saved, tmp_path):
    """``from_pretrained("someorg/sard-tiny")`` with HF_HUB_OFFLINE=1 reads the snapshot from the cache."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    cache = tmp_path / "hub"
    repo = cache / "models--someorg--sard-tiny"
    shutil.copytree(saved, repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    out_file = tmp_path / "out.npy"
    script = f"""
import numpy as np, torch
torch.set_num_threads(1)
from sard import SARDPipeline
pipe = SARDPipeline.from_pretrained("someorg/sard-tiny")
pipe.set_progress_bar_config(disable=True)
rng = np.random.default_rng(0)
image = rng.integers(0, 256, (18, 22, 3), dtype=np.uint8)
mask = np.load({str(tmp_path / "mask.npy")!r})
out = pipe(image, mask, defect="b", generator=torch.Generator().manual_seed(0), output_type="np").images[0]
np.save({str(out_file)!r}, out)
try:  # an id the cache does not hold fails offline with an error, not a download
    SARDPipeline.from_pretrained("someorg/not-there")
except Exception as error:
    print("MISSING:", type(error).__name__)
"""
    image, mask = _inputs()
    np.save(tmp_path / "mask.npy", mask)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(
        HF_HUB_OFFLINE="1",
        HF_HUB_CACHE=str(cache),
        HF_HOME=str(tmp_path / "hf_home"),
        PYTHONPATH=os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]),
        OMP_NUM_THREADS="1",
        HF_HUB_DISABLE_TELEMETRY="1",
    )
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert np.array_equal(np.load(out_file), _paint(make_pipeline()))
    assert "MISSING:" in result.stdout, result.stdout
