"""set_stats: where a data set's defects sit and how they look, against hand-computed values."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest

from sard.evaluation.set_stats import main, set_stats, summarize


def _write_set(root, n=3):
    """A category whose images are bright on the left (200), dark on the right (50), with a 4 x 4 defect of grey
    20 in the dark half: one anomaly per index, all alike."""
    for folder in ("train/good", "test/good", "test/dent", "ground_truth/dent"):
        (root / "cat" / folder).mkdir(parents=True, exist_ok=True)
    image = np.full((16, 16), 200, np.uint8)
    image[:, 8:] = 50
    mask = np.zeros((16, 16), np.uint8)
    mask[6:10, 10:14] = 255
    defect = np.where(mask > 0, 20, image).astype(np.uint8)
    for i in range(n):
        PIL.Image.fromarray(image).save(root / "cat" / "train/good" / f"{i}.png")
        PIL.Image.fromarray(image).save(root / "cat" / "test/good" / f"{i}.png")
        PIL.Image.fromarray(defect).save(root / "cat" / "test/dent" / f"{i:03d}.png")
        PIL.Image.fromarray(mask).save(root / "cat" / "ground_truth/dent" / f"{i:03d}_mask.png")


def test_figures_are_the_hand_computed_ones(tmp_path):
    _write_set(tmp_path)
    stats = set_stats(tmp_path, "cat", ring_width=1)
    s = stats["dent"]
    assert s["n"] == 3 and stats["all"]["n"] == 3
    assert s["area"] == pytest.approx(100 * 16 / 256)
    assert s["contrast"] == pytest.approx(20 - 50)  # the ring (6 x 6 minus 4 x 4) lies in the dark half
    image_mean = (128 * 200 + 112 * 50 + 16 * 20) / 256
    assert s["surroundings"] == pytest.approx(50 - image_mean)
    assert s["texture"] > 0
    assert set_stats(tmp_path, "cat", split="train")["dent"]["n"] == 1  # the protocol's first floor(3 / 3)
    assert set_stats(tmp_path, "cat", split="held_out")["dent"]["n"] == 2


def test_texture_ratios_average_on_a_log_scale_and_nan_is_left_out():
    figures = [{"area": 1.0, "surroundings": -2.0, "contrast": -10.0, "texture": 0.5},
               {"area": 3.0, "surroundings": float("nan"), "contrast": -20.0, "texture": 2.0}]
    s = summarize(figures)
    assert s == {"n": 2, "area": 2.0, "surroundings": -2.0, "contrast": -15.0, "texture": pytest.approx(1.0)}


def test_command_prints_one_table_for_several_roots(tmp_path, capsys):
    _write_set(tmp_path / "a")
    _write_set(tmp_path / "b")
    main(["--data_root", str(tmp_path / "a"), str(tmp_path / "b"), "--category", "cat", "--ring_width", "1"])
    table = capsys.readouterr().out
    assert table.count("| dent | 3 | 6.25 | -73.1 | -30.0 |") == 2
    with pytest.raises(SystemExit):
        main(["--data_root", str(tmp_path / "a"), "--category", "cat", "--split", "test"])
