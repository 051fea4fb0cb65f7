"""Seeds: means, spreads and the "not separable" rule against hand-computed values; the benchmark's rows."""

from __future__ import annotations

import math

import pytest

from sard.evaluation.aggregate import aggregate, comparisons, not_separable_from_best, separable
from sard.evaluation.report import category_table, comparison_table, markdown_table
from sard.evaluation.rows import DEFAULT_ROWS, components, parse_rows, synthesis_methods


def _seed_row(method, seed, iou, miou=50.0, macc=60.0, aacc=99.0, defect="all", category="tile"):
    return {"method": method, "category": category, "defect": defect, "iou": iou, "miou": miou, "macc": macc,
            "aacc": aacc, "seed": seed}


# IoU per seed. real: 30, 32, 34 (mean 32, sample std 2); none: 0, 0, 0; sard: 31, 33, 38 (mean 34, std
# sqrt(13) = 3.606); cutpaste: 20, 21, 22 (mean 21, std 1).
PER_SEED = [_seed_row("real", s, v) for s, v in enumerate((30.0, 32.0, 34.0))] + \
    [_seed_row("none", s, 0.0) for s in range(3)] + \
    [_seed_row("sard", s, v) for s, v in enumerate((31.0, 33.0, 38.0))] + \
    [_seed_row("cutpaste", s, v) for s, v in enumerate((20.0, 21.0, 22.0))]


def test_mean_and_sample_spread_by_hand():
    rows = {r["method"]: r for r in aggregate(PER_SEED)}
    assert list(rows) == ["real", "none", "sard", "cutpaste"]  # order of appearance
    assert rows["real"]["seeds"] == 3 and rows["real"]["iou"] == 32.0 and rows["real"]["iou_std"] == 2.0
    assert rows["sard"]["iou"] == 34.0 and rows["sard"]["iou_std"] == round(math.sqrt(13), 2)
    assert rows["none"]["iou_std"] == 0.0 and rows["real"]["miou_std"] == 0.0


def test_one_seed_has_no_spread_and_nan_seeds_are_left_out():
    one = aggregate([_seed_row("real", 0, 30.0)])[0]
    assert one["iou"] == 30.0 and math.isnan(one["iou_std"])
    mixed = aggregate([_seed_row("real", 0, math.nan), _seed_row("real", 1, 10.0), _seed_row("real", 2, 20.0)])[0]
    assert mixed["seeds"] == 3 and mixed["iou"] == 15.0 and mixed["iou_std"] == round(math.sqrt(50), 2)


def test_separable_is_twice_the_combined_spread():
    rows = {r["method"]: r for r in aggregate(PER_SEED)}
    # real - none: 32 against 2 * sqrt(2^2 + 0^2) = 4: separable.
    assert separable(rows["real"], rows["none"], "iou") is True
    # sard - real: 2 against 2 * sqrt(3.61^2 + 4) = 8.25: not separable.
    assert separable(rows["sard"], rows["real"], "iou") is False
    # real - cutpaste: 11 against 2 * sqrt(4 + 1) = 4.47: separable.
    assert separable(rows["real"], rows["cutpaste"], "iou") is True
    # Exactly at the boundary counts as separable: 4 against 2 * sqrt(2^2 + 0) = 4.
    a, b = dict(rows["none"], iou=4.0, iou_std=2.0), rows["none"]
    assert separable(a, b, "iou") is True and separable(dict(a, iou=3.99), b, "iou") is False
    one = aggregate([_seed_row("real", 0, 30.0), _seed_row("none", 0, 0.0)])
    assert separable(one[0], one[1], "iou") is None


def test_comparisons_and_ties_with_the_best():
    rows = aggregate(PER_SEED)
    found = {(c["row"], c["against"]): c for c in comparisons(rows)}
    assert set(found) == {("real", "none"), ("sard", "cutpaste"), ("sard", "none"), ("cutpaste", "none")}
    entry = found["sard", "cutpaste"]
    # Spreads are compared as the table prints them (two decimals): 2 * sqrt(3.61^2 + 1^2) = 7.49.
    assert entry["iou"] == 13.0 and entry["iou_2spread"] == round(2 * math.sqrt(3.61**2 + 1), 2) == 7.49
    assert entry["iou_separable"] is True
    # The best on IoU is sard (34); real (32, not separable) is marked; cutpaste and none are not.
    assert not_separable_from_best(rows, "iou") == {("real", "tile", "all")}
    table = category_table(rows, "tile")
    assert "| sard | 3 | **34.00 ± 3.61** |" in table
    assert "| real | 3 | 32.00 ± 2.00 ≈ |" in table
    assert "| cutpaste | 3 | 21.00 ± 1.00 |" in table
    assert "| tile | sard − cutpaste | +13.00 (2σ 7.49): separable |" in comparison_table(rows)


def test_markdown_has_per_category_comparison_and_per_defect_tables():
    per_seed = PER_SEED + [_seed_row(m, s, 5.0, defect="crack") for m in ("real", "sard") for s in range(3)]
    per_seed += [_seed_row(m, s, 40.0, category="screw") for m in ("real", "sard") for s in range(2)]
    text = markdown_table(aggregate(per_seed))
    assert "#### tile" in text and "#### screw" in text
    assert "| method | tile | screw | average |" in text
    assert "| real | 50.00 / 60.00 / 32.00 | 50.00 / 60.00 / 40.00 | 50.00 / 60.00 / 36.00 |" in text
    assert "| tile | crack | 50.00 / 60.00 / 5.00 | n/a | 50.00 / 60.00 / 5.00 | n/a |" in text
    assert "| screw | real − none |" not in text  # no none row on screw


def test_rows_are_methods_or_unions():
    assert components("none") == () and components("real+sard") == ("real", "sard")
    assert synthesis_methods(list(DEFAULT_ROWS)) == ["sard", "cutpaste", "draem", "real"]
    assert synthesis_methods(["none"]) == []
    assert parse_rows("real, real+draem,real") == ["real", "real+draem"]
    for bad in ("gan", "real+real", "none+real", "real+", ""):
        with pytest.raises(ValueError):
            parse_rows(bad)
