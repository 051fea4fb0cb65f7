"""The checkpoints shipped in the package: they load, paint inside the mask only, and their model cards
say what their training logs say."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

import sard
from sard import SARDPipeline
from sard.image_io import decode_mask

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = sorted(path.parent for path in (ROOT / "sard" / "checkpoints").glob("*/model_index.json"))
EXAMPLES = ROOT / "examples"


def test_default_checkpoint_is_the_bundled_magnetic_tile_model():
    assert sard.DEFAULT_CHECKPOINT is not None
    assert Path(sard.DEFAULT_CHECKPOINT).resolve() == (ROOT / "sard" / "checkpoints" / "magnetic-tile").resolve()


@pytest.mark.parametrize("folder", BUNDLED, ids=lambda path: path.name)
def test_model_card_matches_training_log(folder):
    card = (folder / "README.md").read_text()
    with open(folder / "training_log" / "losses.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    steps = int(rows[-1]["step"])
    assert f"| steps | {steps} |" in card
    minutes = float(re.search(r"\| wall time \| ([\d.]+) min \|", card).group(1))
    # The card's time includes the final export, after the last logged step.
    assert float(rows[-1]["wall_seconds"]) / 60 - 0.05 <= minutes <= float(rows[-1]["wall_seconds"]) / 60 + 5
    split = json.loads((folder / "training_log" / "split.json").read_text())
    for defect, files in split["train"].items():
        assert re.search(rf"\| {defect} \| {len(files)} \| {len(split['held_out'][defect])} \|", card)
    for path in split["skipped_empty_masks"]:
        assert not any(path in files for files in split["train"].values())


@pytest.mark.parametrize("folder", BUNDLED, ids=lambda path: path.name)
def test_bundled_model_paints_inside_the_mask_only(folder):
    pipe = SARDPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    prefix = "tile_crack" if folder.name == "magnetic-tile" else "ballscrew_pit"
    image = PIL.Image.open(EXAMPLES / f"{prefix}.png")
    mask = decode_mask(EXAMPLES / f"{prefix}_mask.png")  # the examples' masks are paint in the alpha channel
    defect = pipe.defect_types[0] if folder.name != "magnetic-tile" else "crack"
    result = pipe(image, PIL.Image.fromarray(mask), defect=defect, generator=torch.Generator().manual_seed(0))
    before, after = np.asarray(image), np.asarray(result.images[0])
    assert after.shape == before.shape and after.dtype == before.dtype
    np.testing.assert_array_equal(after[~mask], before[~mask])
    # A trained model paints something: the mask's region changes visibly.
    changed = np.abs(after[mask].astype(int) - before[mask].astype(int)).mean()
    assert changed > 5


def test_readme_python_example_runs(tmp_path, monkeypatch):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Use it from Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    (tmp_path / "examples").symlink_to(EXAMPLES)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    before = np.asarray(PIL.Image.open(EXAMPLES / "tile_crack.png"))
    after = np.asarray(PIL.Image.open(tmp_path / "tile_with_crack.png"))
    mask = decode_mask(EXAMPLES / "tile_crack_mask.png")
    np.testing.assert_array_equal(after[~mask], before[~mask])
    assert (after[mask] != before[mask]).any()
