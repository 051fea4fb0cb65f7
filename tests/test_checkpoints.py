"""Training checkpoints: atomic saves, verification, --resume latest and the total limit."""

from __future__ import annotations

import json
import shutil
import warnings

import pytest
import torch
from conftest import make_pipeline

from sard import SARDPipeline
from sard.training import checkpoints


@pytest.fixture(scope="module")
def pipeline():
    return make_pipeline()


def _save(output_dir, step, pipeline, limit=10, value=None):
    value = float(step) if value is None else value
    return checkpoints.save_checkpoint(
        output_dir, step, pipeline,
        tensors={"weights": {"a": torch.full((3,), value), "b": torch.arange(4)}},
        objects={"optimizer": {"state": {0: {"step": torch.tensor(float(step))}}, "param_groups": [{"lr": 0.1}]}},
        info={"wall_seconds": 1.5 * step},
        total_limit=limit,
    )


def _checkpoint_names(output_dir) -> list[str]:
    return sorted(p.name for p in output_dir.iterdir() if p.name.startswith((".checkpoint", "checkpoint")))


def test_save_writes_a_loadable_pipeline_and_the_training_state(tmp_path, pipeline):
    path = _save(tmp_path, 3, pipeline)
    assert path == tmp_path / "checkpoint-3"
    assert _checkpoint_names(tmp_path) == ["checkpoint-3"]  # no temporary folder left behind
    assert checkpoints.verify_checkpoint(path) is None
    loaded = SARDPipeline.from_pretrained(path)
    assert loaded.defect_types == pipeline.defect_types

    info, tensors, objects = checkpoints.load_state(path)
    assert info["step"] == 3 and info["wall_seconds"] == 4.5
    assert torch.equal(tensors["weights"]["a"], torch.full((3,), 3.0))
    assert torch.equal(tensors["weights"]["b"], torch.arange(4))
    assert objects["optimizer"]["param_groups"] == [{"lr": 0.1}]
    assert torch.equal(objects["optimizer"]["state"][0]["step"], torch.tensor(3.0))
    # trainer_state.json covers every other file of the folder.
    files = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()} - {checkpoints.STATE_FILE}
    assert set(info["sha256"]) == files
    assert {"model_index.json", "denoiser/diffusion_pytorch_model.safetensors", "training_state/weights.safetensors",
            "training_state/optimizer.pt"} <= files


def _flip_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGES = {
    "no trainer_state.json": lambda p: (p / checkpoints.STATE_FILE).unlink(),
    "damaged trainer_state.json": lambda p: (p / checkpoints.STATE_FILE).write_text('{"step": 4, "sha2'),
    "trainer_state.json of another shape": lambda p: (p / checkpoints.STATE_FILE).write_text("[4]"),
    "flipped byte": lambda p: _flip_byte(p / "training_state" / "weights.safetensors"),
    "missing file": lambda p: (p / "denoiser" / "config.json").unlink(),
    "truncated weights": lambda p: (p / "denoiser" / "diffusion_pytorch_model.safetensors").write_bytes(b""),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged_newest_checkpoint_is_skipped(tmp_path, pipeline, damage):
    good = _save(tmp_path, 2, pipeline)
    bad = _save(tmp_path, 4, pipeline)
    DAMAGES[damage](bad)
    assert checkpoints.verify_checkpoint(bad) is not None
    with pytest.warns(UserWarning, match="Skipping .*checkpoint-4"):
        assert checkpoints.find_latest(tmp_path) == good
    with pytest.warns(UserWarning, match="checkpoint-4"):
        assert checkpoints.resolve_resume("latest", tmp_path) == good
    with pytest.raises(ValueError, match="Cannot resume from .*checkpoint-4"):
        checkpoints.resolve_resume(str(bad), tmp_path)


def test_partial_folder_is_never_picked(tmp_path, pipeline):
    good = _save(tmp_path, 2, pipeline)
    # A complete-looking save that was killed before its rename.
    shutil.copytree(_save(tmp_path / "elsewhere", 6, pipeline), tmp_path / ".checkpoint-6.partial")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert checkpoints.find_latest(tmp_path) == good
    # The next save clears the leftover.
    _save(tmp_path, 8, pipeline)
    assert _checkpoint_names(tmp_path) == ["checkpoint-2", "checkpoint-8"]


def test_interrupted_save_leaves_the_previous_checkpoint_in_charge(tmp_path, pipeline, monkeypatch):
    good = _save(tmp_path, 2, pipeline)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoints, "_fsync_tree", killed)  # every file written, the rename not yet done
    with pytest.raises(KeyboardInterrupt):
        _save(tmp_path, 4, pipeline)
    monkeypatch.undo()
    assert _checkpoint_names(tmp_path) == [".checkpoint-4.partial", "checkpoint-2"]
    assert checkpoints.resolve_resume("latest", tmp_path) == good
    # Saving that step again works and cleans up.
    _save(tmp_path, 4, pipeline)
    assert _checkpoint_names(tmp_path) == ["checkpoint-2", "checkpoint-4"]
    assert checkpoints.find_latest(tmp_path) == tmp_path / "checkpoint-4"


def test_nothing_to_resume(tmp_path):
    assert checkpoints.resolve_resume("", tmp_path) is None
    assert checkpoints.resolve_resume("latest", tmp_path) is None
    assert checkpoints.resolve_resume("latest", tmp_path / "not-yet-created") is None
    with pytest.raises(ValueError, match="no such folder"):
        checkpoints.resolve_resume(str(tmp_path / "checkpoint-9"), tmp_path)


@pytest.mark.parametrize("limit, kept", [(1, ["checkpoint-5"]), (2, ["checkpoint-4", "checkpoint-5"]),
                                         (3, ["checkpoint-3", "checkpoint-4", "checkpoint-5"])])
def test_total_limit_keeps_the_newest(tmp_path, pipeline, limit, kept):
    for step in range(1, 6):
        _save(tmp_path, step, pipeline, limit=limit)
    assert _checkpoint_names(tmp_path) == kept


def test_total_limit_never_deletes_the_checkpoint_just_written(tmp_path, pipeline):
    """Resuming from an older checkpoint while newer folders exist (say, damaged ones): the new save survives."""
    _save(tmp_path, 2, pipeline)
    stale = _save(tmp_path, 10, pipeline)
    (stale / checkpoints.STATE_FILE).unlink()
    _save(tmp_path, 4, pipeline, limit=2)
    assert _checkpoint_names(tmp_path) == ["checkpoint-10", "checkpoint-4"]
    with pytest.warns(UserWarning, match="checkpoint-10"):
        assert checkpoints.find_latest(tmp_path) == tmp_path / "checkpoint-4"


def test_saving_a_step_again_keeps_a_good_checkpoint_and_replaces_a_damaged_one(tmp_path, pipeline):
    path = _save(tmp_path, 2, pipeline, value=1.0)
    state = (path / checkpoints.STATE_FILE).read_text()
    assert _save(tmp_path, 2, pipeline, value=7.0) == path
    assert (path / checkpoints.STATE_FILE).read_text() == state  # untouched

    _flip_byte(path / "training_state" / "weights.safetensors")
    with pytest.warns(UserWarning, match="Replacing .*checkpoint-2"):
        assert _save(tmp_path, 2, pipeline, value=7.0) == path
    assert checkpoints.verify_checkpoint(path) is None
    assert torch.equal(checkpoints.load_state(path)[1]["weights"]["a"], torch.full((3,), 7.0))
    assert json.loads((path / checkpoints.STATE_FILE).read_text())["step"] == 2
