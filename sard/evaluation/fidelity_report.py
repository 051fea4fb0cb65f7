"""The fidelity report: ``fidelity.csv``, its markdown table and the grid of the classifier's crops (PIL only).

``fidelity.csv`` has one row per defect type and a row ``all`` for the category (columns: see
:data:`~sard.evaluation.fidelity.COLUMNS` and the docstring of :mod:`.fidelity`); booleans are written
``True`` / ``False``, missing figures as ``nan``.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageDraw

from ..figures import font as _font
from .c2st import GREY_SCALE
from .fidelity import C2ST_GOAL, COLUMNS, DIVERSITY_GOAL
from .report import write_csv

BOOLEAN = ("texture_in_range", "contrast_in_range", "colour_in_range", "meets_goals")
INTEGER = ("n", "diversity_n", "seeds")
TEXT = ("category", "defect")


def write_fidelity_csv(rows: list[dict], path: str | Path) -> None:
    write_csv(rows, path, COLUMNS)


def read_fidelity_csv(path: str | Path) -> list[dict]:
    """The rows of a ``fidelity.csv`` with their types back (float, int, bool, str)."""
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    for row in rows:
        for key, value in row.items():
            if key in BOOLEAN:
                row[key] = value == "True"
            elif key in INTEGER:
                row[key] = int(value)
            elif key not in TEXT:
                row[key] = float(value)
    return rows


def _f(value: float, spec: str) -> str:
    return "–" if not math.isfinite(value) else format(value, spec)


def _yes(flag: bool) -> str:
    return "yes" if flag else "**no**"


HEADER = ("| defect | n | C2ST | C2ST: pasted real / real at working scale | texture ratio (real p10–p90) | in "
          "| texture of real at working scale | contrast (real p10–p90) | in | diversity (seed std / real std) "
          "| background max | colour along the real hue (real p10–p90) | in |")


def markdown_table(rows: list[dict]) -> str:
    """The rows as a markdown table: one line per defect type, the category (``all``) last.

    C2ST: the mean held-out accuracy ``±`` its binomial standard error (goal at most
    :data:`~sard.evaluation.fidelity.C2ST_GOAL`), and those of the controls (the real defects pasted into the
    normal images; the real defects resampled to the model's working scale and back, the ceiling of its
    resolution, whose texture ratio has its own column). Texture and contrast: the painted value with the real
    defects' p10–p90, and whether it is inside. Diversity: the ratio with its two standard deviations in grey
    levels (goal at least :data:`~sard.evaluation.fidelity.DIVERSITY_GOAL`). Background: the largest change
    outside the mask, grey levels (must be 0). Colour: the painted fills' colour along the real defects' hue,
    with the real p10–p90 (no goal of its own; last, so that the columns before it keep their places).
    """
    lines = [HEADER, "|---|---:|---:|---:|---|---|---:|---|---|---|---:|---|---|"]
    for row in rows:
        c2st = _f(row["c2st"], ".2f")
        if math.isfinite(row["c2st_se"]):
            c2st += f" ± {row['c2st_se']:.2f}"
        texture = (f"{_f(row['texture_ratio'], '.2f')} ({_f(row['texture_real_p10'], '.2f')}–"
                   f"{_f(row['texture_real_p90'], '.2f')})")
        contrast = (f"{_f(row['contrast'], '.1f')} ({_f(row['contrast_real_p10'], '.1f')} to "
                    f"{_f(row['contrast_real_p90'], '.1f')})")
        diversity = (f"{_f(row['diversity'], '.2f')} ({_f(row['seed_std'], '.1f')} / {_f(row['real_std'], '.1f')}, "
                     f"{row['diversity_n']} masks x {row['seeds']} seeds)")
        colour = (f"{_f(row['colour'], '.1f')} ({_f(row['colour_real_p10'], '.1f')} to "
                  f"{_f(row['colour_real_p90'], '.1f')})")
        defect = "**all**" if row["defect"] == "all" else row["defect"]
        controls = f"{_f(row['c2st_paste'], '.2f')} / {_f(row['c2st_roundtrip'], '.2f')}"
        cells = [defect, str(row["n"]), c2st, controls, texture, _yes(row["texture_in_range"]),
                 _f(row["texture_roundtrip"], ".2f"), contrast, _yes(row["contrast_in_range"]), diversity,
                 _f(row["background_max"], ".0f"), colour, _yes(row["colour_in_range"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def goals_summary(rows: list[dict]) -> str:
    """One line per goal of issue #17 with whether the category meets it."""
    types = [r for r in rows if r["defect"] != "all"]
    total = next(r for r in rows if r["defect"] == "all")
    off_texture = [r["defect"] for r in types if not r["texture_in_range"]]
    off_diversity = [r["defect"] for r in types if not r["diversity"] >= DIVERSITY_GOAL]
    lines = [
        f"- C2ST {_f(total['c2st'], '.2f')} (goal <= {C2ST_GOAL:.2f}): "
        + ("met" if total["c2st"] <= C2ST_GOAL else "not met"),
        "- texture ratio inside the real p10..p90 for every type: "
        + ("met" if not off_texture else f"not met ({', '.join(off_texture)})"),
        f"- diversity >= {DIVERSITY_GOAL} for every type: "
        + ("met" if not off_diversity else f"not met ({', '.join(off_diversity)})"),
        "- background exact (max |output - input| outside the mask = 0): "
        + ("met" if total["background_max"] == 0 else f"NOT MET ({total['background_max']:.0f} grey levels)"),
    ]
    return "\n".join(lines)


def _tile(crop: np.ndarray, scale: int) -> PIL.Image.Image:
    """A crop's grey-level channel as the classifier sees it (0 = the ring's level, shown as mid-grey 128),
    the mask's outline in colour."""
    grey = np.clip(crop[0] * GREY_SCALE + 128.0, 0, 255).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    mask = crop[-1] > 0
    edge = mask & ~(np.roll(mask, 1, 0) & np.roll(mask, -1, 0) & np.roll(mask, 1, 1) & np.roll(mask, -1, 1))
    image = PIL.Image.fromarray(rgb).resize((crop.shape[2] * scale, crop.shape[1] * scale), PIL.Image.NEAREST)
    outline = PIL.Image.fromarray(edge).resize(image.size, PIL.Image.NEAREST)
    overlay = PIL.Image.new("RGB", image.size, (230, 159, 0))
    return PIL.Image.composite(overlay, image, outline)


def crop_grid(real: list[np.ndarray], painted: list[np.ndarray], labels: list[str], path: str | Path,
              scale: int = 3, with_outline: bool = True) -> None:
    """A PNG of pairs of classifier crops: a column per pair, real above painted, with its label."""
    if not real:
        return
    side = real[0].shape[1] * scale
    pad, head = 4, 16
    font = _font(11)
    width = len(real) * (side + pad) + pad + 52
    image = PIL.Image.new("RGB", (width, head + 2 * (side + pad) + pad), (255, 255, 255))
    draw = PIL.ImageDraw.Draw(image)
    draw.text((pad, head + side // 2), "real", fill=(0, 0, 0), font=font)
    draw.text((pad, head + side + pad + side // 2), "painted", fill=(0, 0, 0), font=font)
    for k, (a, b, label) in enumerate(zip(real, painted, labels)):
        x = 52 + pad + k * (side + pad)
        draw.text((x, 2), label[: side // 6], fill=(0, 0, 0), font=font)
        for row, crop in enumerate((a, b)):
            tile = _tile(crop if with_outline else np.stack([crop[0], 0 * crop[-1]]), scale)
            image.paste(tile, (x, head + row * (side + pad)))
    image.save(path)
