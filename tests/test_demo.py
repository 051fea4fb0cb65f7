"""The demo's helpers without Gradio: the editor's value as a mask, reading uploads, display copies, outlines,
options and downloads (``sard.demo``; its models and examples are in ``test_demo_models.py``)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from conftest import T, box_mask, make_pipeline

from sard import figures, image_io
from sard.demo import display, editor, generate, inputs


def _layer(mask: np.ndarray, paint=(255, 59, 48, 150)) -> PIL.Image.Image:
    """An editor layer: ``paint`` where ``mask`` is set, transparent elsewhere."""
    rgba = np.zeros((*mask.shape, 4), np.uint8)
    rgba[mask] = paint
    return PIL.Image.fromarray(rgba, "RGBA")


def test_import_sard_stays_light():
    import subprocess

    code = "import sys, sard; print(sorted(m for m in ('gradio', 'sard.demo') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


# --- the editor's value -> a mask ----------------------------------------------------------------------------


def test_mask_from_editor_unions_layers_and_eraser_is_transparent():
    background = PIL.Image.new("RGB", (12, 10), (30, 60, 90))  # width 12, height 10
    first = np.zeros((10, 12), bool)
    first[2:5, 3:8] = True
    second = np.zeros((10, 12), bool)
    second[7, 10] = True
    # Erased pixels are transparent again (alpha 0), whatever their colour.
    erased = np.zeros((10, 12, 4), np.uint8)
    erased[0:2, 0:2] = (255, 255, 255, 0)
    value = {
        "background": background,
        "layers": [_layer(first), None, _layer(second), PIL.Image.fromarray(erased, "RGBA")],
        "composite": None,
    }
    mask = editor.mask_from_editor(value)
    assert mask.mode == "L" and mask.size == (12, 10)
    array = np.asarray(mask)
    assert set(np.unique(array)) <= {0, 255}
    assert np.array_equal(array > 0, first | second)
    # Its output is a mask the pipeline reads back as the same region.
    assert np.array_equal(image_io.decode_mask(mask, (10, 12)), first | second)


def test_mask_from_editor_numpy_layers_resizing_and_layers_without_alpha():
    background = np.zeros((8, 8, 3), np.uint8)
    half = np.zeros((4, 4, 4), np.uint8)
    half[1, 2, 3] = 200
    mask = np.asarray(editor.mask_from_editor({"background": background, "layers": [half]}))
    expected = np.zeros((8, 8), bool)
    expected[2:4, 4:6] = True
    assert np.array_equal(mask > 0, expected)
    assert not np.asarray(editor.mask_from_editor({"background": background, "layers": []})).any()
    # threshold: faint strokes below it are ignored
    assert not np.asarray(editor.mask_from_editor({"background": background, "layers": [half]}, threshold=200)).any()
    # Without alpha, paint is what is not black; 16-bit and float alpha count in their own range.
    gray = np.zeros((8, 8), np.uint8)
    gray[0, 0] = 9
    assert np.asarray(editor.mask_from_editor({"background": background, "layers": [gray]})).sum() == 255
    floats = np.zeros((8, 8, 4), np.float32)
    floats[1, 1, 3] = 0.5
    painted = np.asarray(editor.mask_from_editor({"background": background, "layers": [floats]}))
    assert np.array_equal(np.nonzero(painted), ([1], [1]))


@pytest.mark.parametrize("value", [None, {}, {"background": None, "layers": []}, {"layers": []}])
def test_mask_from_editor_without_background_raises(value):
    with pytest.raises(ValueError, match="Upload an image"):
        editor.mask_from_editor(value)


def test_mask_from_editor_names_a_bad_layer():
    with pytest.raises(ValueError, match="mask layer"):
        editor.mask_from_editor({"background": np.zeros((4, 4), np.uint8), "layers": [np.zeros((4, 4), np.int64)]})


def test_editor_mask_on_the_file_itself():
    image = PIL.Image.new("L", (40, 30))
    mask = box_mask(30, 40)
    assert np.array_equal(editor.editor_mask({"background": image, "layers": [_layer(mask)]}, image.size), mask)


def test_editor_mask_painted_on_a_display_copy_is_scaled_back():
    size = (3000, 1500)  # larger than MAX_DISPLAY_SIDE: the editor shows a 1024 x 512 copy
    shown = display.display_size(size)
    assert shown == (1024, 512)
    painted = np.zeros(shown[::-1], bool)
    painted[100:200, 300:400] = True
    value = {"background": PIL.Image.new("RGB", shown), "layers": [_layer(painted)]}
    mask = editor.editor_mask(value, size)
    assert mask.shape == (1500, 3000)
    rows, cols = np.nonzero(mask)
    # 100:200 x 300:400 at scale 3000/1024: about 293:586 x 879:1172
    assert abs(rows.min() - 293) <= 3 and abs(rows.max() - 585) <= 3
    assert abs(cols.min() - 879) <= 3 and abs(cols.max() - 1171) <= 3


def test_editor_mask_errors_say_what_to_do():
    image = PIL.Image.new("RGB", (40, 30))
    with pytest.raises(ValueError, match="Upload an image"):
        editor.editor_mask({"background": None, "layers": []}, image.size)
    with pytest.raises(ValueError, match="The mask is empty: paint"):
        editor.editor_mask({"background": image, "layers": []}, image.size)
    erased = np.zeros((30, 40, 4), np.uint8)  # the eraser leaves transparent pixels
    with pytest.raises(ValueError, match="The mask is empty"):
        editor.editor_mask({"background": image, "layers": [PIL.Image.fromarray(erased)]}, image.size)
    other = {"background": PIL.Image.new("RGB", (41, 30)), "layers": [_layer(box_mask(30, 41))]}
    with pytest.raises(ValueError, match="upload the image again"):
        editor.editor_mask(other, image.size)


def test_generate_paints_the_editors_mask_only_on_the_uploaded_image():
    rng = np.random.default_rng(0)
    sixteen = PIL.Image.fromarray(rng.integers(1000, 5000, (30, 40), dtype=np.uint16))
    shown = editor.editor_value(sixteen)
    assert shown["layers"] == [] and shown["background"].mode == "L"  # the 8-bit display copy
    editor.check_background(shown, sixteen)
    as_browser_sends = {"background": shown["background"].convert("RGBA"), "layers": []}  # the canvas is RGBA
    editor.check_background(as_browser_sends, sixteen)
    other = PIL.Image.fromarray(rng.integers(1000, 5000, (30, 40), dtype=np.uint16))
    for wrong in (editor.editor_value(other), {"background": PIL.Image.new("L", (41, 30))}):
        with pytest.raises(ValueError, match="still shows another image"):
            editor.check_background(wrong, sixteen)
    with pytest.raises(ValueError, match="Upload an image first"):
        editor.check_background({"background": None}, sixteen)
    # What Generate paints: the editor's mask, if the editor shows the upload.
    mask = box_mask(30, 40)
    painted = {"background": shown["background"].convert("RGBA"), "layers": [_layer(mask)]}
    assert np.array_equal(editor.painted_mask(painted, sixteen), mask)
    with pytest.raises(ValueError, match="still shows another image"):
        editor.painted_mask({**painted, "background": editor.editor_value(other)["background"]}, sixteen)
    # Transparent pixels compare equal whatever colour the browser gives them.
    rgba = np.zeros((6, 6, 4), np.uint8)
    rgba[:3] = (200, 10, 10, 255)
    image = PIL.Image.fromarray(rgba)
    rgba[3:, :, :3] = 77
    editor.check_background({"background": PIL.Image.fromarray(rgba)}, image)


# --- reading uploads ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mode, array",
    [
        ("L", np.arange(12 * 10, dtype=np.uint8).reshape(10, 12)),
        ("RGB", np.arange(10 * 12 * 3, dtype=np.uint8).reshape(10, 12, 3)),
        ("RGBA", np.arange(10 * 12 * 4, dtype=np.uint8).reshape(10, 12, 4)),
        ("I;16", (np.arange(10 * 12, dtype=np.uint16) * 500).reshape(10, 12)),
    ],
)
def test_read_image_keeps_mode_and_pixels(tmp_path, mode, array):
    path = tmp_path / "in.png"
    PIL.Image.fromarray(array).save(path)
    image = inputs.read_image(path)
    assert image.mode == PIL.Image.open(path).mode
    assert np.array_equal(np.asarray(image), np.asarray(PIL.Image.open(path)))


def test_read_image_and_mask_errors(tmp_path):
    with pytest.raises(ValueError, match="Upload an image first"):
        inputs.read_image(None)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(ValueError, match="Could not read"):
        inputs.read_image(text)
    with pytest.raises(ValueError, match="Pass a mask image"):
        inputs.read_mask(None, (10, 8))
    small = tmp_path / "mask.png"
    PIL.Image.fromarray(box_mask(8, 10)).save(small)
    assert inputs.read_mask(small, (10, 8)).shape == (8, 10)
    with pytest.raises(ValueError, match=r"mask is 10 x 8 pixels but the image is 20 x 16"):
        inputs.read_mask(small, (20, 16))
    PIL.Image.new("L", (10, 8)).save(small)
    with pytest.raises(ValueError, match="The mask is empty"):
        inputs.read_mask(small, (10, 8))


def test_file_path_accepts_what_gradio_passes(tmp_path):
    assert inputs.file_path(None) is None
    assert inputs.file_path(tmp_path) == str(tmp_path)
    assert inputs.file_path({"path": "/x/y.png", "meta": {"_type": "gradio.FileData"}}) == "/x/y.png"


# --- display copies and outlines --------------------------------------------------------------------------------


def test_display_copy_of_16_bit_stretches_levels_and_shrinks_large_images():
    array = np.linspace(1000, 5000, 2048 * 100).reshape(100, 2048).astype(np.uint16)
    image = PIL.Image.fromarray(array)
    levels = display.display_levels(image)
    assert levels == (1000.0, 5000.0)
    shown = display.display_copy(image, levels)
    assert shown.mode == "L" and shown.size == (1024, 50)
    small = PIL.Image.fromarray(np.array([[1000, 3000, 5000]], np.uint16))
    assert np.asarray(display.display_copy(small, levels)).tolist() == [[0, 128, 255]]
    eight_bit = PIL.Image.fromarray(np.full((4, 6, 3), 7, np.uint8))
    assert np.array_equal(np.asarray(display.display_copy(eight_bit)), np.asarray(eight_bit))


def test_outline_rings_the_mask_and_leaves_its_inside():
    image = PIL.Image.fromarray(np.full((40, 40), 90, np.uint8))
    mask = np.zeros((40, 40), bool)
    mask[15:25, 15:25] = True
    drawn = np.asarray(display.outline(image, mask))
    red = (drawn == figures.OUTLINE_COLOR).all(axis=2)
    assert drawn.shape == (40, 40, 3)
    assert not red[mask].any()  # the synthesised pixels stay visible
    assert red[14, 20] and red[25, 20] and red[20, 14] and red[20, 25]  # a ring just outside
    assert not red[0, 0] and not red[5, 20]


# --- options and downloads --------------------------------------------------------------------------------------


def test_resolve_seed_and_check_options():
    assert inputs.resolve_seed(7, False) == 7
    assert inputs.resolve_seed(7.0, False) == 7
    assert 0 <= inputs.resolve_seed(7, True) <= inputs.MAX_SEED
    for bad in (-1, 1.5, None, inputs.MAX_SEED + 1):
        with pytest.raises(ValueError, match="seed must be a whole number"):
            inputs.resolve_seed(bad, False)
    pipe = make_pipeline()
    assert inputs.check_options(pipe, "", 0, 1) == (None, T, 1)
    assert inputs.check_options(pipe, "b", 2, 3) == ("b", 2, 3)
    with pytest.raises(ValueError, match="Unknown defect type 'scratch'; this model knows: a, b"):
        inputs.check_options(pipe, "scratch", 1, 1)
    with pytest.raises(ValueError, match=f"Steps must be a whole number from 1 to {T}"):
        inputs.check_options(pipe, "a", T + 1, 1)
    with pytest.raises(ValueError, match="Variations must be from 1 to"):
        inputs.check_options(pipe, "a", 1, inputs.MAX_VARIATIONS + 1)


def test_write_pngs_keeps_16_bit_and_leaves_no_partial_files(tmp_path):
    sixteen = PIL.Image.fromarray(np.array([[0, 40000], [65535, 3]], np.uint16))
    floats = PIL.Image.fromarray(np.array([[0.25, 0.5]], np.float32))
    paths = generate.write_pngs({"a": sixteen, "b": floats}, tmp_path)
    assert [p.rsplit(".", 1)[1] for p in paths] == ["png", "tiff"]  # PNG cannot hold floats
    assert np.array_equal(np.asarray(PIL.Image.open(paths[0])), np.asarray(sixteen))
    assert np.array_equal(np.asarray(PIL.Image.open(paths[1])), np.asarray(floats))

    class Broken:
        mode = "L"

        def save(self, path, format):
            open(path, "wb").write(b"half a fi")
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        generate.write_pngs({"c": Broken()}, tmp_path)
    written = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert not [name for name in written if name.startswith("c.")]  # no file under the final name


def test_old_download_folders_are_pruned(tmp_path):
    old, recent, other = tmp_path / "sard-old", tmp_path / "sard-recent", tmp_path / "user-files"
    for folder in (old, recent, other):
        folder.mkdir()
        (folder / "a.png").write_bytes(b"x")
    hours_ago = time.time() - 2 * generate.OUTPUT_MAX_AGE_S
    os.utime(old, (hours_ago, hours_ago))
    os.utime(other, (hours_ago, hours_ago))
    [path] = generate.write_pngs({"new": PIL.Image.new("L", (2, 2))}, tmp_path)
    assert not old.exists() and recent.exists() and other.exists()  # only its own, old folders
    assert Path(path).parent.name.startswith("sard-") and Path(path).is_file()


def test_generate_variations_background_and_files(tmp_path):
    pipe = make_pipeline()
    rng = np.random.default_rng(0)
    image = PIL.Image.fromarray(rng.integers(0, 255, (24, 32), dtype=np.uint8))
    mask = box_mask(24, 32)
    out = generate.generate(pipe, image, mask, "a", seed=5, steps=T, count=2, stem="tile", directory=tmp_path)
    assert out.seed == 5 and len(out.afters) == len(out.outlined) == 2
    names = [p.rsplit("/", 1)[1] for p in out.files]
    assert names == ["tile_a_seed5.png", "tile_a_seed6.png", "tile_mask.png"]
    original = np.asarray(image)
    for path in out.files[:2]:
        result = PIL.Image.open(path)
        assert result.mode == "L" and result.size == image.size
        assert np.array_equal(np.asarray(result)[~mask], original[~mask])
    first, second = (np.asarray(PIL.Image.open(p)) for p in out.files[:2])
    assert not np.array_equal(first[mask], second[mask])  # seeds 5 and 6 differ
    assert np.array_equal(np.asarray(PIL.Image.open(out.files[2])) > 0, mask)
    # The same seed gives the same first variation.
    again = generate.generate(pipe, image, mask, "a", seed=5, steps=T, count=1, directory=tmp_path)
    assert np.array_equal(np.asarray(PIL.Image.open(again.files[0])), first)


def test_generated_files_name_the_defect_type(tmp_path):
    image, mask = PIL.Image.new("L", (32, 24), 128), box_mask(24, 32)
    # Any type: several types are not named; a model with one type names it.
    out = generate.generate(make_pipeline(), image, mask, None, seed=0, steps=T, stem="part", directory=tmp_path)
    assert Path(out.files[0]).name == "part_defect_seed0.png"
    single = make_pipeline(defect_types=("pitting",))
    out = generate.generate(single, image, mask, None, seed=0, steps=T, stem="part", directory=tmp_path)
    assert Path(out.files[0]).name == "part_pitting_seed0.png"
