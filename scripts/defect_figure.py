"""The README figure: per defect type, a normal test image with a held-out real mask, SARD results for
two seeds, and the real held-out defect the mask came from.

    python scripts/defect_figure.py --checkpoint sard/checkpoints/magnetic-tile \
        --data_root ../shared/data --category magnetic_tile --output docs/magnetic_tile.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sard import DEFAULT_CHECKPOINT, SARDPipeline
from sard.datasets import read_dataset
from sard.training.previews import defect_grid, preview_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT, help="folder or hub id (default: bundled)")
    parser.add_argument("--data_root", required=True)
    parser.add_argument("--category", required=True)
    parser.add_argument("--output", required=True, help="PNG file to write")
    parser.add_argument("--seeds", default="0,1", help="comma-separated seeds, one column each")
    parser.add_argument("--index", type=int, default=0, help="which held-out anomaly of each type to show")
    args = parser.parse_args()
    if args.checkpoint is None:
        parser.error("no bundled checkpoint in this copy of SARD; pass --checkpoint")

    pipe = SARDPipeline.from_pretrained(args.checkpoint)
    pipe.set_progress_bar_config(disable=True)
    dataset = read_dataset(args.data_root, args.category)
    _, held_out = dataset.split("protocol")
    rows = preview_rows(dataset, held_out, index=args.index)
    seeds = tuple(int(s) for s in args.seeds.split(","))
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    defect_grid(pipe, rows, seeds=seeds).save(output)
    print(f"wrote {output} ({len(rows)} defect types x {len(seeds)} seeds)")


if __name__ == "__main__":
    main()
