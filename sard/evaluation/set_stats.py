"""Where a data set's defects sit and how they look, per defect type: figures that tell a synthetic set from
the real defects before any segmenter is trained on it.

    python train/set_stats.py --data_root ROOT [ROOT ...] --category CAT [--split all|train|held_out]

Each root is a data set in a layout :mod:`sard.datasets` reads: a real one, or a synthetic set as
``train/synthesize.py`` and the benchmark write them (``OUT/synthetic/seed-S/METHOD``). Per root and defect
type, over the anomalous images at their own size (grey levels, :mod:`.realism`'s definitions):

- ``area``: the mask's share of the image, %;
- ``surroundings``: the ring around the mask against the whole image (negative: the defect sits on a darker
  part of the product than its average, as ball-screw pits sit in the thread's dark groove);
- ``contrast``: inside the mask against the ring;
- ``texture``: the texture ratio, inside against the ring (geometric mean).

Each figure is the mean over the defects (masks without a defect pixel are left out).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from ..datasets import Anomaly, load_rgb, read_dataset
from ..image_io import decode_mask
from ..synthesis.masks import surroundings_tone
from . import realism

SPLITS = ("all", "train", "held_out")
FIGURES = ("area", "surroundings", "contrast", "texture")


def defect_figures(image: np.ndarray, mask: np.ndarray, ring_width: int = 3) -> dict[str, float]:
    """The figures of one defect: ``area`` (%), ``surroundings``, ``contrast`` and ``texture`` (the ratio)."""
    gray, mask = realism.luma(image), np.asarray(mask, dtype=bool)
    stats = realism.defect_stats(gray, mask, ring_width)
    return {"area": 100.0 * float(mask.mean()), "surroundings": surroundings_tone(gray, mask, ring_width),
            "contrast": stats.contrast, "texture": stats.texture_ratio}


def summarize(figures: list[dict[str, float]]) -> dict[str, float]:
    """``n`` and the mean of each figure over the defects (texture ratios on a log scale, as in :mod:`.realism`);
    NaN figures are left out."""
    summary: dict[str, float] = {"n": len(figures)}
    for name in FIGURES:
        values = np.array([f[name] for f in figures], dtype=np.float64)
        values = values[np.isfinite(values) & ((values > 0) if name == "texture" else True)]
        if not values.size:
            summary[name] = math.nan
        elif name == "texture":
            summary[name] = float(np.exp(np.log(values).mean()))
        else:
            summary[name] = float(values.mean())
    return summary


def anomalies_of(root: str | Path, category: str, split: str = "all") -> dict[str, list[Anomaly]]:
    """Per defect type, the anomalies of ``split``: all of them, or the protocol's training third or the rest."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}.")
    dataset = read_dataset(root, category)
    if split == "all":
        return dataset.anomalies
    train, held_out = dataset.split("protocol")
    return train if split == "train" else held_out


def set_stats(root: str | Path, category: str, split: str = "all", ring_width: int = 3) -> dict[str, dict]:
    """Per defect type (and ``all``, every defect of the set), :func:`summarize` of the defects' figures."""
    per_type: dict[str, list[dict]] = {}
    for defect, anomalies in sorted(anomalies_of(root, category, split).items()):
        for anomaly in anomalies:
            if anomaly.mask is None:
                continue
            image = np.asarray(load_rgb(anomaly.image))
            mask = decode_mask(anomaly.mask, image.shape[:2])
            if mask.any():
                per_type.setdefault(defect, []).append(defect_figures(image, mask, ring_width))
    every = [f for figures in per_type.values() for f in figures]
    return {**{d: summarize(f) for d, f in per_type.items()}, "all": summarize(every)}


def markdown(stats: dict[str, dict[str, dict]]) -> str:
    """One table: a row per (set, defect type)."""
    lines = ["| set | defect | n | area, % | surroundings | contrast | texture |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for name, per_type in stats.items():
        for defect, s in per_type.items():
            lines.append(f"| {name} | {defect} | {s['n']} | {s['area']:.2f} | {s['surroundings']:.1f} | "
                         f"{s['contrast']:.1f} | {s['texture']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> dict[str, dict[str, dict]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_root", nargs="+", required=True,
                        help="one or more data set roots (a real data set, or synthetic sets), compared in one table")
    parser.add_argument("--category", required=True)
    parser.add_argument("--split", default="all", choices=SPLITS,
                        help="all anomalies, or the protocol's training third (train) or the rest (held_out)")
    parser.add_argument("--ring_width", type=int, default=3, help="the ring around each mask, in pixels")
    args = parser.parse_args(argv)
    stats = {root: set_stats(root, args.category, args.split, args.ring_width) for root in args.data_root}
    print(markdown(stats))
    return stats
