"""Seeds: the mean and spread of every metric over the seeds of a run, and which differences they can tell.

Each seed reruns the whole comparison (the synthetic sets and the segmenters), so the spread of a row is
what the harness itself varies by. A metric's spread is the sample standard deviation over the seeds
(``ddof = 1``; NaN for one seed). Two rows ``a`` and ``b`` are *separable* on a metric when their means
differ by at least twice their combined spread, ``|mean_a - mean_b| >= 2 sqrt(std_a^2 + std_b^2)``; a
smaller difference is not told apart from the noise of the seeds. Means and spreads are rounded to two
decimals (of a percent) first, so the rule can be checked on the printed tables.
"""

from __future__ import annotations

import math

import numpy as np

from .harness import METRICS

KEYS = ("method", "category", "defect")
# The comparisons the benchmark exists for, as (row, against): the floor, the product's claims, the baselines.
COMPARISONS = (("real", "none"), ("sard", "cutpaste"), ("sard", "draem"), ("real+sard", "real"),
               ("real+draem", "real"), ("sard", "none"), ("cutpaste", "none"), ("draem", "none"))


def _mean_std(values: list[float]) -> tuple[float, float]:
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return math.nan, math.nan
    mean = float(np.mean(finite))
    std = float(np.std(finite, ddof=1)) if len(finite) > 1 else math.nan
    return round(mean, 2), round(std, 2) if not math.isnan(std) else math.nan


def aggregate(per_seed: list[dict]) -> list[dict]:
    """Rows of :func:`sard.evaluation.harness.metric_rows` with a ``seed`` each, grouped by (method,
    category, defect) in order of appearance: ``seeds`` (how many), and per metric its mean (``iou``...)
    and spread (``iou_std``...), in percent. A metric that is NaN for a seed (no pixel of a class) is left
    out of that group's mean."""
    groups: dict[tuple, list[dict]] = {}
    for row in per_seed:
        groups.setdefault(tuple(row[k] for k in KEYS), []).append(row)
    out = []
    for key, rows in groups.items():
        row = dict(zip(KEYS, key))
        row["seeds"] = len(rows)
        for metric in METRICS:
            row[metric], row[f"{metric}_std"] = _mean_std([r[metric] for r in rows])
        out.append(row)
    return out


def combined_spread(a: dict, b: dict, metric: str) -> float:
    """``sqrt(std_a^2 + std_b^2)`` of two aggregated rows (NaN when either has one seed)."""
    return math.hypot(a[f"{metric}_std"], b[f"{metric}_std"])


def separable(a: dict, b: dict, metric: str) -> bool | None:
    """Whether two aggregated rows differ on ``metric`` by at least twice their combined spread; None when
    that cannot be said (one seed, or a NaN mean)."""
    spread = combined_spread(a, b, metric)
    difference = a[metric] - b[metric]
    if math.isnan(spread) or math.isnan(difference):
        return None
    return abs(difference) >= 2.0 * spread


def comparisons(rows: list[dict], metrics=("iou", "miou", "macc"), pairs=COMPARISONS) -> list[dict]:
    """For each category and each pair of :data:`COMPARISONS` whose rows are both present (``all`` rows):
    the difference of the means, twice the combined spread and whether they are separable, per metric."""
    index = {(r["method"], r["category"]): r for r in rows if r["defect"] == "all"}
    categories = list(dict.fromkeys(r["category"] for r in rows))
    out = []
    for category in categories:
        for row, against in pairs:
            a, b = index.get((row, category)), index.get((against, category))
            if a is None or b is None:
                continue
            entry = {"category": category, "row": row, "against": against}
            for metric in metrics:
                entry[metric] = round(a[metric] - b[metric], 2)
                entry[f"{metric}_2spread"] = round(2.0 * combined_spread(a, b, metric), 2)
                entry[f"{metric}_separable"] = separable(a, b, metric)
            out.append(entry)
    return out


def not_separable_from_best(rows: list[dict], metric: str) -> set[tuple]:
    """(method, category, defect) of the rows that are not separable from the best row of their (category,
    defect) on ``metric``, the best itself excluded: the ties a table should mark."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if not math.isnan(row[metric]):
            groups.setdefault((row["category"], row["defect"]), []).append(row)
    marked = set()
    for group in groups.values():
        best = max(group, key=lambda r: r[metric])
        for row in group:
            if row is not best and separable(row, best, metric) is False:
                marked.add(tuple(row[k] for k in KEYS))
    return marked
