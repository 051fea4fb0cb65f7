"""Switch grain matching on (or off) in a saved SARD pipeline, with each defect type's strength measured on the
training defects the model was trained on (``sard.grain``).

    python scripts/set_grain.py sard/checkpoints/bottle            # on, strengths from its training split
    python scripts/set_grain.py runs/my-run --data_root /data/mvtec  # the data moved since training
    python scripts/set_grain.py sard/checkpoints/bottle --off
    # after measuring it: the card's fidelity table replaced by the new one
    python scripts/set_grain.py sard/checkpoints/bottle --fidelity runs/fid-bottle/fidelity.md

The training split comes from the run's ``config.yaml`` (``training_log/config.yaml`` in a bundled model): its
data root, category, format and split. ``model_index.json`` and the model card (``README.md``: a "Grain" section
with the strengths, and with ``--fidelity`` the fidelity table) change, each written whole or not at all; the
weights do not.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml
from bundle_checkpoint import fidelity_section

from sard.datasets import anomaly_pixels, read_dataset
from sard.files import write_json, write_text
from sard.grain import type_strengths
from sard.loading import check_checkpoint
from sard.training.model_card import GRAIN_HEADING, grain_section, replace_section


def training_config(checkpoint: Path) -> dict:
    for path in (checkpoint / "config.yaml", checkpoint / "training_log" / "config.yaml"):
        if path.is_file():
            return yaml.safe_load(path.read_text())
    raise SystemExit(f"error: no config.yaml in {checkpoint} or its training_log/: the training split is unknown.")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="a saved SARD pipeline (a run folder or a bundled model)")
    parser.add_argument("--data_root", help="the data set root, if not the one in the run's config.yaml")
    parser.add_argument("--off", action="store_true", help="switch grain matching off")
    parser.add_argument("--fidelity", type=Path, help="train/fidelity.py's fidelity.md for the model with this "
                        "setting: replaces the model card's fidelity table")
    args = parser.parse_args(argv)
    check_checkpoint(args.checkpoint)
    if args.fidelity is not None and not args.fidelity.is_file():
        parser.error(f"--fidelity {args.fidelity}: no such file")
    index_path = args.checkpoint / "model_index.json"
    index = json.loads(index_path.read_text())
    if args.off:
        index["grain"], index["grain_strength"] = False, {}
    else:
        config = training_config(args.checkpoint)
        dataset = read_dataset(args.data_root or config["data_root"], config["category"], config["data_format"])
        training = dataset.training_anomalies(config["split"])
        index["grain"] = True
        index["grain_strength"] = type_strengths({d: anomaly_pixels(items) for d, items in training.items()})
    card_path = args.checkpoint / "README.md"
    if card_path.is_file():
        section = grain_section(index["grain_strength"], index["grain"])
        card = replace_section(card_path.read_text(), GRAIN_HEADING, section)
        if args.fidelity is not None:
            card = replace_section(card, "## Fidelity", fidelity_section(args.fidelity.read_text()))
        write_text(card_path, card)
    write_json(index_path, index)
    print(f"{index_path}: grain {'on' if index['grain'] else 'off'}"
          + "".join(f"\n  {d}: strength {s}" for d, s in (index["grain_strength"] or {}).items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
