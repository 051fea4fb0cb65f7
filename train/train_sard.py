"""Train a SARD checkpoint: a diffusion-GAN denoiser with the mask-aware discriminator (METHOD.md).

The same script runs on one CPU, one GPU, or many GPUs and nodes:

    accelerate launch train/train_sard.py --config train/configs/debug.yaml \
        --data_root DATA --category CAT --output_dir runs/CAT [--max_steps N] [--resume latest]

Several processes on a machine without GPUs (gloo): ``ACCELERATE_USE_CPU=true accelerate launch --multi_gpu
--num_processes N train/train_sard.py ...``.

Every config key can be overridden as ``--key value``. Checkpoints (``checkpoint-N/``) load with
``SARDPipeline.from_pretrained``; the final pipeline and its model card are written to ``--output_dir``.
"""

from __future__ import annotations

import csv
import json
import os
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from sard import MaskAwareDiscriminator, SARDDenoiser, SARDPipeline, SARDScheduler, sampling
from sard.datasets import DatasetError, read_dataset
from sard.previews import defect_grid, preview_rows
from sard.training import checkpoints, losses
from sard.training.config import ConfigError, TrainConfig, parse_args
from sard.training.crops import Augmentation, CropBatches, load_examples
from sard.training.model_card import hardware, model_card


def build_models(config: TrainConfig, defect_types: list[str]):
    denoiser = SARDDenoiser(
        block_out_channels=tuple(config.channels),
        layers_per_block=config.layers_per_block,
        mid_attention=config.mid_attention,
        latent_dim=config.latent_dim,
        defect_types=tuple(defect_types),
        num_train_timesteps=config.num_timesteps,
    )
    discriminator = MaskAwareDiscriminator(
        channels=tuple(config.disc_channels),
        num_train_timesteps=config.num_timesteps,
        num_defect_types=len(defect_types),
        mask_head=config.mask_head,
    )
    scheduler = SARDScheduler(config.num_timesteps, config.beta_min, config.beta_max)
    return denoiser, discriminator, scheduler


def step_generator(seed: int, step: int, process_index: int) -> torch.Generator:
    """The random stream of one training step: a pure function of (seed, step, process)."""
    entropy = np.random.SeedSequence([seed, step, process_index]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(entropy))


def write_run_files(output_dir: Path, config: TrainConfig, dataset, train, held_out) -> None:
    (output_dir / "config.yaml").write_text(config.to_yaml())
    split = {
        "data_root": str(dataset.root),
        "data_format": dataset.data_format,
        "split": config.split,
        "train": {d: [str(a.image) for a in items] for d, items in train.items()},
        "held_out": {d: [str(a.image) for a in items] for d, items in held_out.items()},
        "skipped_empty_masks": [str(a.mask) for a in dataset.empty_masks],
        "train_good": [str(p) for p in dataset.train_good],
    }
    (output_dir / "split.json").write_text(json.dumps(split, indent=2))


def split_micro_batches(batch: dict, micro: int, generator: torch.Generator, config: TrainConfig, device) -> list:
    """Cut a batch into gradient-accumulation micro-batches and draw each one's randomness: levels
    t in 1..T, the forward noises of the real pair, latents z and posterior noises (one each for the
    discriminator and the denoiser block)."""
    micro_batches = []
    for i in range(micro):
        chunk = {k: v.chunk(micro)[i] for k, v in batch.items()}
        n = chunk["image"].shape[0]
        chunk["t"] = torch.randint(1, config.num_timesteps + 1, (n,), generator=generator)
        chunk["noise"] = torch.randn(2, *chunk["image"].shape, generator=generator)
        chunk["z"] = torch.randn(2, n, config.latent_dim, generator=generator)
        chunk["posterior_noise"] = torch.randn(2, *chunk["image"].shape, generator=generator)
        micro_batches.append({k: v.to(device) for k, v in chunk.items()})
    return micro_batches


def real_pair(b: dict, abar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x_{t-1}, x_t)`` by forward diffusion of ``x_a``, with the background kept clean in both."""
    x0, m = b["image"], b["mask"]
    x_prev, x_t = sampling.q_sample_pair(x0, b["t"], abar, b["noise"][0], b["noise"][1])
    return sampling.blend_known(x_prev, x0, m), sampling.blend_known(x_t, x0, m)


def fake_prev(b: dict, x0_hat: torch.Tensor, x_t: torch.Tensor, abar: torch.Tensor, which: int) -> torch.Tensor:
    """The generated ``x_{t-1}``: a posterior sample from ``x0_hat`` inside the mask, ``x_a`` outside."""
    x_prev = sampling.posterior_sample(x0_hat, x_t, b["t"], abar, noise=b["posterior_noise"][which])
    return sampling.blend_known(x_prev, b["image"], b["mask"])


def discriminator_losses(discriminator, denoiser, b: dict, abar, config: TrainConfig, do_r1: bool) -> dict:
    x0, m, t, label = b["image"], b["mask"], b["t"], b["label"]
    x_prev, x_t = real_pair(b, abar)
    x_prev.requires_grad_(do_r1)
    real = discriminator(x_prev, x_t, t, m, label)
    with torch.no_grad():
        x0_hat = denoiser(x_t, t, b["z"][0], m, x0 * (1.0 - m), label)
    fake = discriminator(fake_prev(b, x0_hat, x_t, abar, 0), x_t, t, m, label)
    parts = losses.discriminator_loss(real, fake, m, config.lambda_mask)
    loss = parts["loss"]
    if config.lambda_x0 > 0 and config.mask_head:
        # The mask-aware head also judges clean predictions against the real defect (at level 0).
        level0 = torch.zeros_like(t)
        real0 = discriminator(x0, x_t, level0, m, label)[1]
        fake0 = discriminator(sampling.blend_known(x0_hat, x0, m), x_t, level0, m, label)[1]
        parts["d_x0"] = losses.mask_head_loss(real0, m, True) + losses.mask_head_loss(fake0, m, False)
        loss = loss + config.lambda_x0 * parts["d_x0"]
    if do_r1:
        logit_sum = real[0].sum() + (real[1].sum() if real[1] is not None else 0.0)
        parts["r1"] = losses.r1_penalty(logit_sum, x_prev)
        # Lazy regularisation: applied every r1_every steps, scaled up by as much (StyleGAN2).
        loss = loss + config.r1_gamma / 2 * config.r1_every * parts["r1"]
    parts["loss"] = loss
    return parts


def denoiser_losses(discriminator, denoiser, b: dict, abar, config: TrainConfig) -> dict:
    x0, m, t, label = b["image"], b["mask"], b["t"], b["label"]
    _, x_t = real_pair(b, abar)
    x0_hat = denoiser(x_t, t, b["z"][1], m, x0 * (1.0 - m), label)
    fake = discriminator(fake_prev(b, x0_hat, x_t, abar, 1), x_t, t, m, label)
    parts = losses.generator_adversarial_loss(fake, m, config.lambda_mask)
    loss = parts["loss"]
    if config.lambda_x0 > 0 and config.mask_head:
        fake0 = discriminator(sampling.blend_known(x0_hat, x0, m), x_t, torch.zeros_like(t), m, label)[1]
        parts["g_x0"] = losses.mask_head_loss(fake0, m, True)
        loss = loss + config.lambda_x0 * parts["g_x0"]
    parts["rec"] = losses.reconstruction_loss(x0_hat, x0, m)
    parts["loss"] = loss + config.lambda_rec * parts["rec"]
    return parts


def add_logs(logs: dict, parts: dict, micro: int) -> None:
    for k, v in parts.items():
        logs[k] = logs.get(k, 0.0) + v.item() / micro


class LossLog:
    """Losses to a CSV (kept consistent across resumes) and to the accelerate trackers."""

    def __init__(self, path: Path, resume_step: int):
        self.path = path
        rows = []
        if path.is_file() and resume_step > 0:
            with open(path, newline="") as handle:
                rows = [r for r in csv.DictReader(handle) if int(r["step"]) <= resume_step]
        self.rows = rows

    def add(self, row: dict) -> None:
        self.rows.append({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        fields = list(dict.fromkeys(k for r in self.rows for k in r))
        temporary = self.path.with_suffix(".csv.partial")
        with open(temporary, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(self.rows)
        temporary.replace(self.path)


def main(config: TrainConfig) -> None:
    accelerator = Accelerator(
        mixed_precision=config.mixed_precision,
        log_with="tensorboard",
        project_dir=config.output_dir,
    )
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size != accelerator.num_processes:
        # torchrun started several processes but accelerate found no GPUs to join them on: each would train alone
        # and all would write the same output folder.
        raise SystemExit(
            f"{world_size} processes were launched but accelerate joined {accelerator.num_processes}: each would "
            "train alone into the same output folder. Without GPUs, launch with ACCELERATE_USE_CPU=true accelerate "
            "launch --multi_gpu --num_processes N."
        )
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    elif accelerator.device.type == "cpu":
        # accelerate launch sets OMP_NUM_THREADS=1; on a CPU give each local process its share of the cores.
        local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_processes))
    set_seed(config.seed)  # weight initialisation; batches and noise use step_generator below
    output_dir = Path(config.output_dir)

    # 1. Data: the protocol split, crops around the training masks.
    dataset = read_dataset(config.data_root, config.category or None, config.data_format)
    train, held_out = dataset.split(config.split)
    train_used = dataset.training_anomalies(config.split)
    missing = [d for d, items in train_used.items() if not items]
    if missing:
        raise SystemExit(
            f"No training anomalies for defect type(s) {', '.join(missing)}: the {config.split} split trains on "
            "floor(n/3) of each type. Add images, or pass --split all to train on every anomaly."
        )
    defect_types = dataset.defect_types
    augmentation = Augmentation(config.hflip, config.vflip, config.rotate90, config.scale_jitter)
    examples = load_examples([a for items in train_used.values() for a in items], defect_types, config.resolution)
    batches = CropBatches(examples, config.crop_size, augmentation, config.seed)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        write_run_files(output_dir, config, dataset, train, held_out)

    # 2. Models, EMA, optimisers; state from the checkpoint being resumed.
    denoiser, discriminator, scheduler = build_models(config, defect_types)
    ema_denoiser, _, _ = build_models(config, defect_types)
    ema = EMAModel(denoiser.parameters(), decay=config.ema_max_decay, use_ema_warmup=True,
                   inv_gamma=1.0, power=config.ema_power)
    betas = tuple(config.adam_betas)
    opt_g = torch.optim.Adam(denoiser.parameters(), lr=config.lr_g, betas=betas)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=config.lr_d, betas=betas)
    start_step, wall_before = 0, 0.0
    resume_from = checkpoints.resolve_resume(config.resume, output_dir)
    if resume_from is not None:
        info, tensors, objects = checkpoints.load_state(resume_from)
        denoiser.load_state_dict(tensors["denoiser"])
        discriminator.load_state_dict(tensors["discriminator"])
        shadow = [tensors["ema"][str(i)] for i in range(len(tensors["ema"]))]
        ema.load_state_dict({**info["ema"], "shadow_params": shadow})
        opt_g.load_state_dict(objects["optimizers"]["g"])
        opt_d.load_state_dict(objects["optimizers"]["d"])
        start_step, wall_before = info["step"], info["wall_seconds"]
        accelerator.print(f"Resuming from {resume_from} at step {start_step}.")
    denoiser, discriminator, opt_g, opt_d = accelerator.prepare(denoiser, discriminator, opt_g, opt_d)
    abar = scheduler.alphas_cumprod.to(accelerator.device)
    if accelerator.is_main_process:
        accelerator.init_trackers("tensorboard")
    log = LossLog(output_dir / "losses.csv", start_step)
    rows = preview_rows(dataset, held_out)

    def export_pipeline() -> SARDPipeline:
        ema.copy_to(ema_denoiser.parameters())
        return SARDPipeline(ema_denoiser, scheduler, resolution=config.resolution, crop_size=config.crop_size)

    def save(step: int, wall: float) -> Path | None:
        if accelerator.is_main_process:
            ema_state = ema.state_dict()
            path = checkpoints.save_checkpoint(
                output_dir, step, export_pipeline(),
                tensors={
                    "denoiser": accelerator.unwrap_model(denoiser).state_dict(),
                    "discriminator": accelerator.unwrap_model(discriminator).state_dict(),
                    "ema": {str(i): p for i, p in enumerate(ema_state.pop("shadow_params"))},
                },
                objects={"optimizers": {"g": opt_g.state_dict(), "d": opt_d.state_dict()}},
                info={"wall_seconds": wall, "ema": ema_state, "hardware": hardware(),
                      "num_processes": accelerator.num_processes},
                total_limit=config.checkpoints_total_limit,
            )
            accelerator.print(f"Saved {path}")
        accelerator.wait_for_everyone()

    # 3. The loop: one discriminator block, one denoiser block, EMA, logs, checkpoints.
    session_start = time.monotonic()
    micro = config.gradient_accumulation_steps
    progress = tqdm(range(start_step + 1, config.max_steps + 1), initial=start_step, total=config.max_steps,
                    disable=not accelerator.is_main_process, desc="train", dynamic_ncols=True)
    step = start_step
    for step in progress:
        generator = step_generator(config.seed, step, accelerator.process_index)
        batch = batches.batch(step, config.batch_size * micro, accelerator.process_index)
        micro_batches = split_micro_batches(batch, micro, generator, config, accelerator.device)

        # Discriminator block: real pairs, lazy R1 every k steps, fake pairs.
        do_r1 = config.r1_gamma > 0 and step % config.r1_every == 0
        opt_d.zero_grad(set_to_none=True)
        d_logs = {}
        for i, micro_batch in enumerate(micro_batches):
            with accelerator.no_sync(discriminator) if i < micro - 1 else nullcontext():
                with accelerator.autocast():
                    parts = discriminator_losses(discriminator, denoiser, micro_batch, abar, config, do_r1)
                accelerator.backward(parts["loss"] / micro)
            add_logs(d_logs, parts, micro)
        opt_d.step()

        # Denoiser block: fool both heads, stay close to the real defect inside the mask.
        opt_g.zero_grad(set_to_none=True)
        discriminator.requires_grad_(False)
        g_logs = {}
        for i, micro_batch in enumerate(micro_batches):
            with accelerator.no_sync(denoiser) if i < micro - 1 else nullcontext():
                with accelerator.autocast():
                    parts = denoiser_losses(discriminator, denoiser, micro_batch, abar, config)
                accelerator.backward(parts["loss"] / micro)
            add_logs(g_logs, parts, micro)
        opt_g.step()
        discriminator.requires_grad_(True)
        ema.step(accelerator.unwrap_model(denoiser).parameters())

        wall = wall_before + time.monotonic() - session_start
        if step % config.log_every == 0 or step == config.max_steps:
            row = {"step": step, "wall_seconds": round(wall, 1), "d_loss": d_logs.pop("loss"),
                   "g_loss": g_logs.pop("loss"), **d_logs, **g_logs, "ema_decay": ema.cur_decay_value or 0.0}
            accelerator.log({k: v for k, v in row.items() if k != "step"}, step=step)
            if accelerator.is_main_process:
                log.add(row)
            progress.set_postfix(d=f"{row['d_loss']:.3f}", g=f"{row['g_loss']:.3f}", rec=f"{row['rec']:.3f}")
        if step % config.sample_every == 0 and accelerator.is_main_process and rows:
            (output_dir / "samples").mkdir(exist_ok=True)
            pipe = export_pipeline()
            pipe.set_progress_bar_config(disable=True)
            defect_grid(pipe, rows).save(output_dir / "samples" / f"step-{step:06d}.png")
        session_minutes = (time.monotonic() - session_start) / 60
        out_of_time = config.max_train_minutes > 0 and session_minutes >= config.max_train_minutes
        if step % config.checkpoint_every == 0 or step == config.max_steps or out_of_time:
            save(step, wall)
        if out_of_time:
            accelerator.print(f"Stopped at step {step} after {session_minutes:.0f} min; go on with --resume latest.")
            accelerator.end_training()
            return
    progress.close()

    # 4. The final export: the EMA pipeline and its model card.
    if accelerator.is_main_process:
        wall = wall_before + time.monotonic() - session_start
        counts = {d: (len(train_used[d]), len(held_out[d])) for d in defect_types}
        pipe = export_pipeline()
        pipe.save_pretrained(output_dir)
        card = model_card(config, dataset.data_format, defect_types, counts, step, wall / 60, hardware())
        (output_dir / "README.md").write_text(card)
        accelerator.print(f"Saved the pipeline to {output_dir} ({step} steps, {wall / 60:.1f} min).")
        if config.push_to_hub:
            from huggingface_hub import upload_folder

            upload_folder(repo_id=config.hub_model_id, folder_path=output_dir,
                          ignore_patterns=["checkpoint-*", ".checkpoint-*", "samples/*", "events.*", "tensorboard/*"])
    accelerator.end_training()


if __name__ == "__main__":
    try:
        main(parse_args())
    except (ConfigError, DatasetError) as error:  # the user's input: the message says what to fix, no traceback
        raise SystemExit(f"error: {error}") from None
