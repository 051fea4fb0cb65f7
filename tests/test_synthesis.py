"""The synthesis writer (MVTec layout, manifest, resume, shards), the mask drawing and the foreground."""

from __future__ import annotations

import json
import warnings

import numpy as np
import PIL.Image
import pytest
from conftest import make_pipeline
from fixtures import make_dataset

from sard.datasets import load_mask, read_dataset
from sard.synthesis import SynthesisSettings, synthesize_category
from sard.synthesis.foreground import Foreground, estimate_foreground, otsu_threshold
from sard.synthesis.masks import MaskAugmentation, Transform, draw_mask, place_mask, surroundings_tone
from sard.synthesis.writer import MANIFEST, read_manifest


class FakeState:
    """Stands in for accelerate's PartialState: process ``index`` of ``count``."""

    def __init__(self, index: int = 0, count: int = 1):
        self.process_index, self.num_processes = index, count
        self.is_main_process = index == 0
        self.device = "cpu"

    def wait_for_everyone(self):
        pass


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data"), "mvtec", defects={"a": 6, "b": 3}, n_good=3)


def _run(data, out, method="cutpaste", n=2, seed=0, state=None, pipeline=None, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return synthesize_category(data.data_root, data.category, out, SynthesisSettings(method, n, seed, **kwargs),
                                   state=state or FakeState(), pipeline=pipeline, progress=False)


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
            and ".manifest" not in p.parts}


def test_writer_layout_and_manifest(data, tmp_path):
    root = _run(data, tmp_path, n=2)
    assert root == tmp_path / data.category
    for defect in ("a", "b"):
        for k in range(2):
            image = PIL.Image.open(root / "test" / defect / f"{k:04d}.png")
            mask = np.asarray(PIL.Image.open(root / "ground_truth" / defect / f"{k:04d}_mask.png"))
            assert image.size == (48, 40) and mask.shape == (40, 48) and mask.any()
    assert sorted(p.name for p in (root / "train" / "good").iterdir()) == [p.name for p in data.train_good]
    records = read_manifest(root)
    pairs = [r for r in records if r["mask"]]
    assert len(pairs) == 4 and len(records) == 4 + 3
    assert {(r["defect"], r["k"]) for r in pairs} == {("a", 0), ("a", 1), ("b", 0), ("b", 1)}
    assert all(r["method"] == "cutpaste" and r["source"] in map(str, data.train_good) for r in pairs)
    # The folder reads back as an MVTec-AD category.
    synthetic = read_dataset(tmp_path, data.category)
    assert synthetic.defect_types == ["a", "b"] and len(synthetic.train_good) == 3


def test_resume_redoes_only_what_is_missing(data, tmp_path):
    root = _run(data, tmp_path, n=2)
    before = _files(root)
    (root / "test" / "a" / "0001.png").unlink()
    stamp = (root / "test" / "b" / "0000.png").stat().st_mtime_ns
    _run(data, tmp_path, n=2)
    assert (root / "test" / "b" / "0000.png").stat().st_mtime_ns == stamp  # skipped
    assert _files(root) == before  # the missing pair came back identical


def test_more_pairs_keep_the_first_ones(data, tmp_path):
    small, large = _files(_run(data, tmp_path / "small", n=1)), _files(_run(data, tmp_path / "large", n=2))
    pairs = {k: v for k, v in small.items() if k.parts[0] in ("test", "ground_truth")}
    assert all(large[k] == v for k, v in pairs.items())


def test_other_settings_are_refused(data, tmp_path):
    root = _run(data, tmp_path, n=1)
    before = _files(root)
    with pytest.raises(ValueError, match="other settings"):
        _run(data, tmp_path, n=1, seed=1)
    assert _files(root) == before


def test_shards_write_what_one_process_writes(data, tmp_path):
    one = _files(_run(data, tmp_path / "one", n=3))
    _run(data, tmp_path / "two", n=3, state=FakeState(1, 2))  # the second process may finish first
    root = _run(data, tmp_path / "two", n=3, state=FakeState(0, 2))
    assert _files(root) == one
    parts = sorted(p.name for p in (root / ".manifest").iterdir())
    assert parts == ["part-000.jsonl", "part-001.jsonl"]


def test_sard_paints_only_inside_the_mask(data, tmp_path):
    pipe = make_pipeline()  # knows defect types "a" and "b"
    root = _run(data, tmp_path, method="sard", n=2, pipeline=pipe, batch_size=3)
    pairs = [r for r in read_manifest(root) if r["mask"]]
    assert len(pairs) == 4
    for record in pairs:
        out = np.asarray(PIL.Image.open(record["image"]))
        source = np.asarray(PIL.Image.open(record["source"]))
        mask = load_mask(record["mask"])
        assert mask.any() and np.array_equal(out[~mask], source[~mask])
        assert record["mask_source"].endswith("_mask.png")
    # A batch of 3 gives what single images give.
    single = _run(data, tmp_path / "single", method="sard", n=2, pipeline=pipe, batch_size=1)
    assert _files(single) == _files(root)


def test_sard_refuses_unknown_defect_types(tmp_path):
    other = make_dataset(tmp_path / "data", "mvtec", defects={"scratch": 3})
    with pytest.raises(ValueError, match="scratch"):
        _run(other, tmp_path / "out", method="sard", n=1, pipeline=make_pipeline())
    assert not (tmp_path / "out").exists()


def test_place_mask_keeps_edges_and_shapes():
    source = np.zeros((20, 40), dtype=bool)
    source[5:9, 34:40] = True  # a 4 x 6 defect at the right edge
    placed, area = place_mask(source, (20, 40), Transform())
    assert np.array_equal(placed, source) and area == 24
    flipped, _ = place_mask(source, (20, 40), Transform(hflip=True))
    assert np.array_equal(flipped, source[:, ::-1])  # mirrored to the left edge
    doubled, area = place_mask(source, (40, 80), Transform())  # 2x the side: 2x the shape, same place
    assert area == 96 and doubled[10:18, 68:80].all() and doubled.sum() == 96


def test_draw_mask_stays_on_the_foreground():
    sources = [np.zeros((32, 32), dtype=bool) for _ in range(2)]
    sources[0][10:14, 10:16] = True
    sources[1][20:30, 4:8] = True
    foreground = np.zeros((32, 32), dtype=bool)
    foreground[:, :16] = True
    augmentation = MaskAugmentation(max_rotation=30)
    for seed in range(10):
        mask, info = draw_mask(sources, (32, 32), foreground, augmentation, np.random.default_rng(seed))
        assert mask.any() and not (mask & ~foreground).any()
        again, _ = draw_mask(sources, (32, 32), foreground, augmentation, np.random.default_rng(seed))
        assert np.array_equal(mask, again)


def test_foreground_of_an_object_on_a_plain_background():
    rgb = np.full((60, 80, 3), 200, dtype=np.uint8)
    yy, xx = np.mgrid[:60, :80]
    disk = (yy - 30) ** 2 + (xx - 40) ** 2 < 15**2
    rgb[disk] = 40
    estimate = estimate_foreground(rgb)
    assert (estimate & disk).sum() / (estimate | disk).sum() > 0.9


def test_foreground_of_a_texture_is_the_whole_frame():
    rgb = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    assert estimate_foreground(rgb).all()


def test_foreground_check_turns_off_when_it_misses_the_masks():
    rgb = np.full((60, 80, 3), 200, dtype=np.uint8)
    rgb[20:40, 30:50] = 40
    on_object = np.zeros((60, 80), dtype=bool)
    on_object[25:30, 35:40] = True
    off_object = np.zeros((60, 80), dtype=bool)
    off_object[2:6, 2:6] = True  # labels the background: the estimate cannot be trusted
    assert Foreground().check([(rgb, on_object)]).enabled
    assert not Foreground().check([(rgb, off_object)]).enabled


def test_otsu_splits_two_modes():
    values = np.concatenate([np.full(100, 10.0), np.full(100, 200.0)])
    assert 10 <= otsu_threshold(values) < 200


def test_manifest_is_json_lines(data, tmp_path):
    root = _run(data, tmp_path, n=1)
    lines = (root / MANIFEST).read_text().splitlines()
    assert all(isinstance(json.loads(line), dict) for line in lines)


def test_surroundings_tone_is_the_ring_against_the_image():
    gray = np.full((10, 10), 100.0)
    gray[:, 5:] = 20.0
    mask = np.zeros((10, 10), bool)
    mask[4:6, 7:9] = True  # its 1-pixel ring lies in the dark half
    assert surroundings_tone(gray, mask, width=1) == pytest.approx(20.0 - gray.mean())
    assert np.isnan(surroundings_tone(gray, np.ones((10, 10), bool)))


def _banded(height=48, width=48):
    """A bright image with one dark horizontal band (rows 16-32), and a small source mask that sits in such a band."""
    gray = np.full((height, width), 200.0)
    gray[16:32] = 40.0
    source = np.zeros((height, width), bool)
    source[22:26, 22:26] = True
    return gray, source, surroundings_tone(gray, source)


def test_matching_surroundings_puts_a_defect_where_its_training_defect_sat():
    gray, source, tone = _banded()
    foreground = np.ones_like(source)
    tones = {}
    for candidates in (0, 8):
        augmentation = MaskAugmentation(shift=0.4, match_surroundings=candidates)
        rng = np.random.default_rng(0)
        draws = [draw_mask([source], gray.shape, foreground, augmentation, rng, gray, [tone])[0] for _ in range(40)]
        tones[candidates] = np.mean([surroundings_tone(gray, m) for m in draws])
    assert tone < -100
    assert tones[8] < tones[0] - 50  # most first draws land on the bright part, most matched ones in the band
    assert abs(tones[8] - tone) < 40


def test_first_draw_placement_is_unchanged_without_matching():
    gray, source, tone = _banded()
    foreground = np.ones_like(source)
    augmentation = MaskAugmentation(shift=0.4)
    plain = draw_mask([source], gray.shape, foreground, augmentation, np.random.default_rng(3))
    given = draw_mask([source], gray.shape, foreground, augmentation, np.random.default_rng(3), gray, [tone])
    assert (plain[0] == given[0]).all() and plain[1] == given[1]


def test_match_surroundings_counts_in_a_sets_identity_only_for_sard_and_when_on():
    on = MaskAugmentation(match_surroundings=8)
    assert "match_surroundings" not in SynthesisSettings("sard", 4).identity()["augmentation"]
    assert "match_surroundings" not in SynthesisSettings("cutpaste", 4, augmentation=on).identity()["augmentation"]
    assert SynthesisSettings("sard", 4, augmentation=on).identity()["augmentation"]["match_surroundings"] == 8
