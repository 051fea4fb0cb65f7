"""The model card (README.md with the Hugging Face Hub's metadata header) written beside a checkpoint."""

from __future__ import annotations

import platform

import torch
import yaml

from .config import TrainConfig

# What is known of the data sets users train on: licence and citation go into every card.
KNOWN_DATA = {
    "magnetic_tile": {
        "name": "Magnetic Tile Defect",
        "license": "other",
        "license_note": "research use with citation; the authors give no formal licence",
        "citation": 'Y. Huang, C. Qiu, K. Yuan, "Surface defect saliency of magnetic tile", '
        "The Visual Computer 36, 85-96 (2020).",
    },
    "ball_screw": {
        "name": "BSData (ball screw drive surfaces)",
        "license": "cc-by-sa-4.0",
        "license_note": "CC BY-SA 4.0",
        "citation": 'T. Schlagenhauf, M. Landwehr, J. Fleischer, "Industrial machine tool element surface '
        'defect dataset", Data in Brief 39 (2021).',
    },
    "mvtec": {
        "name": "MVTec AD",
        "license": "cc-by-nc-sa-4.0",
        "license_note": "CC BY-NC-SA 4.0 (MVTec Software GmbH): no commercial use",
        "citation": "P. Bergmann et al., MVTec AD, CVPR 2019 and IJCV 2021.",
    },
    "btad": {
        "name": "BTAD",
        "license": "cc-by-nc-sa-4.0",
        "license_note": "CC BY-NC-SA 4.0: no commercial use",
        "citation": "P. Mishra et al., VT-ADL, ISIE 2021.",
    },
}


def hardware() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def data_facts(config: TrainConfig, data_format: str) -> dict:
    key = config.category if config.category in KNOWN_DATA else data_format
    return KNOWN_DATA.get(key, {"name": config.category or "custom data", "license": "other",
                                "license_note": "the licence of the training images", "citation": ""})


def model_card(
    config: TrainConfig,
    data_format: str,
    defect_types: list[str],
    split_counts: dict[str, tuple[int, int]],
    steps: int,
    wall_minutes: float,
    hardware_used: str,
    metrics: dict[str, float] | None = None,
    extra: str = "",
) -> str:
    """Markdown with YAML front matter: licence, data, tags, metrics when known; then how it was made."""
    data = data_facts(config, data_format)
    front = {
        "license": data["license"],
        "library_name": "diffusers",
        "pipeline_tag": "image-to-image",
        "tags": ["sard", "anomaly-synthesis", "defect-synthesis", "industrial-inspection", "diffusion-gan"],
        "datasets": [data["name"]],
    }
    if metrics:
        front["model-index"] = [{"name": f"sard-{config.category}", "results": [{
            "task": {"type": "image-segmentation", "name": "downstream defect segmentation"},
            "metrics": [{"type": k, "value": round(v, 4)} for k, v in metrics.items()],
        }]}]
    painting_bound = (f"at most {config.max_crop_size} px (larger masks painted at a lower scale)"
                      if config.max_crop_size else "no bound")
    grain = "on (the photo's fine texture inside the mask after painting, `sard.grain`)" if config.grain else "off"
    view = f"{config.disc_view} view"
    if config.disc_view == "clean":
        view += f" (high-pass: {config.high_pass_mode})"
    split_lines = "\n".join(
        f"| {d} | {train} | {held} |" for d, (train, held) in split_counts.items()
    )
    return f"""---
{yaml.safe_dump(front, sort_keys=False).strip()}
---

# SARD: {config.category or 'custom'} defects

A [SARD](https://arxiv.org/abs/2508.03143) model that paints defects of the types below into a mask on a
normal image of the same product, for training defect segmenters. Outside the mask the output equals the
input pixel for pixel.

```py
import sard
pipe = sard.SARDPipeline.from_pretrained("path/to/this/folder")
result = pipe(image, mask, defect="{defect_types[0]}").images[0]
```

## Training data

{data['name']}, category `{config.category}` ({data_format} layout). Licence of the data: {data['license_note']}.
{('Citation: ' + data['citation']) if data['citation'] else ''}

Split ({config.split}): per defect type, sorted by file name, the first third of the anomalous images
trained this model; the rest are held out (the exact lists are in the run directory's `split.json`).

| defect type | training images | held out |
|---|---|---|
{split_lines}

## Training

| | |
|---|---|
| steps | {steps} |
| wall time | {wall_minutes:.1f} min |
| hardware | {hardware_used} |
| batch size (per process) | {config.batch_size} |
| crop size / working resolution | {config.crop_size} px / {config.resolution} px |
| painting crops, longest side | {painting_bound} |
| grain matching | {grain} |
| denoiser channels | {config.channels} |
| reverse steps T | {config.num_timesteps} |
| started from | {f"the denoiser of `{config.init_from}`" if config.init_from else "random initialisation"} |
| discriminator | {view}, mask-aware head {'on' if config.mask_head else 'off'}, \
{config.disc_steps} update(s) per denoiser update, {config.disc_warmup_steps} warm-up steps alone, \
DiffAugment {config.disc_augment or 'off'}, \
{f"a history of {config.fake_history} past fakes" if config.fake_history else "no history of past fakes"} |
| loss weights | lambda_adv {config.lambda_adv}, lambda_mask {config.lambda_mask}, lambda_x0 {config.lambda_x0}, \
lambda_ms {config.lambda_ms}{f" (up to {config.ms_target} of the real spread)" if config.ms_target else ""}, \
lambda_hf {config.lambda_hf}, lambda_low {config.lambda_low}, lambda_tone {config.lambda_tone}, \
lambda_sample {config.lambda_sample} (finished samples) |
| reconstruction | lambda_rec {config.lambda_rec}, {config.rec_weighting} weighting |
| R1 | gamma {config.r1_gamma}, every {config.r1_every} steps |
| learning rates | G {config.lr_g}, D {config.lr_d}, Adam betas {config.adam_betas} |
| EMA | max decay {config.ema_max_decay}, warm-up power {config.ema_power} |
| seed | {config.seed} |

The full configuration is in the run directory's `config.yaml`.

## Intended use and limitations

- Made to synthesise labelled training data for defect segmentation on the same product surface.
- A model of one product surface: on other products it still leaves the background untouched, but the
  painted defects follow the texture it learned, not the new product's.
- Trained on few real defects; check samples before training on them.
{extra}
## Train your own

```bash
accelerate launch train/train_sard.py --config train/configs/mvtec-256.yaml \\
    --data_root /data/mvtec_ad --category bottle --output_dir runs/bottle
```
"""


GRAIN_HEADING = "## Grain"


def grain_section(strengths: dict[str, float], on: bool) -> str:
    """A card's section on grain matching (:mod:`sard.grain`): off, or on with each defect type's strength."""
    if not on:
        return f"{GRAIN_HEADING}\n\nOff: the fills are pasted as the network paints them.\n"
    rows = "\n".join(f"| {defect} | {value:.2f} |" for defect, value in strengths.items())
    return (f"{GRAIN_HEADING}\n\nOn (`sard.grain`, set with `scripts/set_grain.py`): after painting, each fill gets "
            "the photo's own fine texture, copied in 8 x 8 tiles from around the mask, until its residual is as "
            "strong as the ring around the mask times its type's strength: how much finer the type's training "
            "defects are than their own surroundings (median). The background stays bit-exact.\n\n"
            "| defect | strength |\n|---|---:|\n" + rows + "\n")


def replace_section(card: str, heading: str, section: str) -> str:
    """``card`` with its section under ``heading`` (up to the next ``## `` heading) replaced by ``section``, or
    with ``section`` appended when it has none."""
    lines = card.rstrip("\n").split("\n")
    start = next((i for i, line in enumerate(lines) if line.startswith(heading)), None)
    if start is None:
        return card.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    parts = ["\n".join(lines[:start]).rstrip("\n"), section.strip("\n"), "\n".join(lines[end:])]
    return "\n\n".join(part for part in parts if part) + "\n"
