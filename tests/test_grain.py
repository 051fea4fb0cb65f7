"""Grain matching (sard.grain): the surroundings' fine texture restored inside a smooth fill, nothing else moved."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import make_pipeline

from sard import SARDPipeline
from sard.cropping import ring
from sard.discriminator import high_pass
from sard.evaluation.realism import defect_stats
from sard.grain import defect_strength, masked_fine_residual, match_grain, type_strengths

LUMA = np.array([0.299, 0.587, 0.114])


def _scene(size: int = 64, noise: float = 0.03, seed: int = 0):
    """A grainy grey photo, a square mask in it, and a flat fill of another tone."""
    rng = np.random.default_rng(seed)
    known = np.clip(0.5 + noise * rng.standard_normal((size, size, 3)), 0, 1)
    mask = np.zeros((size, size), bool)
    mask[20:44, 16:40] = True
    fill = np.full((size, size, 3), 0.3)
    return fill, known, mask


def fine_residual(image: np.ndarray) -> np.ndarray:
    """`(H, W, C)`: ``image`` minus its 3 x 3 box mean, edges replicated (the discriminator's :func:`high_pass`)."""
    x = torch.from_numpy(np.ascontiguousarray(np.moveaxis(image, 2, 0)))[None]
    return np.moveaxis(high_pass(x, size=3)[0].numpy(), 0, 2)


def _strength(image: np.ndarray, where: np.ndarray) -> float:
    return float(np.sqrt(np.mean((fine_residual(image)[where] @ LUMA) ** 2)))


def _inside(mask: np.ndarray) -> np.ndarray:
    """The pixels of ``mask`` whose 3 x 3 neighbourhood is all inside it."""
    return mask & ~ring(~mask, 1)


def test_masked_fine_residual_ignores_the_border_step():
    fill, known, mask = _scene()
    composite = np.where(mask[..., None], fill, known)
    # The plain residual sees the step from 0.5 to 0.3, more than the ring's whole grain.
    assert _strength(composite, mask) > 1.2 * _strength(known, ring(mask, 4))
    np.testing.assert_allclose(masked_fine_residual(composite, mask), 0.0, atol=1e-12)


def test_the_plain_residual_of_a_constant_and_of_one_bright_pixel():
    flat = np.full((5, 6, 3), 0.4)
    np.testing.assert_allclose(fine_residual(flat), 0.0, atol=1e-12)
    spot = np.zeros((5, 5, 1))
    spot[2, 2] = 9.0
    residual = fine_residual(spot)[..., 0]
    assert residual[2, 2] == pytest.approx(8.0)  # 9 - 9 / 9
    assert residual[1, 1] == pytest.approx(-1.0) and residual[0, 0] == pytest.approx(0.0)


def test_a_flat_fill_gets_the_rings_grain_and_keeps_its_tone():
    fill, known, mask = _scene()
    out = match_grain(fill, known, mask, np.random.default_rng(1))
    composite = np.where(mask[..., None], out, known)
    wanted = _strength(known, ring(mask, 4))
    inside = _inside(mask)  # away from the border's step, the fill's texture alone
    assert _strength(composite, inside) == pytest.approx(wanted, rel=0.1)
    assert _strength(fill, inside) == 0.0  # it was flat before
    assert out[mask].mean() == pytest.approx(0.3, abs=0.005)  # zero-mean grain: the tone stays the fill's
    np.testing.assert_array_equal(out[~mask], fill[~mask])
    # The measure the fidelity tables use moves from far below the surroundings to about as busy.
    before = defect_stats(255 * np.where(mask[..., None], fill, known), mask).texture_ratio
    after = defect_stats(255 * composite, mask).texture_ratio
    assert before < 0.5 and 0.7 < after < 1.4


def test_a_fill_as_grainy_as_its_surroundings_is_left_alone():
    _, known, mask = _scene()
    busy = np.clip(0.3 + 0.08 * np.random.default_rng(2).standard_normal(known.shape), 0, 1)
    assert match_grain(busy, known, mask, np.random.default_rng(1)) is busy


def test_no_ring_or_empty_mask_changes_nothing():
    fill, known, _ = _scene(size=8)
    assert match_grain(fill, known, np.ones((8, 8), bool), np.random.default_rng(0)) is fill
    assert match_grain(fill, known, np.zeros((8, 8), bool), np.random.default_rng(0)) is fill


def test_grain_comes_from_the_ring_only():
    """Pixels under the mask (the normal surface the defect replaces) lend nothing: a loud texture there and a
    quiet one around it give quiet grain."""
    fill, known, mask = _scene(noise=0.01)
    known[mask] = np.random.default_rng(3).random((int(mask.sum()), 3))
    out = match_grain(fill, known, mask, np.random.default_rng(1))
    assert np.abs(out[mask] - 0.3).max() < 0.1


def test_same_rng_same_grain_grey_stays_grey():
    fill, known, mask = _scene()
    grey = np.repeat(known[..., :1], 3, axis=2)
    first = match_grain(fill, grey, mask, np.random.default_rng(5))
    np.testing.assert_array_equal(first, match_grain(fill, grey, mask, np.random.default_rng(5)))
    assert not np.array_equal(first, match_grain(fill, grey, mask, np.random.default_rng(6)))
    np.testing.assert_array_equal(first[..., 0], first[..., 1])


def _grainy_photo(size=(48, 64), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(128 + 12 * rng.standard_normal((*size, 3)), 0, 255).astype(np.uint8)


def test_pipeline_grain_keeps_the_background_and_the_fill(tiny_pipeline):
    image = _grainy_photo()
    mask = np.zeros(image.shape[:2], bool)
    mask[12:36, 20:44] = True
    kwargs = dict(defect="a", output_type="np")
    plain = tiny_pipeline(image, mask, generator=torch.Generator().manual_seed(0), **kwargs).images[0]
    grainy = tiny_pipeline(image, mask, generator=torch.Generator().manual_seed(0), grain=True, **kwargs)
    out = grainy.images[0]
    np.testing.assert_array_equal(out[~mask], image[~mask])  # the background is still bit-exact
    assert not np.array_equal(out[mask], plain[mask])
    # The grain is added after sampling: the network's crops are the same, and so is the mean tone.
    again = tiny_pipeline(image, mask, generator=torch.Generator().manual_seed(0), **kwargs)
    torch.testing.assert_close(again.crops[0].sample, grainy.crops[0].sample)
    assert abs(out[mask].astype(float).mean() - plain[mask].astype(float).mean()) < 2.0
    assert _strength(out / 255.0, mask) > _strength(plain / 255.0, mask)


def test_pipeline_grain_belongs_to_the_photo_not_to_the_seed(tiny_pipeline):
    """Two seeds paint two fills, with the same grain: the variety across seeds is the network's."""
    image = _grainy_photo()
    mask = np.zeros(image.shape[:2], bool)
    mask[12:36, 20:44] = True

    def grain_of(seed):
        kwargs = dict(defect="a", output_type="np")
        plain = tiny_pipeline(image, mask, generator=torch.Generator().manual_seed(seed), **kwargs).images[0]
        grainy = tiny_pipeline(image, mask, generator=torch.Generator().manual_seed(seed), grain=True, **kwargs)
        return grainy.images[0][mask].astype(float) - plain[mask].astype(float), plain[mask]

    (first, fill_0), (second, fill_1) = grain_of(0), grain_of(1)
    assert not np.array_equal(fill_0, fill_1)
    assert np.corrcoef(first.ravel(), second.ravel())[0, 1] > 0.9


def test_grain_is_a_saved_setting_that_a_call_overrides(tmp_path):
    pipe = make_pipeline()
    assert pipe.config.grain is False  # models saved before grain matching paint as they did
    pipe.register_to_config(grain=True)
    pipe.save_pretrained(tmp_path / "model")
    loaded = SARDPipeline.from_pretrained(tmp_path / "model")
    loaded.set_progress_bar_config(disable=True)
    assert loaded.config.grain is True
    image = PIL.Image.fromarray(_grainy_photo())
    mask = np.zeros((48, 64), bool)
    mask[12:36, 20:44] = True

    def paint(**kwargs):
        return np.asarray(loaded(image, mask, defect="a", generator=torch.Generator().manual_seed(0),
                                 **kwargs).images[0])

    np.testing.assert_array_equal(paint(), paint(grain=True))
    assert not np.array_equal(paint(), paint(grain=False))


def test_tiles_keep_the_photos_grain_size():
    """A texture of vertical stripes two pixels wide: copied in tiles, the grain keeps its stripes (neighbours
    in a row alike, columns alternating); drawn pixel by pixel it would not."""
    stripes = np.where((np.arange(64) // 2) % 2 == 0, 0.55, 0.45)
    known = np.broadcast_to(stripes[None, :, None], (64, 64, 3)).copy()
    fill = np.full((64, 64, 3), 0.3)
    mask = np.zeros((64, 64), bool)
    mask[24:40, 24:40] = True
    grain = match_grain(fill, known, mask, np.random.default_rng(0))[mask].reshape(16, 16, 3)[..., 0] - 0.3
    vertical = np.corrcoef(grain[:-1].ravel(), grain[1:].ravel())[0, 1]
    assert vertical > 0.9  # each column holds one value down a tile, as in the stripes


def test_windows_on_an_edge_of_the_product_lend_no_grain():
    """A quiet surface around the mask and, beyond its ring, a band of bright lines (an edge of the product):
    every tile's grain is as quiet as the surface; none copies the lines."""
    fill, known, mask = _scene(noise=0.005)
    known[:, 48::3] = 0.9
    grain = (match_grain(fill, known, mask, np.random.default_rng(0)) - fill)[mask].reshape(24, 24, 3)[..., 0]
    tiles = grain.reshape(3, 8, 3, 8).transpose(0, 2, 1, 3).reshape(9, 64)
    loudness = np.sqrt((tiles**2).mean(axis=1))
    assert loudness.max() < 3 * loudness.min()


def test_a_mask_with_no_clean_window_draws_pixels_from_the_ring():
    fill, known, _ = _scene(size=12)
    mask = np.ones((12, 12), bool)
    mask[0] = False  # a one-pixel strip of surroundings: no 8 x 8 window outside the mask
    out = match_grain(fill, known, mask, np.random.default_rng(0))
    assert not np.array_equal(out[mask], fill[mask])
    np.testing.assert_array_equal(out[~mask], fill[~mask])


def test_strength_scales_the_grain():
    fill, known, mask = _scene()
    inside = _inside(mask)
    wanted = _strength(known, ring(mask, 4))
    for strength in (0.5, 2.0):
        out = match_grain(fill, known, mask, np.random.default_rng(1), strength=strength)
        assert _strength(out, inside) == pytest.approx(strength * wanted, rel=0.15)


def test_defect_strength_of_a_busier_and_of_a_smoother_defect():
    _, known, mask = _scene(noise=0.02)
    rng = np.random.default_rng(4)
    busy = known.copy()
    busy[mask] = np.clip(0.3 + 0.06 * rng.standard_normal((int(mask.sum()), 3)), 0, 1)
    smooth = known.copy()
    smooth[mask] = 0.3
    assert defect_strength(busy, mask) == pytest.approx(3.0, rel=0.15)  # a shade darker does not count
    assert defect_strength(smooth, mask) == 0.0
    assert np.isnan(defect_strength(known, np.zeros(mask.shape, bool)))


def test_type_strengths_are_medians_and_skip_what_cannot_be_measured():
    _, known, mask = _scene(noise=0.02)
    rng = np.random.default_rng(5)

    def busy(noise):
        image = known.copy()
        image[mask] = np.clip(0.3 + noise * rng.standard_normal((int(mask.sum()), 3)), 0, 1)
        return image, mask

    empty = np.zeros(mask.shape, bool)
    strengths = type_strengths({"busy": iter([busy(0.02), busy(0.04), busy(0.08), (known, empty)]),
                                "unmeasurable": [(known, empty)]})
    assert list(strengths) == ["busy"]
    assert strengths["busy"] == pytest.approx(2.0, rel=0.2)  # the middle one: 0.04 against 0.02


def test_each_defect_type_gets_its_own_strength():
    pipe = make_pipeline()
    pipe.register_to_config(grain=True, grain_strength={"a": 0.5, "b": 3.0})
    image = _grainy_photo()
    mask = np.zeros(image.shape[:2], bool)
    mask[12:36, 20:44] = True

    def grain_strength(defect):
        kwargs = dict(defect=defect, output_type="np")
        plain = pipe(image, mask, generator=torch.Generator().manual_seed(0), grain=False, **kwargs).images[0]
        grainy = pipe(image, mask, generator=torch.Generator().manual_seed(0), **kwargs).images[0]
        return np.sqrt(np.mean((grainy[mask].astype(float) - plain[mask]) ** 2))

    assert grain_strength("b") > 3 * grain_strength("a")


def test_set_grain_measures_the_training_split_and_switches_off(tmp_path):
    from fixtures import make_dataset

    make_dataset(tmp_path / "data", defects={"scratch": 4, "dent": 3}, size=(40, 48))
    model = tmp_path / "model"
    make_pipeline(defect_types=("scratch", "dent")).save_pretrained(model)
    config = {"data_root": str(tmp_path / "data"), "category": "widget", "data_format": "mvtec", "split": "protocol"}
    (model / "config.yaml").write_text(json.dumps(config))  # JSON is YAML
    script = Path(__file__).resolve().parents[1] / "scripts" / "set_grain.py"
    (model / "README.md").write_text("# card\n\n## Fidelity (old)\n\nold table\n\n## Notes\n\nkept\n")
    (tmp_path / "fidelity.md").write_text("# fidelity report\n\nnew table\n")
    run = subprocess.run([sys.executable, str(script), str(model), "--fidelity", str(tmp_path / "fidelity.md")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    card = (model / "README.md").read_text()
    assert "new table" in card and "old table" not in card and "## Notes\n\nkept" in card
    assert card.count("## Grain") == 1 and "| scratch |" in card
    index = json.loads((model / "model_index.json").read_text())
    assert index["grain"] is True and set(index["grain_strength"]) == {"scratch", "dent"}
    loaded = SARDPipeline.from_pretrained(model)
    assert loaded.config.grain_strength == index["grain_strength"]
    assert subprocess.run([sys.executable, str(script), str(model), "--off"], capture_output=True).returncode == 0
    assert SARDPipeline.from_pretrained(model).config.grain is False
    assert "## Grain\n\nOff" in (model / "README.md").read_text()
    (model / "config.yaml").unlink()
    run = subprocess.run([sys.executable, str(script), str(model)], capture_output=True, text=True)
    assert run.returncode != 0 and "no config.yaml" in run.stderr
