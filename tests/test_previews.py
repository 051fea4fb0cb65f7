"""The sample grid that training writes every ``sample_every`` steps (and scripts/ turn into figures): a smoke
test on a tiny pipeline and data set."""

from __future__ import annotations

import numpy as np
from conftest import make_pipeline
from fixtures import make_dataset

from sard.datasets import read_dataset
from sard.previews import defect_grid, preview_rows


def test_defect_grid_has_a_row_per_defect_type_and_a_column_per_seed(tmp_path):
    data = make_dataset(tmp_path, "mvtec", defects={"a": 3, "b": 3})
    dataset = read_dataset(data.data_root, data.category)
    _, held_out = dataset.split("protocol")
    rows = preview_rows(dataset, held_out)
    assert [r.defect for r in rows] == ["a", "b"]
    assert all(r.anomaly in held_out[r.defect] for r in rows)

    tile, header = 96, 18  # larger than the 40 x 48 images: the one-pixel outline survives the resize
    grid = defect_grid(make_pipeline(), rows, seeds=(0, 1, 2), tile=tile)
    # normal + mask | one column per seed | the real defect; a title line, then a label line and a tile per row.
    assert grid.size == (tile * 5, header + (tile + header) * 2)
    pixels = np.asarray(grid)
    first_tile = pixels[2 * header : 2 * header + tile, :tile]
    assert (np.abs(first_tile.astype(int) - (255, 64, 32)).sum(axis=2) < 60).any()  # the mask's outline is drawn
    seed_tiles = [pixels[2 * header : 2 * header + tile, c * tile : (c + 1) * tile] for c in (1, 2, 3)]
    assert not np.array_equal(seed_tiles[0], seed_tiles[1])  # each seed paints its own defect
