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
from test_app import load_app

import sard
from sard import SARDPipeline
from sard.image_io import decode_mask

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = sorted(path.parent for path in (ROOT / "sard" / "checkpoints").glob("*/model_index.json"))
EXAMPLES = ROOT / "examples"
DEMO_EXAMPLES = load_app().EXAMPLES  # (image, defect type, bundled model) of every example on the demo's page


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


def test_every_bundled_model_has_a_demo_example():
    assert {folder.name for folder in BUNDLED} <= {example.model for example in DEMO_EXAMPLES}


@pytest.mark.parametrize("example", DEMO_EXAMPLES, ids=lambda example: example.key)
def test_bundled_model_paints_the_demo_example_inside_its_mask_only(example):
    pipe = SARDPipeline.from_pretrained(ROOT / "sard" / "checkpoints" / example.model)
    pipe.set_progress_bar_config(disable=True)
    image, mask = PIL.Image.open(example.image), example.mask()  # the masks are paint in an alpha channel
    result = pipe(image, PIL.Image.fromarray(mask), defect=example.defect,
                  generator=torch.Generator().manual_seed(0))
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


@pytest.mark.parametrize("folder", BUNDLED, ids=lambda path: path.name)
def test_readme_fidelity_rows_are_the_model_cards(folder):
    """A card with a fidelity table (bundle_checkpoint.py --fidelity) and the README's row for that model
    give the same figures: C2ST, its controls, texture, contrast and diversity of every defect type."""
    card = (folder / "README.md").read_text()
    if "## Fidelity" not in card:
        pytest.skip(f"{folder.name}'s card has no fidelity table yet")
    readme_rows = [line for line in (ROOT / "README.md").read_text().splitlines()
                   if line.startswith(f"| {folder.name}, now ")]
    section = card.split("## Fidelity", 1)[1].split("\n## ", 1)[0]  # up to the card's next section
    card_rows = [line.split("|")[1:-1] for line in section.splitlines() if line.startswith("| ")][1:]  # no header
    checked = 0
    for cells in card_rows:
        defect = cells[0].strip()
        if defect == "**all**" and len(card_rows) == 2:
            continue  # one defect type: the README shows it once
        row = next((r for r in readme_rows if r.split("|")[2].strip() == defect), None)
        assert row is not None, f"README has no fidelity row for {folder.name}, {defect}"
        c2st, controls, texture, texture_real, contrast, diversity = (cells[i].strip() for i in (2, 3, 4, 6, 7, 9))
        for figure in (c2st, f"({controls})", texture, texture_real, contrast, diversity.split(" ")[0]):
            assert figure in row, f"{folder.name}, {defect}: the card says {figure}, the README row is {row}"
        checked += 1
    assert checked


@pytest.mark.parametrize("folder", BUNDLED, ids=lambda path: path.name)
def test_bundled_models_match_grain_with_every_types_strength_in_their_cards(folder):
    pipe = SARDPipeline.from_pretrained(folder)
    assert pipe.config.grain is True
    assert set(pipe.config.grain_strength) == set(pipe.defect_types)
    card = (folder / "README.md").read_text()
    grain = card.split("## Grain", 1)[1].split("\n## ", 1)[0]
    for defect, strength in pipe.config.grain_strength.items():
        assert f"| {defect} | {strength:.2f} |" in grain
