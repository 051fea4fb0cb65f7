"""SARD demo: pick a model, upload a normal product image, paint where a defect should go, and get it painted in.

    python app.py                                   # every bundled model, on this machine
    python app.py --checkpoint PATH_OR_HUB_ID --host 0.0.0.0 --port 7860 --share

Everything but the widgets lives in ``sard/demo/``. (No ``from __future__ import annotations`` here: ``gr.api``
reads the real type hints of ``synthesize`` to describe the API.) Testing hook: ``SARD_DEMO_DELAY_S=2`` (or
``create_demo(..., delay_s=2)``) makes every server-side event wait that long first, as on a busy machine.
"""

import argparse
import os
import re
import time
from contextlib import contextmanager
from pathlib import Path

import gradio as gr
import torch
from gradio import FileData

from sard.demo import sync
from sard.demo.editor import editor_value, painted_mask
from sard.demo.examples import Example, examples_for
from sard.demo.generate import OUTPUT_MAX_AGE_S, generate
from sard.demo.inputs import MAX_SEED, MAX_VARIATIONS, file_path, read_image, read_mask, resolve_seed
from sard.demo.models import DEFAULT_CACHE_BYTES, ModelCache, checkpoint_problem, describe, model_choices

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
# Each example's mask is <stem>_mask.png beside it (an editor layer, also readable as a mask file).
EXAMPLES = [
    Example(EXAMPLES_DIR / "tile_blowhole.png", "blowhole", "magnetic-tile", "Magnetic tile: a small pit"),
    Example(EXAMPLES_DIR / "tile_crack.png", "crack", "magnetic-tile", "Magnetic tile: a thin crack"),
    Example(EXAMPLES_DIR / "tile_break.png", "break", "magnetic-tile", "Magnetic tile: a chipped edge"),
    Example(EXAMPLES_DIR / "tile_fray.png", "fray", "magnetic-tile", "Magnetic tile: a worn band"),
    Example(EXAMPLES_DIR / "tile_uneven.png", "uneven", "magnetic-tile", "Magnetic tile: an uneven patch"),
    Example(EXAMPLES_DIR / "ballscrew_pit.png", "pitting", "ball-screw", "Ball screw: a small pit"),
    Example(EXAMPLES_DIR / "bottle_contamination.png", "contamination", "bottle", "Bottle: contamination inside"),
]
# All examples have this size, and so does the editor's empty canvas: Gradio 6.31 places a preset mask layer
# centred in the initial canvas, not on the image, so the two must agree for the mask to show where it is.
EXAMPLE_SIZE = (384, 224)
DESCRIPTION = """# SARD: paint realistic defects into your masks
Pick a model, upload a defect-free image of its product (or pick an example), paint the region where a defect
should appear, choose its type and press **Generate**. Only the painted pixels change; the downloaded PNG
equals your upload everywhere else, in its own mode and bit depth."""
CREDITS = """Examples: magnetic tiles from Y. Huang, C. Qiu, K. Yuan, *Surface defect saliency of magnetic tile*,
The Visual Computer 36, 85-96 (2020), used for research with that citation; ball screw from BSData, Schlagenhauf
et al., Data in Brief 39 (2021), CC BY-SA 4.0; bottle from MVTec-AD, Bergmann et al., CVPR 2019, CC BY-NC-SA 4.0
(non-commercial). See `examples/ATTRIBUTION.md`."""


@contextmanager
def user_errors():
    """Show a ``ValueError`` (bad input, with what to do) in the page as a ``gr.Error``; the app keeps serving."""
    try:
        yield
    except ValueError as error:
        raise gr.Error(str(error)) from None


def _stem(path: str | None) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", Path(path).stem)[:64] if path else "image"


def create_demo(models, examples: list[Example] | None = None, delay_s: float = 0.0) -> gr.Blocks:
    """The demo's page.

    Args:
        models: a [`~sard.demo.models.ModelCache`], a list of [`~sard.demo.models.ModelChoice`] (the first is
            the default), a [`SARDPipeline`], or a function that loads one on first use.
        examples (`list[Example]`, *optional*): the page's examples (default: :data:`EXAMPLES`); those made
            for a model that ``models`` lacks are left out.
        delay_s (`float`): seconds every server-side event waits first (testing: a busy server).
    """
    cache = ModelCache.of(models)
    examples = [e for e in (EXAMPLES if examples is None else examples) if e.model in cache.choices]
    by_key = {example.key: example for example in examples}

    def pause():
        if delay_s:
            time.sleep(delay_s)

    def model_widgets(key: str, defect: str | None = None):
        """The widgets that follow the model: the chooser itself, the types (``defect`` chosen, else the first),
        the steps, the model's line, the examples."""
        types, steps = cache.info(key)
        shown = examples_for(key, examples)
        return (
            key,
            gr.Dropdown(choices=types, value=defect or types[0]),
            gr.Slider(maximum=steps, value=steps),
            describe(cache.choice(key), types, steps),
            gr.Dataset(samples=[[e.key] for e in shown], sample_labels=[e.label for e in shown]),
        )

    def on_model(key):
        pause()
        with user_errors():
            return model_widgets(key)

    def on_example(sample):
        pause()
        example = by_key[sample[0]]
        return str(example.image), example.editor_value(), *model_widgets(example.model, example.defect)

    def on_upload(path):
        pause()
        with user_errors():
            return editor_value(read_image(path))

    def on_clear():
        pause()

    def on_generate(
        path, editor, model, defect, seed, randomize, steps, count,
        progress=gr.Progress(track_tqdm=True),  # noqa: B008 - how Gradio shows the pipeline's tqdm bar
    ):  # fmt: skip
        pause()
        with user_errors():
            image = read_image(path)
            mask = painted_mask(editor, image)
            seed = resolve_seed(seed, randomize)
            out = generate(cache.get(model), image, mask, defect, seed, steps, count, stem=_stem(path))
        gallery = [(im, f"seed {out.seed + i}") for i, im in enumerate(out.outlined)]
        return (out.before, out.afters[0]), out.mask, gallery, out.files, out.seed, (out.before, out.afters)

    def on_select(shown, event: gr.SelectData):
        before, afters = shown
        return before, afters[event.index]

    def synthesize(
        image: FileData, mask: FileData, defect: str = "", seed: int = 0, steps: int = 0, model: str = ""
    ) -> FileData:
        """Paint a defect into `mask` (white = defect, the image's size) on `image`. `defect`: one of the model's
        types ("" = any); `steps`: 0 = the model's default; `model`: one of the demo's models ("" = the
        default one). Returns the result PNG: the image's own mode and bit depth, equal to the image outside
        the mask."""
        pause()
        with user_errors():
            pipe = cache.get(model)
            pixels = read_image(file_path(image))
            region = read_mask(file_path(mask), pixels.size)
            stem = _stem(file_path(image))
            out = generate(pipe, pixels, region, defect, resolve_seed(seed, False), steps, stem=stem)
        return FileData(path=out.files[0])

    if examples:  # served as they are (the editor and the file box get their paths)
        gr.set_static_paths(sorted({str(Path(e.image).parent) for e in examples}))
    default = cache.choice(None)
    known = default.defect_types is not None and default.steps is not None
    types, most = cache.info(default.key) if known else ([], 4)
    shown = examples_for(default.key, examples)
    # Gradio's copies of uploads and results are deleted after an hour, like the download folders.
    with gr.Blocks(title="SARD defect synthesis", delete_cache=(600, OUTPUT_MAX_AGE_S)) as demo:
        gr.Markdown(DESCRIPTION)
        with gr.Row(equal_height=True):
            model = gr.Dropdown(label="Model", choices=[(c.label, c.key) for c in cache.choices.values()],
                                value=default.key, interactive=True, scale=1, elem_id="sard-model")
            with gr.Column(scale=3):
                model_info = gr.Markdown(describe(default, types, most) if known else "Loading the model ...",
                                         elem_id="sard-model-info")
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
                    defect = gr.Dropdown(label="Defect type", choices=types, value=types[0] if types else None,
                                         interactive=True, elem_id="sard-defect")
                    count = gr.Slider(1, MAX_VARIATIONS, value=1, step=1, label="Variations")
                with gr.Row():
                    seed = gr.Number(label="Seed", value=0, precision=0, minimum=0, maximum=MAX_SEED)
                    randomize = gr.Checkbox(label="Random seed", value=True)
                    steps = gr.Slider(1, most, value=most, step=1, label="Steps", elem_id="sard-steps")
                run = gr.Button("Generate", variant="primary", elem_id="sard-generate")
            with gr.Column():
                slider = gr.ImageSlider(label="Before / after", type="pil", format="png", interactive=False,
                                        elem_id="sard-slider")
                with gr.Row():
                    mask_view = gr.Image(label="Mask", type="pil", format="png", interactive=False,
                                         elem_id="sard-mask")
                    gallery = gr.Gallery(label="Variations, mask outlined", columns=2, format="png",
                                         object_fit="contain")
                files = gr.File(label="Download: result(s) and mask, PNG at full size", file_count="multiple",
                                elem_id="sard-files")
        example_list = gr.Dataset(label="Examples", components=[gr.Textbox(visible=False)], type="values",
                                  samples=[[e.key] for e in shown], sample_labels=[e.label for e in shown],
                                  elem_id="sard-examples")
        gr.Markdown(CREDITS)
        shown_results = gr.State()

        # The page's own events stay out of the API; scripts use `synthesize` (see README). The events that
        # change what Generate reads, and Generate itself, run in the order of the clicks (sard.demo.sync);
        # those that need no model run outside the queue, so that they never wait behind running work.
        private = {"api_visibility": "private"}
        serial = {"trigger_mode": "multiple", **private}  # a click while an earlier one waits is kept (sync)
        fast = {"queue": False, "show_progress": "hidden", **serial}
        model_outputs = [model, defect, steps, model_info, example_list]
        if not known:  # a model whose types are known once it is loaded: on the page's first visit
            demo.load(on_model, model, model_outputs, js=sync.begin(1), **private).then(
                None, js=sync.END, **private)  # fmt: skip
        model.input(on_model, model, model_outputs, js=sync.begin(1), **fast).then(None, js=sync.END, **private)
        example_list.click(on_example, example_list, [upload, editor, *model_outputs], js=sync.begin(1), **fast).then(
            None, js=sync.END, **private)  # fmt: skip
        upload.upload(on_upload, upload, editor, js=sync.begin(1), **serial).then(None, js=sync.END, **private)
        upload.clear(on_clear, None, editor, js=sync.begin(0), **fast).then(None, js=sync.END, **private)
        # A press while another Generate runs is queued after it (with what the page showed at its own press).
        inputs = [upload, editor, model, defect, seed, randomize, steps, count]
        run.click(None, js=sync.WAIT, **serial).then(
            on_generate, inputs, [slider, mask_view, gallery, files, seed, shown_results], js=sync.read(len(inputs)),
            concurrency_id="pipeline", **serial,
        )
        gallery.select(on_select, shown_results, slider, **private)
        gr.api(synthesize, api_name="synthesize", concurrency_id="pipeline")
    return demo


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="The SARD demo: paint realistic defects into masks you draw.")
    parser.add_argument("--checkpoint", default=os.environ.get("SARD_CHECKPOINT") or None,
                        help="a checkpoint folder or Hugging Face Hub id, offered beside the bundled models and "
                             "selected first (default: $SARD_CHECKPOINT, else the bundled magnetic-tile model)")
    parser.add_argument("--host", default=None, help="address to serve on, e.g. 0.0.0.0 (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 0)) or None,
                        help="port (default: $PORT, else 7860 or the next free one)")
    parser.add_argument("--share", action="store_true", help="also serve on a temporary public gradio.live link")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--model_cache_mb", type=float, default=DEFAULT_CACHE_BYTES / 2**20,
                        help="memory the loaded models' weights may take before the least recently used ones "
                             "are dropped (default: %(default)g MiB; the model in use always stays)")
    args = parser.parse_args(argv)
    if args.checkpoint is not None:
        problem = checkpoint_problem(args.checkpoint)
        if problem:
            parser.error(problem)
    elif not model_choices()[0]:
        parser.error("this copy of SARD has no bundled checkpoint: pass --checkpoint FOLDER_OR_HUB_ID "
                     "or set SARD_CHECKPOINT.")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    choices, default = model_choices(args.checkpoint, device=device)
    cache = ModelCache(choices, default, max_bytes=int(args.model_cache_mb * 2**20))
    demo = create_demo(cache, delay_s=float(os.environ.get("SARD_DEMO_DELAY_S") or 0))
    demo.queue(max_size=16).launch(server_name=args.host, server_port=args.port, share=args.share)


if __name__ == "__main__":
    main()
