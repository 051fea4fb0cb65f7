"""The baselines' masks and images: CutPaste (patch, scar), DRAEM (Perlin masks, foreign textures) and
real-only (augmented training anomalies). Masks are never empty and images change only inside them."""

from __future__ import annotations

import math
import warnings

import numpy as np
import PIL.Image
import pytest
from fixtures import make_dataset

from sard.datasets import read_dataset
from sard.synthesis import methods
from sard.synthesis.cutpaste import cutpaste, cutpaste_patch, cutpaste_scar
from sard.synthesis.draem import TEXTURE_AUGMENTATIONS, augment_texture, draem_anomaly
from sard.synthesis.masks import Transform, warp_pair
from sard.synthesis.methods import Item, build_synthesizer, texture_images, texture_source
from sard.synthesis.perlin import perlin_mask, rand_perlin_2d
from sard.synthesis.textures import KINDS as TEXTURE_KINDS
from sard.synthesis.textures import procedural_texture


def _image(seed: int = 0, size=(40, 56)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def _check_changed_only_inside(out: np.ndarray, rgb: np.ndarray, mask: np.ndarray) -> None:
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert mask.dtype == bool and mask.shape == rgb.shape[:2] and mask.any()
    assert np.array_equal(out[~mask], rgb[~mask])


@pytest.mark.parametrize("kind", [cutpaste_patch, cutpaste_scar, cutpaste])
def test_cutpaste_changes_only_its_mask(kind):
    changed = 0
    for seed in range(8):
        rgb = _image(seed)
        out, mask, info = kind(rgb, np.ones(rgb.shape[:2], dtype=bool), np.random.default_rng(seed))
        _check_changed_only_inside(out, rgb, mask)
        changed += (out[mask] != rgb[mask]).any()
        assert info["kind"] in ("patch", "scar")
    assert changed == 8  # a jittered patch of noise never lands on itself unchanged


def test_cutpaste_patch_follows_the_recipe():
    rgb = _image(size=(100, 100))
    for seed in range(20):
        _, mask, info = cutpaste_patch(rgb, np.ones((100, 100), bool), np.random.default_rng(seed))
        height, width = info["size"]
        assert 0.02 * 1e4 - 30 <= mask.sum() == height * width <= 0.15 * 1e4 + 30  # area 2-15 %, rounded
        assert 0.3 - 0.05 <= width / height <= 1 / 0.3 + 0.5


def test_cutpaste_scar_is_thin_and_scaled():
    rgb = _image(size=(256, 256))
    for seed in range(20):
        _, mask, info = cutpaste_scar(rgb, np.ones((256, 256), bool), np.random.default_rng(seed))
        height, width = info["size"]
        assert 2 <= width <= 16 and 10 <= height <= 25 and -45 <= info["angle"] <= 45
        assert mask.sum() <= (width + 1) * (height + 1) * 1.1


def test_cutpaste_lands_on_the_foreground():
    rgb = _image(size=(64, 64))
    foreground = np.zeros((64, 64), dtype=bool)
    foreground[:, :40] = True
    for seed in range(10):
        _, mask, _ = cutpaste_scar(rgb, foreground, np.random.default_rng(seed))
        assert (mask & foreground).sum() >= 0.5 * mask.sum()


def _draem_reference(shape, res, angles):
    """DRAEM's rand_perlin_2d_np (their perlin.py), with the random angles passed in."""
    def lerp(x, y, w):
        return (y - x) * w + x

    def fade(t):
        return 6 * t**5 - 15 * t**4 + 10 * t**3

    delta = (res[0] / shape[0], res[1] / shape[1])
    d = (shape[0] // res[0], shape[1] // res[1])
    grid = np.mgrid[0 : res[0] : delta[0], 0 : res[1] : delta[1]].transpose(1, 2, 0) % 1
    gradients = np.stack((np.cos(angles), np.sin(angles)), axis=-1)

    def tile(s1, s2):
        return np.repeat(np.repeat(gradients[s1[0] : s1[1], s2[0] : s2[1]], d[0], axis=0), d[1], axis=1)

    def dot(grad, shift):
        g = np.stack((grid[: shape[0], : shape[1], 0] + shift[0], grid[: shape[0], : shape[1], 1] + shift[1]), -1)
        return (g * grad[: shape[0], : shape[1]]).sum(axis=-1)

    n00, n10 = dot(tile([0, -1], [0, -1]), [0, 0]), dot(tile([1, None], [0, -1]), [-1, 0])
    n01, n11 = dot(tile([0, -1], [1, None]), [0, -1]), dot(tile([1, None], [1, None]), [-1, -1])
    t = fade(grid[: shape[0], : shape[1]])
    return math.sqrt(2) * lerp(lerp(n00, n10, t[..., 0]), lerp(n01, n11, t[..., 0]), t[..., 1])


@pytest.mark.parametrize("res", [(1, 1), (2, 4), (8, 8)])
def test_perlin_matches_draem(res):
    noise = rand_perlin_2d((32, 32), res, np.random.default_rng(3))
    angles = 2 * math.pi * np.random.default_rng(3).random((res[0] + 1, res[1] + 1))
    np.testing.assert_allclose(noise, _draem_reference((32, 32), res, angles), atol=1e-12)


def test_perlin_any_shape_and_range():
    noise = rand_perlin_2d((37, 51), (4, 8), np.random.default_rng(0))
    assert noise.shape == (37, 51) and np.abs(noise).max() <= 1.0


def test_perlin_masks_are_thresholded_noise():
    masks = [perlin_mask((64, 64), np.random.default_rng(s)) for s in range(30)]
    fractions = [m.mean() for m in masks]
    assert all(m.dtype == bool for m in masks) and max(fractions) < 0.6
    assert sum(f > 0 for f in fractions) >= 5  # many draws are non-empty...
    assert sum(f == 0 for f in fractions) >= 1  # ...and some are empty (DRAEM then has no anomaly)


def test_draem_changes_only_its_mask_with_the_blend():
    rgb = _image(1, size=(48, 64))
    texture = PIL.Image.fromarray(_image(2, size=(30, 30)))
    foreground = np.zeros((48, 64), dtype=bool)
    foreground[8:40, 8:56] = True
    for seed in range(6):
        out, mask, info = draem_anomaly(rgb, texture, foreground, np.random.default_rng(seed))
        _check_changed_only_inside(out, rgb, mask)
        assert not (mask & ~foreground).any()
        assert 0.0 <= info["beta"] < 0.8
        assert (out[mask] != rgb[mask]).any()


def test_draem_with_beta_zero_is_the_augmented_texture():
    """With beta = 0 the mask holds the texture exactly as augmented (same stream of draws)."""
    rgb = _image(1)
    texture = PIL.Image.fromarray(_image(2))
    foreground = np.ones(rgb.shape[:2], dtype=bool)
    out, mask, _ = draem_anomaly(rgb, texture, foreground, np.random.default_rng(5), max_beta=0.0)
    rng = np.random.default_rng(5)
    for _ in range(100):
        expected_mask = perlin_mask(rgb.shape[:2], rng)
        if expected_mask.any():
            break
    fill = augment_texture(texture, rng)
    assert np.array_equal(mask, expected_mask) and np.array_equal(out[mask], fill[mask])


def test_texture_augmentations_keep_shape_and_type():
    texture = PIL.Image.fromarray(_image(0, size=(20, 24)))
    for augmentation in TEXTURE_AUGMENTATIONS:
        out = np.asarray(augmentation(texture, np.random.default_rng(0)))
        assert out.shape == (20, 24, 3) and out.dtype == np.uint8


def test_warp_pair_moves_image_and_mask_together():
    mask = np.zeros((16, 24), dtype=bool)
    mask[3:7, 15:22] = True
    rgb = np.repeat(mask[..., None], 3, axis=2).astype(np.uint8) * 255
    same, same_mask = warp_pair(rgb, mask, Transform())
    assert np.array_equal(same, rgb) and np.array_equal(same_mask, mask)
    for transform in (Transform(hflip=True), Transform(vflip=True, dx=0.25), Transform(turns=1, dy=-0.125)):
        out, out_mask = warp_pair(rgb, mask, transform)
        assert out_mask.any() and np.array_equal(out[..., 0] > 127, out_mask)
    out, out_mask = warp_pair(rgb, mask, Transform(hflip=True))
    assert np.array_equal(out_mask, mask[:, ::-1])


@pytest.fixture(scope="module")
def two_categories(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    data = make_dataset(root, "mvtec", category="tile", defects={"a": 6, "b": 3}, mode="L")
    make_dataset(root, "mvtec", category="screw", defects={"pit": 3}, n_good=2, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return data, read_dataset(root, "tile")


def test_draem_textures_default_to_the_other_categories(two_categories, tmp_path):
    data, dataset = two_categories
    textures = texture_images(None, dataset)
    assert textures and all(p.parent == data.data_root / "screw" / "train" / "good" for p in textures)
    (tmp_path / "dtd" / "banded").mkdir(parents=True)
    PIL.Image.fromarray(_image()).save(tmp_path / "dtd" / "banded" / "x.jpg")
    assert texture_images(tmp_path / "dtd", dataset) == [tmp_path / "dtd" / "banded" / "x.jpg"]
    with pytest.raises(ValueError, match="--texture_dir"):
        texture_source(tmp_path / "dtd" / "empty", dataset)
    found, description = texture_source(None, dataset)
    assert found == textures and "other categories" in description


def test_procedural_textures_are_seeded_and_varied():
    textures = [procedural_texture(np.random.default_rng(seed), size=64) for seed in range(24)]
    assert {kind for _, kind in textures} == set(TEXTURE_KINDS)  # every family turns up
    again, kind = procedural_texture(np.random.default_rng(3), size=64)
    assert kind == textures[3][1] and np.array_equal(np.asarray(again), np.asarray(textures[3][0]))
    arrays = [np.asarray(t) for t, _ in textures]
    assert all(a.shape == (64, 64, 3) and a.dtype == np.uint8 and a.std() > 1.0 for a in arrays)
    assert len({a.tobytes() for a in arrays}) == len(arrays)


def test_draem_on_a_root_with_one_category_uses_procedural_textures(tmp_path):
    data = make_dataset(tmp_path, "mvtec", category="alone", defects={"a": 3})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = read_dataset(data.data_root, "alone")
    methods._warned.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first, second = build_synthesizer("draem", dataset), build_synthesizer("draem", dataset)
    assert len([w for w in caught if "procedural" in str(w.message)]) == 1  # warned once
    assert first.texture_source.startswith("procedural") and not first.textures
    results = first([Item("a", 0, k) for k in range(4)])
    again = second([Item("a", 0, k) for k in range(4)])
    for result, repeat in zip(results, again):
        assert result.record["texture"].split(":")[0] == "procedural" and result.mask.any()
        assert np.array_equal(np.asarray(result.image), np.asarray(repeat.image))
        source = np.asarray(PIL.Image.open(result.record["source"]).convert("RGB"))
        out = np.asarray(result.image)
        assert np.array_equal(out[~result.mask], source[~result.mask])


@pytest.mark.parametrize("method", ["cutpaste", "draem", "real"])
def test_synthesizers_give_masked_pairs_in_the_source_mode(two_categories, method):
    _, dataset = two_categories
    synthesizer = build_synthesizer(method, dataset, seed=0)
    items = [Item("a", 0, k) for k in range(3)] + [Item("b", 1, 0)]
    results = synthesizer(items)
    again = synthesizer(items[::-1])[::-1]
    for item, result, repeat in zip(items, results, again):
        assert result.image.mode == "L" and result.mask.any()  # grayscale in, grayscale out
        assert np.array_equal(np.asarray(result.image), np.asarray(repeat.image))  # order does not matter
        source = np.asarray(PIL.Image.open(result.record["source"]))
        if method == "real":
            assert "/test/" + item.defect + "/" in result.record["source"]
        else:
            out = np.asarray(result.image)
            assert np.array_equal(out[~result.mask], source[~result.mask])
            assert source.shape == out.shape


def test_real_and_sard_need_training_masks(tmp_path):
    data = make_dataset(tmp_path, "mvtec", defects={"a": 2})  # floor(2 / 3) = 0 training anomalies
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = read_dataset(data.data_root, data.category)
    with pytest.raises(ValueError, match="first third"):
        build_synthesizer("real", dataset)
    assert build_synthesizer("cutpaste", dataset).method == "cutpaste"
