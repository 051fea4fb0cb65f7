"""The fidelity command (``train/fidelity.py``): how close a SARD model's defects come to real ones, for one
category. The figures are defined in :mod:`.fidelity`, the report in :mod:`.fidelity_report`."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..config import ConfigError
from ..datasets import read_dataset
from ..pipeline import SARDPipeline
from . import fidelity, fidelity_report
from .report import write_csv


def parse_args(argv=None) -> argparse.Namespace:
    """The command line of ``train/fidelity.py``."""
    parser = argparse.ArgumentParser(description="How close a SARD model's defects come to real ones: the fidelity "
                                     "figures for one category.")
    parser.add_argument("--checkpoint", required=True, help="SARD pipeline folder or hub id")
    parser.add_argument("--data_root", required=True, help="data set root (e.g. ../shared/data or MVTec-AD)")
    parser.add_argument("--category", required=True, help="the category folder, e.g. magnetic_tile")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--data_format", default="auto", choices=("auto", "mvtec", "btad", "folder"))
    parser.add_argument("--masks_per_type", type=int, default=64, help="held-out masks painted per defect type")
    parser.add_argument("--diversity_masks", type=int, default=8,
                        help="of those, how many are painted with every seed (per type)")
    parser.add_argument("--seeds", type=int, default=4, help="seeds per diversity mask (at least 2)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the painting and the classifier test")
    parser.add_argument("--folds", type=int, default=5, help="k of the classifier test's cross-validation")
    parser.add_argument("--c2st_steps", type=int, default=200, help="optimiser steps of each fold's classifier")
    parser.add_argument("--crop_size", type=int, default=48, help="side of the classifier's crops, pixels")
    parser.add_argument("--crop_scale", default="native", choices=("native", "fit"),
                        help="classifier crops: a window of --crop_size pixels at the image's own scale, or the "
                        "box around the mask resampled to --crop_size")
    parser.add_argument("--context", type=int, default=0,
                        help="pixels around the mask the classifier sees (default: the inside of the mask only)")
    parser.add_argument("--jpeg_quality", type=int, default=0,
                        help="save each output as a JPEG of this quality before measuring it, as the real images "
                        "are (default 0: measure the output as it is)")
    parser.add_argument("--resolution", type=int, default=None,
                        help="paint at this working resolution (longer side, pixels) instead of the model's own, "
                        "e.g. an image's full size")
    parser.add_argument("--max_crop_size", type=int, default=None,
                        help="bound on the longer side of a painting crop, working pixels (default: the model's; "
                        "0: none): masks too large for it are painted at a lower scale")
    parser.add_argument("--grain", choices=("model", "on", "off"), default="model",
                        help="match the surroundings' fine texture inside each mask after painting (sard.grain): "
                        "as the model is saved (default), or on or off")
    parser.add_argument("--ring_width", type=int, default=3, help="pixels of the ring around a mask")
    parser.add_argument("--num_inference_steps", type=int, help="reverse steps (default: the model's)")
    parser.add_argument("--batch_size", type=int, default=8, help="images per pipeline call")
    parser.add_argument("--defects", default="", help="comma-separated defect types (default: all)")
    parser.add_argument("--num_threads", type=int, default=0, help="CPU threads (0: torch's choice)")
    parser.add_argument("--device", default="cpu",
                        help="where the pipeline paints, e.g. cuda (float32; the noise is drawn on the CPU either "
                             "way, so a GPU paints what the CPU paints up to rounding; the classifier test stays on "
                             "the CPU)")
    args = parser.parse_args(argv)
    if args.seeds < 2:
        parser.error("--seeds must be at least 2 (the diversity is a spread across seeds).")
    if args.masks_per_type < 1 or args.diversity_masks < 0 or args.folds < 2:
        parser.error("--masks_per_type must be at least 1, --diversity_masks at least 0, --folds at least 2.")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no GPU is visible to torch; leave it out to paint on the CPU.")
    return args


def _print(*parts) -> None:
    print(*parts, flush=True)


def main(argv=None) -> list[dict]:
    """``train/fidelity.py``: paint the held-out masks, measure, write the report and print it."""
    args = parse_args(argv)
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    timing, started, cpu_started = {}, time.perf_counter(), time.process_time()
    dataset = read_dataset(args.data_root, args.category, args.data_format)
    pipe = SARDPipeline.from_pretrained(args.checkpoint).to(args.device)
    pipe.set_progress_bar_config(disable=True)
    known = set(pipe.defect_types)
    wanted = [d.strip() for d in args.defects.split(",") if d.strip()] or dataset.defect_types
    unknown = [d for d in wanted if d not in dataset.defect_types]
    if unknown:
        have = ", ".join(dataset.defect_types)
        raise ConfigError(f"{', '.join(unknown)} not in {dataset.root} (it has {have}).")
    notes = [f"{d}: the checkpoint does not know this type; not measured." for d in wanted if d not in known]
    wanted = [d for d in wanted if d in known]
    if not wanted:
        raise ConfigError(f"the checkpoint knows {', '.join(sorted(known))}, none of the types measured.")
    items, item_notes = fidelity.fidelity_items(dataset, args.masks_per_type, args.diversity_masks, wanted)
    notes += item_notes
    if len(items) < 2:
        raise ConfigError(f"{len(items)} held-out anomaly to paint; the classifier test needs at least 2.")
    calls = sum(args.seeds if item.diversity else 1 for item in items)
    _print(f"{args.category}: {len(items)} held-out masks ({', '.join(wanted)}), {calls} images to paint")
    for note in notes:
        _print(f"note: {note}")

    def progress(done: int) -> None:
        if done % 16 == 0 or done == len(items):
            _print(f"  painted {done}/{len(items)} ({time.perf_counter() - started:.0f} s)")

    t = time.perf_counter()
    results = fidelity.paint_items(pipe, items, args.seeds, args.seed, args.ring_width, args.crop_size,
                                   args.num_inference_steps, args.batch_size, progress=progress,
                                   crop_scale=args.crop_scale, context=args.context,
                                   jpeg_quality=args.jpeg_quality, resolution=args.resolution,
                                   max_crop_size=args.max_crop_size,
                                   grain={"model": None, "on": True, "off": False}[args.grain])
    timing["paint_s"] = time.perf_counter() - t
    np.savez_compressed(output_dir / "c2st_crops.npz", real=np.stack([r.real_crop for r in results]),
                        painted=np.stack([r.painted_crop for r in results]),
                        pasted=np.stack([r.pasted_crop for r in results]),
                        roundtrip=np.stack([r.roundtrip_crop for r in results]),
                        defect=np.array([r.item.defect for r in results]))
    t = time.perf_counter()
    tests = {against: fidelity.run_c2st(results, args.folds, args.seed, args.c2st_steps, against=against)
             for against in fidelity.AGAINST}
    test = tests["painted"]
    timing["c2st_s"] = time.perf_counter() - t
    rows = fidelity.fidelity_rows(args.category, results, tests, args.seeds)

    fidelity_report.write_fidelity_csv(rows, output_dir / "fidelity.csv")
    write_csv(fidelity.item_rows(results, test), output_dir / "fidelity_items.csv", fidelity.ITEM_COLUMNS)
    picks = fidelity.spread(len(results), 12)
    fidelity_report.crop_grid([results[i].real_crop for i in picks], [results[i].painted_crop for i in picks],
                              [f"{results[i].item.defect} {results[i].item.j}" for i in picks],
                              output_dir / "c2st_crops.png")
    table, goals = fidelity_report.markdown_table(rows), fidelity_report.goals_summary(rows)
    command = "python train/fidelity.py " + " ".join(sys.argv[1:]) if argv is None else "main(...)"
    settings = {k: v for k, v in vars(args).items()}
    timing["total_s"] = time.perf_counter() - started
    timing["cpu_s"] = time.process_time() - cpu_started
    (output_dir / "fidelity.md").write_text(
        f"# Fidelity: {args.category}, {args.checkpoint}\n\n{table}\n\n{goals}\n\n"
        f"Classifier test: {len(test.fold_accuracies)}-fold, held-out accuracies "
        f"{', '.join(f'{a:.2f}' for a in test.fold_accuracies)}; controls: real defects pasted into the normal "
        f"images {', '.join(f'{a:.2f}' for a in tests['pasted'].fold_accuracies)}, real defects at the model's "
        f"working scale {', '.join(f'{a:.2f}' for a in tests['roundtrip'].fold_accuracies)}."
        f"\n\nSettings: {json.dumps(settings)}\n" + "".join(f"\nNote: {n}" for n in notes) + "\n"
    )
    (output_dir / "fidelity.json").write_text(json.dumps({
        "command": command, "settings": settings, "notes": notes, "items": len(items), "images_painted": calls,
        "c2st_fold_accuracies": {k: t.fold_accuracies for k, t in tests.items()},
        "timing": {k: round(v, 1) for k, v in timing.items()},
        "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
    }, indent=2) + "\n")
    _print("")
    _print(table)
    _print("")
    _print(goals)
    _print(f"\nWrote {output_dir / 'fidelity.csv'} ({timing['total_s']:.0f} s: painting {timing['paint_s']:.0f} s, "
           f"classifier tests {timing['c2st_s']:.0f} s; {timing['cpu_s']:.0f} s of CPU time)")
    return rows
