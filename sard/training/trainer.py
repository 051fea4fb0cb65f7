"""The training loop: data, models and optimisers, then per step one discriminator block and one denoiser
block of :class:`~sard.training.dmg.DMGLoss`, EMA, logs, previews and checkpoints that survive being killed.

``train(config)`` runs on one CPU, one GPU, or many GPUs and nodes, under ``accelerate launch``; every batch
and every noise is a pure function of ``(seed, step, process)``, so a resumed run continues bit for bit.
"""

from __future__ import annotations

import csv
import json
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from ..config import ConfigError
from ..datasets import anomaly_pixels, read_dataset
from ..denoiser import SARDDenoiser
from ..discriminator import MaskAwareDiscriminator
from ..files import atomic_path
from ..grain import type_strengths
from ..pipeline import SARDPipeline
from ..processes import check_world_size, set_threads
from ..scheduler import SARDScheduler
from ..seeding import seeded_generator
from . import checkpoints
from .config import TrainConfig
from .crops import Augmentation, CropBatches, load_examples
from .dmg import DMGLoss
from .fake_history import FakeHistory
from .model_card import hardware, model_card
from .previews import defect_grid, preview_rows


def build_models(config: TrainConfig, defect_types: list[str]):
    """``(denoiser, discriminator, scheduler)`` as the config sizes them, freshly initialised."""
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
        view=config.disc_view,
        high_pass_scale=config.high_pass_scale,
        high_pass_mode=config.high_pass_mode,
    )
    scheduler = SARDScheduler(config.num_timesteps, config.beta_min, config.beta_max)
    return denoiser, discriminator, scheduler


def _network_config(model) -> dict:
    """A model's ``register_to_config`` arguments, comparable across a save and a load (lists, not tuples)."""
    items = model.config.items()
    return {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in items if not k.startswith("_")}


def step_generator(seed: int, step: int, process_index: int, draw: int = 0) -> torch.Generator:
    """The random stream of one training step: a pure function of (seed, step, process); ``draw > 0`` names the
    stream of that step's extra discriminator updates."""
    return seeded_generator(seed, step, process_index, *([draw] if draw else []))


def write_run_files(output_dir: Path, config: TrainConfig, dataset, train_split, held_out) -> None:
    """``config.yaml`` (the parsed config) and ``split.json`` (the exact file lists) in the run folder."""
    (output_dir / "config.yaml").write_text(config.to_yaml())
    split = {
        "data_root": str(dataset.root),
        "data_format": dataset.data_format,
        "split": config.split,
        "train": {d: [str(a.image) for a in items] for d, items in train_split.items()},
        "held_out": {d: [str(a.image) for a in items] for d, items in held_out.items()},
        "skipped_empty_masks": [str(a.mask) for a in dataset.empty_masks],
        "train_good": [str(p) for p in dataset.train_good],
    }
    (output_dir / "split.json").write_text(json.dumps(split, indent=2))


def add_logs(logs: dict, parts: dict, micro: int) -> None:
    """Accumulate a micro-batch's loss parts, as floats averaged over the ``micro`` micro-batches."""
    for k, v in parts.items():
        logs[k] = logs.get(k, 0.0) + v.item() / micro


class LossLog:
    """Losses to a CSV (kept consistent across resumes) and to the accelerate trackers."""

    def __init__(self, path: Path, resume_step: int):
        self.path = path
        self.rows = []
        if path.is_file() and resume_step > 0:
            with open(path, newline="") as handle:
                self.rows = [r for r in csv.DictReader(handle) if int(r["step"]) <= resume_step]
            # Drop the steps after the checkpoint now, not at the next logged step: a run resumed from an earlier
            # checkpoint with --max_steps at that checkpoint logs nothing, and its losses must end where it does.
            self._write()

    def add(self, row: dict) -> None:
        self.rows.append({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        self._write()

    def _write(self) -> None:
        fields = list(dict.fromkeys(k for r in self.rows for k in r))
        with atomic_path(self.path) as temporary, open(temporary, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(self.rows)


def _process_history(saved: dict[str, torch.Tensor], info: dict, accelerator) -> dict[str, torch.Tensor]:
    """This process's part of a checkpoint's fake history (saved as every process's, gathered in process order);
    empty, with a warning, when the checkpoint was written by another number of processes."""
    if not saved:
        return {}
    processes = info.get("num_processes", 1)
    if processes != accelerator.num_processes:
        warnings.warn(f"The checkpoint's fake history was kept by {processes} process(es), this run has "
                      f"{accelerator.num_processes}: it starts empty.", stacklevel=2)
        return {}
    rank = accelerator.process_index
    state = {k: v.chunk(processes)[rank] for k, v in saved.items()}
    state["size"] = state["size"].reshape(())
    return state


def train(config: TrainConfig) -> None:
    """Train a SARD checkpoint into ``config.output_dir`` (resuming per ``config.resume``): checkpoints
    ``checkpoint-N/`` that load with ``SARDPipeline.from_pretrained``, then the final EMA pipeline and its model
    card. Raises :class:`ConfigError` (and :class:`~sard.datasets.DatasetError`) before writing anything when the
    launch, the config or the data cannot be trained."""
    accelerator = Accelerator(
        mixed_precision=config.mixed_precision,
        log_with="tensorboard",
        project_dir=config.output_dir,
    )
    _train(config, accelerator)
    # Only once _train has returned are its wrapped networks freed: freed after the process group is gone, a
    # gloo process could hang in their teardown at exit (1 run in about 20 of the two-process test).
    _end(accelerator)


def _train(config: TrainConfig, accelerator: Accelerator) -> None:
    """The body of :func:`train`, up to the process group's close."""
    check_world_size(accelerator.num_processes)
    set_threads(config.num_threads, accelerator)
    set_seed(config.seed)  # weight initialisation; batches and noise use step_generator below
    output_dir = Path(config.output_dir)

    # 1. Data: the protocol split, crops around the training masks.
    dataset = read_dataset(config.data_root, config.category or None, config.data_format)
    train_split, held_out = dataset.split(config.split)
    train_used = dataset.training_anomalies(config.split)
    missing = [d for d, items in train_used.items() if not items]
    if missing:
        raise ConfigError(
            f"No training anomalies for defect type(s) {', '.join(missing)}: the {config.split} split trains on "
            "floor(n/3) of each type. Add images, or pass --split all to train on every anomaly."
        )
    defect_types = dataset.defect_types
    # How much finer each type's real defects are than their surroundings: the exported pipeline's grain.
    grain_strength = (type_strengths({d: anomaly_pixels(items) for d, items in train_used.items()})
                      if config.grain else {})
    augmentation = Augmentation(config.hflip, config.vflip, config.rotate90, config.scale_jitter)
    examples = load_examples([a for items in train_used.values() for a in items], defect_types, config.resolution)
    batches = CropBatches(examples, config.crop_size, augmentation, config.seed)
    # One fixed batch of held-out crops (and of its noises): accuracies from step to step compare.
    empty = set(dataset.empty_masks)
    held_out_used = [a for items in held_out.values() for a in items if a not in empty]
    held_out_batch = None
    if config.held_out_every and held_out_used:
        held_out_examples = load_examples(held_out_used, defect_types, config.resolution)
        crops = CropBatches(held_out_examples, config.crop_size, augmentation, config.seed + 1)
        held_out_batch = crops.batch(0, config.held_out_crops)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        write_run_files(output_dir, config, dataset, train_split, held_out)

    # 2. Models, EMA, optimisers; state from the checkpoint being resumed.
    denoiser, discriminator, scheduler = build_models(config, defect_types)
    ema_denoiser, _, _ = build_models(config, defect_types)
    ema = EMAModel(denoiser.parameters(), decay=config.ema_max_decay, use_ema_warmup=True,
                   inv_gamma=1.0, power=config.ema_power)
    betas = tuple(config.adam_betas)
    opt_g = torch.optim.Adam(denoiser.parameters(), lr=config.lr_g, betas=betas)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=config.lr_d, betas=betas)
    history = FakeHistory(config.fake_history) if config.fake_history else None
    start_step, wall_before = 0, 0.0
    resume_from = checkpoints.resolve_resume(config.resume, output_dir)
    if config.init_from and resume_from is None:
        initial = SARDDenoiser.from_pretrained(Path(config.init_from) / "denoiser")
        if _network_config(initial) != _network_config(denoiser):
            raise ConfigError(f"init_from {config.init_from}: its denoiser is not the network this config builds "
                              "(channels, latent_dim, defect types and num_timesteps must match).")
        denoiser.load_state_dict(initial.state_dict())
        ema = EMAModel(denoiser.parameters(), decay=config.ema_max_decay, use_ema_warmup=True,
                       inv_gamma=1.0, power=config.ema_power)
        accelerator.print(f"Starting from the denoiser of {config.init_from}.")
    if resume_from is not None:
        info, tensors, objects = checkpoints.load_state(resume_from)
        denoiser.load_state_dict(tensors["denoiser"])
        discriminator.load_state_dict(tensors["discriminator"])
        shadow = [tensors["ema"][str(i)] for i in range(len(tensors["ema"]))]
        ema.load_state_dict({**info["ema"], "shadow_params": shadow})
        opt_g.load_state_dict(objects["optimizers"]["g"])
        opt_d.load_state_dict(objects["optimizers"]["d"])
        start_step, wall_before = info["step"], info["wall_seconds"]
        if history is not None:
            history.load_state_dict(_process_history(tensors.get("fake_history", {}), info, accelerator),
                                    accelerator.device)
        accelerator.print(f"Resuming from {resume_from} at step {start_step}.")
    denoiser, discriminator, opt_g, opt_d = accelerator.prepare(denoiser, discriminator, opt_g, opt_d)
    # The EMA's shadow weights and the network it is copied into for previews and exports live with the denoiser
    # (on a GPU, EMAModel.step would otherwise mix devices).
    ema.to(accelerator.device)
    ema_denoiser.to(accelerator.device)
    dmg = DMGLoss.from_config(config, scheduler.alphas_cumprod.to(accelerator.device))
    if held_out_batch is not None:
        held_out_batch = dmg.micro_batches(held_out_batch, 1, torch.Generator().manual_seed(config.seed + 1),
                                           accelerator.device)[0]
    if accelerator.is_main_process:
        accelerator.init_trackers("tensorboard")
    log = LossLog(output_dir / "losses.csv", start_step)
    rows = preview_rows(dataset, held_out)

    def export_pipeline() -> SARDPipeline:
        ema.copy_to(ema_denoiser.parameters())
        return SARDPipeline(ema_denoiser, scheduler, resolution=config.resolution, crop_size=config.crop_size,
                            max_crop_size=config.max_crop_size, grain=config.grain, grain_strength=grain_strength)

    def save(step: int, wall: float) -> None:
        # Every process's history, gathered in process order (a collective: all processes call it).
        histories = {}
        if history is not None and history.stored is not None:
            histories = {k: accelerator.gather(v[None] if v.ndim == 0 else v) for k, v in history.state_dict().items()}
        if accelerator.is_main_process:
            ema_state = ema.state_dict()
            path = checkpoints.save_checkpoint(
                output_dir, step, export_pipeline(),
                tensors={
                    "denoiser": accelerator.unwrap_model(denoiser).state_dict(),
                    "discriminator": accelerator.unwrap_model(discriminator).state_dict(),
                    "ema": {str(i): p for i, p in enumerate(ema_state.pop("shadow_params"))},
                    **({"fake_history": histories} if histories else {}),
                },
                objects={"optimizers": {"g": opt_g.state_dict(), "d": opt_d.state_dict()}},
                info={"wall_seconds": wall, "ema": ema_state, "hardware": hardware(),
                      "num_processes": accelerator.num_processes},
                total_limit=config.checkpoints_total_limit,
            )
            accelerator.print(f"Saved {path}")
        accelerator.wait_for_everyone()

    # 3. The loop: discriminator block(s), one denoiser block, EMA, logs, checkpoints.
    session_start = time.monotonic()
    micro = config.gradient_accumulation_steps
    progress = tqdm(range(start_step + 1, config.max_steps + 1), initial=start_step, total=config.max_steps,
                    disable=not accelerator.is_main_process, desc="train", dynamic_ncols=True)
    step = start_step
    for step in progress:
        generator = step_generator(config.seed, step, accelerator.process_index)
        batch = batches.batch(step, config.batch_size * micro, accelerator.process_index)
        micro_batches = dmg.micro_batches(batch, micro, generator, accelerator.device)

        # Discriminator block: real pairs, lazy R1 every k steps, fake pairs; disc_steps updates per denoiser
        # update (WGAN's n_critic), each on its own crops, so that the discriminator keeps its lead. The logs
        # are those of the last update.
        for draw in range(config.disc_steps):
            if draw:
                extra = batches.batch(step, config.batch_size * micro, accelerator.process_index, draw)
                d_batches = dmg.micro_batches(extra, micro, step_generator(config.seed, step,
                                              accelerator.process_index, draw), accelerator.device)
            else:
                d_batches = micro_batches
            r1 = dmg.r1_due(step) and draw == 0
            opt_d.zero_grad(set_to_none=True)
            d_logs = {}
            for i, micro_batch in enumerate(d_batches):
                with accelerator.no_sync(discriminator) if i < micro - 1 else nullcontext():
                    with accelerator.autocast():
                        parts = dmg.discriminator_loss(discriminator, denoiser, micro_batch, r1, history)
                    accelerator.backward(parts["loss"] / micro)
                add_logs(d_logs, parts, micro)
            opt_d.step()

        # Denoiser block: fool both heads, stay close to the real defect inside the mask. During the warm-up the
        # discriminator trains alone, so that the denoiser's first adversarial gradients already carry signal.
        g_logs = {}
        if step > config.disc_warmup_steps:
            opt_g.zero_grad(set_to_none=True)
            discriminator.requires_grad_(False)
            for i, micro_batch in enumerate(micro_batches):
                with accelerator.no_sync(denoiser) if i < micro - 1 else nullcontext():
                    with accelerator.autocast():
                        parts = dmg.denoiser_loss(discriminator, denoiser, micro_batch)
                    accelerator.backward(parts["loss"] / micro)
                add_logs(g_logs, parts, micro)
            opt_g.step()
            discriminator.requires_grad_(True)
            ema.step(accelerator.unwrap_model(denoiser).parameters())

        wall = wall_before + time.monotonic() - session_start
        if step % config.log_every == 0 or step == config.max_steps:
            row = {"step": step, "wall_seconds": round(wall, 1), "d_loss": d_logs.pop("loss"),
                   "g_loss": g_logs.pop("loss", float("nan")), **d_logs, **g_logs,
                   "ema_decay": ema.cur_decay_value or 0.0}
            if held_out_batch is not None and step % config.held_out_every == 0:
                judge, generate = accelerator.unwrap_model(discriminator), accelerator.unwrap_model(denoiser)
                row.update({f"held_out_{k}": v for k, v in dmg.accuracy_by_level(judge, generate,
                                                                                  held_out_batch).items()})
            accelerator.log({k: v for k, v in row.items() if k != "step"}, step=step)
            if accelerator.is_main_process:
                log.add(row)
            rec = row.get("rec", float("nan"))
            progress.set_postfix(d=f"{row['d_loss']:.3f}", g=f"{row['g_loss']:.3f}", rec=f"{rec:.3f}")
        if step % config.sample_every == 0 and accelerator.is_main_process and rows:
            (output_dir / "samples").mkdir(exist_ok=True)
            pipe = export_pipeline()
            pipe.set_progress_bar_config(disable=True)
            defect_grid(pipe, rows).save(output_dir / "samples" / f"step-{step:06d}.png")
        session_minutes = (time.monotonic() - session_start) / 60
        out_of_time = False
        if config.max_train_minutes > 0:
            # Each process reads its own clock: stop all at the same step if any is out of time, or one would
            # save and leave while the others wait for it in the next step.
            if session_minutes >= config.max_train_minutes:
                accelerator.set_trigger()
            out_of_time = accelerator.check_trigger()
        if step % config.checkpoint_every == 0 or step == config.max_steps or out_of_time:
            save(step, wall)
        if out_of_time:
            accelerator.print(f"Stopped at step {step} after {session_minutes:.0f} min; go on with --resume latest.")
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


def _end(accelerator: Accelerator) -> None:
    """Close the trackers and the process group together: a process that tears its group down while another is
    still exporting can leave that one hanging at exit (gloo, seen under load), so all wait for each other first."""
    accelerator.wait_for_everyone()
    accelerator.end_training()
