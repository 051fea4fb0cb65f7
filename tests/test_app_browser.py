"""The demo in headless Chromium, driven like a user: upload, paint a stroke with the mouse, Generate.

Needs Debian's ``chromium`` (``apt-get install chromium``; another binary: ``SARD_CHROMIUM=/path``) and the
``playwright`` Python package, which drives it without downloading a browser of its own. Skipped only where
Chromium is absent. Screenshots go to ``$SARD_SCREENSHOTS`` (default: the test's temporary folder).
"""

from __future__ import annotations

import io
import os
import shutil
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

from sard import image_io  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--headless=new", "--disable-gpu",
                 "--disable-dev-shm-usage"]
TIMEOUT_MS = 120_000  # generous: the test machines are slow and busy, and this is no timing test


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def url():
    demo = load_app().create_demo(make_pipeline).queue(max_size=8)
    demo.launch(prevent_thread_lock=True, quiet=True)
    yield demo.local_url
    demo.close()


@pytest.fixture
def page(browser, url):
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.set_default_timeout(TIMEOUT_MS)
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    page.get_by_text("Model: 2 defect types").wait_for()  # the pipeline is loaded and the chooser filled
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


def _downloads(page, url) -> dict[str, np.ndarray]:
    """Generate, wait for the download list, and fetch its files: {file name: pixels}."""
    page.locator('#sard-files a[download$="_mask.png"]').wait_for()
    files = {}
    for link in page.locator("#sard-files a[download]").all():
        with urllib.request.urlopen(urljoin(url, link.get_attribute("href"))) as response:
            files[link.get_attribute("download")] = np.asarray(PIL.Image.open(io.BytesIO(response.read())))
    return files


def test_upload_paint_generate(page, url, tmp_path):
    # Generate without an image: an error that says what to do, and the page stays usable.
    page.locator("#sard-generate").click()
    page.get_by_text("Upload an image first").first.wait_for()

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
    files = _downloads(page, url)
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


def test_example_mask_shows_where_it_is_and_is_used(page, url, tmp_path):
    app = load_app()
    name = "tile_crack.png"
    page.get_by_text(next(label for file, _, label in app.EXAMPLE_ROWS if file == name)).click()
    shown = _wait_for_canvas(page, lambda px: _red(px).sum() > 30)
    preset = image_io.decode_mask(app.EXAMPLES / name.replace(".png", "_mask.png"))
    # Where the image sits on the canvas: rows and columns mostly covered by the dark tile (and the paint on
    # it), which the label's text and the toolbar's icons are not.
    on_image = (shown.max(axis=2) < 200) | _red(shown)
    rows, cols = np.nonzero(on_image.mean(axis=1) > 0.6)[0], np.nonzero(on_image.mean(axis=0) > 0.6)[0]
    top, left, height, width = rows.min(), cols.min(), np.ptp(rows) + 1, np.ptp(cols) + 1
    assert abs(width / height - preset.shape[1] / preset.shape[0]) < 0.05  # found the whole image
    red_rows, red_cols = np.nonzero(_red(shown[top : top + height, left : left + width]))
    top = left = 0
    assert red_rows.size, "the preset mask is not drawn on the image"
    mask_rows, mask_cols = np.nonzero(preset)
    assert abs((red_rows.mean() - top) / height - mask_rows.mean() / preset.shape[0]) < 0.05
    assert abs((red_cols.mean() - left) / width - mask_cols.mean() / preset.shape[1]) < 0.05
    page.screenshot(path=_screenshot_dir(tmp_path) / "demo_example.png", full_page=True)

    page.locator("#sard-generate").click()
    files = _downloads(page, url)
    assert np.array_equal(files["tile_crack_mask.png"] > 0, preset)


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
