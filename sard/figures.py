"""Drawing for figures and reports, with PIL only: the mask outline, a grid of tiles, grouped bar charts.

The demo's outlined results (:mod:`sard.demo.display`), the training previews (:mod:`sard.training.previews`),
the benchmark's and the ablation's reports (:mod:`sard.evaluation.report`, :mod:`sard.evaluation.ablation_report`)
and the ablation's side-by-side figure draw with these.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageDraw
import PIL.ImageFilter
import PIL.ImageFont

OUTLINE_COLOR = (255, 64, 32)
# Colour-blind-safe (Okabe-Ito), one per series in order of appearance.
PALETTE = [(0, 114, 178), (230, 159, 0), (0, 158, 115), (204, 121, 167), (86, 180, 233), (213, 94, 0),
           (240, 228, 66), (0, 0, 0)]


def font(size: int):
    """PIL's default font at ``size`` pixels (Pillow < 10.1 has one fixed size)."""
    try:
        return PIL.ImageFont.load_default(size=size)
    except TypeError:
        return PIL.ImageFont.load_default()


def outline(image: PIL.Image.Image, mask: np.ndarray, color=OUTLINE_COLOR, width: int = 0) -> PIL.Image.Image:
    """``image`` as RGB with the boolean ``mask``'s (same size) outline drawn in ``color``: its border pixels
    (``width`` 0), or a ring ``width`` pixels thick just outside it, so that the masked pixels stay visible."""
    mask = np.asarray(mask, dtype=bool)
    if width:
        region = PIL.Image.fromarray(mask.astype(np.uint8) * 255)
        line = (np.asarray(region.filter(PIL.ImageFilter.MaxFilter(2 * width + 1))) > 0) & ~mask
    else:
        padded = np.pad(mask, 1)
        line = mask & ~(padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:])
    pixels = np.array(image.convert("RGB"))
    pixels[line] = color
    return PIL.Image.fromarray(pixels)


def tile_grid(titles: list[str], rows: list[tuple[str, list[PIL.Image.Image | None]]], tile: int = 128,
              resample=PIL.Image.NEAREST) -> PIL.Image.Image:
    """A grid: a title per column (up to two lines), a label over each row, every image resized to ``tile`` x
    ``tile`` (a missing image leaves its cell blank)."""
    header, label = 30, 16
    grid = PIL.Image.new("RGB", (tile * len(titles), header + (tile + label) * len(rows)), "white")
    draw = PIL.ImageDraw.Draw(grid)
    small = font(11)
    for c, title in enumerate(titles):
        for k, line in enumerate(title.split("\n")[:2]):
            draw.text((c * tile + 3, 2 + 13 * k), line, fill="black", font=small)
    for r, (name, images) in enumerate(rows):
        y = header + r * (tile + label)
        draw.text((3, y + 2), name, fill="black", font=small)
        for c, image in enumerate(images):
            if image is not None:
                grid.paste(image.convert("RGB").resize((tile, tile), resample), (c * tile, y + label))
    return grid


@dataclass
class Panel:
    """One panel of :func:`bar_chart`.

    Attributes:
        title: drawn above the panel.
        values: ``(series, group) -> value``; a missing or NaN value draws no bar.
        spreads: ``(series, group) -> spread``, drawn as a whisker of one spread either side of the value.
        top: the axis maximum; None: the smallest of 1, 2, 2.5, 5 times a power of ten above every bar.
        label: the format of the value written over each bar.
    """

    title: str
    values: dict[tuple[str, str], float]
    spreads: dict[tuple[str, str], float] = field(default_factory=dict)
    top: float | None = None
    label: str = ".3g"


def _shown(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def axis_top(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is at least ``value`` (1 for nothing to show)."""
    if not value > 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= value)


LEGEND_PITCH = 28  # pixels from one legend line to the next


def bar_chart(panels: list[Panel], groups: list[str], series: list[str], path: str | Path, width: int = 900,
              height: int = 300) -> None:
    """Grouped bars, one panel under the other: groups along the axis, a bar per series in each group (one
    colour per series, with a legend at the bottom, wrapped onto as many lines as it needs). Saved as a PNG at
    ``path``."""
    large, small = font(15), font(12)
    legend = _legend_layout(series, small, left=60, right=width - 20)
    legend_height = LEGEND_PITCH * (1 + max((line for _, _, line in legend), default=0))
    image = PIL.Image.new("RGB", (width, height * len(panels) + legend_height + 12), "white")
    draw = PIL.ImageDraw.Draw(image)
    for p, panel in enumerate(panels):
        shown = [v + panel.spreads.get(k, 0.0) if _shown(panel.spreads.get(k)) else v
                 for k, v in panel.values.items() if _shown(v)]
        top_value = panel.top or axis_top(max(shown + [0.0]))
        top, left, right, bottom = p * height + 36, 60, width - 20, p * height + height - 34
        draw.text((left, p * height + 10), panel.title, fill="black", font=large)
        for tick in np.linspace(0.0, top_value, 6):
            y = bottom - (bottom - top) * tick / top_value
            draw.line([(left, y), (right, y)], fill=(225, 225, 225))
            draw.text((4, y - 7), f"{tick:.3g}", fill="black", font=small)
        draw.line([(left, top), (left, bottom), (right, bottom)], fill="black")

        def level(v, top=top, bottom=bottom, top_value=top_value):
            return bottom - (bottom - top) * max(0.0, min(v, top_value)) / top_value

        group_width = (right - left) / max(1, len(groups))
        bar = group_width * 0.8 / max(1, len(series))
        for g, group in enumerate(groups):
            x0 = left + g * group_width + group_width * 0.1
            for s, name in enumerate(series):
                value = panel.values.get((name, group))
                if not _shown(value):
                    continue
                y, x = level(value), x0 + s * bar
                draw.rectangle([x, y, x + bar - 2, bottom], fill=PALETTE[s % len(PALETTE)])
                spread = panel.spreads.get((name, group))
                if _shown(spread):
                    middle = x + (bar - 2) / 2
                    draw.line([(middle, level(value + spread)), (middle, level(value - spread))], fill="black")
                    y = min(y, level(value + spread))
                draw.text((x, y - 14), format(value, panel.label), fill="black", font=small)
            draw.text((x0, bottom + 6), group, fill="black", font=small)
    for s, (name, x, line) in enumerate(legend):
        y = height * len(panels) + 12 + LEGEND_PITCH * line
        draw.rectangle([x, y, x + 14, y + 14], fill=PALETTE[s % len(PALETTE)])
        draw.text((x + 20, y), name, fill="black", font=small)
    image.save(path)


def _legend_layout(names: list[str], text_font, left: int, right: int) -> list[tuple[str, float, int]]:
    """(name, x, line) per legend entry: a swatch and its name, entries side by side at their own widths, a new
    line where the next one would pass ``right`` (a fixed pitch cut long names and lists off the image)."""
    layout, x, line = [], float(left), 0
    for name in names:
        entry = 20 + text_font.getlength(name) + 24  # swatch and gap, name, space before the next
        if x > left and x + entry > right:
            x, line = float(left), line + 1
        layout.append((name, x, line))
        x += entry
    return layout
