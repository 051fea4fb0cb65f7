"""What one defect costs to paint on a category's own held-out masks, at several working settings, in one run.

    python -m bench.defect_cost --data_root ../shared/data --category bottle \\
        --checkpoint sard/checkpoints/bottle --settings 512:0 900:0 900:256 [--masks_per_type 8] [--threads 1]
    python -m bench.defect_cost ... --settings 900:256:plain 900:256:grain   # what grain matching costs

Each setting is ``RESOLUTION:MAX_CROP_SIZE`` (``SARDPipeline``'s ``resolution`` and ``max_crop_size``; 0: no
bound), optionally with ``:grain`` or ``:plain`` (grain matching on or off; default: the model's setting); the
first is the reference the others are compared with (the cost "today"). The masks are the fidelity
command's held-out masks painted into its held-out normal images (:func:`sard.evaluation.fidelity.fidelity_items`),
each painted once per setting at batch 1, the settings interleaved mask by mask so that a load that comes and
goes hits them alike. The cost of a call follows the crop the network runs on, not the weights, so one checkpoint
serves every setting. Printed per setting: the mean wall-clock and CPU seconds per defect, the working pixels per
defect (the crop's area at working scale, which does not depend on the machine's load) and each as a ratio to the
reference.
"""

from __future__ import annotations

import argparse
import functools

import PIL.Image
import torch

from sard import SARDPipeline
from sard.datasets import read_dataset
from sard.evaluation import fidelity

from .common import add_device_arguments, apply_device_arguments, machine, timed_both

GRAIN = {"grain": True, "plain": False}


def parse_setting(text: str) -> tuple[int, int, bool | None]:
    """``RESOLUTION:MAX_CROP_SIZE[:grain|:plain]`` -> ``(resolution, max_crop_size, grain)`` (None: the model's)."""
    parts = text.split(":")
    try:
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in GRAIN):
            raise ValueError
        resolution, max_crop_size = (int(v) for v in parts[:2])
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a setting is RESOLUTION:MAX_CROP_SIZE, e.g. 900:256, with "
                                         "an optional :grain or :plain") from None
    if resolution < 1 or max_crop_size < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the resolution must be positive and the bound 0 or more")
    return resolution, max_crop_size, GRAIN[parts[2]] if len(parts) == 3 else None


def setting_name(setting: tuple[int, int, bool | None]) -> str:
    resolution, max_crop_size, grain = setting
    return f"{resolution}:{max_crop_size}" + ("" if grain is None else ":grain" if grain else ":plain")


def measure(pipe: SARDPipeline, items, settings: list[tuple[int, int, bool | None]], device: str) -> dict:
    """``{setting: (wall seconds, CPU seconds, working pixels)}``, summed over every item."""
    totals = {s: [0.0, 0.0, 0] for s in settings}
    for item in items:
        canvas = PIL.Image.open(item.canvas)
        canvas.load()
        _, mask, _ = fidelity.real_on_canvas(item, canvas.size)  # the real mask on the canvas's pixel grid
        for setting in settings:
            resolution, max_crop_size, grain = setting
            paint = functools.partial(pipe, canvas, mask, defect=item.defect, generator=item.generator(0, 0),
                                      resolution=resolution, max_crop_size=max_crop_size, grain=grain)

            wall, cpu = timed_both(paint, device)
            box = pipe.crop_box(mask, resolution, max_crop_size)
            total = totals[setting]
            total[0] += wall
            total[1] += cpu
            total[2] += box.work_height * box.work_width
    return {s: tuple(v) for s, v in totals.items()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_root", required=True)
    parser.add_argument("--category", required=True)
    parser.add_argument("--checkpoint", required=True, help="a SARD pipeline folder (the cost does not depend "
                        "on its weights)")
    parser.add_argument("--settings", nargs="+", type=parse_setting, required=True,
                        help="RESOLUTION:MAX_CROP_SIZE[:grain|:plain], the first one the reference")
    parser.add_argument("--masks_per_type", type=int, default=8, help="held-out masks per defect type")
    add_device_arguments(parser)
    args = parser.parse_args(argv)
    apply_device_arguments(args)
    device = "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    pipe = SARDPipeline.from_pretrained(args.checkpoint).to(device)
    pipe.set_progress_bar_config(disable=True)
    dataset = read_dataset(args.data_root, args.category)
    types = [d for d in dataset.defect_types if d in pipe.defect_types]
    items, _ = fidelity.fidelity_items(dataset, args.masks_per_type, 0, types)
    print(machine())
    print(f"{args.category}: {len(items)} held-out masks ({', '.join(types)}), {args.checkpoint}, batch 1, {device}")
    # One untimed round: the first calls pay for allocations and lazy initialisation.
    measure(pipe, items[:1], args.settings, device)
    totals = measure(pipe, items, args.settings, device)
    reference = totals[args.settings[0]]
    print(f"\n{'resolution:max_crop_size':>31} {'wall s/defect':>14} {'CPU s/defect':>13} {'work px/defect':>15}"
          f" {'ratio wall / CPU / px':>24}")
    for setting, (wall, cpu, pixels) in totals.items():
        ratios = f"{wall / reference[0]:.2f} / {cpu / reference[1]:.2f} / {pixels / reference[2]:.2f}"
        n = len(items)
        print(f"{setting_name(setting):>31} {wall / n:14.3f} {cpu / n:13.3f} {pixels / n:15.0f} {ratios:>24}")
    return totals


if __name__ == "__main__":
    main()
