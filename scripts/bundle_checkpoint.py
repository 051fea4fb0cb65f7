"""Copy a finished training run into the package as its bundled checkpoint.

    python scripts/bundle_checkpoint.py runs/magnetic-tile sard/checkpoints/magnetic-tile

Copies the exported EMA pipeline (model_index.json, denoiser/, scheduler/), the model card and the run's
training log (config.yaml, losses.csv, split.json) into ``training_log/``; adds to the model card what the
loss log says about the discriminator and, with ``--notes FILE``, the maintainers' observations of the
samples; checks that the copy loads.
"""

from __future__ import annotations

import argparse
import csv
import math
import shutil
import tempfile
from pathlib import Path

from sard import SARDPipeline

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
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="the --output_dir of a finished training run")
    parser.add_argument("target", type=Path, help="where the bundle goes")
    parser.add_argument("--notes", type=Path, help="a markdown file appended to the model card")
    args = parser.parse_args()
    if args.notes is not None and not args.notes.is_file():
        parser.error(f"--notes {args.notes}: no such file")
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
        card = (staging / "README.md").read_text().rstrip("\n") + "\n\n"
        card += discriminator_summary(args.run_dir / "losses.csv")
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
