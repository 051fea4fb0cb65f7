"""The demo in headless Chromium, driven like a user: upload, paint a stroke with the mouse, Generate; every
example in turn, on a slow server and while a Generate is still running; switching models.

Needs Debian's ``chromium`` (``apt-get install chromium``; another binary: ``SARD_CHROMIUM=/path``) and the
``playwright`` Python package, which drives it without downloading a browser of its own. Skipped only where
Chromium is absent. Screenshots go to ``$SARD_SCREENSHOTS`` (default: the test's temporary folder).

The served models are tiny stand-ins for the bundled ones (same keys and defect types, random weights) behind a
gate that the tests open call by call, and every server-side event of the page waits :data:`DELAY_S` first, as on
a busy machine; the example images can be held back from the editor (:class:`HeldImages`). A page that reads
its widgets before an event's reply has landed, or the editor's canvas before it shows the example, fails here.
"""

from __future__ import annotations

import io
import os
import shutil
import threading
import urllib.request
from pathlib import Path
from urllib.parse import urljoin

import numpy as np
import PIL.Image
import pytest
from conftest import make_pipeline
from test_app import load_app

CHROMIUM = os.environ.get("SARD_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
if not CHROMIUM:
    pytest.skip("Chromium is not installed (apt-get install chromium)", allow_module_level=True)

import gradio as gr  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402  (required wherever Chromium is)

from sard.demo.models import ModelChoice  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--headless=new", "--disable-gpu",
                 "--disable-dev-shm-usage"]
TIMEOUT_MS = 120_000  # generous: the test machines are slow and busy, and this is no timing test
DELAY_S = 1.0  # every server-side event of the page waits this long first
# Tiny stand-ins for the bundled models, and one without examples of its own (the page then lists them all).
MODELS = {  # key: (label, defect types, steps)
    "magnetic-tile": ("Magnetic tile", ("blowhole", "break", "crack", "fray", "uneven"), 4),
    "ball-screw": ("Ball screw", ("pitting",), 4),
    "bottle": ("Bottle", ("broken_large", "broken_small", "contamination"), 4),
    "my-model": ("My model", ("scratch", "dent"), 2),
}
APP = load_app()
EXAMPLES = {example.key: example for example in APP.EXAMPLES}


class Gate:
    """Holds the pipelines' calls while closed, letting one through per :meth:`release`; open, it lets all pass."""

    def __init__(self):
        self._condition = threading.Condition()
        self.closed, self.permits, self.waiting = False, 0, 0

    def passage(self) -> None:
        with self._condition:
            self.waiting += 1
            self._condition.notify_all()
            passed = self._condition.wait_for(lambda: not self.closed or self.permits > 0, TIMEOUT_MS / 1000)
            self.waiting -= 1
            self.permits -= self.closed and passed
        assert passed, "a pipeline call was never let through"

    def release(self) -> None:
        with self._condition:
            self.permits += 1
            self._condition.notify_all()

    def wait_for_waiting(self, count: int) -> None:
        with self._condition:
            assert self._condition.wait_for(lambda: self.waiting >= count, TIMEOUT_MS / 1000)


class Recorded:
    """A pipeline whose calls pass the gate and are recorded as (model, defect type)."""

    def __init__(self, key: str, pipe, gate: Gate, calls: list):
        self.key, self.pipe, self.gate, self.calls = key, pipe, gate, calls

    def __getattr__(self, name):
        return getattr(self.pipe, name)

    def __call__(self, *args, **kwargs):
        self.gate.passage()
        self.calls.append((self.key, kwargs.get("defect")))
        return self.pipe(*args, **kwargs)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def served():
    """The demo on the stand-in models, slow; yields (url, gate, calls)."""
    gate, calls = Gate(), []

    def choice(seed, key):
        label, types, steps = MODELS[key]
        load = lambda: Recorded(key, make_pipeline(seed, types, steps), gate, calls)  # noqa: E731
        return ModelChoice(key, label, load, list(types), steps)

    models = [choice(seed, key) for seed, key in enumerate(MODELS)]
    demo = APP.create_demo(models, delay_s=DELAY_S).queue(max_size=8)
    demo.launch(prevent_thread_lock=True, quiet=True)
    yield demo.local_url, gate, calls
    demo.close()


@pytest.fixture
def url(served):
    return served[0]


@pytest.fixture
def page(browser, url):
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.set_default_timeout(TIMEOUT_MS)
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    page.get_by_text("Model: Magnetic tile").wait_for()
    page.get_by_text(EXAMPLES["tile_fray"].label).wait_for()
    yield page
    page.close()
    assert not errors, f"JavaScript errors in the page: {errors}"


def _screenshot_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("SARD_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _canvas_shot(page) -> np.ndarray:
    png = page.locator("#sard-editor canvas").first.screenshot()
    return np.asarray(PIL.Image.open(io.BytesIO(png)).convert("RGB"))


def _red(rgb: np.ndarray) -> np.ndarray:
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    return (r > 140) & (r - g > 60) & (r - b > 60)


def _wait_for_canvas(page, test) -> np.ndarray:
    """Poll the editor's canvas until ``test(pixels)`` holds (the canvas renders asynchronously)."""
    for _ in range(120):
        pixels = _canvas_shot(page)
        if test(pixels):
            return pixels
        page.wait_for_timeout(500)
    raise AssertionError("the editor's canvas never showed what was expected")


def _result(page, url, previous: dict | None = None, count: int = 1) -> dict:
    """Wait until the page shows a Generate's result of ``count`` variations, all of whose download links and
    whose mask view differ from ``previous`` (an earlier return value), and fetch it: ``{"files": {file name:
    pixels}, "mask": the mask view's pixels, "links": ..., "mask_src": ...}``."""
    old = {"links": [], "mask_src": ""} if previous is None else previous
    page.wait_for_function(
        """([old, oldSrc, expected]) => {
            if (document.querySelector(".toast-body")) return true;  // an error: fail at once, with its message
            const links = [...document.querySelectorAll("#sard-files a[download]")].map((a) => a.getAttribute("href"));
            const src = document.querySelector("#sard-mask img")?.getAttribute("src");
            return links.length === expected && links.every((link) => !old.includes(link)) && src && src !== oldSrc;
        }""",
        arg=[old["links"], old["mask_src"], count + 1],
    )
    assert not page.locator(".toast-body").count(), f"the page says: {page.locator('.toast-body').all_inner_texts()}"
    got = {"files": {}, "links": [], "mask_src": page.locator("#sard-mask img").get_attribute("src")}
    for link in page.locator("#sard-files a[download]").all():
        got["links"].append(link.get_attribute("href"))
        got["files"][link.get_attribute("download")] = _fetch(url, got["links"][-1])
    got["mask"] = _fetch(url, got["mask_src"])
    return got


def _fetch(url: str, href: str) -> np.ndarray:
    with urllib.request.urlopen(urljoin(url, href)) as response:
        return np.asarray(PIL.Image.open(io.BytesIO(response.read())))


def _pick(page, key: str) -> None:
    page.locator("#sard-examples").get_by_text(EXAMPLES[key].label, exact=True).click()


def _choose_model(page, label: str) -> None:
    page.locator("#sard-model input").click()
    page.get_by_role("option", name=label, exact=True).click()


def _defect_types(page) -> list[str]:
    """The defect-type dropdown's choices, as its list shows them."""
    page.locator("#sard-defect input").click()
    options = page.get_by_role("option")
    options.first.wait_for()
    names = [name.split("\n")[-1].strip() for name in options.all_inner_texts()]  # after the selected one's tick
    page.keyboard.press("Escape")
    return names


def _check(page, url, key: str, previous: dict | None, calls: list, on_page: bool = True) -> dict:
    """The next result must be example ``key``'s: its image, type and mask (files and mask view), painted by its
    model; ``on_page``: the page still shows that example's model and type."""
    example = EXAMPLES[key]
    got = _result(page, url, previous)
    [result] = [name for name in got["files"] if not name.endswith("_mask.png")]
    assert f"{key}_mask.png" in got["files"] and result.startswith(f"{key}_{example.defect}_seed"), got["files"]
    assert np.array_equal(got["files"][f"{key}_mask.png"] > 0, example.mask()), f"{key}: another mask was painted"
    assert np.array_equal(got["mask"] > 0, example.mask()), f"{key}: the mask view shows another mask"
    assert calls[-1] == (example.model, example.defect)
    if on_page:
        assert page.locator("#sard-model input").input_value() == MODELS[example.model][0]
        assert page.locator("#sard-defect input").input_value() == example.defect
    return got


def test_upload_paint_generate(page, url, tmp_path):
    # Generate without an image: an error that says what to do, and the page stays usable.
    page.locator("#sard-generate").click()
    page.get_by_text("Upload an image first").first.wait_for()
    page.locator(".toast-close").first.click()
    page.locator(".toast-body").wait_for(state="detached")

    rng = np.random.default_rng(0)
    image = np.zeros((96, 144, 3), np.uint8)
    image[...] = (40, 140, 90)  # green-grey, far from the brush's red
    image += rng.integers(0, 20, image.shape, dtype=np.uint8)
    path = tmp_path / "part.png"
    PIL.Image.fromarray(image).save(path)
    page.locator("#sard-upload input[type=file]").set_input_files(path)
    _wait_for_canvas(page, lambda px: ((np.abs(px.astype(int) - (50, 150, 100)) < 25).all(axis=2)).mean() > 0.1)

    # A horizontal stroke through the middle of the canvas, where the fitted image is centred.
    box = page.locator("#sard-editor canvas").first.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx - 30, cy)
    page.mouse.down()
    page.mouse.move(cx + 30, cy, steps=4)  # few events: each one re-renders the (software-rendered) canvas
    page.mouse.up()
    painted = _wait_for_canvas(page, lambda px: _red(px).sum() > 50)
    rows, cols = np.nonzero(_red(painted))
    assert abs(rows.mean() - painted.shape[0] / 2) < painted.shape[0] * 0.1  # the stroke shows where drawn

    page.locator("#sard-generate").click()
    files = _result(page, url)["files"]
    masks = [name for name in files if name.endswith("_mask.png")]
    results = [name for name in files if not name.endswith("_mask.png")]
    assert masks == ["part_mask.png"] and len(results) == 1 and results[0].startswith("part_")
    mask, result = files[masks[0]] > 0, files[results[0]]
    assert result.shape == image.shape
    assert np.array_equal(result[~mask], image[~mask])  # the background is the upload, bit for bit
    rows, cols = np.nonzero(mask)
    assert 0 < mask.mean() < 0.5 and rows.min() <= 48 <= rows.max() and cols.min() <= 72 <= cols.max()
    assert not mask[0, 0] and not mask[-1, -1]

    slider = page.locator("#sard-slider img")
    assert slider.count() >= 2
    assert all(img.evaluate("i => i.complete && i.naturalWidth > 0") for img in slider.all())
    shot = _screenshot_dir(tmp_path) / "demo_generated.png"
    page.screenshot(path=shot, full_page=True)
    assert shot.stat().st_size > 0


class HeldImages:
    """Holds the browser's requests for the example images until :meth:`release`: meanwhile the editor's canvas
    still shows the previous example (or half of the new one), as when the images come late from a busy server."""

    PATTERN = "**/file=**/examples/*.png"

    def __init__(self, page):
        self.page, self.held, self.released = page, [], False
        page.route(self.PATTERN, lambda route: route.continue_() if self.released else self.held.append(route))

    def wait_for_requests(self) -> None:
        """Until the editor asks for the images (once the example's reply has landed)."""
        for _ in range(TIMEOUT_MS // 50):
            if self.held:
                return
            self.page.wait_for_timeout(50)
        raise AssertionError("the editor never asked for the example's images")

    def release(self) -> None:
        self.released = True
        while self.held:
            self.held.pop(0).continue_()
        self.page.unroute(self.PATTERN)


def test_every_example_paints_its_type_into_its_mask_with_its_model(page, served, tmp_path):
    url, gate, calls = served
    # Each example, with Generate pressed at once after the click, while the server answers a second late and
    # the example's images reach the editor only after the press.
    previous = None
    for key in ("tile_fray", "tile_blowhole"):
        held = HeldImages(page)
        _pick(page, key)
        page.locator("#sard-generate").click()
        held.wait_for_requests()
        held.release()
        previous = _check(page, url, key, previous, calls)
    _example_shows_where_its_mask_is(page, "tile_blowhole", tmp_path)

    # The next example picked while a Generate is still running (held at the pipeline): each paints its own.
    gate.closed = True
    try:
        _pick(page, "tile_crack")
        page.locator("#sard-generate").click()
        gate.wait_for_waiting(1)
        _pick(page, "tile_break")
        page.locator("#sard-generate").click()
        gate.release()
        previous = _check(page, url, "tile_crack", previous, calls, on_page=False)
        gate.release()
        previous = _check(page, url, "tile_break", previous, calls)
    finally:
        gate.closed = False
        gate.release()

    # With a model that has no examples of its own every example is listed, and each selects its own model.
    _choose_model(page, "My model")
    _pick(page, "ballscrew_pit")
    page.locator("#sard-generate").click()
    previous = _check(page, url, "ballscrew_pit", previous, calls)
    assert _defect_types(page) == ["pitting"]
    _choose_model(page, "Magnetic tile")
    _pick(page, "tile_uneven")
    page.locator("#sard-generate").click()
    _check(page, url, "tile_uneven", previous, calls)
    assert {key for key, _ in calls} >= {"magnetic-tile", "ball-screw"}


def _example_shows_where_its_mask_is(page, key: str, tmp_path: Path) -> None:
    """The editor shows the example with its preset mask painted where the mask file has it."""
    shown = _wait_for_canvas(page, lambda px: _red(px).sum() > 30)
    preset = EXAMPLES[key].mask()
    # Where the image sits on the canvas: rows and columns mostly covered by the dark tile (and the paint on
    # it), which the label's text and the toolbar's icons are not.
    on_image = (shown.max(axis=2) < 200) | _red(shown)
    rows, cols = np.nonzero(on_image.mean(axis=1) > 0.6)[0], np.nonzero(on_image.mean(axis=0) > 0.6)[0]
    top, left, height, width = rows.min(), cols.min(), np.ptp(rows) + 1, np.ptp(cols) + 1
    assert abs(width / height - preset.shape[1] / preset.shape[0]) < 0.05  # found the whole image
    red_rows, red_cols = np.nonzero(_red(shown[top : top + height, left : left + width]))
    assert red_rows.size, "the preset mask is not drawn on the image"
    mask_rows, mask_cols = np.nonzero(preset)
    assert abs(red_rows.mean() / height - mask_rows.mean() / preset.shape[0]) < 0.05
    assert abs(red_cols.mean() / width - mask_cols.mean() / preset.shape[1]) < 0.05
    page.screenshot(path=_screenshot_dir(tmp_path) / "demo_example.png", full_page=True)


def test_switching_models_changes_types_steps_and_examples(page, served):
    url, _, calls = served
    _pick(page, "tile_crack")
    _choose_model(page, "My model")
    page.locator("#sard-generate").click()  # at once: the new model and its first type, on the crack's mask
    got = _result(page, url)
    assert sorted(got["files"])[1].startswith("tile_crack_scratch_seed") and calls[-1] == ("my-model", "scratch")
    assert np.array_equal(got["mask"] > 0, EXAMPLES["tile_crack"].mask())
    assert _defect_types(page) == ["scratch", "dent"]
    assert page.locator("#sard-steps input[type=range]").get_attribute("max") == "2"
    examples = page.locator("#sard-examples")
    assert [t.strip() for t in examples.get_by_role("button").all_inner_texts()] == [e.label for e in APP.EXAMPLES]
    _choose_model(page, "Ball screw")
    page.get_by_text("Model: Ball screw: 1 defect type (pitting)").wait_for()
    assert _defect_types(page) == ["pitting"]
    assert page.locator("#sard-steps input[type=range]").get_attribute("max") == "4"
    assert [t.strip() for t in examples.get_by_role("button").all_inner_texts()] == ["Ball screw: a small pit"]
    _choose_model(page, "Magnetic tile")
    page.get_by_text("Model: Magnetic tile").wait_for()
    assert _defect_types(page) == list(MODELS["magnetic-tile"][1])
    assert len(examples.get_by_role("button").all()) == 5


def _slider_demo(component) -> gr.Blocks:
    before = PIL.Image.new("RGB", (160, 120), (30, 60, 200))
    after = PIL.Image.new("RGB", (160, 120), (220, 40, 40))
    with gr.Blocks() as demo:
        button = gr.Button("Show")
        slider = component(label="slider", type="pil")
        button.click(lambda: (before, after), None, slider)
    return demo


@pytest.mark.parametrize("package", ["gradio", "gradio_imageslider"])
def test_image_slider_renders(browser, package):
    """The design named the PyPI package gradio-imageslider; its last release (0.0.20) was written for Gradio 4.
    On the Gradio we pin it renders nothing (a JavaScript error), so the app uses the built-in gr.ImageSlider.
    The package's case runs only where it is installed and records the outcome."""
    if package == "gradio":
        component = gr.ImageSlider
    else:
        component = pytest.importorskip("gradio_imageslider").ImageSlider
    demo = _slider_demo(component)
    demo.launch(prevent_thread_lock=True, quiet=True)
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(demo.local_url)
        page.get_by_role("button", name="Show").click()
        page.wait_for_timeout(3000)
        shown = [img for img in page.locator("img").all() if "/file=" in (img.get_attribute("src") or "")]
        rendered = len(shown) == 2 and all(img.evaluate("i => i.naturalWidth > 0") for img in shown)
    finally:
        page.close()
        demo.close()
    if package == "gradio":
        assert rendered and not errors
    elif not rendered:
        pytest.xfail(f"gradio_imageslider does not render on Gradio {gr.__version__}: {errors[:1]}")
