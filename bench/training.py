"""Training speed and peak memory of the shipped configs: steps/s of the training loop itself
(``sard.training.trainer.train``, what ``train/train_sard.py`` runs).

    python -m bench.training [--configs cpu-demo mvtec-256] [--warmup 3] [--steps 20] [--data_root DIR --category C]

Each config trains in a fresh process (so that its peak memory is its own) for ``warmup + steps + 1`` steps
with checkpoints and sample grids pushed past the end; the time from the start of step ``warmup + 1`` to
the start of step ``warmup + steps + 1`` gives steps/s (the loop reads its losses with ``.item()`` every
step, so GPU work is done by then). Peak memory: the process's peak resident set size
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``: Python, torch, models, data and activations together) and,
on a GPU, ``torch.cuda.max_memory_allocated``.

Data: ``--data_root``/``--category`` if given; else ``../shared/data/magnetic_tile`` next to the repository
if present; else a synthetic MVTec-layout category of 256 x 256 images written to a temporary folder. The
cost of a step depends on the batch and crop sizes and the networks, not on the pictures. ``mvtec-256`` runs
only where a GPU is visible unless named in ``--configs``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from .common import machine

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


def write_synthetic_category(root: Path, side: int = 256, per_defect: int = 6) -> tuple[Path, str]:
    """A tiny MVTec-layout category (two defect types, ``per_defect`` anomalies each, a few normals)."""
    rng = np.random.default_rng(0)
    category = root / "synthetic"

    def texture() -> np.ndarray:
        base = rng.integers(60, 180, (side, side, 1)) + rng.integers(-12, 13, (side, side, 3))
        return np.clip(base, 0, 255).astype(np.uint8)

    for folder in ("train/good", "test/good"):
        (category / folder).mkdir(parents=True)
        for i in range(3):
            PIL.Image.fromarray(texture()).save(category / folder / f"{i:03d}.png")
    for defect in ("scratch", "dent"):
        (category / "test" / defect).mkdir(parents=True)
        (category / "ground_truth" / defect).mkdir(parents=True)
        for i in range(per_defect):
            pixels, mask = texture(), np.zeros((side, side), bool)
            top, left = rng.integers(16, side - 80, 2)
            height, width = rng.integers(8, 64, 2)
            mask[top : top + height, left : left + width] = True
            pixels[mask] = np.clip(pixels[mask].astype(int) + 90, 0, 255).astype(np.uint8)
            PIL.Image.fromarray(pixels).save(category / "test" / defect / f"{i:03d}.png")
            mask_path = category / "ground_truth" / defect / f"{i:03d}_mask.png"
            PIL.Image.fromarray(mask.astype(np.uint8) * 255).save(mask_path)
    return root, "synthetic"


def child(config: str, data_root: str, category: str, output_dir: str, warmup: int, steps: int, threads: int) -> None:
    """Runs in the measured process: train, then print one JSON line with the figures."""
    import time

    from sard.training import trainer
    from sard.training.config import parse_args

    stamps: dict[int, float] = {}
    step_generator = trainer.step_generator

    def stamped(seed: int, step: int, process_index: int, draw: int = 0):  # draw 0: at the start of every step
        if not draw:
            stamps[step] = time.perf_counter()
        return step_generator(seed, step, process_index, draw)

    trainer.step_generator = stamped
    never = str(10**9)
    argv = ["--config", str(REPO / "train" / "configs" / f"{config}.yaml"), "--data_root", data_root,
            "--category", category, "--output_dir", output_dir, "--max_steps", str(warmup + steps + 1),
            "--checkpoint_every", never, "--sample_every", never, "--max_train_minutes", "0"]
    if threads:
        argv += ["--num_threads", str(threads)]
    cfg = parse_args(argv)
    trainer.train(cfg)
    seconds = stamps[warmup + steps + 1] - stamps[warmup + 1]
    figures = {
        "steps_per_s": steps / seconds,
        "seconds_per_step": seconds / steps,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # Linux reports KiB
        "threads": torch.get_num_threads(),
        "batch_size": cfg.batch_size, "crop_size": cfg.crop_size, "mixed_precision": cfg.mixed_precision,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
    }
    if torch.cuda.is_available():
        figures["cuda_peak_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
        figures["cuda_peak_reserved_mib"] = torch.cuda.max_memory_reserved() / 2**20
    print("BENCH_RESULT " + json.dumps(figures), flush=True)


def run_config(config: str, data_root: str, category: str, warmup: int, steps: int, threads: int) -> dict | None:
    with tempfile.TemporaryDirectory() as output_dir:
        command = [sys.executable, "-m", "bench.training", "--child", config, "--data_root", data_root,
                   "--category", category, "--output_dir", output_dir, "--warmup", str(warmup),
                   "--steps", str(steps), "--threads", str(threads)]
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                              env={**os.environ, "TQDM_DISABLE": "1", "PYTHONWARNINGS": "ignore"})
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            return json.loads(line.removeprefix("BENCH_RESULT "))
    print(f"  {config}: the training run failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return None


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=None, help="default: cpu-demo, plus mvtec-256 on a GPU")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--data_root", default=None)
    parser.add_argument("--category", default=None)
    parser.add_argument("--synthetic", action="store_true", help="train on the synthetic category even if data exist")
    parser.add_argument("--threads", type=int, default=0, help="--num_threads for the runs (0: the config's)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--output_dir", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.data_root, args.category, args.output_dir, args.warmup, args.steps, args.threads)
        return {}

    print(machine())
    configs = args.configs or (["cpu-demo", "mvtec-256"] if torch.cuda.is_available() else ["cpu-demo"])
    if not args.configs and not torch.cuda.is_available():
        print("mvtec-256.yaml: skipped, no GPU visible (name it in --configs to time it here anyway)")
    with tempfile.TemporaryDirectory() as scratch:
        if args.data_root:
            data_root, category, source = args.data_root, args.category or "", f"{args.data_root} {args.category}"
        elif (SHARED_DATA / "magnetic_tile").is_dir() and not args.synthetic:
            data_root, category, source = str(SHARED_DATA), "magnetic_tile", f"{SHARED_DATA}/magnetic_tile"
        else:
            root, category = write_synthetic_category(Path(scratch))
            data_root, source = str(root), "a synthetic MVTec-layout category (256 x 256 RGB, 2 defect types)"
        print(f"data: {source}; {args.warmup} warm-up steps, then {args.steps} timed steps per config")
        results = {}
        for config in configs:
            figures = run_config(config, data_root, category, args.warmup, args.steps, args.threads)
            if figures is None:
                continue
            results[config] = figures
            memory = f"peak RSS {figures['peak_rss_mib']:.0f} MiB"
            if "cuda_peak_allocated_mib" in figures:
                memory += f", peak GPU memory allocated {figures['cuda_peak_allocated_mib']:.0f} MiB"
            print(
                f"  {config}.yaml on {figures['device']} ({figures['threads']} threads, batch "
                f"{figures['batch_size']} of {figures['crop_size']} px crops, precision "
                f"{figures['mixed_precision']}): {figures['steps_per_s']:.3f} steps/s "
                f"({figures['seconds_per_step'] * 1e3:.0f} ms/step), {memory}"
            )
    return results


if __name__ == "__main__":
    main()
