"""Property-based tests of the public entry points under any input: each call gives a result or a short
``ValueError`` that says what to do; never another exception, a hang or memory beyond the documented limit.

Covered: ``SARDPipeline.__call__`` (single images and batches), ``image_io.decode_image``, ``decode_mask``,
``mask_from_editor`` and the demo's helpers (``sard/demo/``). Hypothesis draws images of every PIL mode,
numpy and torch dtype and shape, from 0 x 0 to past the size limit (lowered for the test, so nothing big is
allocated), with NaN, infinite and out-of-range values; masks that are empty, full, one pixel, non-binary, of
another size or not finite; every call option, valid or not; damaged uploads. Half of the examples are valid
(they must give a correct result), the others break one part. The real limit
(:data:`sard.image_io.MAX_IMAGE_PIXELS`) is tested with zero-copy views and file headers. Examples are
derandomised (the same in every run); ``SARD_PROPERTY_EXAMPLES=500 pytest tests/test_properties.py`` searches
longer with fresh random examples, ``--hypothesis-show-statistics`` counts the outcomes.
"""

from __future__ import annotations

import io
import os
import re
import struct
import tempfile
import tracemalloc
import warnings
import zlib
from contextlib import nullcontext
from unittest import mock

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import DEFECT_TYPES, T, make_pipeline
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from sard import image_io
from sard.demo import display, inputs
from sard.demo.editor import editor_mask, mask_from_editor

EXAMPLES = int(os.environ.get("SARD_PROPERTY_EXAMPLES", "40"))
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=EXAMPLES <= 100,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],  # no slow "explain"
)
MAX_SIDE = 24  # drawn images are at most MAX_SIDE x MAX_SIDE; the size limit is lowered to reach past it
MAX_MESSAGE = 300

PIL_MODES = ["1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV",
             "I", "I;16", "I;16B", "I;16L", "F"]  # fmt: skip
VALID_NP_DTYPES = [np.uint8, np.uint16, np.float16, np.float32, np.float64]
OTHER_NP_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.bool_, np.complex64, np.dtype(">u2"), np.dtype(">f4")]
VALID_TORCH_DTYPES = [torch.uint8, torch.float16, torch.bfloat16, torch.float32, torch.float64]
OTHER_TORCH_DTYPES = [torch.int16, torch.int64, torch.bool]
SPECIAL = [np.nan, np.inf, -np.inf]

PIPE = make_pipeline()  # built once: Hypothesis runs many examples per test (function fixtures would be rebuilt)


def assert_clear(error: ValueError) -> None:
    """A short one-line message, not an internal error passed through."""
    message = str(error)
    assert 10 < len(message) <= MAX_MESSAGE and "\n" not in message, message
    assert "Traceback" not in message and "out of bounds" not in message, message
    if currently_in_test_context():  # counted in --hypothesis-show-statistics
        event("ValueError: " + re.sub(r"[\d.,]+|'[^']*'|\([^)]*\)", "#", message)[:60])


def _random_values(rng: np.random.Generator, shape: tuple, dtype, special) -> np.ndarray:
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        values = rng.random(shape) < 0.5
    elif np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        values = rng.integers(info.min, int(info.max) + 1, shape, dtype=np.int64 if info.max < 2**62 else dtype)
    elif rng.random() < 0.8:
        values = rng.random(shape)  # the documented range
    else:
        values = rng.normal(0.5, 2.0, shape)  # far outside it: used clipped, and given back unchanged
    with np.errstate(over="ignore"):  # 1e30 as float16 is inf: a NaN/inf case too
        values = values.astype(dtype)
        if special is not None and values.size and np.issubdtype(dtype, np.inexact):
            values.flat[rng.integers(values.size)] = special
    return values


def rarely(draw, n: int) -> bool:
    """True about one time in ``n``."""
    return draw(st.sampled_from([False] * (n - 1) + [True]))


def pick(draw, good: list, bad: list):
    """One of ``good``, or now and then one of ``bad`` (pass ``[]`` for valid input only)."""
    return draw(st.sampled_from(bad if bad and rarely(draw, 3) else good))


def broken(draw, parts: list[str]) -> str:
    """Which part of an example's input may be invalid: none in half of the examples (they must give a result
    unless the data itself is unlucky, e.g. an empty drawn mask), one of ``parts`` in the others."""
    return draw(st.sampled_from(["nothing"] * len(parts) + parts))


@st.composite
def sides(draw, low: int = 0) -> tuple[int, int]:
    def side():
        return 0 if not low and rarely(draw, 10) else draw(st.integers(1, MAX_SIDE))

    return side(), side()


def _seed(draw) -> np.random.Generator:
    return np.random.default_rng(draw(st.integers(0, 2**32 - 1)))


@st.composite
def pil_images(draw, size=None, bad: bool = True) -> PIL.Image.Image:
    height, width = size or draw(sides(low=0 if bad else 1))
    if bad and rarely(draw, 10):  # opened lazily from a damaged file: the pixels fail to load
        buffer = io.BytesIO()
        PIL.Image.fromarray(_seed(draw).integers(0, 256, (16, 16, 3), np.uint8)).save(buffer, "PNG")
        return PIL.Image.open(io.BytesIO(buffer.getvalue()[: -draw(st.integers(13, 200))]))  # cut into IDAT
    mode = draw(st.sampled_from(PIL_MODES))
    rng = _seed(draw)
    if mode == "F":
        special = pick(draw, [None], [np.nan, np.inf, -np.inf]) if bad else None
        return PIL.Image.fromarray(_random_values(rng, (height, width), np.float32, special), "F")
    image = PIL.Image.new(mode, (width, height))
    raw = rng.integers(0, 256, len(image.tobytes()), np.uint8)
    if raw.size:
        image.frombytes(raw.tobytes())  # any bit pattern
    if mode == "P" and draw(st.booleans()):
        image.info["transparency"] = 0
    return image


@st.composite
def arrays(draw, size=None, bad: bool = True) -> np.ndarray:
    height, width = size or draw(sides(low=0 if bad else 1))
    dtype = pick(draw, VALID_NP_DTYPES, OTHER_NP_DTYPES if bad else [])
    layout = pick(draw, ["HW", "HWC"], ["odd"] if bad else [])
    if layout == "HW":
        shape = (height, width)
    elif layout == "HWC":
        shape = (height, width, draw(st.integers(1, 4)))
    else:
        shape = draw(st.sampled_from([(), (width,), (height, width, 0), (height, width, 5), (1, height, width, 3)]))
    special = pick(draw, [None, -1.0, 2.0, 1e30], SPECIAL if bad else [])
    values = _random_values(_seed(draw), shape, dtype, special)
    if draw(st.booleans()) and values.ndim >= 2:
        values = np.asfortranarray(values)  # another memory layout, the same image
    return values


@st.composite
def tensors(draw, size=None, bad: bool = True) -> torch.Tensor:
    array = draw(arrays(size, bad))
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("="))  # torch has no big-endian tensors
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if tensor.ndim == 3:
        tensor = tensor.permute(2, 0, 1)  # (C, H, W)
    dtype = pick(draw, [None, *VALID_TORCH_DTYPES], OTHER_TORCH_DTYPES if bad else [])
    return tensor if dtype is None or tensor.is_complex() else tensor.to(dtype)


def images(size=None, bad: bool = True):
    """Images of every kind the pipeline accepts; with ``bad``, now and then one it must refuse."""
    return st.one_of(pil_images(size, bad), arrays(size, bad), tensors(size, bad))


@st.composite
def masks(draw, size: tuple[int, int], bad: bool = True):
    """Masks for an image of ``size``: full, one pixel, boxes, non-binary, of another size, in every type the
    pipeline accepts; with ``bad``, now and then empty, not finite or not a mask at all."""
    if bad and rarely(draw, 5):
        return draw(images())  # anything at all
    height, width = draw(sides(low=1)) if rarely(draw, 4) else (max(1, size[0]), max(1, size[1]))
    content = pick(draw, ["full", "pixel", "box", "levels"], ["empty", "nan"] if bad else [])
    rng = _seed(draw)
    values = np.zeros((height, width), np.float32)
    if content == "full":
        values[:] = 1.0
    elif content in ("pixel", "nan"):
        values.flat[rng.integers(values.size)] = np.nan if content == "nan" else 1.0
    elif content == "box":
        top, left = rng.integers(height), rng.integers(width)
        values[top : top + rng.integers(1, height + 1), left : left + rng.integers(1, width + 1)] = 1.0
    elif content == "levels":
        values = rng.random((height, width)).astype(np.float32)  # non-binary: binarised at 0.5
    form = draw(st.sampled_from(["bool", "uint8", "float", "L", "1", "RGBA", "tensor", "tensor_bool"]))
    if content == "nan":
        form = draw(st.sampled_from(["float", "tensor"]))
    if form == "bool":
        return values >= 0.5
    if form == "uint8":
        return np.rint(values * 255).astype(np.uint8)
    if form == "float":
        return values
    if form in ("L", "1"):
        return PIL.Image.fromarray(np.rint(values * 255).astype(np.uint8)).convert(form)
    if form == "RGBA":  # a painted layer: the alpha is the mask
        alpha = np.rint(values * 255).astype(np.uint8)
        return PIL.Image.fromarray(np.dstack([np.zeros((height, width, 3), np.uint8), alpha]), "RGBA")
    if form == "tensor":
        return torch.from_numpy(values)[None]
    return torch.from_numpy(values >= 0.5)


@st.composite
def limits(draw):
    """The pixel limit: the real one, or one low enough that drawn images go past it."""
    return draw(st.sampled_from([None, None, None, None, None, 60, 200]))


def _limited(limit):
    return nullcontext() if limit is None else mock.patch.object(image_io, "MAX_IMAGE_PIXELS", limit)


def _size_of(image) -> tuple[int, int] | None:
    """(H, W) as the documentation describes the input, or None for inputs that are not images."""
    if isinstance(image, PIL.Image.Image):
        return image.height, image.width
    if isinstance(image, (np.ndarray, torch.Tensor)) and image.ndim in (2, 3):
        return tuple(image.shape[-2:]) if isinstance(image, torch.Tensor) and image.ndim == 3 else image.shape[:2]
    return None


# --- decoding -------------------------------------------------------------------------------------------------


@PROPERTY
@given(image=images(), limit=limits())
def test_decode_image_gives_an_image_or_a_clear_error(image, limit):
    with _limited(limit):
        try:
            decoded = image_io.decode_image(image)
        except ValueError as error:
            assert_clear(error)
            return
    event("result")
    height, width = decoded.size
    assert (height, width) == _size_of(image) or not isinstance(image, (np.ndarray, torch.Tensor))
    assert 1 <= height * width <= (limit or image_io.MAX_IMAGE_PIXELS)  # past the limit: refused
    assert decoded.pixels.ndim == 3 and decoded.color_channels in (1, 3)
    assert decoded.pixels.shape[2] in (decoded.color_channels, decoded.color_channels + 1)
    if isinstance(image, (np.ndarray, torch.Tensor)):
        # Arrays and tensors come back exactly as they were.
        back = image_io.encode_image(decoded.pixels, decoded, "np" if isinstance(image, np.ndarray) else "pt")
        if isinstance(image, np.ndarray):
            assert back.dtype == image.dtype and np.array_equal(back, image, equal_nan=True)
        else:
            assert back.dtype == image.dtype and back.shape == image.shape
            assert torch.equal(back.float().nan_to_num(), image.float().nan_to_num())


@PROPERTY
@given(data=st.data(), size=sides(low=1), limit=limits())
def test_decode_mask_gives_a_boolean_mask_of_the_image_size_or_a_clear_error(data, size, limit):
    mask = data.draw(masks(size))
    with _limited(limit):
        try:
            binary = image_io.decode_mask(mask, size)
        except ValueError as error:
            assert_clear(error)
            return
    event("result")
    assert binary.dtype == np.bool_ and binary.shape == size


# --- the pipeline ---------------------------------------------------------------------------------------------


@st.composite
def call_options(draw, bad: bool = True) -> dict:
    seed = draw(st.integers(0, 2**31))

    def option(good, wrong):
        return pick(draw, good, wrong if bad else [])

    return {
        "defect": option([None, *DEFECT_TYPES], ["no-such-defect", 0]),
        "num_inference_steps": option([None, 1, T - 1, T], [0, -1, T + 1, 2.5, "2"]),
        "output_type": option(["pil", "np", "pt"], ["latent", None]),
        "resolution": option([None, 1, 3, 8, 17, 64], [0, -4, 32.0, "64"]),
        "background": option(["clean", "noised"], ["inpaint", None]),
        "region_constraint": draw(st.booleans()),
        "generator": option(
            [None, torch.Generator().manual_seed(seed), [torch.Generator().manual_seed(seed)]], [seed, "1"]
        ),
    }


def _pixels(image) -> np.ndarray:
    """`(H, W, C)` pixels of a result as it came back (PIL images, `(H, W[, C])` arrays, `(C, H, W)` tensors)."""
    if isinstance(image, PIL.Image.Image):
        return image_io.decode_image(image).pixels
    if isinstance(image, torch.Tensor):
        image = (image.float() if image.dtype == torch.bfloat16 else image).numpy()
        image = image if image.ndim == 2 else image.transpose(1, 2, 0)
    return image[..., None] if image.ndim == 2 else image


def _outside_unchanged(image, mask, result, output_type) -> None:
    """Outside the mask the result equals the input as ``output_type`` gives it back, bit for bit."""
    decoded = image_io.decode_image(image)
    binary = image_io.decode_mask(mask, decoded.size)
    expected = _pixels(image_io.encode_image(decoded.pixels, decoded, output_type))
    got = _pixels(result)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    assert np.array_equal(got[~binary], expected[~binary], equal_nan=True)
    if np.issubdtype(got.dtype, np.floating):
        assert np.isfinite(got[binary]).all()  # never NaN where the defect was painted


@settings(PROPERTY, max_examples=2 * EXAMPLES)
@given(data=st.data())
def test_pipeline_gives_a_result_or_a_clear_error(data):
    bad = broken(data.draw, ["image", "mask", "options", "size"])
    image = data.draw(images(bad=bad == "image"))
    mask = data.draw(masks(_size_of(image) or (4, 4), bad=bad == "mask"))
    options = data.draw(call_options(bad=bad == "options"))
    limit = data.draw(limits()) if bad == "size" else None
    with _limited(limit):
        try:
            result = PIPE(image, mask, **options).images
        except ValueError as error:
            assert_clear(error)
            return
        event("result")
        assert len(result) == 1
        _outside_unchanged(image, mask, result[0], options["output_type"])


@PROPERTY
@given(data=st.data(), n_images=st.integers(1, 3), per_image=st.booleans())
def test_batches_give_one_result_per_image_or_a_clear_error(data, n_images, per_image):
    bad = broken(data.draw, ["image", "mask", "count"])
    n_masks = data.draw(st.sampled_from([1, n_images] if bad != "count" else [1, 2, 3]))  # one for all, or each
    batch = [data.draw(images(size=data.draw(sides(low=1)), bad=bad == "image")) for _ in range(n_images)]
    sizes = [_size_of(batch[i % n_images]) or (4, 4) for i in range(n_masks)]
    mask_list = [data.draw(masks(size, bad=bad == "mask")) for size in sizes]
    generator = [torch.Generator().manual_seed(i) for i in range(n_images)] if per_image else None
    try:
        result = PIPE(batch, mask_list if n_masks > 1 else mask_list[0], generator=generator, output_type="np")
    except ValueError as error:
        assert_clear(error)
        return
    event("result")
    assert len(result.images) == n_images
    for image, i in zip(batch, range(n_images)):
        _outside_unchanged(image, mask_list[i if n_masks > 1 else 0], result.images[i], "np")


def test_every_mask_case_of_the_issue_on_one_image(rng):
    """Empty, full, one pixel, non-binary, another size, NaN and inf, on a fixed image: the expected outcome each."""
    image = rng.integers(0, 256, (20, 28, 3), dtype=np.uint8)
    one_pixel = np.zeros((20, 28), bool)
    one_pixel[7, 9] = True
    results = {}
    for name, mask in {
        "full": np.ones((20, 28), bool),
        "one pixel": one_pixel,
        "non-binary": rng.random((20, 28)).astype(np.float32),
        "another size": np.kron(one_pixel, np.ones((3, 3), bool)),
        "1 x 1 image": None,
    }.items():
        target = image[:1, :1] if mask is None else image
        mask = np.ones((1, 1), bool) if mask is None else mask
        out = PIPE(target, mask, generator=torch.Generator().manual_seed(0), output_type="np").images[0]
        _outside_unchanged(target, mask, out, "np")
        results[name] = out
    assert not np.array_equal(results["full"], image)  # a full mask repaints everything
    changed = np.argwhere((results["one pixel"] != image).any(axis=2))
    assert set(map(tuple, changed)) <= {(7, 9)}
    for bad, words in [(np.zeros((20, 28), bool), "mask is empty"), (np.full((20, 28), np.nan), "NaN")]:
        with pytest.raises(ValueError, match=words) as error:
            PIPE(image, bad)
        assert_clear(error.value)
    with pytest.raises(ValueError, match="NaN or infinite") as error:
        PIPE(np.full((20, 28), np.inf, np.float32), one_pixel)
    assert_clear(error.value)


# --- the real size limit, without allocating it ---------------------------------------------------------------


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` pixels but holds almost no data (how image bombs look)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def _over_limit_inputs(tmp_path):
    side = int(image_io.MAX_IMAGE_PIXELS**0.5) + 2
    png = tmp_path / "bomb.png"
    png.write_bytes(_png_header(side, side))
    return {
        "numpy view": np.broadcast_to(np.zeros((1, 1), np.uint8), (side, side)),  # no memory behind it
        "numpy view, 1 row": np.broadcast_to(np.zeros((1, 1, 3), np.float32), (1, image_io.MAX_IMAGE_PIXELS + 1, 3)),
        "tensor view": torch.zeros(1, 1, 1).expand(3, side, side),
        "PNG file": png,
        "PNG file object": PIL.Image.open(io.BytesIO(png.read_bytes())),  # lazy: pixels are not read
    }


@pytest.mark.parametrize("entry", ["image", "mask", "editor background", "editor layer"])
def test_past_the_real_size_limit_is_refused_before_allocating(tmp_path, entry):
    small = np.zeros((8, 8), np.uint8)
    point = np.zeros((8, 8), bool)
    point[3, 3] = True
    calls = {
        "image": lambda big: PIPE(big, point),
        "mask": lambda big: PIPE(small, big),
        "editor background": lambda big: mask_from_editor({"background": big, "layers": []}),
        "editor layer": lambda big: mask_from_editor({"background": small, "layers": [big]}),
    }
    for name, big in _over_limit_inputs(tmp_path).items():
        tracemalloc.start()
        try:
            with pytest.raises(ValueError) as error:
                calls[entry](big)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert_clear(error.value)
        words = ("megapixels", "must be an image array (H, W[, C])")  # layers are (H, W, C), not tensors
        assert any(w in str(error.value) for w in words), (name, error.value)
        # Refused from the header / shape alone: some kB, where decoding would take 50 MB to GBs.
        assert peak < 1_000_000, f"{name}: {peak / 1e6:.1f} MB traced before the error"


# --- the editor helper ----------------------------------------------------------------------------------------


@st.composite
def layers(draw, size: tuple[int, int], bad: bool = True):
    if rarely(draw, 6):
        return None
    height, width = size if draw(st.booleans()) else draw(sides(low=1))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    form = pick(draw, ["RGBA", "pil", "np4", "np3", "np2", "float"], ["odd"] if bad else [])
    alpha = (rng.random((height, width)) < draw(st.sampled_from([0.0, 0.1, 1.0]))).astype(np.uint8) * 255
    rgba = np.dstack([rng.integers(0, 256, (height, width, 3), dtype=np.uint8), alpha])
    if form == "RGBA":
        return PIL.Image.fromarray(rgba, "RGBA")
    if form == "pil":
        return draw(pil_images((height, width)))
    if form == "np4":
        return rgba
    if form == "np3":
        return rgba[..., :3]
    if form == "np2":
        return alpha
    if form == "float":
        return rgba.astype(np.float32) / 255
    return draw(st.sampled_from([np.zeros(()), np.zeros((width,)), np.zeros((1, height, width, 4)), "no-such.png"]))


@PROPERTY
@given(data=st.data())
def test_mask_from_editor_gives_a_mask_of_the_background_size_or_a_clear_error(data):
    bad = broken(data.draw, ["background", "layers", "value", "size"])
    limit = data.draw(limits()) if bad == "size" else None
    background = data.draw(images(bad=bad == "background"))
    size = _size_of(background) or (4, 4)
    drawn = data.draw(st.lists(layers(size, bad=bad == "layers"), max_size=3))
    wrong = ["None", "{}", "no background", "no layers", "layers None", "a list"]
    form = pick(data.draw, ["layers"], wrong if bad == "value" else [])
    value = {
        "layers": {"background": background, "layers": drawn, "composite": background},
        "None": None,
        "{}": {},
        "no background": {"background": None, "layers": drawn},
        "no layers": {"background": background},
        "layers None": {"background": background, "layers": None},
        "a list": [background, drawn],
    }[form]
    with _limited(limit):
        try:
            mask = mask_from_editor(value)
        except ValueError as error:
            assert_clear(error)
            return
        event("result")
        assert isinstance(mask, PIL.Image.Image) and mask.mode == "L"
        assert (mask.height, mask.width) == image_io.decode_image(background).size
    painted = np.asarray(mask) > 0
    assert set(np.unique(np.asarray(mask))) <= {0, 255}
    # Where a layer of the background's size has alpha, there is mask; with no such layers, none.
    for layer in drawn if form == "layers" else []:
        if isinstance(layer, PIL.Image.Image) and layer.mode == "RGBA" and layer.size == mask.size:
            assert painted[np.asarray(layer)[..., 3] > 0].all()
    if form != "layers" or not [layer for layer in drawn if layer is not None]:
        assert not painted.any()


# --- the demo's helpers (sard/demo/: what app.py calls on every request) ------------------------------------

ANY_VALUE = st.one_of(
    st.integers(-10, 10**12), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6), st.none(),
    st.booleans(), st.lists(st.integers(0, 9), max_size=2), st.sampled_from(["0", "2", "3.0", "1e400", "nan"]),
)  # fmt: skip
FORMATS = ["PNG", "TIFF", "BMP", "JPEG", "GIF", "WEBP"]


@PROPERTY
@given(data=st.data())
def test_demo_options_give_checked_values_or_a_clear_error(data):
    bad = broken(data.draw, ["seed", "defect", "steps", "count"])
    names = iter(["seed", "defect", "steps", "count"])

    def value(good):
        return data.draw(ANY_VALUE if next(names) == bad else good)

    seed = value(st.integers(0, inputs.MAX_SEED))
    defect = value(st.sampled_from([None, "", *DEFECT_TYPES]))
    steps, count = value(st.sampled_from([None, 0, *range(1, T + 1)])), value(st.integers(1, 4))
    try:
        checked_seed = inputs.resolve_seed(seed, False)
        checked = inputs.check_options(PIPE, defect, steps, count)
    except ValueError as error:
        assert_clear(error)
        return
    event("result")
    assert isinstance(checked_seed, int) and 0 <= checked_seed <= inputs.MAX_SEED
    defect, steps, count = checked
    assert defect in (None, *DEFECT_TYPES)
    assert isinstance(steps, int) and 1 <= steps <= T and isinstance(count, int) and 1 <= count <= 4


@st.composite
def uploads(draw, folder: str, name: str, size=None, bad: bool = True):
    """An uploaded file: an image of any mode saved in a common format (PNG where that format cannot hold the
    mode), now and then truncated, replaced by other bytes, or missing."""
    image = draw(pil_images(size, bad=False))
    path = os.path.join(folder, f"{name}.{draw(st.sampled_from(FORMATS)).lower()}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # Pillow 12: "I" images as PNG
            image.save(path)
    except (OSError, ValueError, KeyError):
        path = os.path.join(folder, f"{name}.png")
        if image.mode in ("La", "RGBa"):  # premultiplied: PIL converts these only to LA / RGBA
            image = image.convert(image.mode.upper())
        (image if image.mode in ("1", "L", "LA", "P", "RGB", "RGBA", "I;16") else image.convert("RGB")).save(path)
    damage = pick(draw, ["none"], ["truncated", "text", "missing"] if bad else [])
    if damage == "truncated":
        data = open(path, "rb").read()
        open(path, "wb").write(data[: draw(st.integers(0, max(0, len(data) - 1)))])
    elif damage == "text":
        open(path, "w").write("not an image")
    elif damage == "missing":
        os.remove(path)
    return path


@PROPERTY
@given(data=st.data())
def test_demo_uploads_give_an_image_and_mask_or_a_clear_error(data):
    bad = broken(data.draw, ["image", "mask", "size"])
    limit = data.draw(limits()) if bad == "size" else None
    with tempfile.TemporaryDirectory() as folder, _limited(limit):
        image = data.draw(uploads(folder, "image", bad=bad == "image"))
        image_path = pick(data.draw, [image], [None] if bad == "image" else [])
        size = None  # mostly the mask has the image's size
        if image_path and os.path.exists(image_path) and not (bad == "mask" and rarely(data.draw, 2)):
            try:
                size = PIL.Image.open(image_path).size[::-1]
            except (OSError, ValueError):  # a damaged upload
                pass
        mask = data.draw(uploads(folder, "mask", size, bad=bad == "mask"))
        mask_path = pick(data.draw, [mask], [None] if bad == "mask" else [])
        try:
            image = inputs.read_image(image_path)
            mask = inputs.read_mask(mask_path, image.size)
        except ValueError as error:
            assert_clear(error)
            return
        event("result")
        assert isinstance(image, PIL.Image.Image) and image.size == PIL.Image.open(image_path).size
        assert mask.dtype == np.bool_ and mask.shape == image.size[::-1] and mask.any()


@PROPERTY
@given(data=st.data(), image_size=sides(low=1))
def test_demo_editor_mask_gives_a_mask_of_the_image_size_or_a_clear_error(data, image_size):
    bad = broken(data.draw, ["canvas", "layers", "value"])
    height, width = image_size
    shown = display.display_size((width, height))
    canvas = pick(data.draw, [(height, width), shown[::-1]], [data.draw(sides(low=1))] if bad == "canvas" else [])
    painted = st.lists(layers(canvas, bad=bad == "layers"), min_size=0 if bad == "layers" else 1, max_size=2)
    value = {"background": np.zeros((*canvas, 3), np.uint8), "layers": data.draw(painted)}
    value = pick(data.draw, [value], [None, {}, {"layers": []}] if bad == "value" else [])
    try:
        mask = editor_mask(value, (width, height))
    except ValueError as error:
        assert_clear(error)
        return
    event("result")
    assert mask.dtype == np.bool_ and mask.shape == (height, width) and mask.any()
