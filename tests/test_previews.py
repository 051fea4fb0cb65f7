"""The sample grid that training writes every ``sample_every`` steps (and scripts/ turn into figures): a smoke
test on a tiny pipeline and data set."""

from __future__ import annotations

import numpy as np
from conftest import make_pipeline
from fixtures import make_dataset

from sard.datasets import read_dataset
from sard.figures import OUTLINE_COLOR
from sard.training.previews import defect_grid, preview_rows


def test_defect_grid_has_a_row_per_defect_type_and_a_column_per_seed(tmp_path):
    data = make_dataset(tmp_path, "mvtec", defects={"a": 3, "b": 3})
    dataset = read_dataset(data.data_root, data.category)
    _, held_out = dataset.split("protocol")
    rows = preview_rows(dataset, held_out)
    assert [r.defect for r in rows] == ["a", "b"]
    assert all(r.anomaly in held_out[r.defect] for r in rows)

    tile = 96  # larger than the 40 x 48 images: the one-pixel outline survives the resize
    header, label = 30, 16  # sard.figures.tile_grid: the column titles, then a label over each row
    grid = defect_grid(make_pipeline(), rows, seeds=(0, 1, 2), tile=tile)
    # normal + mask | one column per seed | the real defect.
    assert grid.size == (tile * 5, header + (tile + label) * 2)
    pixels = np.asarray(grid)
    top = header + label
    first_tile = pixels[top : top + tile, :tile]
    assert (np.abs(first_tile.astype(int) - OUTLINE_COLOR).sum(axis=2) < 60).any()  # the mask's outline is drawn
    seed_tiles = [pixels[top : top + tile, c * tile : (c + 1) * tile] for c in (1, 2, 3)]
    assert not np.array_equal(seed_tiles[0], seed_tiles[1])  # each seed paints its own defect
