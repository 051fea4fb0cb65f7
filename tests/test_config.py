"""The training configuration: YAML, command-line overrides, and early errors that name the key."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sard.config import ConfigError, load
from sard.training.config import TrainConfig, parse_args

REPO_ROOT = Path(__file__).resolve().parents[1]
DEBUG = str(REPO_ROOT / "train" / "configs" / "debug.yaml")


def test_yaml_then_command_line(tmp_path):
    config = parse_args([
        "--config", DEBUG, "--data_root", str(tmp_path), "--max_steps", "7", "--channels", "8,16,24",
        "--crop_size", "36", "--hflip", "false", "--rotate90", "yes", "--adam_betas", "0.0, 0.99",
        "--lr_g", "1e-3", "--category", "bottle",
    ])
    assert isinstance(config, TrainConfig)
    assert config.max_steps == 7  # the command line wins over debug.yaml's 3
    assert config.channels == [8, 16, 24] and config.crop_size == 36
    assert config.hflip is False and config.rotate90 is True
    assert config.adam_betas == [0.0, 0.99] and config.lr_g == 1e-3 and isinstance(config.lr_g, float)
    assert config.category == "bottle" and config.data_root == str(tmp_path)
    # debug.yaml's values where nothing overrides them, the defaults elsewhere.
    assert (config.batch_size, config.resolution, config.disc_channels) == (2, 64, [8, 16])
    assert config.mid_attention is False
    assert config.lambda_rec == TrainConfig.lambda_rec and config.num_timesteps == TrainConfig.num_timesteps


@pytest.mark.parametrize("text, expected", [("true", True), ("1", True), ("YES", True), ("false", False),
                                            ("0", False), ("no", False)])
def test_bool_values(tmp_path, text, expected):
    assert parse_args(["--config", DEBUG, "--data_root", str(tmp_path), "--vflip", text]).vflip is expected


@pytest.mark.parametrize("flag, text", [("--vflip", "maybe"), ("--max_steps", "ten"), ("--channels", "8,x"),
                                        ("--lr_d", "fast")])
def test_unreadable_values_name_the_flag(tmp_path, flag, text):
    with pytest.raises(ConfigError, match=f"{flag}: cannot read '{text}'"):
        parse_args(["--config", DEBUG, "--data_root", str(tmp_path), flag, text])


def test_unknown_key_in_yaml_lists_the_known_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("max_step: 3\nlearning_rate: 0.1\ncrop_size: 32\n")
    with pytest.raises(ConfigError) as error:
        load(TrainConfig, path, {"data_root": str(tmp_path)})
    message = str(error.value)
    assert "Unknown config key(s): learning_rate, max_step." in message
    known = message.split("Known keys: ")[1]
    assert all(f.name in known for f in dataclasses.fields(TrainConfig))


def test_unknown_flag_is_refused_not_taken_as_a_prefix(tmp_path):
    """``--max_step`` is a typo, refused like an unknown YAML key (argparse would read it as ``--max_steps``)."""
    with pytest.raises(ConfigError) as error:
        parse_args(["--config", DEBUG, "--data_root", str(tmp_path), "--max_step", "3"])
    message = str(error.value)
    assert message.startswith("Unknown argument(s): --max_step 3.")
    assert "max_steps" in message.split("Known keys: ")[1]


def test_missing_or_malformed_config_file(tmp_path):
    with pytest.raises(ConfigError, match="No config file at"):
        load(TrainConfig, tmp_path / "nope.yaml")
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load(TrainConfig, path)


@pytest.mark.parametrize("overrides, key", [
    ({"crop_size": 34, "channels": [8, 16, 32]}, "crop_size 34 must be a multiple of 4"),
    ({"resolution": 16}, "resolution 16 must be at least crop_size 32"),
    ({"max_crop_size": 16}, "max_crop_size 16 must be 0 (no bound) or at least crop_size 32"),
    ({"batch_size": 0}, "batch_size must be at least 1"),
    ({"checkpoints_total_limit": 0}, "checkpoints_total_limit must be at least 1"),
    ({"r1_every": 0}, "r1_every must be at least 1"),
    ({"lambda_mask": -1.0}, "lambda_mask must not be negative"),
    ({"scale_jitter": 1.0}, "scale_jitter must be in [0, 1)"),
    ({"channels": [12, 16]}, "channels must be multiples of 8"),
    ({"mixed_precision": "fp8"}, "mixed_precision must be no, fp16 or bf16"),
    ({"split": "half"}, "split must be protocol or all"),
    ({"data_format": "coco"}, "data_format must be auto, mvtec, btad or folder"),
    ({"push_to_hub": True}, "push_to_hub needs --hub_model_id"),
    ({"data_root": ""}, "data_root is required"),
])
def test_invalid_values_name_the_key(tmp_path, overrides, key):
    with pytest.raises(ConfigError) as error:
        load(TrainConfig, DEBUG, {"data_root": str(tmp_path), **overrides})
    assert key in str(error.value)


def test_every_invalid_key_is_listed_at_once(tmp_path):
    with pytest.raises(ConfigError) as error:
        load(TrainConfig, DEBUG, {"data_root": str(tmp_path / "missing"), "crop_size": 33, "max_steps": 0})
    lines = str(error.value).splitlines()
    assert lines[0] == "Invalid training configuration:"
    assert [line.split()[0] for line in lines[1:]] == ["data_root", "crop_size", "max_steps"]


def test_saved_yaml_loads_back_to_the_same_config(tmp_path):
    config = parse_args(["--config", DEBUG, "--data_root", str(tmp_path), "--channels", "8,16", "--hflip", "0"])
    path = tmp_path / "config.yaml"
    path.write_text(config.to_yaml())
    assert yaml.safe_load(path.read_text())["channels"] == [8, 16]
    assert load(TrainConfig, path) == config


def test_script_refuses_a_bad_config_before_reading_data(tmp_path):
    """A user's mistake ends with the key-naming message and no traceback; nothing is written and the (missing)
    data set is not even looked at: the config error, not a data error, is what the user sees."""
    output_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "train/train_sard.py", "--config", DEBUG, "--data_root", str(tmp_path / "no-data"),
         "--crop_size", "33", "--output_dir", str(output_dir)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,  # only stops a hang (slow imports when busy)
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert "crop_size 33 must be a multiple of 2" in result.stderr
    assert "data_root" in result.stderr and "is not a folder" in result.stderr
    assert not output_dir.exists()


@pytest.mark.parametrize("name", ["dmg-finetune-cpu.yaml", "dmg-finetune-gpu.yaml", "dmg-texture-cpu.yaml",
                                  "dmg-texture-gpu.yaml"])
def test_the_dmg_stage_two_configs_are_valid_training_configs(tmp_path, name):
    path = REPO_ROOT / "train" / "configs" / name
    config = load(TrainConfig, path, {"data_root": str(tmp_path)})
    assert config.disc_view == "clean" and config.disc_warmup_steps > 0 and config.lambda_ms > 0
    assert config.held_out_every % config.log_every == 0


@pytest.mark.parametrize("stage", ["dmg-finetune", "dmg-texture"])
def test_the_gpu_recipes_are_the_measured_cpu_recipes_at_a_gpus_batch(stage):
    configs = REPO_ROOT / "train" / "configs"
    cpu = yaml.safe_load((configs / f"{stage}-cpu.yaml").read_text())
    gpu = yaml.safe_load((configs / f"{stage}-gpu.yaml").read_text())
    differing = {key for key in cpu.keys() | gpu.keys() if cpu.get(key) != gpu.get(key)}
    assert differing <= {"batch_size", "mixed_precision", "max_steps", "checkpoint_every", "sample_every",
                         "checkpoints_total_limit"}, differing
