"""The ablation's report: ``ablation.csv``, a markdown table, a bar chart and the side-by-side figure (PIL only).

One row per (variant, category, defect type) and an ``all`` row per variant: the downstream metrics of the
main table (from the evaluation harness), the realism figures of the probe (:mod:`.probe`), with the
same figures of the real held-out defects as rows of the pseudo-variant ``real``, and, where measured, the
fidelity figures of ``train/fidelity.py`` and the discriminator's held-out accuracy at t = 1 (``all`` rows of
the trained models).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageDraw

from .. import figures
from ..datasets import load_mask
from ..figures import Panel
from ..training.held_out import HeldOutAccuracy
from . import realism, report
from .ablation import Variant
from .probe import ProbeTile

COLUMNS = ("variant", "claim", "category", "defect", "miou", "acc", "iou", "contrast", "texture_ratio",
           "contrast_gap", "texture_gap", "drift", "n_probe", "c2st", "c2st_se", "fidelity_texture",
           "texture_in_range", "texture_real_p10", "texture_real_p90", "fidelity_contrast", "contrast_in_range",
           "diversity", "colour", "colour_in_range", "disc_global_t1", "disc_mask_t1")
FIDELITY = {"c2st": "c2st", "c2st_se": "c2st_se", "fidelity_texture": "texture_ratio",
            "texture_in_range": "texture_in_range", "texture_real_p10": "texture_real_p10",
            "texture_real_p90": "texture_real_p90", "fidelity_contrast": "contrast",
            "contrast_in_range": "contrast_in_range", "diversity": "diversity", "colour": "colour",
            "colour_in_range": "colour_in_range"}
NAN = math.nan


def ablation_rows(category: str, variants: list[Variant], downstream: dict[str, dict[str, dict]],
                  probes: dict[str, dict[str, dict]], real: dict[str, dict],
                  fidelity: dict[str, dict[str, dict]] | None = None,
                  discriminators: dict[str, HeldOutAccuracy] | None = None) -> list[dict]:
    """The rows of one category.

    Args:
        downstream: variant -> defect (and ``all``) -> ``{"miou", "acc", "iou"}`` in percent.
        probes: variant -> defect (and ``all``) -> a probe summary (``n``, ``contrast``, ``texture_ratio``,
            ``drift``).
        real: defect (and ``all``) -> the summary of the real held-out defects.
        fidelity: variant -> defect (and ``all``) -> a row of its ``fidelity.csv``.
        discriminators: variant -> its model's held-out discriminator accuracy (trained variants only).
    """
    fidelity, discriminators = fidelity or {}, discriminators or {}
    tables = [*downstream.values(), *probes.values(), *fidelity.values(), real]
    defects = sorted({d for table in tables for d in table} - {"all"})
    rows = []
    for variant in variants:
        if variant.name not in downstream and variant.name not in probes and variant.name not in fidelity:
            continue
        for defect in [*defects, "all"]:
            metrics = downstream.get(variant.name, {}).get(defect, {})
            probe = probes.get(variant.name, {}).get(defect)
            row = {"variant": variant.name, "claim": variant.claim, "category": category, "defect": defect,
                   **{k: metrics.get(k, NAN) for k in ("miou", "acc", "iou")},
                   "contrast": NAN, "texture_ratio": NAN, "contrast_gap": NAN, "texture_gap": NAN, "drift": NAN,
                   "n_probe": 0}
            if probe:
                row.update(contrast=probe["contrast"], texture_ratio=probe["texture_ratio"],
                           drift=probe.get("drift", NAN), n_probe=probe["n"])
                if defect in real:
                    row.update(realism.gaps(probe, real[defect]))
            measured = fidelity.get(variant.name, {}).get(defect)
            row.update({k: measured[source] if measured else NAN for k, source in FIDELITY.items()})
            judge = discriminators.get(variant.name) if defect == "all" else None
            for head in ("global", "mask"):
                row[f"disc_{head}_t1"] = judge.accuracy[head][1] if judge and head in judge.accuracy else NAN
            rows.append(row)
    for defect in [*defects, "all"]:
        if defect in real:
            rows.append({**dict.fromkeys(COLUMNS, NAN), "variant": "real", "claim": "", "category": category,
                         "defect": defect, "contrast": real[defect]["contrast"],
                         "texture_ratio": real[defect]["texture_ratio"], "n_probe": real[defect]["n"]})
    figures = ("contrast", "texture_ratio", "contrast_gap", "texture_gap", "drift", "c2st", "c2st_se",
               "fidelity_texture", "texture_real_p10", "texture_real_p90", "fidelity_contrast", "diversity",
               "colour", "disc_global_t1", "disc_mask_t1")
    return [{k: round(v, 4) if k in figures and not _nan(v) else v for k, v in row.items()} for row in rows]


def write_csv(rows: list[dict], path: str | Path) -> None:
    report.write_csv(rows, path, COLUMNS)


def _nan(value) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _fmt(value, spec: str = ".2f") -> str:
    return "0" if value == 0 else report.fmt(value, spec)


def markdown(rows: list[dict], descriptions: dict[str, str] | None = None) -> str:
    """Per category: the ``all`` rows (downstream metrics, realism, drift), then the realism per defect type."""
    descriptions = descriptions or {}
    lines = []
    for category in dict.fromkeys(r["category"] for r in rows):
        mine = [r for r in rows if r["category"] == category]
        lines += [f"### {category}", "",
                  "| variant | tests | what changes | mIoU | acc | IoU(defect) | contrast | texture ratio | "
                  "contrast gap | texture gap | drift before paste |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in (r for r in mine if r["defect"] == "all"):
            name = "real held-out defects" if r["variant"] == "real" else r["variant"]
            lines.append(
                f"| {name} | {r['claim']} | {descriptions.get(r['variant'], '')} | {_fmt(r['miou'])} | "
                f"{_fmt(r['acc'])} | {_fmt(r['iou'])} | {_fmt(r['contrast'], '+.1f')} | "
                f"{_fmt(r['texture_ratio'])} | {_fmt(r['contrast_gap'], '+.1f')} | {_fmt(r['texture_gap'], '+.2f')} | "
                f"{_fmt(r['drift'])} |"
            )
        defects = [d for d in dict.fromkeys(r["defect"] for r in mine) if d != "all"]
        lines += ["", "Per defect type (mIoU / IoU(defect) in %; contrast in grey levels; texture ratio; n probed):",
                  "", "| defect | variant | mIoU | IoU(defect) | contrast | texture ratio | drift | n |",
                  "|---|---|---|---|---|---|---|---|"]
        for defect in defects:
            for r in (r for r in mine if r["defect"] == defect):
                lines.append(f"| {defect} | {r['variant']} | {_fmt(r['miou'])} | {_fmt(r['iou'])} | "
                             f"{_fmt(r['contrast'], '+.1f')} | {_fmt(r['texture_ratio'])} | {_fmt(r['drift'])} | "
                             f"{r['n_probe']} |")
        lines.append("")
        lines += fidelity_markdown(mine, descriptions)
    return "\n".join(lines)


def _in(flag) -> str:
    return "–" if _nan(flag) else ("yes" if flag else "no")


def _colour(row: dict) -> str:
    """The colour figure (0 on grey images) and whether it is in the real range."""
    return "–" if _nan(row["colour"]) else f"{row['colour']:+.1f} ({_in(row['colour_in_range'])})"


def fidelity_markdown(rows: list[dict], descriptions: dict[str, str]) -> list[str]:
    """The fidelity figures and the discriminator's accuracy of one category's rows; none when not measured."""
    measured = [r for r in rows if not _nan(r.get("c2st", NAN)) or not _nan(r.get("disc_mask_t1", NAN))
                or not _nan(r.get("disc_global_t1", NAN))]
    if not measured:
        return []
    lines = ["Fidelity (`train/fidelity.py`: C2ST, texture ratio, contrast and diversity on held-out masks at full "
             "resolution) and the discriminator (held-out accuracy at t = 1 over the last quarter of training):", "",
             "| variant | what changes | C2ST | texture ratio | types with texture in the real p10–p90 | contrast | "
             "diversity | colour (in the real p10–p90) | discriminator: global head | discriminator: mask-aware "
             "head |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in (r for r in rows if r["defect"] == "all" and r["variant"] != "real"):
        types = [x for x in rows if x["variant"] == r["variant"] and x["defect"] != "all"
                 and not _nan(x["texture_in_range"])]
        inside = f"{sum(bool(x['texture_in_range']) for x in types)} of {len(types)}" if types else "–"
        c2st = "–" if _nan(r["c2st"]) else f"{r['c2st']:.2f} ± {r['c2st_se']:.2f}"
        lines.append(f"| {r['variant']} | {descriptions.get(r['variant'], '')} | {c2st} | "
                     f"{_fmt(r['fidelity_texture'])} | {inside} | {_fmt(r['fidelity_contrast'], '+.1f')} | "
                     f"{_fmt(r['diversity'])} | {_colour(r)} | {_fmt(r['disc_global_t1'])} | "
                     f"{_fmt(r['disc_mask_t1'])} |")
    lines += ["", "Fidelity per defect type (texture ratio, with the real defects' p10–p90):", "",
              "| defect | variant | C2ST | texture ratio | real p10–p90 | in range | contrast | in range | "
              "diversity |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in (r for r in rows if r["defect"] != "all" and not _nan(r["c2st"])):
        lines.append(f"| {r['defect']} | {r['variant']} | {_fmt(r['c2st'])} | {_fmt(r['fidelity_texture'])} | "
                     f"{_fmt(r['texture_real_p10'])}–{_fmt(r['texture_real_p90'])} | {_in(r['texture_in_range'])} | "
                     f"{_fmt(r['fidelity_contrast'], '+.1f')} | {_in(r['contrast_in_range'])} | "
                     f"{_fmt(r['diversity'])} |")
    lines.append("")
    return lines


def bar_chart(rows: list[dict], path: str | Path, width: int = 900, height: int = 300) -> None:
    """One panel per figure, groups = categories, bars = variants (``all`` rows): mIoU, IoU(defect), the
    distances to the real defects (|contrast gap|, |texture gap|) and the background drift before the paste."""
    panels = [("miou", "mIoU (%)"), ("iou", "IoU of the defect class (%)"),
              ("contrast_gap", "|contrast gap| to the real defects (grey levels; lower is closer)"),
              ("texture_gap", "|texture gap| to the real defects (log2 of the ratios; lower is closer)"),
              ("drift", "background drift before the paste (grey levels, ring around the mask)")]
    alls = [r for r in rows if r["defect"] == "all" and r["variant"] != "real"]
    variants = list(dict.fromkeys(r["variant"] for r in alls))
    categories = list(dict.fromkeys(r["category"] for r in alls))
    drawn = [Panel(title, {(r["variant"], r["category"]): abs(r[key]) for r in alls if not _nan(r[key])},
                   top=100.0 if key in ("miou", "iou") else None) for key, title in panels]
    figures.bar_chart(drawn, categories, variants, path, width=width, height=height)


def save_tiles(tiles: dict[tuple[str, int], ProbeTile], folder: str | Path) -> None:
    """The probe's crops of the figure's items as PNG files, so a resumed ablation can draw the figure."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for (defect, j), tile in tiles.items():
        for kind in ("known", "painted", "sample", "mask"):
            pixels = getattr(tile, kind)
            PIL.Image.fromarray(pixels.astype(np.uint8) * 255 if kind == "mask" else pixels).save(
                folder / f"{defect}-{j:03d}-{kind}.png")


def load_tile(folder: str | Path, defect: str, j: int) -> ProbeTile | None:
    paths = {kind: Path(folder) / f"{defect}-{j:03d}-{kind}.png" for kind in ("known", "painted", "sample", "mask")}
    if not all(p.is_file() for p in paths.values()):
        return None
    arrays = {kind: np.asarray(PIL.Image.open(p).convert("RGB")) for kind, p in paths.items() if kind != "mask"}
    arrays["mask"] = load_mask(paths["mask"])
    return ProbeTile(**arrays)
