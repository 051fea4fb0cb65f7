"""Copy a finished training run into the package as its bundled checkpoint.

    python scripts/bundle_checkpoint.py runs/magnetic-tile sard/checkpoints/magnetic-tile

Copies the exported EMA pipeline (model_index.json, denoiser/, scheduler/), the model card and the run's
training log (config.yaml, losses.csv, split.json) into ``training_log/``; adds to the model card what the
loss log says about the discriminator and, with ``--notes FILE``, the maintainers' observations of the
samples; checks that the copy loads. A run that continued earlier ones (``--init_from``) names them with
``--earlier_stages RUN [RUN ...]``, first stage first (``--stage1 RUN`` for one); their logs go to
``training_log/stage-1/``, ``stage-2/``, ... Each is a run directory or a bundled model's ``training_log/``
(they hold the same files), so a bundled model can be trained on and bundled again. ``--fidelity
OUT/fidelity.md`` (from ``train/fidelity.py``) adds the fidelity table to the card; ``--max_crop_size N`` bounds
the painting crops of a run trained before that setting existed (``SARDPipeline``'s ``max_crop_size``), and
says so in the card.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import tempfile
from pathlib import Path

from sard import SARDPipeline
from sard.training.held_out import held_out_accuracy
from sard.training.model_card import grain_section

PIPELINE_FILES = ["model_index.json", "README.md", "denoiser", "scheduler"]
LOG_FILES = ["config.yaml", "losses.csv", "split.json"]
DISCRIMINATOR_TERMS = {"d_global": "global head", "d_mask": "mask-aware head", "d_x0": "mask-aware head on x0_hat"}
CHANCE = 2 * math.log(2)  # a discriminator loss (real + fake BCE) that cannot tell real from fake


def discriminator_summary(losses_csv: Path, tail: float = 0.1) -> str:
    """A model-card section: each discriminator term averaged over the last ``tail`` of the logged steps,
    against chance. At chance the adversarial terms give the generator no signal and the fills come from
    the reconstruction loss alone; readers of the card should know which case they are in."""
    with open(losses_csv, newline="") as file:
        rows = list(csv.DictReader(file))
    last = rows[-max(1, int(len(rows) * tail)) :]
    lines = [
        "## What the loss log says",
        "",
        f"Discriminator losses (real + fake binary cross-entropy) averaged over the last {len(last)} logged steps "
        f"(steps {last[0]['step']}-{last[-1]['step']}), against {CHANCE:.3f} = 2 ln 2, the loss of a "
        "discriminator that cannot tell real from synthesised:",
        "",
        "| term | mean | at chance (within 0.01) |",
        "|---|---|---|",
    ]
    for key, name in DISCRIMINATOR_TERMS.items():
        values = [float(row[key]) for row in last if row.get(key)]
        if values:
            mean = sum(values) / len(values)
            lines.append(f"| {name} (`{key}`) | {mean:.4f} | {'yes' if abs(mean - CHANCE) < 0.01 else 'no'} |")
    held_out = held_out_summary(rows)
    return "\n".join(lines) + "\n" + (f"\n{held_out}" if held_out else "")


def held_out_summary(rows: list[dict], tail: float = 0.25) -> str:
    """Each head's accuracy on the held-out crops (real against the denoiser's fakes), per level, averaged
    over the last ``tail`` of the steps that measured it; empty when the run did not measure it."""
    summary = held_out_accuracy(rows, tail)
    if summary is None:
        return ""
    levels = sorted({t for per_level in summary.accuracy.values() for t in per_level})
    lines = [
        f"Discriminator accuracy on held-out real defects against the denoiser's fakes (0.5: chance), averaged over "
        f"the last {summary.n} measurements (steps {summary.first_step}-{summary.last_step}):",
        "",
        "| head | " + " | ".join(f"t = {t}" for t in levels) + " |",
        "|---|" + "---:|" * len(levels),
    ]
    for head, per_level in summary.accuracy.items():
        lines.append(f"| {head} | " + " | ".join(f"{per_level[t]:.2f}" for t in levels) + " |")
    return "\n".join(lines) + "\n"


def fidelity_section(report: str) -> str:
    """A model-card section from ``train/fidelity.py``'s markdown report, under a heading of the card's level."""
    body = report.split("\n", 1)[1].strip("\n") if report.startswith("# ") else report.strip("\n")
    return "## Fidelity (held-out masks, `train/fidelity.py`)\n\n" + body + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="the --output_dir of a finished training run")
    parser.add_argument("target", type=Path, help="where the bundle goes")
    parser.add_argument("--notes", type=Path, help="a markdown file appended to the model card")
    parser.add_argument("--earlier_stages", "--stage1", type=Path, nargs="+", default=[], metavar="RUN",
                        help="the runs this one continued (--init_from), first stage first: run directories or "
                        "a bundled model's training_log/ (and its stage-N/ folders)")
    parser.add_argument("--fidelity", type=Path, help="the fidelity.md that train/fidelity.py wrote for this model")
    parser.add_argument("--max_crop_size", type=int, help="set the pipeline's bound on a painting crop's longer "
                        "side (pixels; 0: none) in the bundle")
    args = parser.parse_args()
    for name in ("notes", "fidelity"):
        if getattr(args, name) is not None and not getattr(args, name).is_file():
            parser.error(f"--{name} {getattr(args, name)}: no such file")
    for stage in args.earlier_stages:
        missing = [name for name in LOG_FILES if not (stage / name).is_file()]
        if missing:
            parser.error(f"--earlier_stages {stage}: not a training run (missing {', '.join(missing)})")
    missing = [name for name in PIPELINE_FILES + LOG_FILES if not (args.run_dir / name).exists()]
    if missing:
        parser.error(f"{args.run_dir} is not a finished run (missing {', '.join(missing)}); train it to the end")

    # Assemble next to the target and swap it in, so a failed copy never leaves half a bundle.
    args.target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".bundle-", dir=args.target.parent))
    try:
        for name in PIPELINE_FILES:
            source = args.run_dir / name
            (shutil.copytree if source.is_dir() else shutil.copy2)(source, staging / name)
        (staging / "training_log").mkdir()
        for name in LOG_FILES:
            shutil.copy2(args.run_dir / name, staging / "training_log" / name)
        # Copied before the target is replaced: an earlier stage may be the target's own training_log.
        for number, stage in enumerate(args.earlier_stages, start=1):
            (staging / "training_log" / f"stage-{number}").mkdir()
            for name in LOG_FILES:
                shutil.copy2(stage / name, staging / "training_log" / f"stage-{number}" / name)
        card = (staging / "README.md").read_text().rstrip("\n") + "\n\n"
        if args.max_crop_size is not None:
            index = json.loads((staging / "model_index.json").read_text())
            index["max_crop_size"] = args.max_crop_size
            (staging / "model_index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
            card += (f"Painting crops are bounded at {args.max_crop_size} px on their longer side (`max_crop_size` in "
                     "`model_index.json`, set when bundled): a mask too large for that is painted at a lower scale, "
                     "so no defect costs more than one such crop.\n\n")
        card += discriminator_summary(args.run_dir / "losses.csv")
        if args.fidelity is not None:
            card += "\n" + fidelity_section(args.fidelity.read_text())
        index = json.loads((staging / "model_index.json").read_text())
        if index.get("grain"):
            card += "\n" + grain_section(index.get("grain_strength") or {}, on=True)
        if args.notes is not None:
            card += "\n" + args.notes.read_text().strip("\n") + "\n"
        (staging / "README.md").write_text(card)
        SARDPipeline.from_pretrained(staging)  # refuse to bundle what does not load
        shutil.rmtree(args.target, ignore_errors=True)
        staging.rename(args.target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"bundled {args.run_dir} into {args.target}")


if __name__ == "__main__":
    main()
