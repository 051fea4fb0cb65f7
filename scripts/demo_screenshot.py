"""The README's screenshot of the demo (``docs/demo.png``): the bundled models served, the "small pit" example
clicked and Generate pressed with seed 0, in headless Chromium at 1400 x 1000.

    python scripts/demo_screenshot.py [--output docs/demo.png] [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import shutil
from pathlib import Path

import PIL.Image
from playwright.sync_api import sync_playwright

from sard.demo.models import ModelCache, model_choices

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=str(ROOT / "docs" / "demo.png"))
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--model", default=None, help="the model to choose first (its label), e.g. 'Ball screw'")
    parser.add_argument("--example", default="Magnetic tile: a small pit", help="the example to click (its label)")
    args = parser.parse_args()
    spec = importlib.util.spec_from_file_location("sard_app", ROOT / "app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    demo = app.create_demo(ModelCache(*model_choices())).queue()
    demo.launch(prevent_thread_lock=True, quiet=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium,
                                                 args=["--no-sandbox", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(300_000)
            page.goto(demo.local_url)
            if args.model:
                page.locator("#sard-model input").click()
                page.get_by_role("option", name=args.model, exact=True).click()
            page.locator("#sard-examples").get_by_text(args.example, exact=True).click()
            page.get_by_label("Random seed").uncheck()
            page.get_by_label("Seed", exact=True).fill("0")
            page.locator("#sard-generate").click()
            page.locator('#sard-files a[download$="_seed0.png"]').wait_for()
            page.locator("#sard-mask img").wait_for()
            page.wait_for_timeout(2000)  # the slider and gallery images finish drawing
            shot = page.screenshot(full_page=True)
            browser.close()
    finally:
        demo.close()
    PIL.Image.open(io.BytesIO(shot)).convert("RGB").save(args.output, optimize=True)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
