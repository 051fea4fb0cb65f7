"""The demo served in-process and called through ``gradio_client``, as a user's script would call it."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from conftest import box_mask, make_pipeline

from sard import image_io
from sard.demo import models
from sard.demo.models import ModelChoice, bundled_models

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no network calls from the tests
gradio_client = pytest.importorskip("gradio_client")

ROOT = Path(__file__).resolve().parents[1]


def load_app():
    spec = importlib.util.spec_from_file_location("sard_app", ROOT / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def two_models(loads: list) -> list[ModelChoice]:
    """A two-type model (the default) and a one-type model of other weights, each counting its loads."""

    def loader(key, seed, types):
        def load():
            loads.append(key)
            return make_pipeline(seed, types)

        return ModelChoice(key, key.title(), load, list(types), 4)

    return [loader("parts", 0, ("a", "b")), loader("pits", 1, ("pit",))]


@pytest.fixture(scope="module")
def served():
    """The demo on a free port with two tiny models loaded on first use; yields (client, the loads so far)."""
    loads = []
    demo = load_app().create_demo(two_models(loads)).queue(max_size=8)
    demo.launch(prevent_thread_lock=True, quiet=True)
    try:
        assert not loads, "the pipelines must be loaded on first use, not when the page is built"
        yield gradio_client.Client(demo.local_url, verbose=False), loads
    finally:
        demo.close()


def _call(client, image, mask, defect="a", seed=3, steps=0, **model):
    handle = gradio_client.handle_file
    return client.predict(handle(str(image)), handle(str(mask)), defect, seed, steps, api_name="/synthesize", **model)


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
    assert loads == ["parts"]  # the default model, loaded once, on the first call


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


def test_synthesize_takes_the_model_by_name(served, tmp_path):
    client, loads = served
    image_path, mask_path = _write(tmp_path, "a.png", np.full((20, 20), 120, np.uint8), box_mask(20, 20))
    parts = np.asarray(PIL.Image.open(_call(client, image_path, mask_path, "", seed=4)))
    named = np.asarray(PIL.Image.open(_call(client, image_path, mask_path, "", seed=4, model="parts")))
    pits = _call(client, image_path, mask_path, "pit", seed=4, model="pits")
    assert np.array_equal(parts, named) and not np.array_equal(parts, np.asarray(PIL.Image.open(pits)))
    assert Path(pits).name == "a_pit_seed4.png" and loads.count("pits") == 1  # loaded on its first use
    with pytest.raises(gradio_client.exceptions.AppError, match="Unknown defect type 'a'; this model knows: pit"):
        _call(client, image_path, mask_path, "a", model="pits")
    with pytest.raises(gradio_client.exceptions.AppError, match="Unknown model .bottle.; this demo serves: parts, pi"):
        _call(client, image_path, mask_path, model="bottle")


def test_only_synthesize_is_public(served):
    client, _ = served
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert list(endpoints) == ["/synthesize"]
    parameters = endpoints["/synthesize"]["parameters"]
    assert [p["parameter_name"] for p in parameters] == ["image", "mask", "defect", "seed", "steps", "model"]
    assert [p["python_type"]["type"] for p in parameters] == ["filepath", "filepath", "str", "int", "int", "str"]
    assert [p["parameter_default"] for p in parameters[2:]] == ["", 0, 0, ""]
    assert endpoints["/synthesize"]["returns"][0]["python_type"]["type"] == "filepath"


def test_examples_share_the_editor_canvas_size_and_fit_their_bundled_models():
    app = load_app()
    bundled = {choice.key: choice for choice in bundled_models()}
    assert {example.model for example in app.EXAMPLES} == set(bundled)  # each bundled model has an example
    for example in app.EXAMPLES:
        image = PIL.Image.open(example.image)
        assert image.size == app.EXAMPLE_SIZE, f"{example.key}: preset layers only line up on canvases of their size"
        mask = example.mask()
        assert mask.shape == image.size[::-1] and mask.any() and example.label
        assert example.defect in bundled[example.model].defect_types, example.key
    assert len({example.key for example in app.EXAMPLES}) == len(app.EXAMPLES)
    assert (app.EXAMPLES_DIR / "ATTRIBUTION.md").is_file()


def test_command_line(tmp_path, monkeypatch, capsys):
    app = load_app()
    monkeypatch.delenv("SARD_CHECKPOINT", raising=False)
    assert app.parse_args([]).checkpoint is None  # the bundled models
    monkeypatch.setattr(models, "BUNDLED_ROOT", tmp_path / "none")
    with pytest.raises(SystemExit):
        app.parse_args([])
    assert "no bundled checkpoint: pass --checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        app.parse_args(["--checkpoint", str(tmp_path / "missing")])
    assert "There is no folder" in capsys.readouterr().err
    make_pipeline().save_pretrained(tmp_path / "ckpt")
    monkeypatch.setenv("SARD_CHECKPOINT", str(tmp_path / "ckpt"))
    monkeypatch.setenv("PORT", "8123")
    args = app.parse_args(["--host", "0.0.0.0", "--share"])
    assert (args.checkpoint, args.host, args.port, args.share) == (str(tmp_path / "ckpt"), "0.0.0.0", 8123, True)
    assert app.parse_args(["--checkpoint", "owner/model", "--port", "7000"]).port == 7000
    assert app.parse_args(["--model_cache_mb", "64"]).model_cache_mb == 64


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
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", micro["name"])
    assert all(isinstance(command, str) for command in micro["commands"]) and "app.py" in micro["run"]
    assert all(set(env) <= {"name", "description", "default"} and env["name"] for env in micro["presets"]["env"])
    assert all((ROOT / path).exists() for path in micro["include"] if path != "deps")


def test_requirements_cover_pyproject_and_pin_the_tested_gradio():
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


def test_readme_api_example_runs_on_the_bundled_ball_screw_model(tmp_path, monkeypatch):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Calling the demo from a script", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    assert '"ball-screw",       # model' in code
    choices, default = models.model_choices()
    demo = load_app().create_demo(models.ModelCache(choices, default)).queue(max_size=4)
    demo.launch(prevent_thread_lock=True, quiet=True)
    try:
        monkeypatch.chdir(ROOT)
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(code.replace("http://127.0.0.1:7860/", demo.local_url), "README.md", "exec"), {})
    finally:
        demo.close()
    path = Path(printed.getvalue().strip().splitlines()[-1])  # after the client's "Loaded as API: ..."
    assert path.name == "ballscrew_pit_pitting_seed0.png"  # the ball-screw model's type
    before = np.asarray(PIL.Image.open(ROOT / "examples" / "ballscrew_pit.png"))
    after = np.asarray(PIL.Image.open(path))
    mask = image_io.decode_mask(ROOT / "examples" / "ballscrew_pit_mask.png")
    assert after.shape == before.shape and np.array_equal(after[~mask], before[~mask])
    assert np.abs(after[mask].astype(int) - before[mask].astype(int)).mean() > 5  # a trained model paints
