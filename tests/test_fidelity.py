"""The fidelity instrument of issue #17: its figures against closed forms, the classifier two-sample test on
samples it must and must not tell apart, and train/fidelity.py end to end on a tiny data set and pipeline."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import box_mask, make_pipeline
from fixtures import make_dataset

from sard.config import ConfigError
from sard.datasets import DatasetError, read_dataset
from sard.evaluation import c2st, fidelity, fidelity_report, fidelity_run, realism
from sard.evaluation.realism import defect_stats

REPO_ROOT = Path(__file__).resolve().parents[1]


def _script():
    return fidelity_run


# --- the figures against closed forms ---------------------------------------------------------------------


def test_texture_ratio_of_a_checkerboard_in_a_flat_ring_and_of_the_same_texture_everywhere():
    # A +-a checkerboard has |Laplacian| = 8a away from its edges; the same pattern everywhere gives ratio 1.
    a, size = 5.0, 24
    board = a * (np.indices((size, size)).sum(axis=0) % 2 * 2 - 1) + 100.0
    mask = np.zeros((size, size), dtype=bool)
    mask[8:16, 8:16] = True
    assert defect_stats(board, mask, ring_width=3).texture_ratio == pytest.approx(1.0)
    np.testing.assert_allclose(defect_stats(board, mask).texture_inside, 8 * a)
    half = np.where(mask, board, 100.0)  # flat outside: the ring only sees the seam, so the ratio is > 1
    assert defect_stats(half, mask).texture_ratio > 4


def test_seed_std_is_zero_for_identical_seeds_and_follows_the_closed_form_for_two():
    rng = np.random.default_rng(0)
    mask = box_mask(16, 16)
    image = rng.uniform(0, 255, (16, 16))
    assert fidelity.seed_std([image, image.copy(), image.copy()], mask) == 0.0
    shifted = image + np.where(mask, 6.0, 0.0)  # two seeds that differ by c inside: std (ddof 1) = c / sqrt(2)
    assert fidelity.seed_std([image, shifted], mask) == pytest.approx(6.0 / math.sqrt(2))
    assert math.isnan(fidelity.seed_std([image], mask))


def test_spatial_std_of_a_two_level_defect():
    gray = np.zeros((4, 4))
    mask = np.zeros((4, 4), dtype=bool)
    mask[:2, :2] = True
    gray[0, :2], gray[1, :2] = 10.0, 30.0  # half at 10, half at 30: std = 10
    assert fidelity.spatial_std(gray, mask) == pytest.approx(10.0)


def test_hue_difference_sees_hue_and_not_brightness():
    grey = np.full((20, 20, 3), 100.0)
    mask = np.zeros((20, 20), bool)
    mask[5:15, 5:15] = True
    rusty, darker = grey.copy(), grey.copy()
    rusty[mask] += (60.0, 20.0, -20.0)  # d = (60, 20, -20), mean 20: the hue part is (40, 0, -40)
    darker[mask] -= 45.0
    np.testing.assert_allclose(fidelity.hue_difference(rusty, mask), [40.0, 0.0, -40.0])
    np.testing.assert_allclose(fidelity.hue_difference(darker, mask), 0.0, atol=1e-9)
    assert not np.isfinite(fidelity.hue_difference(grey, np.ones((20, 20), bool))).any()  # no ring
    # Three equal channels: exactly 0. (a + a + a) / 3 != a for this a: a formula through the channels' mean gave
    # 1e-15 here, and put magnetic tiles out of a range of 0 to 0.
    pit, a = np.zeros((20, 20), bool), 44.506584217378375
    pit[10, 10] = True
    assert (fidelity.hue_difference(np.where(pit[..., None], a, 0.0).repeat(3, axis=2), pit) == 0.0).all()
    gray_image = PIL.Image.fromarray(np.where(mask, 30, 200).astype(np.uint8), mode="L")
    assert (fidelity.hue_difference(fidelity.colour_levels(gray_image), mask) == 0.0).all()
    np.testing.assert_allclose(fidelity.grey_levels(gray_image), np.where(mask, 30.0, 200.0))


def test_colour_is_measured_along_the_real_defects_hue():
    real = [np.array([40.0, 0.0, -40.0]), np.array([20.0, 0.0, -20.0])]  # rust, mean (30, 0, -30)
    grey_on_rust_lit = np.array([-10.0, 0.0, 10.0])  # a grey fill on a reddish surface leans away from rust
    blue = np.array([0.0, -30.0, 30.0])
    along = fidelity.along_real_hue(real, [*real, grey_on_rust_lit, blue, np.zeros(3)])
    expected = [math.hypot(40, 40), math.hypot(20, 20), -math.hypot(10, 10), -900 / math.hypot(30, 30), 0.0]
    np.testing.assert_allclose(along, expected)
    # Real defects with no hue (grey-level images): every figure 0, exactly; NaN stays NaN.
    assert fidelity.along_real_hue([np.zeros(3)] * 2, [np.zeros(3), np.full(3, math.nan)])[0] == 0.0
    assert math.isnan(fidelity.along_real_hue([np.zeros(3)], [np.full(3, math.nan)])[0])


def test_percentiles_and_range_membership():
    p10, p50, p90 = fidelity.percentiles(np.arange(11.0).tolist() + [math.nan])
    assert (p10, p50, p90) == (1.0, 5.0, 9.0)
    assert fidelity.in_range(1.0, p10, p90) and fidelity.in_range(9.0, p10, p90)
    assert not fidelity.in_range(0.99, p10, p90) and not fidelity.in_range(9.01, p10, p90)
    assert not fidelity.in_range(math.nan, p10, p90)
    assert all(math.isnan(v) for v in fidelity.percentiles([math.nan]))


def test_background_change_in_grey_levels_of_the_images_own_range():
    before = np.full((6, 6, 3), 100, dtype=np.uint8)
    mask = box_mask(6, 6)
    after = before.copy()
    after[mask] = 0  # inside: not counted
    assert fidelity.background_change(before, after, mask) == 0.0
    after[0, 0, 1] = 103
    assert fidelity.background_change(before, after, mask) == 3.0
    wide = np.full((6, 6), 1000, dtype=np.uint16)
    moved = wide.copy()
    moved[0, 0] = 1000 + 257  # one 8-bit grey level in 16 bits
    assert fidelity.background_change(wide, moved, mask) == pytest.approx(1.0)


def test_working_round_trip_blurs_texture_and_leaves_images_at_working_scale_alone():
    rng = np.random.default_rng(0)
    gray = rng.uniform(0, 255, (40, 60))
    np.testing.assert_array_equal(fidelity.working_round_trip(gray, 1.0), gray)  # already at working scale
    blurred = fidelity.working_round_trip(gray, 1 / 3)  # the noise is averaged away
    assert blurred.shape == gray.shape and blurred.std() < gray.std() / 2
    assert blurred.mean() == pytest.approx(gray.mean(), abs=2)


def test_resize_mask_keeps_the_area_and_thin_pits():
    mask = np.zeros((20, 40), dtype=bool)
    mask[4:12, 8:24] = True
    half = fidelity.resize_mask(mask, (20, 10))
    assert half.shape == (10, 20) and half.sum() == mask.sum() / 4
    pit = np.zeros((20, 40), dtype=bool)
    pit[7, 13] = True  # a quarter of a new pixel: under the half-area rule, kept as the most covered pixel
    assert fidelity.resize_mask(pit, (20, 10)).sum() == 1
    assert fidelity.resize_mask(mask, (40, 20)) is not mask and (fidelity.resize_mask(mask, (40, 20)) == mask).all()


# --- the classifier two-sample test ---------------------------------------------------------------------


def _box_blur(x: np.ndarray, k: int = 5) -> np.ndarray:
    p = np.pad(x, k // 2, mode="edge")
    return sum(p[dy : dy + x.shape[0], dx : dx + x.shape[1]] for dy in range(k) for dx in range(k)) / k**2


def _crops(rng: np.random.Generator, n: int, kind: str, size: int = 16) -> np.ndarray:
    """Defects on a noisy surface: filled with white noise, or with the same noise blurred (same variance)."""
    out = []
    for _ in range(n):
        gray = 100 + rng.normal(0, 8, (24, 24))
        mask = np.zeros((24, 24), dtype=bool)
        r, c = rng.integers(4, 12, 2)
        mask[r : r + 8, c : c + 8] = True
        fill = rng.normal(0, 20, (24, 24))
        if kind == "blurred":
            fill = _box_blur(fill) * 5  # a 5 x 5 box blur divides the std by 5
        out.append(c2st.defect_crop(np.where(mask, gray - 30 + fill, gray), mask, size=size))
    return np.stack(out)


def test_defect_crop_shows_the_inside_of_the_mask_at_the_images_scale():
    gray = np.full((40, 40), 90.0)
    gray[:, 30:] = 250.0  # outside the mask: never seen
    mask = np.zeros((40, 40), dtype=bool)
    mask[10:14, 10:16] = True
    gray[mask] = 58.0  # 32 below the ring
    gray[11, 12] = 42.0  # one darker pixel: 16 below the defect, its texture
    crop = c2st.defect_crop(gray, mask, size=16)
    assert crop.shape == (3, 16, 16) and crop.dtype == np.float32
    inside = crop[2] > 0
    assert inside.sum() == mask.sum()  # native scale: not resampled
    assert (crop[:2, ~inside] == 0).all()
    np.testing.assert_allclose(np.sort(crop[0][inside])[:2], [-48 / c2st.GREY_SCALE, -32 / c2st.GREY_SCALE])
    # The high-pass channel: the dark pixel minus its 3 x 3 mean, 16 - 16 / 9 levels below it.
    np.testing.assert_allclose(crop[1][inside].min(), -(16 - 16 / 9) / (c2st.GREY_SCALE / 4), rtol=1e-5)
    with_ring = c2st.defect_crop(gray, mask, size=16, context=1)
    assert (with_ring[0] != 0).sum() == inside.sum() and with_ring[0].max() <= 1e-6  # the ring is at level 0
    fit = c2st.defect_crop(gray, mask, size=8, scale="fit")
    assert fit.shape == (3, 8, 8) and 0 < fit[2].sum() < 64
    with pytest.raises(ValueError, match="empty"):
        c2st.defect_crop(gray, np.zeros_like(mask))
    with pytest.raises(ValueError, match="scale"):
        c2st.defect_crop(gray, mask, scale="zoom")


def test_largest_component_and_the_crop_centred_on_it():
    mask = np.zeros((10, 12), dtype=bool)
    mask[1:3, 1:3] = True
    mask[5:9, 6:11] = True
    mask[9, 11] = True  # touches the block diagonally: the same 8-connected component
    expected = mask.copy()
    expected[:5] = False
    np.testing.assert_array_equal(c2st.largest_component(mask), expected)
    two = np.zeros((200, 200), dtype=bool)
    two[10:14, 10:14] = True  # a small pit far from a big one: the crop is centred on the big one
    two[150:170, 150:170] = True
    crop = c2st.defect_crop(np.full((200, 200), 100.0), two, size=24)
    assert crop[2].sum() == 20 * 20  # the big pit, whole, at the centre
    fit = c2st.defect_crop(np.full((200, 200), 100.0), two, size=16, scale="fit", margin=0.25, min_side=16)
    assert fit[2].sum() == pytest.approx(16 * 16 * (20 / 30) ** 2, rel=0.3) and fit[2][0, 0] == 0


def test_group_folds_keep_groups_together_and_cover_every_sample():
    groups = np.repeat(np.arange(7), 2)
    folds = c2st.group_folds(groups, 3, seed=0)
    assert len(folds) == 3 and sorted(np.concatenate(folds).tolist()) == list(range(14))
    for fold in folds:
        assert set(groups[fold]).isdisjoint(set(groups[np.setdiff1d(np.arange(14), fold)]))
    assert len(c2st.group_folds(np.arange(2), 5, seed=0)) == 2


def test_c2st_is_near_chance_on_one_distribution_and_near_one_on_blurred_against_noisy():
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    same = c2st.c2st(_crops(rng, 32, "noisy"), _crops(rng, 32, "noisy"), folds=4, seed=0, steps=60, width=8)
    apart = c2st.c2st(_crops(rng, 32, "blurred"), _crops(rng, 32, "noisy"), folds=4, seed=0, steps=60, width=8)
    assert 0.3 <= same.accuracy <= 0.7, same.fold_accuracies
    assert apart.accuracy >= 0.85, apart.fold_accuracies
    assert len(apart.fold_accuracies) == 4 and apart.correct.shape == (64,)
    assert apart.accuracy_of(np.arange(32)) == pytest.approx(apart.correct[:32].mean())


def test_c2st_is_deterministic_and_leaves_the_global_random_state_alone():
    rng = np.random.default_rng(1)
    real, fake = _crops(rng, 8, "blurred", size=8), _crops(rng, 8, "noisy", size=8)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    first = c2st.c2st(real, fake, folds=2, seed=3, steps=5)
    assert torch.rand(1) == before
    second = c2st.c2st(real, fake, folds=2, seed=3, steps=5)
    assert first.fold_accuracies == second.fold_accuracies
    np.testing.assert_array_equal(first.correct, second.correct)
    with pytest.raises(ValueError, match="at least 2"):
        c2st.c2st(real[:1], fake, steps=1)


# --- items and the command end to end -------------------------------------------------------------------


def test_items_come_from_the_held_out_split_and_the_held_out_normals(tmp_path):
    data = make_dataset(tmp_path, defects={"a": 9, "b": 6}, n_good=3)
    dataset = read_dataset(data.data_root, data.category)
    items, notes = fidelity.fidelity_items(dataset, per_defect=4, diversity_masks=2)
    _, held_out = dataset.split("protocol")
    assert not notes
    assert [i.defect for i in items] == ["a"] * 4 + ["b"] * 4
    for item in items:
        assert item.anomaly in held_out[item.defect] and item.canvas in dataset.test_good
    assert [i.diversity for i in items if i.defect == "a"] == [True, False, False, True]
    assert len({i.canvas for i in items}) == 3  # equal sizes: the ties go round the normal images
    dataset.test_good = []
    items, notes = fidelity.fidelity_items(dataset, per_defect=2, diversity_masks=0, defect_types=["b"])
    assert {i.canvas for i in items} <= set(dataset.train_good) and "no held-out normal images" in notes[0]
    assert [i.defect for i in items] == ["b", "b"] and not any(i.diversity for i in items)


def test_real_anomaly_is_moved_onto_the_canvas_grid(tmp_path):
    data = make_dataset(tmp_path, defects={"a": 3}, n_good=1, size=(40, 48))
    dataset = read_dataset(data.data_root, data.category)
    item = fidelity.fidelity_items(dataset, 1, 0)[0][0]
    rgb, mask, resized = fidelity.real_on_canvas(item, (48, 40))
    assert not resized and rgb.shape == (40, 48, 3) and mask.shape == (40, 48)
    rgb, mask, resized = fidelity.real_on_canvas(item, (24, 20))
    assert resized and rgb.shape == (20, 24, 3) and mask.shape == (20, 24) and mask.any()
    gray = realism.luma(rgb)
    np.testing.assert_allclose(gray[mask].mean(), fidelity.grey_levels(item.anomaly.image)[
        fidelity.resize_mask(mask, (48, 40))].mean(), atol=25)  # the bright defect stays bright


def test_command_end_to_end_on_a_tiny_data_set(tmp_path, capsys):
    torch.set_num_threads(1)
    data = make_dataset(tmp_path / "data", defects={"a": 6, "b": 6}, n_good=3, mode="L")
    make_pipeline().save_pretrained(tmp_path / "ckpt")
    out = tmp_path / "out"
    args = ["--checkpoint", str(tmp_path / "ckpt"), "--data_root", str(data.data_root), "--category", data.category,
            "--output_dir", str(out), "--masks_per_type", "3", "--diversity_masks", "2", "--seeds", "3",
            "--c2st_steps", "3", "--folds", "3"]
    rows = _script().main(args)
    printed = capsys.readouterr().out
    with open(out / "fidelity.csv", newline="") as file:
        reader = csv.DictReader(file)
        assert tuple(reader.fieldnames) == fidelity.COLUMNS
        assert [r["defect"] for r in reader] == ["a", "b", "all"]
    read = fidelity_report.read_fidelity_csv(out / "fidelity.csv")
    assert [r["n"] for r in read] == [3, 3, 6] and [r["diversity_n"] for r in read] == [2, 2, 4]
    assert all(r["seeds"] == 3 and r["background_max"] == 0.0 for r in read)  # the region constraint: exact
    assert all(r["diversity"] > 0 and r["real_std"] > 0 for r in read)  # an untrained model's fills do vary
    assert 0.0 <= read[-1]["c2st"] <= 1.0 and math.isfinite(read[-1]["c2st_std"])
    p = read[-1]["c2st"]
    assert read[-1]["c2st_se"] == pytest.approx(math.sqrt(p * (1 - p) / 12))  # 6 masks: 12 crops
    assert all(0.0 <= r["c2st_paste"] <= 1.0 and 0.0 <= r["c2st_roundtrip"] <= 1.0 for r in read)
    assert all(r["texture_roundtrip"] > 0 for r in read)
    assert all(isinstance(r["texture_in_range"], bool) for r in read)
    assert all(r["colour"] == 0.0 and r["colour_real_p90"] == 0.0 and r["colour_in_range"] for r in read)  # grey
    for row, written in zip(rows, read):
        for key, value in row.items():
            assert value == (pytest.approx(written[key], nan_ok=True) if isinstance(value, float) else written[key])
    assert fidelity_report.markdown_table(read) in printed and "C2ST" in printed
    assert (out / "fidelity.md").read_text().count("\n| ") == 4  # header, two types and the category
    with open(out / "fidelity_items.csv", newline="") as file:
        items = list(csv.DictReader(file))
    assert len(items) == 6 and {i["resized"] for i in items} == {"False"}
    assert sum(i["seed_std"] != "nan" for i in items) == 4
    assert PIL.Image.open(out / "c2st_crops.png").size[0] > 6 * 48
    # Rerunning gives the same figures: everything is seeded.
    _script().main([*args, "--output_dir", str(tmp_path / "again")])
    assert (tmp_path / "again" / "fidelity.csv").read_bytes() == (out / "fidelity.csv").read_bytes()
    # Painted at a coarser working resolution than the model's: the working-scale control follows it.
    coarse = _script().main([*args, "--output_dir", str(tmp_path / "coarse"), "--resolution", "8"])
    assert coarse[-1]["texture_roundtrip"] < read[-1]["texture_roundtrip"] and coarse[-1]["background_max"] == 0.0


def test_command_refuses_bad_arguments_with_a_message(tmp_path, capsys):
    data = make_dataset(tmp_path / "data", defects={"a": 6}, n_good=1)
    make_pipeline().save_pretrained(tmp_path / "ckpt")
    base = ["--checkpoint", str(tmp_path / "ckpt"), "--data_root", str(data.data_root), "--category",
            data.category, "--output_dir", str(tmp_path / "out")]
    with pytest.raises(SystemExit):
        _script().main([*base, "--seeds", "1"])
    assert "--seeds must be at least 2" in capsys.readouterr().err
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            _script().main([*base, "--device", "cuda"])
        assert "no GPU is visible" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="not in"):
        _script().main([*base, "--defects", "zzz"])
    with pytest.raises(DatasetError, match="No data set folder"):
        _script().main([*base[:4], "--category", "missing", *base[6:]])


def test_markdown_table_marks_what_is_out_of_range():
    row = {"category": "c", "defect": "a", "n": 4, "c2st": 0.9, "c2st_se": 0.106, "c2st_std": math.nan,
           "c2st_paste": 0.55, "c2st_roundtrip": 0.6, "texture_roundtrip": 0.9,
           "texture_ratio": 0.7,
           "texture_real_p10": 1.04, "texture_real_median": 1.2, "texture_real_p90": 1.5, "texture_in_range": False,
           "contrast": -10.0, "contrast_real_p10": -30.0, "contrast_real_median": -20.0, "contrast_real_p90": -5.0,
           "contrast_in_range": True, "seed_std": 2.0, "real_std": 8.0, "diversity": 0.25, "diversity_n": 4,
           "seeds": 4, "background_max": 0.0, "colour": 1.5, "colour_real_p10": 12.0, "colour_real_median": 20.0,
           "colour_real_p90": 31.0, "colour_in_range": False, "meets_goals": False}
    table = fidelity_report.markdown_table([row, {**row, "defect": "all", "c2st_se": 0.05}])
    lines = table.splitlines()
    assert lines[2] == ("| a | 4 | 0.90 ± 0.11 | 0.55 / 0.60 | 0.70 (1.04–1.50) | **no** | 0.90 "
                        "| -10.0 (-30.0 to -5.0) | yes | 0.25 (2.0 / 8.0, 4 masks x 4 seeds) | 0 "
                        "| 1.5 (12.0 to 31.0) | **no** |")
    assert lines[0].count("|") == lines[1].count("|") == lines[2].count("|")
    assert re.match(r"\| \*\*all\*\* \| 4 \| 0\.90 ± 0\.05 \|", lines[3])
    goals = fidelity_report.goals_summary([row, {**row, "defect": "all"}])
    assert "C2ST 0.90 (goal <= 0.70): not met" in goals and "not met (a)" in goals
