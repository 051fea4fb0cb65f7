"""The evaluation's report: ``results.csv``, a markdown table and a bar chart (drawn with PIL only)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import PIL.Image
import PIL.ImageDraw
import PIL.ImageFont

COLUMNS = ("method", "category", "defect", "iou", "miou", "acc")
# Colour-blind-safe (Okabe-Ito), one per method in order of appearance.
PALETTE = [(0, 114, 178), (230, 159, 0), (0, 158, 115), (204, 121, 167), (86, 180, 233), (213, 94, 0)]


def write_csv(rows: list[dict], path: str | Path) -> None:
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({k: row[k] for k in COLUMNS} for row in rows)


def read_csv(path: str | Path) -> list[dict]:
    with open(path, newline="") as file:
        return [{**row, **{k: float(row[k]) for k in ("iou", "miou", "acc")}} for row in csv.DictReader(file)]


def _ordered(values) -> list:
    return list(dict.fromkeys(values))


def category_means(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Per method, the mean over categories of the ``all`` rows (the average the papers report)."""
    means = {}
    for method in _ordered(r["method"] for r in rows):
        alls = [r for r in rows if r["method"] == method and r["defect"] == "all"]
        means[method] = {k: sum(r[k] for r in alls) / len(alls) if alls else math.nan for k in ("iou", "miou", "acc")}
    return means


def _fmt(value: float) -> str:
    return "–" if isinstance(value, float) and math.isnan(value) else f"{value:.2f}"


def markdown_table(rows: list[dict]) -> str:
    """Two tables: per category (``all`` rows) with the average over categories, then per defect type.
    Cells are ``mIoU / acc / IoU(defect)`` in percent."""
    methods = _ordered(r["method"] for r in rows)
    categories = _ordered(r["category"] for r in rows)
    index = {(r["method"], r["category"], r["defect"]): r for r in rows}

    def cell(row):
        return f"{_fmt(row['miou'])} / {_fmt(row['acc'])} / {_fmt(row['iou'])}" if row else "n/a"

    lines = ["| method | " + " | ".join(categories) + (" | average |" if len(categories) > 1 else " |"),
             "|---|" + "---|" * (len(categories) + (len(categories) > 1))]
    means = category_means(rows)
    for method in methods:
        cells = [cell(index.get((method, c, "all"))) for c in categories]
        if len(categories) > 1:
            cells.append(cell(means[method]))
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += ["", "Per defect type (mIoU / acc / IoU(defect), %):", "",
              "| category | defect | " + " | ".join(methods) + " |", "|---|---|" + "---|" * len(methods)]
    for category in categories:
        defects = _ordered(r["defect"] for r in rows if r["category"] == category)
        for defect in [d for d in defects if d != "all"] + ["all"]:
            cells = [cell(index.get((m, category, defect))) for m in methods]
            lines.append(f"| {category} | {defect} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _font(size: int):
    try:
        return PIL.ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size default font
        return PIL.ImageFont.load_default()


def bar_chart(rows: list[dict], path: str | Path, metrics=("miou", "iou"), size=(900, 420)) -> None:
    """Grouped bars, one panel per metric: groups are the categories (and their average), bars the methods."""
    methods = _ordered(r["method"] for r in rows)
    categories = _ordered(r["category"] for r in rows)
    index = {(r["method"], r["category"]): r for r in rows if r["defect"] == "all"}
    groups = categories + (["average"] if len(categories) > 1 else [])
    means = category_means(rows)
    titles = {"miou": "mIoU (%)", "iou": "IoU of the defect class (%)", "acc": "pixel accuracy (%)"}
    width, height = size
    image = PIL.Image.new("RGB", (width, height * len(metrics)), "white")
    draw = PIL.ImageDraw.Draw(image)
    font, small = _font(16), _font(12)
    for p, metric in enumerate(metrics):
        top, left, right, bottom = p * height + 40, 60, width - 20, p * height + height - 70
        draw.text((left, p * height + 12), titles.get(metric, metric), fill="black", font=font)
        for tick in range(0, 101, 20):
            y = bottom - (bottom - top) * tick / 100
            draw.line([(left, y), (right, y)], fill=(225, 225, 225))
            draw.text((left - 30, y - 7), f"{tick}", fill="black", font=small)
        draw.line([(left, top), (left, bottom), (right, bottom)], fill="black")
        group_width = (right - left) / len(groups)
        bar = group_width * 0.8 / len(methods)
        for g, group in enumerate(groups):
            x0 = left + g * group_width + group_width * 0.1
            for m, method in enumerate(methods):
                row = means[method] if group == "average" else index.get((method, group))
                value = row[metric] if row else math.nan
                if isinstance(value, float) and math.isnan(value):
                    continue
                y = bottom - (bottom - top) * max(0.0, min(value, 100.0)) / 100
                x = x0 + m * bar
                draw.rectangle([x, y, x + bar - 2, bottom], fill=PALETTE[m % len(PALETTE)])
                draw.text((x, y - 14), f"{value:.0f}", fill="black", font=small)
            draw.text((x0, bottom + 6), group, fill="black", font=small)
        for m, method in enumerate(methods):
            x = left + m * 140
            draw.rectangle([x, bottom + 30, x + 14, bottom + 44], fill=PALETTE[m % len(PALETTE)])
            draw.text((x + 20, bottom + 30), method, fill="black", font=small)
    image.save(path)


def write_report(rows: list[dict], output_dir: str | Path, note: str = "") -> dict[str, Path]:
    """``results.csv``, ``results.md`` and ``results.png`` in ``output_dir``."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {"csv": output_dir / "results.csv", "md": output_dir / "results.md", "png": output_dir / "results.png"}
    write_csv(rows, paths["csv"])
    table = "Cells: mIoU / pixel accuracy / IoU of the defect class, in percent.\n\n" + markdown_table(rows)
    paths["md"].write_text((note + "\n\n" if note else "") + table)
    bar_chart(rows, paths["png"])
    return paths
