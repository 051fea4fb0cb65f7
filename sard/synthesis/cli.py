"""The command line of ``train/synthesize.py``: (image, mask) pairs for a category, SARD or a baseline, written
by :func:`~sard.synthesis.writer.synthesize_category` in the MVTec-AD layout."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..config import ConfigError
from ..processes import process_state, set_threads
from .masks import MaskAugmentation
from .methods import METHODS
from .writer import SynthesisSettings, synthesize_category


def parse_args(argv=None) -> argparse.Namespace:
    """The command line of ``train/synthesize.py``."""
    parser = argparse.ArgumentParser(description="Synthesise (image, mask) pairs per defect type.")
    parser.add_argument("--data_root", required=True, help="data set root (e.g. ../shared/data or MVTec-AD)")
    parser.add_argument("--category", required=True, help="the category folder, e.g. magnetic_tile or bottle")
    parser.add_argument("--method", required=True, choices=METHODS)
    parser.add_argument("--n_per_defect", type=int, required=True, help="pairs per defect type")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--checkpoint", help="SARD pipeline folder or hub id (needed for --method sard)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data_format", default="auto", choices=("auto", "mvtec", "btad", "folder"))
    parser.add_argument("--texture_dir", help="DRAEM textures (default: the other categories' normal images)")
    parser.add_argument("--no_foreground", action="store_true", help="let masks fall anywhere in the frame")
    parser.add_argument("--batch_size", type=int, default=8, help="images per pipeline call (sard)")
    parser.add_argument("--num_inference_steps", type=int, help="reverse steps (sard; default: the model's)")
    parser.add_argument("--background", default="clean", choices=("clean", "noised"),
                        help="sard: the background the network sees at each step; noised re-noises it to the "
                        "step's level as RePaint does (an ablation)")
    parser.add_argument("--no_region_constraint", action="store_true",
                        help="sard: let the network update the whole crop and paste inside the mask only at the "
                        "end (an ablation: what inpainting without RCD does)")
    parser.add_argument("--rotate90", action="store_true", help="also turn masks by multiples of 90 degrees")
    parser.add_argument("--max_rotation", type=float, default=15.0, help="degrees")
    parser.add_argument("--scale_jitter", type=float, default=0.25)
    parser.add_argument("--shift", type=float, default=0.1, help="fraction of the image size")
    parser.add_argument("--match_surroundings", type=int, default=0,
                        help="sard: draw this many placements per mask and keep the one whose surroundings are "
                        "most like its training defect's (e.g. 8; 0: the first draw)")
    parser.add_argument("--num_threads", type=int, default=0,
                        help="CPU threads per process (0: the cores divided among the local processes)")
    return parser.parse_args(argv)


def main(argv=None) -> Path:
    """``train/synthesize.py``: parse the command line, synthesise the category, say where it went."""
    args = parse_args(argv)
    if args.method == "sard" and not args.checkpoint:
        raise ConfigError("--method sard needs --checkpoint (a SARD pipeline folder or hub id).")
    if args.match_surroundings < 0:
        raise ConfigError(f"--match_surroundings must be 0 (the first draw) or more, got {args.match_surroundings}.")
    augmentation = MaskAugmentation(rotate90=args.rotate90, max_rotation=args.max_rotation,
                                    scale_jitter=args.scale_jitter, shift=args.shift,
                                    match_surroundings=args.match_surroundings)
    settings = SynthesisSettings(
        method=args.method, n_per_defect=args.n_per_defect, seed=args.seed,
        checkpoint=os.fspath(args.checkpoint) if args.method == "sard" else None,
        texture_dir=args.texture_dir if args.method == "draem" else None, foreground=not args.no_foreground,
        augmentation=augmentation, batch_size=args.batch_size, num_inference_steps=args.num_inference_steps,
        background=args.background if args.method == "sard" else "clean",
        region_constraint=not (args.no_region_constraint and args.method == "sard"),
    )
    state = process_state()
    set_threads(args.num_threads, state)
    root = synthesize_category(args.data_root, args.category, args.output_dir, settings, args.data_format, state)
    if state.is_main_process:
        manifest = root / "manifest.jsonl"
        print(f"Wrote {root} ({args.method}, {args.n_per_defect} per defect type); manifest: {manifest}")
    return root
