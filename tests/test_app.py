"""The demo served in-process and called through ``gradio_client``, as a user's script would call it."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from conftest import box_mask, make_pipeline

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no network calls from the tests
gradio_client = pytest.importorskip("gradio_client")

ROOT = Path(__file__).resolve().parents[1]


def load_app():
    spec = importlib.util.spec_from_file_location("sard_app", ROOT / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def served():
    """The demo on a free port with a tiny pipeline loaded on first use; yields (client, number of loads)."""
    loads = []

    def loader():
        loads.append(1)
        return make_pipeline()

    demo = load_app().create_demo(loader).queue(max_size=8)
    demo.launch(prevent_thread_lock=True, quiet=True)
    try:
        assert not loads, "the pipeline must be loaded on first use, not when the page is built"
        yield gradio_client.Client(demo.local_url, verbose=False), loads
    finally:
        demo.close()


def _call(client, image, mask, defect="a", seed=3, steps=0):
    handle = gradio_client.handle_file
    return client.predict(handle(str(image)), handle(str(mask)), defect, seed, steps, api_name="/synthesize")


def _write(tmp_path, name, array, mask) -> tuple[Path, Path]:
    image_path, mask_path = tmp_path / name, tmp_path / f"{Path(name).stem}_mask.png"
    PIL.Image.fromarray(array).save(image_path)
    PIL.Image.fromarray(mask).save(mask_path)
    return image_path, mask_path


@pytest.mark.parametrize(
    "name, shape, dtype",
    [
        ("gray.png", (24, 32), np.uint8),
        ("color.png", (24, 32, 3), np.uint8),
        ("transparent.png", (24, 32, 4), np.uint8),
        ("sixteen.png", (24, 32), np.uint16),
        ("photo.jpg", (24, 32, 3), np.uint8),
    ],
)
def test_synthesize_keeps_background_mode_and_depth(served, tmp_path, name, shape, dtype):
    client, loads = served
    rng = np.random.default_rng(0)
    array = rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype)
    mask = box_mask(24, 32)
    image_path, mask_path = _write(tmp_path, name, array, mask)
    result = PIL.Image.open(_call(client, image_path, mask_path))
    original = PIL.Image.open(image_path)
    assert result.format == "PNG" and result.mode == original.mode and result.size == original.size
    before, after = np.asarray(original), np.asarray(result)
    assert np.array_equal(after[~mask], before[~mask])  # bit for bit outside the mask
    assert not np.array_equal(after[mask], before[mask])
    assert len(loads) == 1  # loaded once, on the first call


def test_synthesize_is_reproducible_under_a_seed(served, tmp_path):
    client, _ = served
    image_path, mask_path = _write(tmp_path, "a.png", np.full((20, 20), 120, np.uint8), box_mask(20, 20))
    first, second, other = (np.asarray(PIL.Image.open(_call(client, image_path, mask_path, seed=seed)))
                            for seed in (4, 4, 5))
    assert np.array_equal(first, second) and not np.array_equal(first, other)


@pytest.mark.slow
def test_large_image_is_processed_at_working_size_and_pasted_back(served, tmp_path):
    client, _ = served
    height, width = 4000, 6000
    array = np.zeros((height, width), np.uint8)
    array[:, ::7] = 200  # a texture that must survive outside the mask
    mask = np.zeros((height, width), bool)
    mask[1900:2100, 2900:3200] = True
    image_path, mask_path = _write(tmp_path, "big.png", array, mask)
    result = np.asarray(PIL.Image.open(_call(client, image_path, mask_path)))
    assert result.shape == (height, width)
    assert np.array_equal(result[~mask], array[~mask])


def test_bad_inputs_come_back_as_errors_and_the_app_keeps_serving(served, tmp_path):
    client, _ = served
    image_path, mask_path = _write(tmp_path, "ok.png", np.full((20, 24), 90, np.uint8), box_mask(20, 24))
    text = tmp_path / "notes.png"
    text.write_text("this is not an image")
    empty = tmp_path / "empty.png"
    PIL.Image.new("L", (24, 20)).save(empty)
    other_size = tmp_path / "other.png"
    PIL.Image.fromarray(box_mask(10, 12)).save(other_size)
    huge = tmp_path / "huge.png"
    PIL.Image.new("L", (10_000, 6_000)).save(huge)
    cases = [
        ((text, mask_path), "Could not read"),
        ((image_path, text), "Could not read"),
        ((image_path, empty), "The mask is empty"),
        ((image_path, other_size), "pass a mask of the image's size"),
        ((huge, mask_path), "megapixels"),
    ]
    for (image, mask), message in cases:
        with pytest.raises(gradio_client.exceptions.AppError, match=message):
            _call(client, image, mask)
    with pytest.raises(gradio_client.exceptions.AppError, match="Unknown defect type 'scratch'"):
        _call(client, image_path, mask_path, defect="scratch")
    with pytest.raises(gradio_client.exceptions.AppError, match="Steps must be a whole number"):
        _call(client, image_path, mask_path, steps=99)
    with pytest.raises(gradio_client.exceptions.AppError, match="seed must be a whole number"):
        _call(client, image_path, mask_path, seed=-1)
    result = np.asarray(PIL.Image.open(_call(client, image_path, mask_path, defect="")))  # "": any type
    assert result.shape == (20, 24)


def test_only_synthesize_is_public(served):
    client, _ = served
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert list(endpoints) == ["/synthesize"]
    types = [p["python_type"]["type"] for p in endpoints["/synthesize"]["parameters"]]
    assert types == ["filepath", "filepath", "str", "int", "int"]
    assert endpoints["/synthesize"]["returns"][0]["python_type"]["type"] == "filepath"


def test_examples_share_the_editor_canvas_size_and_have_their_masks():
    app = load_app()
    for name, defect, label in app.EXAMPLE_ROWS:
        image = PIL.Image.open(app.EXAMPLES / name)
        assert image.size == app.EXAMPLE_SIZE, f"{name}: preset layers only line up on canvases of their size"
        from sard import image_io

        mask = image_io.decode_mask(app.EXAMPLES / f"{Path(name).stem}_mask.png")
        assert mask.shape == image.size[::-1] and mask.any() and defect and label
    assert (app.EXAMPLES / "ATTRIBUTION.md").is_file()


def test_command_line(tmp_path, monkeypatch, capsys):
    app = load_app()
    monkeypatch.delenv("SARD_CHECKPOINT", raising=False)
    monkeypatch.setattr(app.sard, "DEFAULT_CHECKPOINT", None)
    with pytest.raises(SystemExit):
        app.parse_args([])
    assert "no bundled checkpoint yet: pass --checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        app.parse_args(["--checkpoint", str(tmp_path / "missing")])
    assert "There is no folder" in capsys.readouterr().err
    make_pipeline().save_pretrained(tmp_path / "ckpt")
    monkeypatch.setenv("SARD_CHECKPOINT", str(tmp_path / "ckpt"))
    monkeypatch.setenv("PORT", "8123")
    args = app.parse_args(["--host", "0.0.0.0", "--share"])
    assert (args.checkpoint, args.host, args.port, args.share) == (str(tmp_path / "ckpt"), "0.0.0.0", 8123, True)
    assert app.parse_args(["--checkpoint", "owner/model", "--port", "7000"]).port == 7000


def test_spacefile_follows_deta_spacefile_v0():
    yaml = pytest.importorskip("yaml")
    spacefile = yaml.safe_load((ROOT / "Spacefile").read_text())
    assert spacefile["v"] == 0 and set(spacefile) <= {"v", "icon", "app_name", "micros"}
    assert len(spacefile.get("app_name", "")) <= 12
    engines = {"static", "react", "svelte", "vue", "next", "nuxt", "svelte-kit", "python3.9", "python3.8",
               "nodejs16", "custom"}
    keys = {"name", "src", "engine", "primary", "path", "commands", "run", "dev", "presets", "public_routes",
            "actions", "include", "serve"}
    [micro] = spacefile["micros"]
    assert set(micro) <= keys and micro["engine"] in engines and micro["primary"] is True
    assert __import__("re").fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", micro["name"])
    assert all(isinstance(command, str) for command in micro["commands"]) and "app.py" in micro["run"]
    assert all(set(env) <= {"name", "description", "default"} and env["name"] for env in micro["presets"]["env"])
    assert all((ROOT / path).exists() for path in micro["include"] if path != "deps")


def test_requirements_cover_pyproject_and_pin_the_tested_gradio():
    import re

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + [d for extra in project["optional-dependencies"].values() for d in extra]
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    pinned = {re.split(r"[<>=!~ \[]", line)[0].lower().replace("_", "-"): line for line in lines if line}
    for requirement in wanted:
        assert re.split(r"[<>=!~ \[]", requirement)[0].lower().replace("_", "-") in pinned, requirement
    version = re.fullmatch(r"gradio==(\d+\.\d+\.\d+)", pinned["gradio"]).group(1)  # one tested release
    readme = ROOT / "README.md"
    if readme.is_file() and "sdk_version:" in readme.read_text():  # the Space runs the same Gradio
        assert re.search(r"^sdk_version: *\"?([\d.]+)", readme.read_text(), re.M).group(1) == version
    assert "+cu" not in (ROOT / "requirements.txt").read_text()  # no CUDA-specific torch build
