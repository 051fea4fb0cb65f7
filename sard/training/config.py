"""The training configuration: one dataclass, loaded from YAML with command-line overrides (:mod:`sard.config`)."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..config import ConfigError, add_override_arguments, field_types, load, parse_overrides
from ..discriminator import HIGH_PASS_MODES
from .diffaugment import parse_policy


@dataclass
class TrainConfig:
    """Everything a training run depends on. Network and scheduler sizes become the checkpoint's
    ``register_to_config`` arguments; the rest is saved as ``config.yaml`` in the run directory."""

    # Data
    data_root: str = ""
    category: str = ""
    data_format: str = "auto"  # mvtec | btad | folder | auto
    split: str = "protocol"  # protocol: first third of each defect type trains | all
    resolution: int = 256  # images are used with their longer side at most this long
    crop_size: int = 64  # training crops around the masks, at working scale
    max_crop_size: int = 0  # the saved pipeline's bound on a sampling crop's longer side (0: none), see SARDPipeline
    grain: bool = True  # the saved pipeline matches the photo's grain (sard.grain), strengths from training defects
    hflip: bool = True
    vflip: bool = True
    rotate90: bool = False  # for textures without a preferred direction
    scale_jitter: float = 0.15  # crops are drawn at a random scale in [1 - j, 1 + j]

    # Networks (see SARDDenoiser and MaskAwareDiscriminator)
    channels: list[int] = field(default_factory=lambda: [32, 64, 96, 128])
    layers_per_block: int = 1
    mid_attention: bool = True
    latent_dim: int = 32
    disc_channels: list[int] = field(default_factory=lambda: [32, 64, 128])
    mask_head: bool = True  # the mask-aware discriminator head (False: global head only, an ablation)
    disc_view: str = "pair"  # pair: DDGAN's (x_{t-1}, x_t) | clean: x0_hat against x_a, with a high-pass view
    high_pass_scale: float = 10.0  # gain of the clean view's high-pass channels
    high_pass_mode: str = "image"  # clean view: image (the crop minus its 5 x 5 blur) | mask (the texture inside
    # the mask alone, minus its 3 x 3 neighbours there: the C2ST's texture channel) | fill (the mask's texture and
    # its tone against the ring around it, zero outside: the C2ST's whole view)
    disc_augment: str = ""  # clean view: DiffAugment for few-shot data, e.g. "color,translation" (empty: off)

    # Diffusion
    num_timesteps: int = 4
    beta_min: float = 0.1
    beta_max: float = 20.0

    # Losses
    lambda_mask: float = 1.0  # weight of the mask-aware head's loss
    lambda_x0: float = 1.0  # pair view: the mask-aware head also judges the clean prediction x0_hat against x_a
    lambda_adv: float = 1.0  # weight of the adversarial terms in the denoiser's loss (0: L1 only)
    lambda_rec: float = 1.0  # masked L1 between x0_hat and x_a (0: adversarial losses only)
    rec_weighting: str = "flat"  # flat | snr: the L1 at level t weighted by sqrt(abar_t)
    lambda_ms: float = 0.0  # mode-seeking term (MSGAN; DFMGAN uses 0.1): different z, different fills
    ms_target: float = 0.0  # > 0: the term stops pushing once two latents' fills differ by this much of the real
    # defect's spread inside its mask (0: MSGAN's unbounded ratio)
    lambda_hf: float = 0.0  # high-frequency gap: the fill holds as much fine texture as the real defect (0: off)
    lambda_low: float = 0.0  # L1 of the 9 x 9 box blurs, every level alike: the fill keeps its shading and colour
    lambda_tone: float = 0.0  # tone gap, every level alike: each type's fills as dark as its real defects on average
    lambda_sample: float = 0.0  # clean view: adversarial term on finished samples (the whole chain), at level 0
    disc_warmup_steps: int = 0  # the first N steps train the discriminator alone (with init_from: against the
    # starting denoiser, so that its first adversarial gradients carry signal)
    disc_steps: int = 1  # discriminator updates per denoiser update (WGAN's n_critic), each on fresh crops
    fake_history: int = 0  # clean view: past fakes kept to show the discriminator beside new ones (SimGAN; 0: off)
    r1_gamma: float = 0.05
    r1_every: int = 4  # lazy R1 (StyleGAN2): the penalty every k steps, scaled by k

    # Optimisation
    batch_size: int = 16  # per process
    gradient_accumulation_steps: int = 1
    max_steps: int = 2000
    lr_g: float = 1.6e-4
    lr_d: float = 1.25e-4
    adam_betas: list[float] = field(default_factory=lambda: [0.5, 0.9])
    ema_max_decay: float = 0.999
    ema_power: float = 0.6667  # EMA warm-up as diffusers' EMAModel: decay = 1 - (1 + step) ** -power
    mixed_precision: str = "no"  # no | fp16 | bf16
    seed: int = 0
    max_train_minutes: float = 0.0  # > 0: stop (with a checkpoint) once this much wall time is spent
    num_threads: int = 0  # CPU threads per process; 0: the cores divided among the local processes

    # Output
    output_dir: str = "runs/sard"
    checkpoint_every: int = 500
    checkpoints_total_limit: int = 3
    sample_every: int = 500
    log_every: int = 10
    held_out_every: int = 50  # the discriminator's accuracy on held-out defects, per head and level (0: never);
    # logged in the loss row of its step, so a multiple of log_every
    held_out_crops: int = 32
    resume: str = ""  # "latest" or a checkpoint folder
    init_from: str = ""  # a SARD pipeline folder whose denoiser starts this run (e.g. a reconstruction stage)
    push_to_hub: bool = False
    hub_model_id: str = ""

    def validate(self) -> None:
        """Fail early, before anything heavy starts, with one message listing every bad key."""
        errors = []
        if not self.data_root:
            errors.append("data_root is required (--data_root PATH)")
        elif not Path(self.data_root).is_dir():
            errors.append(f"data_root {self.data_root!r} is not a folder")
        if self.data_format not in ("auto", "mvtec", "btad", "folder"):
            errors.append(f"data_format must be auto, mvtec, btad or folder, got {self.data_format!r}")
        if self.split not in ("protocol", "all"):
            errors.append(f"split must be protocol or all, got {self.split!r}")
        stride = 2 ** (len(self.channels) - 1)
        if self.crop_size % stride:
            errors.append(f"crop_size {self.crop_size} must be a multiple of {stride} (2 ** (len(channels) - 1))")
        if self.resolution < self.crop_size:
            errors.append(f"resolution {self.resolution} must be at least crop_size {self.crop_size}")
        if self.max_crop_size and self.max_crop_size < self.crop_size:
            errors.append(f"max_crop_size {self.max_crop_size} must be 0 (no bound) or at least crop_size "
                          f"{self.crop_size}")
        for name in ("batch_size", "max_steps", "num_timesteps", "r1_every", "gradient_accumulation_steps",
                     "checkpoint_every", "checkpoints_total_limit", "sample_every", "log_every", "latent_dim",
                     "held_out_crops", "disc_steps"):
            if getattr(self, name) < 1:
                errors.append(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.disc_warmup_steps < 0:
            errors.append(f"disc_warmup_steps must not be negative, got {self.disc_warmup_steps}")
        if self.held_out_every < 0 or self.held_out_every % max(self.log_every, 1):
            errors.append(f"held_out_every must be 0 or a multiple of log_every ({self.log_every}), "
                          f"got {self.held_out_every}")
        if self.init_from and not (Path(self.init_from) / "model_index.json").is_file():
            errors.append(f"init_from {self.init_from!r} is not a SARD pipeline folder (no model_index.json)")
        if self.disc_view not in ("pair", "clean"):
            errors.append(f"disc_view must be pair or clean, got {self.disc_view!r}")
        try:
            policy = self.disc_augment_policy()
        except ValueError as error:
            errors.append(f"disc_augment: {error}")
        else:
            if policy and self.disc_view != "clean":
                errors.append("disc_augment needs disc_view clean (the pair view's x_t would have to move too)")
        if self.fake_history < 0:
            errors.append(f"fake_history must not be negative, got {self.fake_history}")
        elif self.fake_history and self.disc_view != "clean":
            errors.append("fake_history needs disc_view clean (a stored pair would need its x_t too)")
        if self.lambda_sample and self.disc_view != "clean":
            errors.append("lambda_sample needs disc_view clean (a finished sample has no x_t)")
        if self.high_pass_mode not in HIGH_PASS_MODES:
            errors.append(f"high_pass_mode must be one of {', '.join(HIGH_PASS_MODES)}, got {self.high_pass_mode!r}")
        if self.rec_weighting not in ("flat", "snr"):
            errors.append(f"rec_weighting must be flat or snr, got {self.rec_weighting!r}")
        for name in ("lambda_mask", "lambda_x0", "lambda_adv", "lambda_rec", "lambda_ms", "ms_target", "lambda_hf",
                     "lambda_low", "lambda_tone", "lambda_sample", "r1_gamma", "lr_g", "lr_d", "scale_jitter",
                     "high_pass_scale"):
            if getattr(self, name) < 0:
                errors.append(f"{name} must not be negative, got {getattr(self, name)}")
        if not 0.0 <= self.scale_jitter < 1.0:
            errors.append(f"scale_jitter must be in [0, 1), got {self.scale_jitter}")
        if any(c % 8 for c in self.channels):
            errors.append(f"channels must be multiples of 8 (GroupNorm groups), got {self.channels}")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            errors.append(f"mixed_precision must be no, fp16 or bf16, got {self.mixed_precision!r}")
        if self.push_to_hub and not self.hub_model_id:
            errors.append("push_to_hub needs --hub_model_id ORG/NAME")
        if errors:
            raise ConfigError("Invalid training configuration:\n  " + "\n  ".join(errors))

    def disc_augment_policy(self) -> tuple[str, ...]:
        """``disc_augment`` as the names of its transforms (:func:`~sard.training.diffaugment.parse_policy`)."""
        return parse_policy(self.disc_augment)

    def to_yaml(self) -> str:
        return yaml.safe_dump(dataclasses.asdict(self), sort_keys=False)


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """``--config FILE`` plus ``--key value`` for any config key (``--resume latest``, ``--max_steps 10``...)."""
    parser = argparse.ArgumentParser(
        description="Train a SARD checkpoint (denoiser + mask-aware discriminator).",
        epilog="Every key of the config can be overridden as --key value.",
        allow_abbrev=False,  # a typo such as --max_step is refused like an unknown YAML key, not taken as a prefix
    )
    parser.add_argument("--config", help="YAML file with config keys (the repository's train/configs/*.yaml)")
    add_override_arguments(parser, TrainConfig)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        known = ", ".join(field_types(TrainConfig))
        raise ConfigError(f"Unknown argument(s): {' '.join(unknown)}. Known keys: {known}.")
    return load(TrainConfig, args.config, parse_overrides(args, TrainConfig))
