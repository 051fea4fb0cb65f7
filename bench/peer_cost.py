"""What one SARD defect costs against the sampler that MAGIC and DualAnoDiff use, on the same machine, in one run.

    python -m bench.peer_cost [--peer-steps 3] [--repeats 5] [--device auto|cpu|cuda]

The peer is diffusers' `UNet2DConditionModel` in Stable Diffusion 1.5's inpainting configuration (in_channels 9,
out 4, block_out_channels (320, 640, 1280, 1280), layers_per_block 2, cross_attention_dim 768,
attention_head_dim 8) on the 32 x 32 latent of a 256 x 256 image, with random ``encoder_hidden_states``
(1, 77, 768) and random weights (only the cost matters). One step is timed ``--peer-steps`` times after one
warm-up step and multiplied by 50, the sampling steps those methods use. The VAE encode/decode and the text
encoder are left out, which only favours the peer. SARD is timed as the whole pipeline (decoding, crop,
network, paste, encoding) at batch 1 for both inputs of :func:`bench.common.cases`, interleaved with the
peer's steps. FLOPs (torch's FlopCounterMode) are printed too: a cost ratio that does not depend on the load.
"""

from __future__ import annotations

import argparse
import statistics

import torch
from diffusers import UNet2DConditionModel
from diffusers.utils import logging as diffusers_logging
from torch.utils.flop_counter import FlopCounterMode

from .common import add_device_arguments, apply_device_arguments, cases, crop_size, machine, timed
from .sampling import default_pipeline, forward_call, pipeline_call

PEER_STEPS = 50
SD15_INPAINT = dict(
    sample_size=32,
    in_channels=9,
    out_channels=4,
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    cross_attention_dim=768,
    attention_head_dim=8,
)


def peer_unet(device: torch.device, dtype: torch.dtype) -> UNet2DConditionModel:
    """SD 1.5's inpainting UNet with random weights, built without drawing 860M random numbers: the weights
    are copies of one random block (their values do not change the cost; they are finite and not denormal)."""
    with torch.device("meta"):
        unet = UNet2DConditionModel(**SD15_INPAINT)
    unet = unet.to_empty(device=device)
    if dtype != torch.float32:
        verbosity = diffusers_logging.get_verbosity()
        diffusers_logging.set_verbosity_error()  # its advice on keeping modules in float32 is not about cost
        unet = unet.to(dtype)
        diffusers_logging.set_verbosity(verbosity)
    unet.eval()
    pool = torch.randn(1 << 20, generator=torch.Generator().manual_seed(0)).mul_(0.02).to(device, dtype)
    with torch.no_grad():
        for tensor in [*unet.parameters(), *unet.buffers()]:
            flat = tensor.view(-1)
            for start in range(0, flat.numel(), pool.numel()):
                chunk = flat[start : start + pool.numel()]
                chunk.copy_(pool[: chunk.numel()])
    return unet


def peer_step(unet: UNet2DConditionModel, device: torch.device, dtype: torch.dtype):
    rng = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 9, 32, 32, generator=rng).to(device, dtype)  # 4 noisy + 1 mask + 4 masked-image latents
    text = torch.randn(1, 77, 768, generator=rng).to(device, dtype)
    timestep = torch.tensor([500], device=device)

    def call():
        with torch.no_grad():
            return unet(latents, timestep, encoder_hidden_states=text).sample

    return call


def flops(fn) -> float:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def compare(device: torch.device, dtype: torch.dtype, peer_steps: int, repeats: int) -> dict:
    pipe = default_pipeline()
    if device.type == "cuda":
        pipe.to(device, dtype)
    unet = peer_unet(device, dtype)
    step = peer_step(unet, device, dtype)
    sard_calls = {case.name: pipeline_call(pipe, case, device, 1) for case in cases()}
    for call in [step, *sard_calls.values()]:  # warm-up
        call()
        call()
    # Interleaved: a peer step, then each SARD input, so a load that comes and goes hits all alike.
    times = {"peer": [], **{name: [] for name in sard_calls}}
    for i in range(max(peer_steps, repeats)):
        if i < peer_steps:
            times["peer"].append(timed(step, device))
        if i < repeats:
            for name, call in sard_calls.items():
                times[name].append(timed(call, device))
    peer_s = statistics.median(times["peer"]) * PEER_STEPS
    peer_flops = flops(step) * PEER_STEPS
    steps = pipe.scheduler.config.num_train_timesteps
    precision = str(dtype).replace("torch.", "")
    print(f"\nCost per 256 x 256 defect on {device.type} ({precision}, batch 1), measured in this run")
    print(
        f"  peer: SD 1.5 inpainting UNet, 32 x 32 latent, one step {peer_s / PEER_STEPS * 1e3:.1f} ms "
        f"(median of {peer_steps}, after 1 warm-up) x {PEER_STEPS} steps = {peer_s:.2f} s, "
        f"{peer_flops / 1e12:.2f} TFLOP (VAE and text encoder left out)"
    )
    result = {"peer_s": peer_s}
    for case in cases():
        sard_s = statistics.median(times[case.name])
        forward = forward_call(pipe, case, device)
        sard_flops = flops(forward) * steps
        height, width = crop_size(pipe, case)
        print(
            f"  SARD, {case.name} (crop {height} x {width}, {steps} steps): {sard_s * 1e3:.1f} ms "
            f"(median of {repeats}), {sard_flops / 1e9:.1f} GFLOP -> {peer_s / sard_s:.0f}x cheaper in time, "
            f"{peer_flops / sard_flops:.0f}x in FLOPs"
        )
        result[case.name] = peer_s / sard_s
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_device_arguments(parser)
    parser.add_argument("--peer-steps", type=int, default=3, help="peer steps timed after one warm-up (median)")
    parser.add_argument("--repeats", type=int, default=5, help="SARD calls timed per input (median)")
    args = parser.parse_args(argv)
    apply_device_arguments(args)
    print(machine())
    results = {}
    if args.device != "cuda":
        results["cpu"] = compare(torch.device("cpu"), torch.float32, args.peer_steps, args.repeats)
    if args.device != "cpu" and torch.cuda.is_available():
        results["cuda"] = compare(torch.device("cuda"), torch.bfloat16, args.peer_steps, args.repeats)
    return results


if __name__ == "__main__":
    main()
