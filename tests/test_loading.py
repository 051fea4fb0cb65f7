"""A bad checkpoint folder fails with a clear error naming the file; nothing runs code from a checkpoint."""

import json
import shutil

import pytest
import torch

from sard import SARDDenoiser, SARDPipeline, SARDScheduler
from sard.loading import CheckpointError, pipeline_digest

WEIGHTS = "denoiser/diffusion_pytorch_model.safetensors"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    denoiser = SARDDenoiser(
        block_out_channels=(8, 16), norm_num_groups=4, latent_dim=4, defect_types=("a", "b"), mid_attention=False
    )
    folder = tmp_path_factory.mktemp("checkpoint")
    SARDPipeline(denoiser, SARDScheduler()).save_pretrained(folder)
    return folder


@pytest.fixture
def copy(saved, tmp_path):
    target = tmp_path / "checkpoint"
    shutil.copytree(saved, target)
    return target


def _load_error(folder) -> str:
    with pytest.raises(CheckpointError) as error:
        SARDPipeline.from_pretrained(folder)
    return str(error.value)


def test_intact_checkpoint_loads(copy):
    assert SARDPipeline.from_pretrained(copy).defect_types == ["a", "b"]


def test_missing_weights_are_named(copy):
    (copy / WEIGHTS).unlink()
    assert WEIGHTS.split("/")[1] in _load_error(copy) and "missing" in _load_error(copy)


@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_truncated_weights_are_named(copy, keep):
    path = copy / WEIGHTS
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    message = _load_error(copy)
    assert str(path) in message and "damaged" in message


def test_garbage_weights_are_named(copy):
    (copy / WEIGHTS).write_bytes(b"\xff" * 64)
    assert str(copy / WEIGHTS) in _load_error(copy)


def test_config_that_disagrees_with_weights(copy):
    config_path = copy / "denoiser" / "config.json"
    config = json.loads(config_path.read_text())
    config["block_out_channels"] = [16, 32]
    config_path.write_text(json.dumps(config))
    message = _load_error(copy)
    assert str(config_path) in message and "does not match" in message


def test_config_that_is_not_json(copy):
    (copy / "denoiser" / "config.json").write_text("{not json")
    assert "config.json is not valid JSON" in _load_error(copy)


def test_pickle_weights_are_refused_and_never_unpickled(copy, monkeypatch):
    (copy / WEIGHTS).unlink()
    pickle_path = copy / "denoiser" / "diffusion_pytorch_model.bin"
    torch.save({"x": torch.zeros(1)}, pickle_path)
    calls = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(a))
    message = _load_error(copy)
    assert str(pickle_path) in message and "pickle" in message
    assert calls == []


@pytest.mark.parametrize(
    "entry", [["diffusers", "UNet2DModel"], ["os", "system"], ["sard.denoiser", "SARDScheduler"], None]
)
def test_model_index_may_only_name_sard_components(copy, entry):
    index_path = copy / "model_index.json"
    index = json.loads(index_path.read_text())
    index["denoiser"] = entry
    index_path.write_text(json.dumps(index))
    assert "'denoiser' must be" in _load_error(copy)


def test_unexpected_model_index_entries(copy):
    index_path = copy / "model_index.json"
    index = json.loads(index_path.read_text())
    index["safety_checker"] = ["transformers", "AutoModel"]
    index_path.write_text(json.dumps(index))
    assert "unexpected entries: safety_checker" in _load_error(copy)


def test_not_a_checkpoint(tmp_path):
    assert "not a SARD checkpoint" in _load_error(tmp_path)


@pytest.mark.parametrize("name", ["./no/such/folder", "/no/such/folder", "no/such/deep/path"])
def test_missing_local_folder(name):
    assert "No checkpoint folder" in _load_error(name)


def test_hub_id_that_cannot_be_fetched_offline(monkeypatch, tmp_path):
    message = _load_error_kwargs("someorg/not-cached", cache_dir=tmp_path, local_files_only=True)
    assert "someorg/not-cached" in message and "Hub" in message


def _load_error_kwargs(name, **kwargs) -> str:
    with pytest.raises(CheckpointError) as error:
        SARDPipeline.from_pretrained(name, **kwargs)
    return str(error.value)


def test_pipeline_digest_follows_the_content_not_the_metadata(copy, saved):
    before = pipeline_digest(copy)
    assert pipeline_digest(saved) == before  # another folder, the same model
    index = json.loads((copy / "model_index.json").read_text())
    (copy / "model_index.json").write_text(json.dumps({**index, "_diffusers_version": "0.0.1"}))
    assert pipeline_digest(copy) == before  # saved again by another diffusers: the same model
    (copy / "model_index.json").write_text(json.dumps({**index, "max_crop_size": 64}))
    assert pipeline_digest(copy) != before  # painted otherwise
    (copy / "model_index.json").write_text(json.dumps(index))
    weights = (copy / WEIGHTS).read_bytes()
    (copy / WEIGHTS).write_bytes(weights[:-1] + bytes([weights[-1] ^ 1]))
    assert pipeline_digest(copy) != before


def test_grain_switch_is_checked_and_only_an_on_switch_changes_the_digest(copy):
    index_path = copy / "model_index.json"
    index = json.loads(index_path.read_text())
    before = pipeline_digest(copy)
    index_path.write_text(json.dumps({**index, "grain": False}))
    assert pipeline_digest(copy) == before  # what a model saved before the switch paints
    index_path.write_text(json.dumps({**index, "grain": True}))
    assert pipeline_digest(copy) != before
    assert SARDPipeline.from_pretrained(copy).config.grain is True
    index_path.write_text(json.dumps({**index, "grain": "yes"}))
    assert "grain must be true or false" in _load_error(copy)
    index_path.write_text(json.dumps({**index, "grain": True, "grain_strength": {"a": 1.5, "b": -1}}))
    assert "grain_strength must be a positive number per defect type" in _load_error(copy)
