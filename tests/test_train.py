"""Training end to end (train/train_sard.py and sard.training.trainer.train) on a tiny MVTec-AD fixture: the run
folder, loadable checkpoints, exact resumes, the time limit and a two-process (gloo) run."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
import yaml
from conftest import box_mask
from fixtures import make_dataset
from safetensors.torch import load_file

from sard import SARDPipeline
from sard.config import ConfigError, load
from sard.datasets import DatasetError
from sard.training import checkpoints
from sard.training.config import TrainConfig, parse_args
from sard.training.crops import Augmentation, CropBatches, _Example
from sard.training.trainer import train

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "train" / "train_sard.py"
DEBUG = str(REPO_ROOT / "train" / "configs" / "debug.yaml")


# The fixture's one empty mask is reported by every run that reads it; test_datasets.py checks that warning.
pytestmark = pytest.mark.filterwarnings("ignore:1 empty mask")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Two defect types; scratch/000 (a training image of the protocol split) has an empty mask."""
    return make_dataset(tmp_path_factory.mktemp("data"), "mvtec", defects={"scratch": 6, "dent": 3},
                        problems=["empty_mask"])


def _args(data, output_dir, *extra) -> list[str]:
    return ["--config", DEBUG, "--data_root", str(data.data_root), "--category", data.category,
            "--output_dir", str(output_dir), "--num_threads", "1", *extra]


def _env(**extra) -> dict:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **extra}
    env.pop("WORLD_SIZE", None)
    return env


def _assert_paints_only_inside_the_mask(folder: Path, image_path: Path):
    pipe = SARDPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.defect_types == ["dent", "scratch"]
    image = np.asarray(PIL.Image.open(image_path).convert("RGB"))
    mask = box_mask(*image.shape[:2])
    out = pipe(image, mask, defect="scratch", generator=torch.Generator().manual_seed(0), output_type="np").images[0]
    assert out.shape == image.shape and out.dtype == image.dtype
    np.testing.assert_array_equal(out[~mask], image[~mask], err_msg=str(folder))
    assert (out[mask] != image[mask]).any(), f"{folder} painted nothing"


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_debug_run_from_the_command_line(data, tmp_path):
    output_dir = tmp_path / "run"
    argv = _args(data, output_dir)
    result = subprocess.run([sys.executable, str(SCRIPT), *argv], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=300, env=_env())
    assert result.returncode == 0, result.stderr[-3000:]

    # The final pipeline and every checkpoint load and leave the background untouched.
    names = sorted(p.name for p in output_dir.iterdir() if "checkpoint" in p.name)
    assert names == ["checkpoint-2", "checkpoint-3"]  # debug.yaml: every 2 steps and the last, keep 2
    held_out_good = data.root / "test" / "good" / "000.png"
    for folder in (output_dir, output_dir / "checkpoint-2", output_dir / "checkpoint-3"):
        _assert_paints_only_inside_the_mask(folder, held_out_good)
    for step in (2, 3):
        state = json.loads((output_dir / f"checkpoint-{step}" / checkpoints.STATE_FILE).read_text())
        assert state["step"] == step and state["num_processes"] == 1

    # config.yaml is the parsed configuration, loadable as a config.
    assert load(TrainConfig, output_dir / "config.yaml") == parse_args(argv)

    # split.json: the exact file lists; the empty mask is listed as skipped.
    split = json.loads((output_dir / "split.json").read_text())
    test_dir = data.root / "test"
    assert split["data_root"] == str(data.root) and split["data_format"] == "mvtec" and split["split"] == "protocol"
    assert split["train"] == {"dent": [str(test_dir / "dent" / "000.png")],
                              "scratch": [str(test_dir / "scratch" / f"{i:03d}.png") for i in (0, 1)]}
    assert split["held_out"] == {"dent": [str(test_dir / "dent" / f"{i:03d}.png") for i in (1, 2)],
                                 "scratch": [str(test_dir / "scratch" / f"{i:03d}.png") for i in (2, 3, 4, 5)]}
    assert split["skipped_empty_masks"] == [str(data.problems["empty_mask"])]
    assert split["train_good"] == [str(p) for p in data.train_good]

    # losses.csv: one row per step (log_every 1), finite numbers.
    rows = _rows(output_dir / "losses.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    for key in ("d_loss", "g_loss", "rec", "d_global", "d_mask", "g_global", "g_mask", "ema_decay"):
        assert all(math.isfinite(float(r[key])) for r in rows), key

    # README.md: a model card with YAML front matter the Hub reads.
    card = (output_dir / "README.md").read_text()
    assert card.startswith("---\n")
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["library_name"] == "diffusers" and front["license"] == "cc-by-nc-sa-4.0"
    assert "sard" in front["tags"]
    assert "| steps | 3 |" in card
    assert "| dent | 1 | 2 |" in card and "| scratch | 1 | 4 |" in card  # trained on (without the empty mask)

    assert not list(output_dir.glob(".checkpoint-*"))
    assert "Saved the pipeline" in result.stdout + result.stderr


@pytest.fixture
def step_log(monkeypatch) -> list[int]:
    """The steps a run really trains (every step draws one batch)."""
    steps = []
    batch = CropBatches.batch

    def recording(self, step, *args, **kwargs):
        if step > 0:  # step 0 draws the fixed batch of held-out crops the discriminator is measured on
            steps.append(step)
        return batch(self, step, *args, **kwargs)

    monkeypatch.setattr(CropBatches, "batch", recording)
    return steps


def _same_state(a: Path, b: Path):
    for name in ("denoiser", "discriminator", "ema"):
        left, right = (load_file(p / "training_state" / f"{name}.safetensors") for p in (a, b))
        assert left.keys() == right.keys(), name
        for key in left:
            assert torch.equal(left[key], right[key]), f"{name}.{key}"
    left, right = (torch.load(p / "training_state" / "optimizers.pt", weights_only=True) for p in (a, b))
    for which in ("g", "d"):
        for index, state in left[which]["state"].items():
            for key, value in state.items():
                assert torch.equal(value, right[which]["state"][index][key]), f"opt_{which}.{index}.{key}"
    info_a, info_b = (json.loads((p / checkpoints.STATE_FILE).read_text()) for p in (a, b))
    assert info_a["ema"] == info_b["ema"] and info_a["step"] == info_b["step"]


def test_resume_continues_bit_for_bit(data, tmp_path, step_log):
    """4 steps straight == 2 steps, then --resume latest to 4 (past damaged newer checkpoints), R1 included."""
    options = ["--r1_every", "2", "--checkpoint_every", "2", "--checkpoints_total_limit", "5"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(parse_args(_args(data, straight, "--max_steps", "4", *options)))
    assert step_log == [1, 2, 3, 4]

    step_log.clear()
    train(parse_args(_args(data, resumed, "--max_steps", "2", *options)))
    assert step_log == [1, 2]
    # Damaged newer checkpoints that --resume latest must skip, and a save killed before its rename.
    good = resumed / "checkpoint-2"
    shutil.copytree(good, resumed / "checkpoint-3")
    damaged = resumed / "checkpoint-3" / "training_state" / "discriminator.safetensors"
    damaged.write_bytes(damaged.read_bytes()[:-8] + bytes(8))
    shutil.copytree(good, resumed / "checkpoint-4")
    (resumed / "checkpoint-4" / checkpoints.STATE_FILE).unlink()
    shutil.copytree(good, resumed / ".checkpoint-4.partial")
    (resumed / ".checkpoint-4.partial" / "training_state" / "ema.safetensors").write_bytes(b"")

    step_log.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(parse_args(_args(data, resumed, "--max_steps", "4", "--resume", "latest", *options)))
    assert step_log == [3, 4]  # resumed from checkpoint-2, not retrained from scratch
    messages = [str(w.message) for w in caught if "empty mask" not in str(w.message)]
    unfinished = "trainer_state.json is missing (the save did not finish)."
    assert messages == [
        f"Skipping {resumed / 'checkpoint-4'}: {unfinished}",
        f"Skipping {resumed / 'checkpoint-3'}: {damaged.relative_to(resumed / 'checkpoint-3')} is damaged (checksum "
        "mismatch).",
        f"Replacing {resumed / 'checkpoint-4'}: {unfinished}",
    ]

    _same_state(straight / "checkpoint-4", resumed / "checkpoint-4")
    weights = Path("denoiser") / "diffusion_pytorch_model.safetensors"
    assert (straight / weights).read_bytes() == (resumed / weights).read_bytes()
    assert (straight / "checkpoint-4" / weights).read_bytes() == (resumed / "checkpoint-4" / weights).read_bytes()
    assert not list(resumed.glob(".checkpoint-*"))

    def without_wall_time(rows):
        return [{k: v for k, v in r.items() if k != "wall_seconds"} for r in rows]

    straight_rows, resumed_rows = _rows(straight / "losses.csv"), _rows(resumed / "losses.csv")
    assert [int(r["step"]) for r in resumed_rows] == [1, 2, 3, 4]
    assert "r1" in straight_rows[0]
    assert without_wall_time(resumed_rows) == without_wall_time(straight_rows)


def test_fake_history_is_checkpointed_and_a_resume_continues_bit_for_bit(data, tmp_path):
    """--fake_history: the past fakes are training state; a run resumed at step 2 (history full, already swapping)
    ends where the straight run does, and the card says how many were kept. The pair view is refused."""
    options = ["--disc_view", "clean", "--fake_history", "4", "--disc_steps", "2", "--checkpoint_every", "2",
               "--checkpoints_total_limit", "5"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(parse_args(_args(data, straight, "--max_steps", "4", *options)))
    train(parse_args(_args(data, resumed, "--max_steps", "2", *options)))
    train(parse_args(_args(data, resumed, "--max_steps", "4", "--resume", "latest", *options)))
    _same_state(straight / "checkpoint-4", resumed / "checkpoint-4")
    left, right = (load_file(p / "checkpoint-4" / "training_state" / "fake_history.safetensors")
                   for p in (straight, resumed))
    assert left["image"].shape[0] == 4 and int(left["size"]) == 4
    assert all(torch.equal(left[k], right[k]) for k in left)
    assert "a history of 4 past fakes" in (straight / "README.md").read_text()
    with pytest.raises(ConfigError, match="fake_history needs disc_view clean"):
        train(parse_args(_args(data, tmp_path / "refused", "--fake_history", "4")))


def test_lambda_sample_trains_on_finished_samples_and_measures_them_held_out(data, tmp_path):
    """--lambda_sample: both blocks log their term on finished samples, the held-out accuracy has a level 0 (real
    defects against finished samples), and the card gives the weight."""
    run = tmp_path / "run"
    train(parse_args(_args(data, run, "--max_steps", "2", "--disc_view", "clean", "--lambda_sample", "0.5",
                           "--held_out_every", "1")))
    rows = _rows(run / "losses.csv")
    assert all(float(r["d_sample"]) > 0 and float(r["g_sample"]) > 0 for r in rows)
    assert 0.0 <= float(rows[-1]["held_out_acc_mask_t0"]) <= 1.0
    assert "lambda_sample 0.5 (finished samples)" in (run / "README.md").read_text()
    with pytest.raises(ConfigError, match="lambda_sample needs disc_view clean"):
        train(parse_args(_args(data, tmp_path / "refused", "--lambda_sample", "1")))


@pytest.mark.parametrize("mode", ["mask", "fill"])
def test_high_pass_mode_trains_and_is_in_the_card(data, tmp_path, mode):
    run = tmp_path / "run"
    train(parse_args(_args(data, run, "--max_steps", "1", "--disc_view", "clean", "--high_pass_mode", mode)))
    assert f"clean view (high-pass: {mode})" in (run / "README.md").read_text()
    with pytest.raises(ConfigError, match="high_pass_mode must be one of image, mask, fill"):
        train(parse_args(_args(data, tmp_path / "refused", "--high_pass_mode", "edges")))


def test_time_limit_stops_with_a_checkpoint_and_resume_finishes(data, tmp_path, step_log):
    output_dir = tmp_path / "run"
    options = ["--max_steps", "3", "--checkpoint_every", "1000"]
    train(parse_args(_args(data, output_dir, *options, "--max_train_minutes", "1e-6")))
    assert step_log == [1]
    assert sorted(p.name for p in output_dir.glob("checkpoint-*")) == ["checkpoint-1"]
    assert not (output_dir / "model_index.json").exists() and not (output_dir / "README.md").exists()
    assert SARDPipeline.from_pretrained(output_dir / "checkpoint-1").defect_types == ["dent", "scratch"]

    step_log.clear()
    train(parse_args(_args(data, output_dir, *options, "--resume", "latest")))
    assert step_log == [2, 3]
    assert sorted(p.name for p in output_dir.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-3"]
    assert "| steps | 3 |" in (output_dir / "README.md").read_text()
    assert [int(r["step"]) for r in _rows(output_dir / "losses.csv")] == [1, 2, 3]
    _assert_paints_only_inside_the_mask(output_dir, data.train_good[0])


# Runs the script under accelerate and records, per process, a digest of the weights it ends with: data-parallel
# training must leave every process with the same networks. A process still running after 240 s prints where it
# is and exits, so a hang fails with a stack instead of a bare timeout.
_DIGEST_DRIVER = """
import faulthandler, hashlib, os, runpy, sys
from pathlib import Path
import accelerate

faulthandler.dump_traceback_later(240, exit=True)  # a hung process fails with its stack, within the 300 s limit

end_training = accelerate.Accelerator.end_training

def recording_end_training(self):
    digest = hashlib.sha256()
    for model in self._models:
        for key, value in sorted(self.unwrap_model(model).state_dict().items()):
            digest.update(key.encode() + value.detach().cpu().numpy().tobytes())
    output_dir = Path(sys.argv[sys.argv.index("--output_dir") + 1])
    (output_dir / f"rank-{self.process_index}.sha256").write_text(digest.hexdigest())
    end_training(self)

accelerate.Accelerator.end_training = recording_end_training

if os.environ.get("FAST_CLOCK_RANK") == os.environ["RANK"]:  # this process's training clock runs 10^4 times fast
    import time, types
    import sard.training.trainer as trainer
    start = time.monotonic()
    trainer.time = types.SimpleNamespace(monotonic=lambda: start + (time.monotonic() - start) * 1e4)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _launch(tmp_path, data, output_dir, env, *extra) -> subprocess.CompletedProcess:
    driver = tmp_path / "driver.py"
    driver.write_text(_DIGEST_DRIVER)
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", "0", str(driver), str(SCRIPT), *_args(data, output_dir, *extra)]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.slow
def test_two_process_cpu_run(data, tmp_path):
    """``ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2``: gloo data parallelism with
    R1 (a double backward), gradient accumulation (no_sync), each process's history of past fakes (gathered
    into the checkpoint) and finished samples (several forward passes of the denoiser per backward) in the loop."""
    output_dir = tmp_path / "run"
    env = _env(ACCELERATE_USE_CPU="true")
    result = _launch(tmp_path, data, output_dir, env, "--r1_every", "2", "--gradient_accumulation_steps", "2",
                     "--disc_view", "clean", "--fake_history", "2", "--lambda_sample", "0.5")
    assert result.returncode == 0, result.stderr[-3000:]
    digests = [(output_dir / f"rank-{i}.sha256").read_text() for i in range(2)]
    assert digests[0] == digests[1], "the processes ended with different weights"
    state = json.loads((output_dir / "checkpoint-3" / checkpoints.STATE_FILE).read_text())
    assert state["num_processes"] == 2
    history = load_file(output_dir / "checkpoint-3" / "training_state" / "fake_history.safetensors")
    assert history["image"].shape[0] == 4 and history["size"].tolist() == [2, 2]  # two processes' histories
    rows = _rows(output_dir / "losses.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3]  # written by one process
    assert rows[1]["r1"] and not rows[0]["r1"]
    _assert_paints_only_inside_the_mask(output_dir, data.train_good[0])
    _assert_paints_only_inside_the_mask(output_dir / "checkpoint-2", data.train_good[0])


@pytest.mark.slow
def test_processes_stop_together_when_one_runs_out_of_time(data, tmp_path):
    """--max_train_minutes with two processes whose clocks disagree (rank 1's runs 10^4 times fast, so it is out of
    time at step 1 and rank 0 is not): both stop at the same step, save one checkpoint and exit."""
    output_dir = tmp_path / "run"
    env = _env(ACCELERATE_USE_CPU="true", FAST_CLOCK_RANK="1")
    result = _launch(tmp_path, data, output_dir, env, "--max_train_minutes", "1", "--max_steps", "50")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Stopped at step 1 " in result.stdout
    assert sorted(p.name for p in output_dir.glob("checkpoint-*")) == ["checkpoint-1"]
    assert not (output_dir / "model_index.json").exists()  # stopped, not finished: no final export
    digests = [(output_dir / f"rank-{i}.sha256").read_text() for i in range(2)]
    assert digests[0] == digests[1]


def test_processes_that_accelerate_did_not_join_are_refused(data, tmp_path, monkeypatch):
    """torchrun (``accelerate launch --multi_gpu``) on a machine without GPUs and without ACCELERATE_USE_CPU: each
    process would train alone into the same folder. Training stops first and says how to launch instead."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    output_dir = tmp_path / "run"
    with pytest.raises(ConfigError, match="ACCELERATE_USE_CPU=true"):
        train(parse_args(_args(data, output_dir)))
    assert not output_dir.exists()


def test_bad_data_stops_the_script_before_it_writes_anything(tmp_path):
    bad = make_dataset(tmp_path / "data", "mvtec", problems=["missing_mask", "mask_size"])
    output_dir = tmp_path / "run"
    with pytest.raises(DatasetError, match="2 problem") as error:
        train(parse_args(_args(bad, output_dir)))
    assert str(bad.problems["missing_mask"]) in str(error.value) and str(bad.problems["mask_size"]) in str(error.value)
    with pytest.raises(DatasetError, match="category 'bottle'.*--category"):
        train(parse_args(_args(bad, output_dir, "--category", "bottle")))
    assert not output_dir.exists()


def test_clean_view_warm_up_from_a_pipeline_trains_the_discriminator_alone(data, tmp_path):
    """--init_from starts from a pipeline's denoiser; during --disc_warmup_steps only the discriminator moves; the
    loss log has each head's accuracy on the held-out crops at every level."""
    first, second = tmp_path / "first", tmp_path / "second"
    train(parse_args(_args(data, first, "--max_steps", "2")))
    options = ["--init_from", str(first), "--disc_view", "clean", "--disc_warmup_steps", "2", "--max_steps", "2",
               "--held_out_every", "1", "--lambda_ms", "0.1", "--rec_weighting", "snr"]
    train(parse_args(_args(data, second, *options)))
    start = load_file(first / "denoiser" / "diffusion_pytorch_model.safetensors")
    after = load_file(second / "checkpoint-2" / "training_state" / "denoiser.safetensors")
    assert start.keys() == after.keys() and all(torch.equal(start[k], after[k]) for k in start)
    with open(second / "losses.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    levels = range(1, 5)
    for head in ("global", "mask"):
        assert all(0.0 <= float(rows[-1][f"held_out_acc_{head}_t{t}"]) <= 1.0 for t in levels)
    assert float(rows[-1]["d_loss"]) > 0 and rows[-1]["g_loss"] == "nan"  # no denoiser block yet


def test_ms_target_trains_the_bounded_mode_seeking_term(data, tmp_path):
    """--ms_target: the mode-seeking term is the shortfall from the real spread (logged as ms_gap beside the
    ratio), and the card says so."""
    run = tmp_path / "run"
    train(parse_args(_args(data, run, "--max_steps", "2", "--disc_view", "clean", "--lambda_ms", "0.3",
                           "--ms_target", "0.6")))
    rows = _rows(run / "losses.csv")
    assert all(float(r["ms_gap"]) >= 0 and float(r["ms"]) >= 0 for r in rows)
    assert "lambda_ms 0.3 (up to 0.6 of the real spread)" in (run / "README.md").read_text()
    with pytest.raises(ConfigError, match="ms_target must not be negative"):
        train(parse_args(_args(data, tmp_path / "bad", "--ms_target", "-1")))


def test_init_from_a_different_network_is_refused(data, tmp_path):
    first = tmp_path / "first"
    train(parse_args(_args(data, first, "--max_steps", "1")))
    with pytest.raises(ConfigError, match="not the network this config builds"):
        train(parse_args(_args(data, tmp_path / "second", "--init_from", str(first), "--latent_dim", "8")))


def test_disc_steps_updates_the_discriminator_that_many_times_per_denoiser_update(data, tmp_path):
    """--disc_steps 3: three Adam steps of the discriminator for each of the denoiser's."""
    train(parse_args(_args(data, tmp_path / "run", "--max_steps", "2", "--disc_steps", "3", "--disc_view", "clean")))
    _, _, objects = checkpoints.load_state(tmp_path / "run" / "checkpoint-2")
    adam_steps = {name: int(optimizer["state"][0]["step"]) for name, optimizer in objects["optimizers"].items()}
    assert adam_steps == {"d": 6, "g": 2}


def test_disc_augment_trains_and_is_in_the_card(data, tmp_path):
    """--disc_augment: the clean view's discriminator sees DiffAugment'ed crops; the card says so; the pair view
    and unknown transforms are refused before anything is written."""
    run = tmp_path / "run"
    train(parse_args(_args(data, run, "--max_steps", "2", "--disc_view", "clean", "--disc_augment",
                           "color,translation")))
    assert "DiffAugment color,translation" in (run / "README.md").read_text()
    assert all(math.isfinite(float(r["d_loss"])) for r in _rows(run / "losses.csv"))
    for extra, message in ((["--disc_augment", "color"], "needs disc_view clean"),
                           (["--disc_view", "clean", "--disc_augment", "zoom"], "Unknown DiffAugment policy zoom")):
        with pytest.raises(ConfigError, match=message):
            train(parse_args(_args(data, tmp_path / "refused", *extra)))
    assert not (tmp_path / "refused").exists()


def test_a_steps_extra_draws_are_new_crops():
    """The extra discriminator updates of a step see crops of their own, not the step's batch again."""
    image = torch.randint(0, 256, (3, 40, 40), dtype=torch.uint8)
    mask = torch.zeros(1, 40, 40, dtype=torch.uint8)
    mask[:, 10:30, 10:30] = 1
    example = _Example(image, mask, torch.nonzero(mask[0]).numpy(), 0)
    batches = CropBatches([example], 16, Augmentation(True, True, False, 0.15), seed=0)
    first, again, extra = batches.batch(5, 4), batches.batch(5, 4), batches.batch(5, 4, draw=1)
    assert torch.equal(first["image"], again["image"]) and not torch.equal(first["image"], extra["image"])


def test_bundle_script_puts_every_stage_and_the_measurements_in_the_card(data, tmp_path):
    """scripts/bundle_checkpoint.py on a second-stage run: both stages' logs, the held-out accuracy per head and
    level, and the fidelity report in the card; the bundle loads. A third stage on the bundle bundles over it."""
    first, second, target = tmp_path / "first", tmp_path / "second", tmp_path / "bundle"
    train(parse_args(_args(data, first, "--max_steps", "2")))
    train(parse_args(_args(data, second, "--max_steps", "2", "--init_from", str(first), "--disc_view", "clean",
                           "--held_out_every", "1")))
    report = tmp_path / "fidelity.md"
    report.write_text("# Fidelity: fixture\n\n| defect | C2ST |\n|---|---:|\n| scratch | 0.61 |\n")
    script = REPO_ROOT / "scripts" / "bundle_checkpoint.py"
    command = [sys.executable, str(script), str(second), str(target),
               "--stage1", str(first), "--fidelity", str(report), "--max_crop_size", "48"]
    subprocess.run(command, check=True, env=_env(), capture_output=True, timeout=600)
    card = (target / "README.md").read_text()
    assert SARDPipeline.from_pretrained(target).config.max_crop_size == 48 and "bounded at 48 px" in card
    assert "| painting crops, longest side | no bound |" in card  # the run itself was trained without the bound
    assert "| mask | " in card and "| global | " in card and "t = 4" in card
    assert "## Fidelity (held-out masks" in card and "| scratch | 0.61 |" in card and "# Fidelity: fixture" not in card
    assert (target / "training_log" / "stage-1" / "losses.csv").read_text() == (first / "losses.csv").read_text()
    bundled = SARDPipeline.from_pretrained(target)
    # Grain matching is on in what training exports, with a strength per type measured on its training defects.
    assert bundled.config.grain is True and set(bundled.config.grain_strength) == set(bundled.defect_types)
    assert "| grain matching | on " in card and card.count("## Grain") == 1
    refused = subprocess.run([*command[:3], str(tmp_path / "other"), "--stage1", str(tmp_path)], env=_env(),
                             capture_output=True, text=True, timeout=600)
    assert refused.returncode == 2 and "not a training run" in refused.stderr and not (tmp_path / "other").exists()

    # A third stage trained on the bundled model, bundled over it: the earlier stages come from its own log.
    third = tmp_path / "third"
    train(parse_args(_args(data, third, "--max_steps", "2", "--init_from", str(target))))
    log = target / "training_log"
    subprocess.run([*command[:2], str(third), str(target), "--earlier_stages", str(log / "stage-1"), str(log)],
                   check=True, env=_env(), capture_output=True, timeout=600)
    for stage, run in (("stage-1", first), ("stage-2", second)):
        assert (log / stage / "losses.csv").read_text() == (run / "losses.csv").read_text()
    assert (log / "losses.csv").read_text() == (third / "losses.csv").read_text() and not (log / "stage-3").exists()


def test_resuming_an_earlier_checkpoint_to_its_own_step_exports_it_with_its_losses(data, tmp_path):
    """An earlier checkpoint of a finished run becomes a finished run of its own (the pipeline and the losses of
    that step, as the bundle script takes them): --resume CHECKPOINT --max_steps STEP runs no step and exports."""
    run = tmp_path / "run"
    train(parse_args(_args(data, run, "--max_steps", "4", "--checkpoint_every", "2", "--log_every", "1",
                           "--checkpoints_total_limit", "3")))
    assert [int(r["step"]) for r in _rows(run / "losses.csv")] == [1, 2, 3, 4]
    train(parse_args(_args(data, run, "--max_steps", "2", "--checkpoint_every", "2", "--log_every", "1",
                           "--resume", str(run / "checkpoint-2"))))
    assert [int(r["step"]) for r in _rows(run / "losses.csv")] == [1, 2]
    weights = Path("denoiser") / "diffusion_pytorch_model.safetensors"
    assert (run / weights).read_bytes() == (run / "checkpoint-2" / weights).read_bytes()


def test_grain_false_exports_a_pipeline_without_grain_matching(data, tmp_path):
    train(parse_args(_args(data, tmp_path / "run", "--max_steps", "1", "--grain", "false")))
    pipe = SARDPipeline.from_pretrained(tmp_path / "run")
    assert pipe.config.grain is False and pipe.config.grain_strength == {}
    assert "| grain matching | off |" in (tmp_path / "run" / "README.md").read_text()
