"""SARDPipeline: the background is returned bit for bit, for every kind and size of input."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import DEFECT_TYPES, T, box_mask, make_pipeline, seeded
from diffusers import ImagePipelineOutput


def _paint(pipe, image, mask, seed=0, **kwargs):
    kwargs.setdefault("defect", "a")
    return pipe(image, mask, generator=seeded(seed), **kwargs).images[0]


def _assert_background_exact(before: np.ndarray, after: np.ndarray, mask: np.ndarray):
    """Outside the mask: identical, bit for bit (np.array_equal also compares float NaN-free values exactly)."""
    assert after.shape == before.shape and after.dtype == before.dtype
    assert np.array_equal(after[~mask], before[~mask])


def _assert_changed_inside(before: np.ndarray, after: np.ndarray, mask: np.ndarray):
    assert not np.array_equal(after[mask], before[mask])


# --- every input kind -----------------------------------------------------------------------------------------


def _pil_input(mode: str, height: int, width: int, rng) -> PIL.Image.Image:
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    if mode == "RGB":
        return PIL.Image.fromarray(rgb, "RGB")
    if mode == "RGBA":
        return PIL.Image.fromarray(np.dstack([rgb, rng.integers(0, 256, (height, width), dtype=np.uint8)]), "RGBA")
    if mode == "L":
        return PIL.Image.fromarray(rgb[..., 0], "L")
    if mode == "LA":
        return PIL.Image.fromarray(rgb[..., :2], "LA")
    if mode == "P":
        return PIL.Image.fromarray(rgb, "RGB").quantize(16)
    if mode == "I;16":
        return PIL.Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16))
    if mode == "I":
        return PIL.Image.fromarray(rng.integers(0, 65536, (height, width)).astype(np.int32), "I")
    if mode == "F":
        return PIL.Image.fromarray(rng.random((height, width), dtype=np.float32), "F")
    if mode == "1":
        return PIL.Image.fromarray(rng.random((height, width)) > 0.5)
    raise AssertionError(mode)


# The mode the result comes back in, and the array its background is compared with.
_PIL_CASES = {
    "L": ("L", lambda im: np.asarray(im)),
    "LA": ("LA", lambda im: np.asarray(im)),
    "RGB": ("RGB", lambda im: np.asarray(im)),
    "RGBA": ("RGBA", lambda im: np.asarray(im)),
    "P": ("RGB", lambda im: np.asarray(im.convert("RGB"))),
    "I;16": ("I;16", lambda im: np.asarray(im)),
    "I": ("I", lambda im: np.asarray(im)),
    "F": ("F", lambda im: np.asarray(im)),
    "1": ("L", lambda im: np.asarray(im.convert("L"))),
}


@pytest.mark.parametrize("mode", list(_PIL_CASES))
@pytest.mark.parametrize("size", [(33, 51), (7, 13)])
def test_pil_background_is_exact(tiny_pipeline, rng, mode, size):
    image = _pil_input(mode, *size, rng)
    mask = box_mask(*size)
    out = _paint(tiny_pipeline, image, PIL.Image.fromarray(mask))
    out_mode, reference = _PIL_CASES[mode]
    assert isinstance(out, PIL.Image.Image) and out.mode == out_mode and out.size == image.size
    before, after = reference(image), np.asarray(out)
    _assert_background_exact(before, after, mask)
    _assert_changed_inside(before, after, mask)
    if mode in ("RGBA", "LA"):  # alpha is passed through everywhere, inside the mask too
        assert np.array_equal(after[..., -1], before[..., -1])


def test_palette_with_transparency_comes_back_rgba(tiny_pipeline, rng):
    image = _pil_input("P", 9, 11, rng)
    image.info["transparency"] = 3
    mask = box_mask(9, 11)
    out = _paint(tiny_pipeline, image, mask)
    before = np.asarray(image.convert("RGBA"))
    assert out.mode == "RGBA"
    _assert_background_exact(before, np.asarray(out), mask)
    assert np.array_equal(np.asarray(out)[..., 3], before[..., 3])


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_large_odd_size_background_is_exact(tiny_pipeline, rng, mode):
    image = _pil_input(mode, 333, 517, rng)
    mask = np.zeros((333, 517), dtype=bool)
    mask[100:140, 200:231] = True
    mask[301, 7] = True  # a far-away one-pixel pit: the crop grows to hold both
    out = _paint(tiny_pipeline, image, mask)
    assert out.size == (517, 333) and out.mode == mode
    before, after = np.asarray(image), np.asarray(out)
    _assert_background_exact(before, after, mask)
    _assert_changed_inside(before, after, mask)
    if mode == "RGBA":
        assert np.array_equal(after[..., 3], before[..., 3])


def _array(dtype, shape, rng):
    if np.issubdtype(dtype, np.integer):
        return rng.integers(0, np.iinfo(dtype).max + 1, shape).astype(dtype)
    return rng.random(shape).astype(dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float16, np.float32, np.float64])
@pytest.mark.parametrize("channels", [None, 1, 3, 4])
def test_numpy_background_is_exact(tiny_pipeline, rng, dtype, channels):
    shape = (21, 17) if channels is None else (21, 17, channels)
    image = _array(dtype, shape, rng)
    mask = box_mask(21, 17)
    out = _paint(tiny_pipeline, image, mask, output_type="np")
    assert isinstance(out, np.ndarray) and out.dtype == image.dtype and out.shape == image.shape
    _assert_background_exact(image, out, mask)
    _assert_changed_inside(image, out, mask)
    if channels in (1, 3):  # values of the painted region stay in range
        assert out.min() >= 0 and (out.max() <= 1 if image.dtype.kind == "f" else True)
    if channels == 4:
        assert np.array_equal(out[..., 3], image[..., 3])


@pytest.mark.parametrize(
    "dtype", [torch.uint8, torch.uint16, torch.float16, torch.bfloat16, torch.float32, torch.float64]
)
@pytest.mark.parametrize("channels", [None, 1, 3])
def test_torch_background_is_exact(tiny_pipeline, rng, dtype, channels):
    if dtype.is_floating_point:
        tensor = torch.from_numpy(rng.random((3, 19, 23))).to(dtype)
    else:
        tensor = torch.from_numpy(rng.integers(0, 255 if dtype == torch.uint8 else 65535, (3, 19, 23))).to(dtype)
    tensor = tensor[0] if channels is None else tensor[:channels]
    mask = torch.from_numpy(box_mask(19, 23))
    out = _paint(tiny_pipeline, tensor, mask, output_type="pt")
    assert isinstance(out, torch.Tensor) and out.dtype == tensor.dtype and out.shape == tensor.shape
    m = mask.expand_as(tensor)
    assert torch.equal(out[~m], tensor[~m])
    assert not torch.equal(out[m], tensor[m])


def test_batched_tensor_input(tiny_pipeline, rng):
    batch = torch.from_numpy(rng.random((2, 3, 12, 14), dtype=np.float32))
    mask = torch.from_numpy(box_mask(12, 14))
    out = tiny_pipeline(batch, mask, defect="b", generator=[seeded(0), seeded(1)], output_type="pt").images
    assert len(out) == 2
    for before, after in zip(batch, out):
        m = mask.expand_as(before)
        assert (
            after.shape == before.shape and torch.equal(after[~m], before[~m]) and not torch.equal(after[m], before[m])
        )


@pytest.mark.parametrize("size", [(1, 1), (1, 9), (2, 2), (7, 13), (13, 7)])
def test_tiny_sizes(tiny_pipeline, rng, size):
    image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    mask = np.zeros(size, dtype=bool)
    mask[size[0] // 2, size[1] // 2] = True
    out = _paint(tiny_pipeline, image, mask, output_type="np")
    _assert_background_exact(image, out, mask)
    _assert_changed_inside(image, out, mask)
    full = np.ones(size, dtype=bool)
    out = _paint(tiny_pipeline, PIL.Image.fromarray(image), full)
    assert out.size == (size[1], size[0])


def test_image_from_path(tiny_pipeline, rng, tmp_path):
    image = _pil_input("RGB", 15, 18, rng)
    image.save(tmp_path / "image.png")
    mask = box_mask(15, 18)
    PIL.Image.fromarray(mask).save(tmp_path / "mask.png")
    out = _paint(tiny_pipeline, str(tmp_path / "image.png"), tmp_path / "mask.png")
    assert np.array_equal(np.asarray(out), np.asarray(_paint(tiny_pipeline, image, mask)))
    _assert_background_exact(np.asarray(image), np.asarray(out), mask)


def test_output_types_and_return_dict(tiny_pipeline, rng):
    image = _pil_input("RGB", 12, 12, rng)
    mask = box_mask(12, 12)
    result = tiny_pipeline(image, mask, defect="a", generator=seeded(0))
    assert isinstance(result, ImagePipelineOutput) and len(result.images) == 1
    as_np = _paint(tiny_pipeline, image, mask, output_type="np")
    as_pt = _paint(tiny_pipeline, image, mask, output_type="pt")
    assert np.array_equal(as_np, np.asarray(result.images[0]))
    assert torch.equal(as_pt, torch.from_numpy(as_np).permute(2, 0, 1))
    (images,) = tiny_pipeline(image, mask, defect="a", generator=seeded(0), return_dict=False)
    assert np.array_equal(np.asarray(images[0]), as_np)
    # A numpy input asked back as PIL: an 8-bit image of the same size.
    pil = _paint(tiny_pipeline, np.asarray(image), mask, output_type="pil")
    assert pil.mode == "RGB" and np.array_equal(np.asarray(pil), as_np)
    with pytest.raises(ValueError, match="output_type"):
        _paint(tiny_pipeline, image, mask, output_type="latent")


# --- randomness -----------------------------------------------------------------------------------------------


def test_same_seed_same_result_other_seed_other_result(tiny_pipeline, rng):
    image = rng.random((24, 20, 3)).astype(np.float32)
    mask = box_mask(24, 20)
    first = _paint(tiny_pipeline, image, mask, seed=3, output_type="np")
    again = _paint(make_pipeline(), image, mask, seed=3, output_type="np")
    other = _paint(tiny_pipeline, image, mask, seed=4, output_type="np")
    assert np.array_equal(first, again)
    assert not np.array_equal(first[mask], other[mask])
    _assert_background_exact(first, other, mask)


def test_per_image_generators_do_not_depend_on_the_batch(tiny_pipeline, rng):
    """Image i's result depends on its own generator only: alone or in a batch of differently sized images."""
    sizes = [(20, 30), (64, 48), (7, 13)]
    images = [rng.integers(0, 256, (*s, 3), dtype=np.uint8) for s in sizes]
    masks = [box_mask(*s) for s in sizes]
    alone = [
        _paint(tiny_pipeline, im, m, seed=10 + i, output_type="np") for i, (im, m) in enumerate(zip(images, masks))
    ]
    batch = tiny_pipeline(
        images, masks, defect="a", generator=[seeded(10 + i) for i in range(3)], output_type="np"
    ).images
    for i in range(3):
        assert np.array_equal(batch[i], alone[i]), f"image {i}"
    # In another order, with another companion: still the same.
    reordered = tiny_pipeline(
        [images[2], images[0]], [masks[2], masks[0]], defect="a", generator=[seeded(12), seeded(10)], output_type="np"
    ).images
    assert np.array_equal(reordered[0], alone[2]) and np.array_equal(reordered[1], alone[0])


def test_one_generator_for_a_batch_is_deterministic(tiny_pipeline, rng):
    image = rng.integers(0, 256, (16, 16), dtype=np.uint8)
    mask = box_mask(16, 16)
    first = tiny_pipeline([image, image], mask, defect="a", generator=seeded(0), output_type="np").images
    second = tiny_pipeline([image, image], mask, defect="a", generator=seeded(0), output_type="np").images
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    # The one generator moves on between images: the same input gets two different defects.
    assert not np.array_equal(first[0], first[1])


# --- masks, defects and validation ----------------------------------------------------------------------------


def test_mask_of_another_size_is_resized(tiny_pipeline, rng):
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    small = np.zeros((10, 15), dtype=bool)
    small[3:6, 4:9] = True
    full = np.repeat(np.repeat(small, 2, axis=0), 2, axis=1)  # nearest, exactly 2x
    out = _paint(tiny_pipeline, image, PIL.Image.fromarray(small), output_type="np")
    _assert_background_exact(image, out, full)
    assert (out[full] != image[full]).any(axis=-1).mean() > 0.5  # the whole resized region is painted
    assert np.array_equal(out, _paint(tiny_pipeline, image, full, output_type="np"))


def test_network_never_sees_the_pixels_under_the_mask(tiny_pipeline, rng):
    """At working scale 1, what lies under the mask does not change the result (the defect is not a copy)."""
    image = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    mask = box_mask(20, 24)
    other = image.copy()
    other[mask] = 255 - other[mask]
    assert np.array_equal(
        _paint(tiny_pipeline, image, mask, output_type="np"), _paint(tiny_pipeline, other, mask, output_type="np")
    )


def test_defect_types_and_labels(tiny_pipeline, rng):
    assert tiny_pipeline.defect_types == list(DEFECT_TYPES)
    image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    mask = box_mask(16, 16)
    a = _paint(tiny_pipeline, image, mask, defect="a", output_type="np")
    b = _paint(tiny_pipeline, image, mask, defect="b", output_type="np")
    assert not np.array_equal(a, b)
    # No defect named: drawn with the image's generator, so still reproducible.
    drawn = [_paint(tiny_pipeline, image, mask, defect=None, output_type="np") for _ in range(2)]
    assert np.array_equal(drawn[0], drawn[1])
    per_image = tiny_pipeline(
        [image, image], mask, defect=["a", "b"], generator=[seeded(0), seeded(0)], output_type="np"
    ).images
    assert np.array_equal(per_image[0], a) and np.array_equal(per_image[1], b)


def test_unknown_defect_lists_the_known_ones(tiny_pipeline, rng):
    image = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"'scratch'.*a, b"):
        _paint(tiny_pipeline, image, box_mask(8, 8), defect="scratch")


@pytest.mark.parametrize(
    "mask", [np.zeros((8, 8), bool), np.full((8, 8), 127, np.uint8), np.zeros((4, 4), np.float32)]
)
def test_empty_mask_raises(tiny_pipeline, rng, mask):
    with pytest.raises(ValueError, match="mask is empty"):
        _paint(tiny_pipeline, rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), mask)


def test_argument_validation(tiny_pipeline, rng):
    images = [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(3)]
    mask = box_mask(8, 8)
    with pytest.raises(ValueError, match="masks"):
        tiny_pipeline(images, [mask, mask])
    with pytest.raises(ValueError, match="defects"):
        tiny_pipeline(images, mask, defect=["a", "b"])
    with pytest.raises(ValueError, match="generators"):
        tiny_pipeline(images, mask, generator=[seeded(0), seeded(1)])
    with pytest.raises(ValueError, match="background"):
        tiny_pipeline(images[0], mask, background="blurred")
    with pytest.raises(ValueError, match="empty list"):
        tiny_pipeline([], mask)


@pytest.mark.parametrize("background,region_constraint", [("noised", True), ("clean", False), ("noised", False)])
def test_ablations_keep_the_final_background_exact(tiny_pipeline, rng, background, region_constraint):
    image = rng.integers(0, 256, (27, 31, 3), dtype=np.uint8)
    mask = box_mask(27, 31)
    out = _paint(
        tiny_pipeline, image, mask, background=background, region_constraint=region_constraint, output_type="np"
    )
    _assert_background_exact(image, out, mask)
    _assert_changed_inside(image, out, mask)
    default = _paint(tiny_pipeline, image, mask, output_type="np")
    assert not np.array_equal(out, default)  # the option does something


@pytest.mark.parametrize("steps", list(range(1, T + 1)))
def test_num_inference_steps(tiny_pipeline, rng, steps):
    image = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
    mask = box_mask(16, 20)
    out = _paint(tiny_pipeline, image, mask, num_inference_steps=steps, output_type="np")
    _assert_background_exact(image, out, mask)
    _assert_changed_inside(image, out, mask)
    assert np.array_equal(out, _paint(tiny_pipeline, image, mask, num_inference_steps=steps, output_type="np"))
    if steps < T:
        assert not np.array_equal(out, _paint(tiny_pipeline, image, mask, output_type="np"))


@pytest.mark.parametrize("steps", [0, T + 1, 100])
def test_too_many_or_no_steps_raise(tiny_pipeline, rng, steps):
    with pytest.raises(ValueError, match="num_inference_steps"):
        _paint(
            tiny_pipeline, rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), box_mask(8, 8), num_inference_steps=steps
        )


def test_resolution_argument(tiny_pipeline, rng):
    image = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    mask = box_mask(64, 80)
    low = _paint(tiny_pipeline, image, mask, output_type="np")  # the model's 32 px
    high = _paint(tiny_pipeline, image, mask, resolution=80, output_type="np")
    _assert_background_exact(image, high, mask)
    assert not np.array_equal(low, high)


def test_max_crop_size_paints_large_masks_at_a_lower_scale(tiny_pipeline, rng, tmp_path):
    """A mask too large for ``max_crop_size`` is painted whole on a smaller crop, the background still exact; a
    small mask keeps its crop; the bound travels with save_pretrained / from_pretrained."""
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    large = np.zeros((64, 64), dtype=bool)
    large[4:60, 8:56] = True
    free = tiny_pipeline(image, large, defect="a", generator=seeded(0), resolution=64, output_type="np")
    bounded = tiny_pipeline(image, large, defect="a", generator=seeded(0), resolution=64, max_crop_size=32,
                            output_type="np")
    assert max(free.crops[0].sample.shape[-2:]) == 64 and max(bounded.crops[0].sample.shape[-2:]) <= 32
    _assert_background_exact(image, bounded.images[0], large)
    _assert_changed_inside(image, bounded.images[0], large)
    small = box_mask(64, 64, size=0.1)
    assert tiny_pipeline.working_crop(image, small, 64, max_crop_size=32).box == tiny_pipeline.working_crop(
        image, small, 64).box
    tiny_pipeline.register_to_config(max_crop_size=32)
    tiny_pipeline.save_pretrained(tmp_path)
    loaded = type(tiny_pipeline).from_pretrained(tmp_path)
    assert loaded.config.max_crop_size == 32
    assert loaded.working_crop(image, large, 64).box == tiny_pipeline.working_crop(image, large, 64).box
    assert loaded.working_crop(image, large, 64, max_crop_size=0).box.work_height == 64  # 0: no bound
    with pytest.raises(ValueError, match="max_crop_size"):
        tiny_pipeline(image, large, defect="a", max_crop_size=-1)


def test_float64_pipeline(rng):
    pipe = make_pipeline().to(dtype=torch.float64)
    image = rng.random((14, 18, 3))
    mask = box_mask(14, 18)
    out = _paint(pipe, image, mask, output_type="np")
    assert pipe.denoiser.dtype == torch.float64
    _assert_background_exact(image, out, mask)
    _assert_changed_inside(image, out, mask)


def test_expected_slice(tiny_pipeline):
    """A regression anchor for the whole chain (weights from a fixed seed, noise order, steps, paste):
    values inside the mask computed once with this code and hard-coded."""
    y, x = np.mgrid[0:16, 0:16]
    image = np.stack([y / 15, x / 15, (x + y) / 30], axis=-1).astype(np.float32)  # a smooth ramp
    mask = np.zeros((16, 16), dtype=bool)
    mask[5:9, 6:10] = True
    out = _paint(tiny_pipeline, image, mask, seed=0, defect="b", output_type="np")
    _assert_background_exact(image, out, mask)
    actual = out[mask][:6].ravel()
    expected = np.array(EXPECTED_SLICE, dtype=np.float32)
    np.testing.assert_allclose(actual, expected, atol=1e-4)


# Computed once (torch 2.13 CPU, diffusers 0.42): the first six painted RGB pixels, row-major inside the mask.
EXPECTED_SLICE = [
    0.256875,
    0.305110,
    0.428742,
    0.213009,
    0.420545,
    0.226651,
    0.565953,
    0.339808,
    0.353858,
    0.376947,
    0.523957,
    0.443468,
    0.599756,
    0.330990,
    0.443522,
    0.341118,
    0.232745,
    0.203853,
]


def test_grayscale_photo_stored_as_rgb_gets_a_gray_defect(tiny_pipeline):
    gray = np.random.default_rng(0).integers(0, 256, (40, 56), dtype=np.uint8)
    rgb = PIL.Image.fromarray(np.stack([gray] * 3, axis=2))
    mask = np.zeros((40, 56), bool)
    mask[10:30, 20:40] = True
    result = np.asarray(tiny_pipeline(rgb, mask, defect="a", generator=torch.Generator().manual_seed(0)).images[0])
    assert (result[..., 0] == result[..., 1]).all() and (result[..., 1] == result[..., 2]).all()
    assert not np.array_equal(result[mask], np.asarray(rgb)[mask])


def test_colour_photo_keeps_colour_defects(tiny_pipeline):
    colour = np.random.default_rng(1).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    mask = np.zeros((40, 56), bool)
    mask[10:30, 20:40] = True
    result = tiny_pipeline(colour, mask, defect="a", generator=torch.Generator().manual_seed(0), output_type="np")
    inside = result.images[0][mask].astype(int)
    assert (inside[:, 0] != inside[:, 1]).any()
