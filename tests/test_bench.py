"""bench/defect_cost.py on a tiny fixture: it runs, and its load-independent figure (working pixels) is right."""

from __future__ import annotations

import argparse

import pytest
import torch
from conftest import make_pipeline
from fixtures import make_dataset

from bench import defect_cost


def test_defect_cost_compares_settings_on_held_out_masks(tmp_path, capsys):
    torch.set_num_threads(1)
    data = make_dataset(tmp_path / "data", defects={"a": 6, "b": 6}, n_good=3, mode="L")
    make_pipeline().save_pretrained(tmp_path / "ckpt")
    totals = defect_cost.main(["--data_root", str(data.data_root), "--category", data.category, "--checkpoint",
                               str(tmp_path / "ckpt"), "--settings", "32:0", "64:0", "64:32", "64:32:grain",
                               "--masks_per_type", "2",
                               "--threads", "1"])
    printed = capsys.readouterr().out
    assert list(totals) == [(32, 0, None), (64, 0, None), (64, 32, None), (64, 32, True)]
    assert "64:32" in printed and "64:32:grain" in printed
    pixels = {setting[:2]: figures[2] for setting, figures in totals.items()}
    assert pixels[(64, 0)] > pixels[(32, 0)]  # a higher working resolution: larger crops
    assert pixels[(64, 32)] <= pixels[(64, 0)]  # the bound only ever shrinks a crop
    assert all(figures[0] > 0 and figures[1] > 0 for figures in totals.values())


@pytest.mark.parametrize("text", ["900", "900:x", "0:256", "900:-1", "900:256:fine", "900:256:grain:1"])
def test_a_malformed_setting_is_refused(text):
    with pytest.raises(argparse.ArgumentTypeError, match="RESOLUTION:MAX_CROP_SIZE|positive"):
        defect_cost.parse_setting(text)


def test_a_setting_may_switch_grain():
    assert defect_cost.parse_setting("900:256") == (900, 256, None)
    assert defect_cost.parse_setting("900:256:grain") == (900, 256, True)
    assert defect_cost.parse_setting("900:256:plain") == (900, 256, False)
