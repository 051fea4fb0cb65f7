"""Speed of `SARDPipeline` on a 256 x 256 image: ms per image and images/s, and the overhead ratio.

    python -m bench.sampling [--repeats 10] [--checkpoint PATH] [--compile] [--device auto|cpu|cuda]

For each input of :func:`bench.common.cases` (a realistic defect and the worst case) it prints the crop the
network runs at, then ms per image and images/s at batch 1 (median of ``--repeats`` calls, each call one
image with its own generator) and at batch 16 (median of ``--batch-repeats`` calls of 16 images; on a GPU
also 64). The overhead ratio is pipeline time / (steps x one denoiser forward at the same crop, batch 1),
both timed interleaved in the same loop: the share of the time spent outside the network (decoding, crop,
noise, sampling math, paste, encoding).

The model is the default `SARDDenoiser()` (the architecture of the released checkpoints) with random weights:
the cost does not depend on the weights. With ``--checkpoint`` (default: ``sard.DEFAULT_CHECKPOINT`` when it
exists) the trained pipeline is timed too. On a CPU the pipeline runs in float32 (bfloat16 autocast is slower
on CPUs without AMX, see bench/README.md); on a GPU, in bfloat16 (``pipe.to("cuda", torch.bfloat16)``; the
sampling math stays in float32) with CUDA generators. ``--compile`` adds an A/B of ``torch.compile`` on the
denoiser (compile time printed; it is opt-in because compiling takes minutes on two cores).
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

import sard
from sard import SARDDenoiser, SARDPipeline, SARDScheduler

from .common import (
    SIDE,
    Case,
    add_device_arguments,
    apply_device_arguments,
    cases,
    crop_size,
    interleaved,
    machine,
    synchronize,
    timed,
)


def default_pipeline() -> SARDPipeline:
    torch.manual_seed(0)  # the random weights of the benchmark network
    pipe = SARDPipeline(SARDDenoiser().eval(), SARDScheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def describe(pipe: SARDPipeline) -> str:
    config = pipe.denoiser.config
    params = sum(p.numel() for p in pipe.denoiser.parameters()) / 1e6
    return (
        f"channels {tuple(config.block_out_channels)}, {config.layers_per_block} layer(s) per block, mid attention "
        f"{config.mid_attention}, {params:.2f}M parameters; {pipe.scheduler.config.num_train_timesteps} steps; "
        f"resolution {pipe.config.resolution}, crop_size {pipe.config.crop_size}, context {pipe.config.context}"
    )


def generators(device: torch.device, count: int, seed: int = 0) -> list[torch.Generator]:
    return [torch.Generator(device).manual_seed(seed + i) for i in range(count)]


def forward_call(pipe: SARDPipeline, case: Case, device: torch.device):
    """One denoiser forward, batch 1, on the crop the pipeline would give the network for ``case``."""
    height, width = crop_size(pipe, case)
    dtype = pipe.denoiser.dtype
    rng = torch.Generator().manual_seed(0)
    x_t = torch.randn(1, 3, height, width, generator=rng).to(device, dtype)
    mask = (torch.rand(1, 1, height, width, generator=rng) > 0.5).to(device, dtype)
    known = x_t * (1 - mask)
    z = torch.randn(1, pipe.denoiser.config.latent_dim, generator=rng).to(device, dtype)
    label, timestep = torch.zeros(1, dtype=torch.long, device=device), torch.full((1,), 4, device=device)

    def call():
        with torch.no_grad():
            return pipe.denoiser(x_t, timestep, z, mask, known, label)

    return call


def pipeline_call(pipe: SARDPipeline, case: Case, device: torch.device, batch: int):
    def call():
        return pipe([case.image] * batch, [case.mask] * batch, generator=generators(device, batch))

    return call


def batch_one(pipe, case, device, repeats: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """Median ``(wall, cpu)`` seconds of a batch-1 pipeline call and of one forward, timed interleaved."""
    times = interleaved(
        {"pipe": pipeline_call(pipe, case, device, 1), "forward": forward_call(pipe, case, device)},
        repeats, warmup=2, device=device,
    )
    return times["pipe"], times["forward"]


def row(name: str, crop: tuple[int, int], batch: int, seconds_per_call: float) -> str:
    per_image = seconds_per_call / batch
    return f"  {name:40s} {crop[0]:>4d} x {crop[1]:<4d} {batch:>5d} {per_image * 1e3:11.1f} {1 / per_image:10.1f}"


def bench_pipeline(pipe, device, batches, repeats, batch_repeats, title) -> dict:
    steps = pipe.scheduler.config.num_train_timesteps
    print(f"\n{title}\n  model: {describe(pipe)}")
    header = f"  {'input (256 x 256 RGB image)':40s} {'crop h x w':>9s} {'batch':>5s}"
    print(f"{header} {'ms/image':>11s} {'images/s':>10s}")
    results = {}
    for case in cases():
        crop = crop_size(pipe, case)
        (pipe_s, pipe_cpu), (forward_s, forward_cpu) = batch_one(pipe, case, device, repeats)
        print(row(case.name, crop, 1, pipe_s), f"  (median of {repeats})")
        results[(case.name, 1)] = pipe_s  # seconds per image
        for batch in batches:
            call = pipeline_call(pipe, case, device, batch)
            times = [timed(call, device) for _ in range(batch_repeats + 1)][1:]  # the first call warms up
            seconds = sorted(times)[len(times) // 2]
            print(row(case.name, crop, batch, seconds), f"  (median of {batch_repeats}, after 1 warm-up)")
            results[(case.name, batch)] = seconds / batch  # seconds per image
        ratio = pipe_s / (steps * forward_s)
        print(
            f"  {'':40s} overhead ratio (batch 1): {pipe_s * 1e3:.1f} ms / ({steps} x {forward_s * 1e3:.1f} ms "
            f"forward) = {ratio:.3f}  ({(1 - 1 / ratio) * 100:.1f} % of the time outside the network)"
        )
        if device.type == "cpu":
            print(
                f"  {'':40s} the same in CPU time: {pipe_cpu * 1e3:.1f} ms / ({steps} x {forward_cpu * 1e3:.1f} ms) "
                f"= {pipe_cpu / (steps * forward_cpu):.3f}  (steadier than wall-clock time on a loaded machine)"
            )
        results[(case.name, "overhead")] = ratio
    return results


def bench_compile(pipe, device, repeats: int) -> None:
    """Eager vs ``torch.compile`` on the realistic case, batch 1, interleaved; compile time = the first call."""
    case = cases()[0]
    config = pipe.config
    compiled = SARDPipeline(copy.deepcopy(pipe.denoiser), pipe.scheduler, config.resolution, config.crop_size,
                            config.context)
    compiled.set_progress_bar_config(disable=True)
    compiled.denoiser.compile()
    synchronize(device)
    start = time.perf_counter()
    pipeline_call(compiled, case, device, 1)()
    compile_s = time.perf_counter() - start
    times = interleaved(
        {"eager": pipeline_call(pipe, case, device, 1), "compiled": pipeline_call(compiled, case, device, 1)},
        repeats, warmup=1, device=device,
    )
    times = {name: wall for name, (wall, _) in times.items()}
    print(
        f"\ntorch.compile ({case.name}, batch 1): compile + first call {compile_s:.1f} s; eager "
        f"{times['eager'] * 1e3:.1f} ms, compiled {times['compiled'] * 1e3:.1f} ms per image "
        f"({(times['compiled'] / times['eager'] - 1) * 100:+.1f} %), median of {repeats} interleaved; it pays "
        f"off after {compile_s / max(times['eager'] - times['compiled'], 1e-9):.0f} images"
    )


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_device_arguments(parser)
    parser.add_argument("--repeats", type=int, default=10, help="batch-1 calls timed (median)")
    parser.add_argument("--batch-repeats", type=int, default=3, help="calls timed per larger batch (median)")
    parser.add_argument("--checkpoint", default=sard.DEFAULT_CHECKPOINT, help="also time this trained pipeline")
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile (minutes on a CPU)")
    args = parser.parse_args(argv)
    apply_device_arguments(args)
    devices = [] if args.device == "cuda" else ["cpu"]
    if args.device != "cpu" and torch.cuda.is_available():
        devices.append("cuda")
    print(machine())
    print(f"input: a {SIDE} x {SIDE} RGB image (PIL), mask as a PIL 'L' image, output_type 'pil'")
    results = {}
    for name in devices:
        device = torch.device(name)
        pipe = default_pipeline()
        if name == "cuda":
            pipe.to(device, torch.bfloat16)
            batches, title = (16, 64), f"SARDPipeline on {torch.cuda.get_device_name(0)}, bfloat16, random weights"
        else:
            batches, title = (16,), f"SARDPipeline on CPU, float32, {torch.get_num_threads()} threads, random weights"
        results[name] = bench_pipeline(pipe, device, batches, args.repeats, args.batch_repeats, title)
        if args.compile:
            bench_compile(pipe, device, args.repeats)
        if args.checkpoint:
            trained = SARDPipeline.from_pretrained(args.checkpoint)
            trained.set_progress_bar_config(disable=True)
            if name == "cuda":
                trained.to(device, torch.bfloat16)
            bench_pipeline(trained, device, (), args.repeats, args.batch_repeats, f"{args.checkpoint} on {name}")
    return results


if __name__ == "__main__":
    main()
