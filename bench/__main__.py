"""Every figure of bench/README.md in one run: sampling speed, the cost against the SD inpainting peer, and
training speed, then each target with the figure that meets or misses it.

    python -m bench [--threads N] [--quick] [--compile] [--checkpoint PATH]

``--quick`` cuts the repeats (a smoke test, not figures to report). The same steps one by one:
``python -m bench.sampling``, ``python -m bench.peer_cost``, ``python -m bench.training``.
"""

from __future__ import annotations

import argparse
import time

import torch

from . import peer_cost, sampling, training
from .common import cases

# The targets of the issue "Fast everywhere".
CPU_SECONDS = 1.0  # a 256 x 256 defect on the CPU, batch 1, median of 10
OVERHEAD = 1.15  # pipeline time / (steps x one forward), batch 1
PEER_FACTOR = 50.0  # times cheaper than the 50-step SD 1.5 inpainting UNet
GPU_IMAGES_PER_S = 500.0  # H100, bfloat16, batch 64


def verdict(name: str, value: float, target: float, higher_is_better: bool, unit: str = "") -> str:
    met = value >= target if higher_is_better else value <= target
    if higher_is_better:
        how = f"{value / target:.2f}x the target" if met else f"missed by {(1 - value / target) * 100:.0f} %"
    else:
        how = f"{target / value:.2f}x under the target" if met else f"missed by {(value / target - 1) * 100:.0f} %"
    bound = ">=" if higher_is_better else "<="
    return f"  {'met' if met else 'MISSED':6s} {name}: {value:.3g}{unit} (target {bound} {target:g}{unit}; {how})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--quick", action="store_true", help="fewer repeats: a smoke test")
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile (minutes on a CPU)")
    parser.add_argument("--checkpoint", default=None, help="also time this pipeline (default: the bundled one)")
    args = parser.parse_args()
    start = time.perf_counter()
    threads = ["--threads", str(args.threads)]
    quick = ["--repeats", "3", "--batch-repeats", "1"] if args.quick else []
    extra = (["--compile"] if args.compile else []) + (["--checkpoint", args.checkpoint] if args.checkpoint else [])
    sample = sampling.main(threads + quick + extra)
    print()
    peer = peer_cost.main(threads + (["--peer-steps", "1", "--repeats", "2"] if args.quick else []))
    print()
    training.main(threads + (["--warmup", "1", "--steps", "3"] if args.quick else []))

    defect, worst = (case.name for case in cases())
    print(f"\nTargets (the inputs are defined above; {'QUICK RUN, not for reporting' if args.quick else 'full run'})")
    cpu = sample["cpu"]
    print(verdict(f"CPU ({torch.get_num_threads()} threads) seconds per image, batch 1, {defect}",
                  cpu[(defect, 1)], CPU_SECONDS, False, " s"))
    print(f"  (ref)  CPU seconds per image, batch 1, {worst}: {cpu[(worst, 1)]:.3g} s (the target is for a defect)")
    print(verdict(f"overhead ratio, CPU, batch 1, {defect}", cpu[(defect, "overhead")], OVERHEAD, False))
    print(verdict(f"overhead ratio, CPU, batch 1, {worst}", cpu[(worst, "overhead")], OVERHEAD, False))
    for device, ratios in peer.items():
        for name in (defect, worst):
            print(verdict(f"times cheaper than the 50-step SD inpainting UNet ({device}), {name}",
                          ratios[name], PEER_FACTOR, True, "x"))
    if "cuda" in sample:
        gpu = sample["cuda"]
        for name in (defect, worst):
            print(verdict(f"GPU images/s, bfloat16, batch 64, {name} (target set for an H100)",
                          1 / gpu[(name, 64)], GPU_IMAGES_PER_S, True))
    else:
        print("  n/a    GPU images/s at batch 64: no GPU visible")
    print(f"\nbench total: {(time.perf_counter() - start) / 60:.1f} min")


if __name__ == "__main__":
    main()
