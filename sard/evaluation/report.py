"""The benchmark's report: ``results.csv``, markdown tables and a bar chart, and the CSV and table helpers the
ablation's report (:mod:`.ablation_report`) shares; charts are drawn by :mod:`sard.figures`."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from .. import figures
from ..figures import Panel
from ..files import atomic_path
from .aggregate import comparisons, not_separable_from_best
from .harness import METRICS

COLUMNS = ("method", "category", "defect", "seeds", *(k for m in METRICS for k in (m, f"{m}_std")))
SEED_COLUMNS = ("method", "category", "defect", "seed", *METRICS)
NAMES = {"iou": "IoU(defect)", "miou": "mIoU", "macc": "mAcc", "aacc": "aAcc"}


def write_csv(rows: list[dict], path: str | Path, columns=COLUMNS) -> None:
    """``rows`` as a CSV of ``columns``, written atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        writer.writerows({k: row[k] for k in columns} for row in rows)


def read_csv(path: str | Path) -> list[dict]:
    """Rows of ``results.csv`` (or ``results_seeds.csv``): metrics as floats, ``seeds`` and ``seed`` as ints."""
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    for row in rows:
        for key in row:
            if key in ("seeds", "seed"):
                row[key] = int(row[key])
            elif key not in ("method", "category", "defect"):
                row[key] = float(row[key])
    return rows


def _ordered(values) -> list:
    return list(dict.fromkeys(values))


def category_means(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Per method, the mean over categories of the ``all`` rows' means (the average the papers report)."""
    means = {}
    for method in _ordered(r["method"] for r in rows):
        alls = [r for r in rows if r["method"] == method and r["defect"] == "all"]
        means[method] = {k: sum(r[k] for r in alls) / len(alls) if alls else math.nan for k in METRICS}
    return means


def fmt(value: float, spec: str = ".2f") -> str:
    """A table cell: ``value`` formatted with ``spec``, "–" for NaN."""
    return "–" if isinstance(value, float) and math.isnan(value) else format(value, spec)


def _cell(row: dict, metric: str) -> str:
    std = row.get(f"{metric}_std", math.nan)
    return fmt(row[metric]) + ("" if isinstance(std, float) and math.isnan(std) else f" ± {fmt(std)}")


def category_table(rows: list[dict], category: str) -> str:
    """One category's ``all`` rows: per method, every metric as mean ± spread over the seeds; the best of
    each column in bold, and ``≈`` after the rows that are not separable from it."""
    alls = [r for r in rows if r["category"] == category and r["defect"] == "all"]
    lines = ["| method | seeds | " + " | ".join(NAMES[m] for m in METRICS) + " |",
             "|---|---:|" + "---:|" * len(METRICS)]
    ties = {m: not_separable_from_best(alls, m) for m in METRICS}
    best = {m: max((r[m] for r in alls if not math.isnan(r[m])), default=math.nan) for m in METRICS}
    for row in alls:
        cells = []
        for m in METRICS:
            cell = _cell(row, m)
            if row[m] == best[m] and len(alls) > 1:
                cell = f"**{cell}**"
            elif (row["method"], category, "all") in ties[m]:
                cell += " ≈"
            cells.append(cell)
        lines.append(f"| {row['method']} | {row['seeds']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def comparison_table(rows: list[dict]) -> str:
    """The comparisons of :data:`sard.evaluation.aggregate.COMPARISONS` present in ``rows``: per metric, the
    difference of the means against twice the combined spread."""
    found = comparisons(rows)
    if not found:
        return ""
    metrics = ("iou", "miou", "macc")
    lines = ["| category | comparison | " + " | ".join(NAMES[m] for m in metrics) + " |",
             "|---|---|" + "---|" * len(metrics)]
    for entry in found:
        cells = []
        for m in metrics:
            verdict = {True: "separable", False: "not separable", None: "one seed"}[entry[f"{m}_separable"]]
            spread = entry[f"{m}_2spread"]
            cells.append(f"{fmt(entry[m], '+.2f')}" + ("" if math.isnan(spread) else f" (2σ {fmt(spread)})")
                         + f": {verdict}")
        lines.append(f"| {entry['category']} | {entry['row']} − {entry['against']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def markdown_table(rows: list[dict]) -> str:
    """The report's tables: per category (mean ± spread over the seeds), the comparisons, the average over
    categories (when there are several), then the means per defect type."""
    methods = _ordered(r["method"] for r in rows)
    categories = _ordered(r["category"] for r in rows)
    index = {(r["method"], r["category"], r["defect"]): r for r in rows}
    parts = []
    for category in categories:
        parts += [f"#### {category}", "", category_table(rows, category)]
    table = comparison_table(rows)
    if table:
        parts += ["Differences of the means (row − against), with twice their combined spread over the seeds:", "",
                  table]

    def cell(row):
        return f"{fmt(row['miou'])} / {fmt(row['macc'])} / {fmt(row['iou'])}" if row else "n/a"

    if len(categories) > 1:
        means = category_means(rows)
        lines = ["| method | " + " | ".join(categories) + " | average |", "|---|" + "---|" * (len(categories) + 1)]
        for method in methods:
            cells = [cell(index.get((method, c, "all"))) for c in categories] + [cell(means[method])]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        parts += ["Means over the seeds, per category and averaged (mIoU / mAcc / IoU(defect), %):", "",
                  "\n".join(lines) + "\n"]
    lines = ["| category | defect | " + " | ".join(methods) + " |", "|---|---|" + "---|" * len(methods)]
    for category in categories:
        defects = _ordered(r["defect"] for r in rows if r["category"] == category)
        for defect in [d for d in defects if d != "all"] + ["all"]:
            cells = [cell(index.get((m, category, defect))) for m in methods]
            lines.append(f"| {category} | {defect} | " + " | ".join(cells) + " |")
    parts += ["Per defect type, means over the seeds (mIoU / mAcc / IoU(defect), %):", "", "\n".join(lines) + "\n"]
    return "\n".join(parts)


def bar_chart(rows: list[dict], path: str | Path, metrics=("miou", "iou"), size=(900, 420)) -> None:
    """Grouped bars, one ``size`` panel per metric (and a legend row): groups are the categories (and their
    average), bars the methods, whiskers one spread over the seeds."""
    methods = _ordered(r["method"] for r in rows)
    categories = _ordered(r["category"] for r in rows)
    alls = [r for r in rows if r["defect"] == "all"]
    groups = categories + (["average"] if len(categories) > 1 else [])
    means = category_means(rows)
    titles = {"miou": "mIoU (%)", "iou": "IoU of the defect class (%)", "macc": "mAcc (%)", "aacc": "aAcc (%)"}
    panels = []
    for metric in metrics:
        values = {(r["method"], r["category"]): r[metric] for r in alls}
        if len(categories) > 1:
            values.update({(m, "average"): means[m][metric] for m in methods})
        spreads = {(r["method"], r["category"]): r.get(f"{metric}_std", math.nan) for r in alls}
        panels.append(Panel(titles.get(metric, metric), values, spreads, top=100.0, label=".0f"))
    figures.bar_chart(panels, groups, methods, path, width=size[0], height=size[1])


LEGEND = (
    "Metrics in percent, as mmsegmentation defines them: IoU(defect) is the IoU of the defect class, mIoU the mean "
    "IoU of background and defect, mAcc the mean of the two classes' pixel accuracies (the papers' \"Acc\"), aAcc "
    "the share of all pixels that are right (about 99 for any method: not the papers' Acc). Pixels are counted over "
    "all held-out images of a category (test/good included). Cells: mean ± sample standard deviation over the "
    "seeds (each seed redoes the synthesis and the segmenter). Bold: the best row of a column; ≈: not separable "
    "from it (the means differ by less than twice the combined spread, sqrt(std_a² + std_b²))."
)


def write_report(rows: list[dict], output_dir: str | Path, note: str = "", per_seed: list[dict] | None = None
                 ) -> dict[str, Path]:
    """``results.csv`` (aggregated ``rows``), ``results_seeds.csv`` (``per_seed``, when given), ``results.md``
    and ``results.png`` in ``output_dir``."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {"csv": output_dir / "results.csv", "md": output_dir / "results.md", "png": output_dir / "results.png"}
    write_csv(rows, paths["csv"])
    if per_seed is not None:
        paths["seeds_csv"] = output_dir / "results_seeds.csv"
        write_csv(per_seed, paths["seeds_csv"], SEED_COLUMNS)
    table = LEGEND + "\n\n" + markdown_table(rows)
    paths["md"].write_text((note + "\n\n" if note else "") + table)
    bar_chart(rows, paths["png"])
    return paths
