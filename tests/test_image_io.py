"""Decoding images and masks of every supported kind, and writing them back unchanged."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch

from sard import image_io

# --- masks ----------------------------------------------------------------------------------------------------


def test_decode_mask_binarises_at_one_half():
    row = np.array([[0, 1, 126, 127, 128, 129, 255]], dtype=np.uint8)
    expected = np.array([[0, 0, 0, 0, 1, 1, 1]], dtype=bool)
    assert np.array_equal(image_io.decode_mask(row, (1, 7)), expected)
    assert np.array_equal(image_io.decode_mask(PIL.Image.fromarray(row, mode="L"), (1, 7)), expected)
    floats = np.array([[0.0, 0.4999, 0.5, 1.0]], dtype=np.float32)
    assert image_io.decode_mask(floats, (1, 4)).tolist() == [[False, False, True, True]]
    sixteen = np.array([[32767, 32768]], dtype=np.uint16)
    assert image_io.decode_mask(sixteen, (1, 2)).tolist() == [[False, True]]
    assert image_io.decode_mask(PIL.Image.fromarray(sixteen), (1, 2)).tolist() == [[False, True]]


def test_decode_mask_bool_tensor_rgb_and_white_is_synthesise():
    mask = np.zeros((4, 5), dtype=bool)
    mask[1:3, 2:4] = True
    assert np.array_equal(image_io.decode_mask(mask, (4, 5)), mask)
    assert np.array_equal(image_io.decode_mask(torch.from_numpy(mask), (4, 5)), mask)
    assert np.array_equal(image_io.decode_mask(torch.from_numpy(mask).float()[None], (4, 5)), mask)
    rgb = np.repeat(mask[..., None].astype(np.uint8) * 255, 3, axis=2)
    assert np.array_equal(image_io.decode_mask(PIL.Image.fromarray(rgb), (4, 5)), mask)
    assert np.array_equal(image_io.decode_mask(PIL.Image.fromarray(mask), (4, 5)), mask)  # mode "1"
    result = image_io.decode_mask(mask, (4, 5))
    assert result.dtype == np.bool_ and result.shape == (4, 5)


def test_decode_mask_alpha_is_the_mask_when_not_opaque():
    alpha = np.zeros((4, 6), dtype=np.uint8)
    alpha[1:3, 1:4] = 255
    black_paint = np.dstack([np.zeros((4, 6, 3), np.uint8), alpha])  # luminance is 0 everywhere
    assert np.array_equal(image_io.decode_mask(PIL.Image.fromarray(black_paint, "RGBA"), (4, 6)), alpha > 0)
    la = np.dstack([np.zeros((4, 6), np.uint8), alpha])
    assert np.array_equal(image_io.decode_mask(PIL.Image.fromarray(la, "LA"), (4, 6)), alpha > 0)
    # Fully opaque: the luminance is the mask.
    opaque = np.dstack(
        [np.repeat((alpha > 0)[..., None] * 255, 3, 2).astype(np.uint8), np.full((4, 6), 255, np.uint8)]
    )
    opaque[0, 0, :3] = 255
    expected = alpha > 0
    expected[0, 0] = True
    assert np.array_equal(image_io.decode_mask(PIL.Image.fromarray(opaque, "RGBA"), (4, 6)), expected)


def test_decode_mask_resizes_nearest():
    small = np.zeros((3, 4), dtype=bool)
    small[1, 2] = True
    big = image_io.decode_mask(small, (6, 8))
    assert np.array_equal(big, np.repeat(np.repeat(small, 2, 0), 2, 1))


# --- validation -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_images_raise(bad):
    array = np.full((3, 4, 3), 0.5, dtype=np.float32)
    array[1, 2, 0] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        image_io.decode_image(array)
    with pytest.raises(ValueError, match="NaN or infinite"):
        image_io.decode_image(torch.from_numpy(array).permute(2, 0, 1))
    with pytest.raises(ValueError, match="NaN or infinite"):
        image_io.decode_image(PIL.Image.fromarray(array[..., 0], mode="F"))


def test_oversized_images_raise(monkeypatch, tmp_path):
    monkeypatch.setattr(image_io, "MAX_IMAGE_PIXELS", 100)
    image_io.decode_image(np.zeros((10, 10), np.uint8))  # at the limit: accepted
    with pytest.raises(ValueError, match="megapixels"):
        image_io.decode_image(np.zeros((10, 11), np.uint8))
    with pytest.raises(ValueError, match="megapixels"):
        image_io.decode_image(PIL.Image.new("RGB", (11, 10)))
    path = tmp_path / "big.png"
    PIL.Image.new("L", (20, 20)).save(path)
    with pytest.raises(ValueError):
        image_io.decode_image(path)


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((4, 4), np.int32),
        np.zeros((4, 4, 3), np.int64),
        np.zeros((4, 4), np.int8),
        np.zeros((4, 4), np.uint32),
        np.zeros((4, 4), np.complex64),
        torch.zeros(3, 4, 4, dtype=torch.int64),
    ],
    ids=["int32", "int64", "int8", "uint32", "complex", "torch-int64"],
)
def test_unsupported_dtypes_raise(image):
    with pytest.raises(ValueError, match="Unsupported image dtype"):
        image_io.decode_image(image)


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((4, 4, 5), np.uint8),
        np.zeros((2, 4, 4, 3), np.uint8),
        np.zeros((0, 4), np.uint8),
        [[0, 1]],
        "no/such/file.png",
    ],
    ids=["5-channels", "4d", "empty", "list", "missing-path"],
)
def test_bad_inputs_raise_value_error(image):
    with pytest.raises(ValueError):
        image_io.decode_image(image)


def test_unreadable_file_raises(tmp_path):
    path = tmp_path / "not-an-image.png"
    path.write_bytes(b"not a png")
    with pytest.raises(ValueError, match="Could not read"):
        image_io.decode_image(path)


# --- round trips ----------------------------------------------------------------------------------------------


def _pil_images(rng):
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    return {
        "L": PIL.Image.fromarray(rgb[..., 0], "L"),
        "LA": PIL.Image.fromarray(rgb[..., :2], "LA"),
        "RGB": PIL.Image.fromarray(rgb, "RGB"),
        "RGBA": PIL.Image.fromarray(np.dstack([rgb, rgb[..., 0]]), "RGBA"),
        "I;16": PIL.Image.fromarray(rng.integers(0, 65536, (5, 7), dtype=np.uint16)),
        "I": PIL.Image.fromarray(rng.integers(0, 65536, (5, 7)).astype(np.int32), "I"),
        "F": PIL.Image.fromarray(rng.random((5, 7), dtype=np.float32), "F"),
    }


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "I;16", "I", "F"])
def test_pil_round_trip_is_exact(mode, rng, tmp_path):
    image = _pil_images(rng)[mode]
    assert image.mode == mode
    decoded = image_io.decode_image(image)
    out = image_io.encode_image(decoded.pixels, decoded, "pil")
    assert out.mode == mode and out.size == image.size
    assert np.array_equal(np.asarray(out), np.asarray(image))
    if mode in ("L", "RGB", "RGBA", "I;16"):  # through a file as well
        path = tmp_path / "image.png"
        image.save(path)
        from_path = image_io.decode_image(str(path))
        assert np.array_equal(from_path.pixels, decoded.pixels)


def test_palette_and_bilevel_images(rng):
    palette = PIL.Image.fromarray(rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)).convert("P")
    decoded = image_io.decode_image(palette)
    assert decoded.pil_mode == "RGB" and np.array_equal(decoded.pixels, np.asarray(palette.convert("RGB")))
    palette.info["transparency"] = 0
    assert image_io.decode_image(palette).pil_mode == "RGBA"
    bilevel = PIL.Image.fromarray(rng.random((5, 7)) > 0.5)
    decoded = image_io.decode_image(bilevel)
    assert decoded.pil_mode == "L" and set(np.unique(decoded.pixels)) <= {0, 255}


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float16, np.float32, np.float64])
@pytest.mark.parametrize("channels", [None, 1, 3, 4])
def test_array_and_tensor_round_trip_is_exact(dtype, channels, rng):
    shape = (5, 7) if channels is None else (5, 7, channels)
    if np.issubdtype(dtype, np.integer):
        array = rng.integers(0, np.iinfo(dtype).max + 1, shape).astype(dtype)
    else:
        array = rng.random(shape).astype(dtype)
    decoded = image_io.decode_image(array)
    out = image_io.encode_image(decoded.pixels, decoded, "np")
    assert out.dtype == array.dtype and np.array_equal(out, array)
    tensor = torch.from_numpy(array) if channels is None else torch.from_numpy(array).permute(2, 0, 1)
    decoded = image_io.decode_image(tensor)
    out = image_io.encode_image(decoded.pixels, decoded, "pt")
    assert out.dtype == tensor.dtype and torch.equal(out, tensor)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.uint8])
def test_tensor_dtypes_numpy_lacks_come_back(dtype, rng):
    tensor = torch.from_numpy(rng.random((3, 5, 7))).to(dtype)
    decoded = image_io.decode_image(tensor)
    out = image_io.encode_image(decoded.pixels, decoded, "pt")
    assert out.dtype == dtype and torch.equal(out, tensor)


def test_unit_rgb_round_trip_and_luma():
    values = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)
    rgb = np.repeat(values, 3, axis=2)
    decoded = image_io.decode_image(rgb)
    unit = image_io.to_unit_rgb(decoded.pixels, decoded)
    assert unit.dtype == np.float32 and unit.min() == 0.0 and unit.max() == 1.0
    assert np.array_equal(image_io.from_unit_rgb(unit, decoded), rgb)
    sixteen = np.arange(0, 65536, 7, dtype=np.uint16)[None, :, None]
    decoded = image_io.decode_image(sixteen)
    assert np.array_equal(image_io.from_unit_rgb(image_io.to_unit_rgb(sixteen, decoded), decoded), sixteen)
    # Grayscale output from colour: ITU-R 601 luma, like PIL's convert("L").
    gray = image_io.decode_image(np.zeros((1, 1), np.uint8))
    out = image_io.from_unit_rgb(np.array([[[1.0, 0.0, 0.0]]], np.float32), gray)
    assert out.shape == (1, 1, 1) and out[0, 0, 0] == 76  # round(0.299 * 255)
    assert image_io.from_unit_rgb(
        np.array([[[2.0, -1.0, 0.5]]], np.float32), image_io.decode_image(np.zeros((1, 1, 3), np.uint8))
    ).tolist() == [[[255, 0, 128]]]


def test_encode_image_other_output_types(rng):
    array = rng.integers(0, 65536, (5, 7, 3)).astype(np.uint16)
    decoded = image_io.decode_image(array)
    pil = image_io.encode_image(decoded.pixels, decoded, "pil")
    assert pil.mode == "RGB" and np.array_equal(np.asarray(pil), np.rint(array / 257).astype(np.uint8))
    with pytest.raises(ValueError, match="output_type"):
        image_io.encode_image(decoded.pixels, decoded, "latent")
