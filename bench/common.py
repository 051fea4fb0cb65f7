"""What every benchmark shares: the machine it ran on, the inputs it ran with, and the timers.

Timings are wall-clock medians of ``time.perf_counter`` (GPU work is synchronised before each reading).
When two things are compared they are timed interleaved (A, B, A, B, ...) in the same process, so that a
load that comes and goes on a shared machine hits both alike.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch

SIDE = 256  # the benchmark image is SIDE x SIDE RGB


def cpu_model() -> str:
    """The processor's name as ``lscpu`` prints it (``model name`` in /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> str:
    """One paragraph saying where the figures come from: processor, cores, threads, load, versions."""
    import diffusers

    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [
        f"CPU: {cpu_model()}, {os.cpu_count()} logical cores, torch threads {torch.get_num_threads()}",
        f"load average (1 / 5 / 15 min) at start: {load}",
        f"torch {torch.__version__}, diffusers {diffusers.__version__}, python {platform.python_version()}",
    ]
    if torch.cuda.is_available():
        lines.append(f"GPU: {torch.cuda.get_device_name(0)}")
    else:
        lines.append("GPU: none")
    return "\n".join(lines)


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    """``--device`` and ``--threads``, which every sampling benchmark takes."""
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")


def apply_device_arguments(args: argparse.Namespace) -> None:
    """Set the thread count and refuse ``--device cuda`` without a GPU."""
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no GPU is visible to torch.")


def synchronize(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: torch.device | str = "cpu") -> float:
    """Seconds one call of ``fn`` takes, GPU work included."""
    return timed_both(fn, device)[0]


def timed_both(fn: Callable[[], object], device: torch.device | str = "cpu") -> tuple[float, float]:
    """Wall-clock and CPU seconds (all threads of this process) of one call of ``fn``. On a shared machine
    the CPU time is the steadier measure of the work done; the wall-clock time is what a user waits."""
    synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    synchronize(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1, device="cpu") -> dict:
    """Median wall-clock and CPU seconds ``(wall, cpu)`` of each function, run in turn ``repeats`` times after
    ``warmup`` untimed rounds."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(timed_both(fn, device))
    return {
        name: (statistics.median(t[0] for t in values), statistics.median(t[1] for t in values))
        for name, values in times.items()
    }


@dataclass
class Case:
    """One benchmark input: a normal image and the mask to paint, with a name that says what it is."""

    name: str
    image: PIL.Image.Image
    mask: PIL.Image.Image


def product_image(side: int = SIDE, seed: int = 0) -> PIL.Image.Image:
    """A textured RGB image, the stand-in for a photo of a product surface (its content costs nothing)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(60, 180, (side, side, 1)) + rng.integers(-12, 13, (side, side, 3))
    return PIL.Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")


def ellipse_mask(side: int, height: int, width: int) -> PIL.Image.Image:
    """A centred ellipse of ``height`` x ``width`` pixels (its bounding box), white on black."""
    rows, cols = np.mgrid[:side, :side] + 0.5
    inside = ((rows - side / 2) / (height / 2)) ** 2 + ((cols - side / 2) / (width / 2)) ** 2 <= 1.0
    return PIL.Image.fromarray(inside.astype(np.uint8) * 255, "L")


def square_mask(side: int, size: int) -> PIL.Image.Image:
    mask = np.zeros((side, side), np.uint8)
    start = (side - size) // 2
    mask[start : start + size, start : start + size] = 255
    return PIL.Image.fromarray(mask, "L")


def cases(side: int = SIDE) -> list[Case]:
    """The two inputs every figure is given for: a defect of realistic size, and the worst case (the network
    runs on a crop around the mask, so its cost follows the mask, and a mask over most of the frame costs most)."""
    image = product_image(side)
    return [
        Case("defect: ellipse 60 x 40 px (h x w)", image, ellipse_mask(side, 60, 40)),
        Case(f"worst case: square {side - 16} x {side - 16} px", image, square_mask(side, side - 16)),
    ]


def crop_size(pipe, case: Case) -> tuple[int, int]:
    """The ``(height, width)`` the network runs at for this input (the crop around the mask, at working scale)."""
    box = pipe.working_crop(case.image, case.mask).box
    return box.work_height, box.work_width
