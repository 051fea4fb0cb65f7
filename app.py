"""SARD demo: upload a normal product image, paint where a defect should go, and get it painted in.

    python app.py                                   # the bundled magnetic-tile model, on this machine
    python app.py --checkpoint PATH_OR_HUB_ID --host 0.0.0.0 --port 7860 --share

Everything but the widgets lives in ``sard/demo/``. (No ``from __future__ import annotations`` here:
``gr.api`` reads the real type hints of ``synthesize`` to describe the API.)
"""

import argparse
import os
import re
from contextlib import contextmanager
from pathlib import Path

import gradio as gr
import torch
from gradio import FileData

import sard
from sard.demo.editor import editor_mask, editor_value
from sard.demo.generate import OUTPUT_MAX_AGE_S, generate
from sard.demo.inputs import MAX_SEED, MAX_VARIATIONS, file_path, read_image, read_mask, resolve_seed
from sard.demo.models import LazyPipeline, checkpoint_problem

EXAMPLES = Path(__file__).resolve().parent / "examples"
# (image, painted mask, defect type, label); the masks are editor layers, also readable as mask files.
EXAMPLE_ROWS = [
    ("tile_blowhole.png", "blowhole", "Magnetic tile: a small pit"),
    ("tile_crack.png", "crack", "Magnetic tile: a thin crack"),
    ("tile_break.png", "break", "Magnetic tile: a chipped edge"),
    ("tile_fray.png", "fray", "Magnetic tile: a worn band"),
    ("tile_uneven.png", "uneven", "Magnetic tile: an uneven patch"),
    ("ballscrew_pit.png", "blowhole", "Ball screw (the default model has never seen one)"),
]
# All examples have this size, and so does the editor's empty canvas: Gradio 6.31 places a preset mask layer
# centred in the initial canvas, not on the image, so the two must agree for the mask to show where it is.
EXAMPLE_SIZE = (384, 224)
DESCRIPTION = """# SARD: paint realistic defects into your masks
Upload a defect-free product image (or pick an example), paint the region where a defect should appear,
choose its type and press **Generate**. Only the painted pixels change; the downloaded PNG equals your upload
everywhere else, in its own mode and bit depth."""
CREDITS = """Examples: magnetic tiles from Y. Huang, C. Qiu, K. Yuan, *Surface defect saliency of magnetic tile*,
The Visual Computer 36, 85-96 (2020), used for research with that citation; ball screw from BSData, Schlagenhauf
et al., Data in Brief 39 (2021), CC BY-SA 4.0. See `examples/ATTRIBUTION.md`."""


@contextmanager
def user_errors():
    """Show a ``ValueError`` (bad input, with what to do) in the page as a ``gr.Error``; the app keeps serving."""
    try:
        yield
    except ValueError as error:
        raise gr.Error(str(error)) from None


def _stem(path: str | None) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", Path(path).stem)[:64] if path else "image"


def create_demo(pipe_or_loader) -> gr.Blocks:
    """The demo's page. ``pipe_or_loader``: a [`SARDPipeline`] or a function that loads one on first use."""
    model = LazyPipeline(pipe_or_loader)

    def on_load():
        pipe = model.get()
        steps = pipe.scheduler.config.num_train_timesteps
        info = f"Model: {len(pipe.defect_types)} defect types, {steps} steps at most."
        chooser = gr.Dropdown(choices=pipe.defect_types, value=pipe.defect_types[0])
        return chooser, gr.Slider(maximum=steps, value=steps), info

    def on_upload(path):
        with user_errors():
            return editor_value(read_image(path))

    def on_example(path, editor):
        # The example's defect type, where this checkpoint knows it (the examples are made for the default model).
        kind = {Path(name).stem: kind for name, kind, _ in EXAMPLE_ROWS}.get(Path(path or "").stem)
        return gr.Dropdown(value=kind) if kind in model.get().defect_types else gr.skip()

    def on_generate(
        path, editor, defect, seed, randomize, steps, count,
        progress=gr.Progress(track_tqdm=True),  # noqa: B008 - how Gradio shows the pipeline's tqdm bar
    ):  # fmt: skip
        with user_errors():
            image = read_image(path)
            mask = editor_mask(editor, image.size)
            seed = resolve_seed(seed, randomize)
            out = generate(model.get(), image, mask, defect, seed, steps, count, stem=_stem(path))
        gallery = [(im, f"seed {out.seed + i}") for i, im in enumerate(out.outlined)]
        return (out.before, out.afters[0]), out.mask, gallery, out.files, out.seed, (out.before, out.afters)

    def on_select(shown, event: gr.SelectData):
        before, afters = shown
        return before, afters[event.index]

    def synthesize(image: FileData, mask: FileData, defect: str = "", seed: int = 0, steps: int = 0) -> FileData:
        """Paint a defect into `mask` (white = defect, the image's size) on `image`. `defect`: one of the model's
        types ("" = any); `steps`: 0 = the model's default. Returns the result PNG: the image's own mode and
        bit depth, equal to the image outside the mask."""
        with user_errors():
            pixels = read_image(file_path(image))
            region = read_mask(file_path(mask), pixels.size)
            stem = _stem(file_path(image))
            out = generate(model.get(), pixels, region, defect, resolve_seed(seed, False),
                                      steps, stem=stem)
        return FileData(path=out.files[0])

    # Gradio's copies of uploads and results are deleted after an hour, like the download folders.
    with gr.Blocks(title="SARD defect synthesis", delete_cache=(600, OUTPUT_MAX_AGE_S)) as demo:
        gr.Markdown(DESCRIPTION)
        model_info = gr.Markdown("Loading the model ...")
        with gr.Row():
            with gr.Column():
                upload = gr.File(label="1. Normal image (PNG, JPEG, TIFF, BMP; 8 or 16 bit)", file_types=["image"],
                                 elem_id="sard-upload")
                editor = gr.ImageEditor(
                    label="2. Paint the defect region (brush; eraser and undo in the toolbar)", type="pil",
                    sources=(), transforms=(), layers=False, canvas_size=EXAMPLE_SIZE, height=420,
                    placeholder="Upload an image or pick an example",
                    brush=gr.Brush(colors=[("#ff3b30", 0.6)], default_color=("#ff3b30", 0.6), color_mode="fixed"),
                    eraser=gr.Eraser(), elem_id="sard-editor",
                )
                with gr.Row():
                    defect = gr.Dropdown(label="Defect type", choices=[], interactive=True)
                    count = gr.Slider(1, MAX_VARIATIONS, value=1, step=1, label="Variations")
                with gr.Row():
                    seed = gr.Number(label="Seed", value=0, precision=0, minimum=0, maximum=MAX_SEED)
                    randomize = gr.Checkbox(label="Random seed", value=True)
                    steps = gr.Slider(1, 4, value=4, step=1, label="Steps")
                run = gr.Button("Generate", variant="primary", elem_id="sard-generate")
            with gr.Column():
                slider = gr.ImageSlider(label="Before / after", type="pil", format="png", interactive=False,
                                        elem_id="sard-slider")
                with gr.Row():
                    mask_view = gr.Image(label="Mask", type="pil", format="png", interactive=False)
                    gallery = gr.Gallery(label="Variations, mask outlined", columns=2, format="png",
                                         object_fit="contain")
                files = gr.File(label="Download: result(s) and mask, PNG at full size", file_count="multiple",
                                elem_id="sard-files")
        shown = gr.State()
        gr.Examples(
            [[str(EXAMPLES / name), _example_editor(name)] for name, _, _ in EXAMPLE_ROWS], inputs=[upload, editor],
            outputs=defect, fn=on_example, run_on_click=True, cache_examples=False, api_visibility="private",
            example_labels=[label for *_, label in EXAMPLE_ROWS],
        )
        gr.Markdown(CREDITS)

        # The page's own events stay out of the API; scripts use `synthesize` (see README).
        private = {"api_visibility": "private"}
        demo.load(on_load, outputs=[defect, steps, model_info], **private)
        upload.upload(on_upload, upload, editor, **private)
        upload.clear(lambda: None, outputs=editor, **private)
        run.click(
            on_generate, [upload, editor, defect, seed, randomize, steps, count],
            [slider, mask_view, gallery, files, seed, shown], concurrency_id="pipeline", **private,
        )
        gallery.select(on_select, shown, slider, **private)
        gr.api(synthesize, api_name="synthesize", concurrency_id="pipeline")
    return demo


def _example_editor(name: str) -> dict:
    """An example as the editor's value: the image with its preset mask painted on a layer."""
    mask = EXAMPLES / f"{Path(name).stem}_mask.png"
    return {"background": str(EXAMPLES / name), "layers": [str(mask)], "composite": None}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="The SARD demo: paint realistic defects into masks you draw.")
    parser.add_argument("--checkpoint", default=os.environ.get("SARD_CHECKPOINT") or sard.DEFAULT_CHECKPOINT,
                        help="a checkpoint folder or Hugging Face Hub id (default: $SARD_CHECKPOINT, else the "
                             "bundled magnetic-tile model)")
    parser.add_argument("--host", default=None, help="address to serve on, e.g. 0.0.0.0 (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 0)) or None,
                        help="port (default: $PORT, else 7860 or the next free one)")
    parser.add_argument("--share", action="store_true", help="also serve on a temporary public gradio.live link")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    args = parser.parse_args(argv)
    if args.checkpoint is None:
        parser.error("this copy of SARD has no bundled checkpoint yet: pass --checkpoint FOLDER_OR_HUB_ID "
                     "or set SARD_CHECKPOINT.")
    problem = checkpoint_problem(args.checkpoint)
    if problem:
        parser.error(problem)
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    demo = create_demo(lambda: sard.SARDPipeline.from_pretrained(args.checkpoint).to(device))
    demo.queue(max_size=16).launch(server_name=args.host, server_port=args.port, share=args.share)


if __name__ == "__main__":
    main()
