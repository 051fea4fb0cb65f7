"""The benchmark (train/evaluate.py: sard.evaluation.benchmark) end to end on a tiny fixture, the segmenters,
the config and the report."""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from conftest import make_pipeline
from fixtures import make_dataset
from safetensors.torch import save_file

from sard.config import ConfigError, load
from sard.evaluation import benchmark
from sard.evaluation.config import EvalConfig
from sard.evaluation.report import bar_chart, markdown_table, read_csv, write_csv
from sard.evaluation.segmenters import SegFormer, UNet, build_segmenter, load_pretrained

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGS = REPO_ROOT / "train" / "configs"


@pytest.fixture(scope="module")
def evaluate():
    return benchmark


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_dataset(root, "mvtec", category="other", defects={"x": 3}, n_good=2, seed=1)  # DRAEM's textures
    return make_dataset(root, "mvtec", category="widget", defects={"a": 6, "b": 3}, n_good=3,
                        problems={"empty_mask": ("a", 4)})  # an empty mask in the held-out set


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt")
    make_pipeline().save_pretrained(path)
    return path


TINY = ["--resolution", "32", "--steps", "2", "--batch_size", "2", "--n_per_defect", "2", "--segmenter", "unet",
        "--num_threads", "1", "--sard_batch_size", "4"]


def _run(evaluate, data, checkpoint, out, methods="none,real,sard,real+sard,cutpaste,draem,real+draem", extra=()):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluate.main(["--data_root", str(data.data_root), "--category", data.category, "--methods", methods,
                       "--checkpoint", str(checkpoint), "--output_dir", str(out), *TINY, *extra])


BOTTLE_BENCHMARK = Path(__file__).resolve().parents[1] / "docs" / "benchmark" / "bottle"
ROWS = ("none", "real", "sard", "real+sard", "cutpaste", "draem", "real+draem")
STATS = ["iou", "iou_std", "miou", "miou_std", "macc", "macc_std", "aacc", "aacc_std"]


def test_end_to_end_writes_the_report(evaluate, data, checkpoint, tmp_path):
    _run(evaluate, data, checkpoint, tmp_path)
    with open(tmp_path / "results.csv", newline="") as file:
        reader = csv.DictReader(file)
        assert reader.fieldnames == ["method", "category", "defect", "seeds", *STATS]
        rows = list(reader)
    keys = [(r["method"], r["defect"]) for r in rows]
    assert keys == [(m, d) for m in ROWS for d in ("a", "b", "all")]
    assert all(r["category"] == "widget" and r["seeds"] == "1" for r in rows)
    for row in rows:
        for key in ("miou", "macc", "aacc"):
            assert 0.0 <= float(row[key]) <= 100.0
        assert math.isnan(float(row["iou_std"]))  # one seed: no spread
    text = (tmp_path / "results.md").read_text()
    assert "| real+sard | 1 |" in text and "mAcc" in text and "not the papers' Acc" in text
    assert "| widget | real − none |" in text and "one seed" in text
    assert PIL.Image.open(tmp_path / "results.png").size[0] > 100
    # The test set: the held-out 2/3 (a: 4 of 6 with the empty mask, b: 2 of 3) and test/good (3 images).
    counts = json.loads((tmp_path / "runs" / "widget" / "cutpaste" / "seed-0" / "counts.json").read_text())["counts"]
    pixels = {d: sum(c.values()) for d, c in counts.items()}
    assert pixels == {"a": 4 * 32 * 32, "b": 2 * 32 * 32, "good": 3 * 32 * 32, "all": 9 * 32 * 32}

    def timing(row):
        return json.loads((tmp_path / "runs" / "widget" / row / "seed-0" / "timing.json").read_text())

    # The pairs (2 per defect type and method) and the 3 normal images; none: the normal images alone.
    assert timing("sard")["training_images"] == 2 * 2 + 3
    assert timing("none")["training_images"] == 3
    assert timing("real+sard")["training_images"] == 2 * 2 * 2 + 3


def test_union_rows_train_on_both_sets(evaluate, data, checkpoint, tmp_path):
    """real+sard trains on the pairs of the real set and of the SARD set of the same seed, and nothing else."""
    records = evaluate.training_records(
        {m: tmp_path / m for m in ("real", "sard")}, "none", data.train_good)
    assert records == [{"image": str(p), "mask": None} for p in data.train_good]
    _run(evaluate, data, checkpoint, tmp_path / "out", methods="real,sard")
    synthetic = tmp_path / "out" / "synthetic" / "seed-0"
    sets = {m: synthetic / m / "widget" for m in ("real", "sard")}
    records = evaluate.training_records(sets, "real+sard", data.train_good)
    pairs = [r for r in records if r["mask"]]
    assert [r["method"] for r in pairs] == ["real"] * 4 + ["sard"] * 4
    assert all(Path(r["image"]).is_file() and Path(r["mask"]).is_file() for r in pairs)
    assert len(records) == len(pairs) + len(data.train_good)


def test_seeds_give_mean_and_spread_and_resume_per_seed(evaluate, data, checkpoint, tmp_path):
    _run(evaluate, data, checkpoint, tmp_path, methods="real,cutpaste", extra=["--seeds", "0,1"])
    seeds = read_csv(tmp_path / "results_seeds.csv")
    assert {(r["method"], r["seed"]) for r in seeds} == {(m, s) for m in ("real", "cutpaste") for s in (0, 1)}
    means = {(r["method"], r["defect"]): r for r in read_csv(tmp_path / "results.csv")}
    for (method, defect), row in means.items():
        values = [r["iou"] for r in seeds if r["method"] == method and r["defect"] == defect]
        assert row["seeds"] == 2 and row["iou"] == pytest.approx(round(sum(values) / 2, 2))
        assert row["iou_std"] == pytest.approx(round(abs(values[0] - values[1]) / math.sqrt(2), 2))
    # Each seed has its own synthetic sets (another seed, other pairs) and its own runs.
    one, two = (tmp_path / "synthetic" / f"seed-{s}" / "cutpaste" / "widget" / "test" / "a" / "0000.png"
                for s in (0, 1))
    assert not np.array_equal(np.asarray(PIL.Image.open(one)), np.asarray(PIL.Image.open(two)))
    # Resumable per row and seed: adding seed 2 trains only seed 2, and synthesises only seed 2's sets (the
    # committed counts of a benchmark, copied without their synthetic sets, only rewrite the report).
    done = tmp_path / "runs" / "widget" / "real" / "seed-1" / "counts.json"
    stamp = done.stat().st_mtime_ns
    shutil.rmtree(tmp_path / "synthetic")
    _run(evaluate, data, checkpoint, tmp_path, methods="real,cutpaste", extra=["--seeds", "0,1,2"])
    assert done.stat().st_mtime_ns == stamp
    assert sorted(p.name for p in (tmp_path / "synthetic").iterdir()) == ["seed-2"]
    assert {r["seeds"] for r in read_csv(tmp_path / "results.csv")} == {3}
    # A report for fewer seeds uses only those.
    _run(evaluate, data, checkpoint, tmp_path, methods="real", extra=["--seeds", "1"])
    assert {(r["method"], r["seeds"]) for r in read_csv(tmp_path / "results.csv")} == {("real", 1)}
    assert done.stat().st_mtime_ns == stamp


def test_same_seed_same_numbers_and_reruns_skip(evaluate, data, checkpoint, tmp_path):
    _run(evaluate, data, checkpoint, tmp_path / "one", methods="real,cutpaste")
    _run(evaluate, data, checkpoint, tmp_path / "two", methods="real,cutpaste")
    one, two = read_csv(tmp_path / "one" / "results.csv"), read_csv(tmp_path / "two" / "results.csv")
    assert json.dumps(one) == json.dumps(two)
    counts = tmp_path / "one" / "runs" / "widget" / "real" / "seed-0" / "counts.json"
    stamp = counts.stat().st_mtime_ns
    _run(evaluate, data, checkpoint, tmp_path / "one", methods="real,cutpaste")
    assert counts.stat().st_mtime_ns == stamp


def test_a_new_model_at_the_same_path_is_not_taken_for_the_old_one(evaluate, data, tmp_path):
    """The sard rows are recomputed when the weights or the pipeline's settings at the checkpoint's path change;
    the rows that do not use it are kept."""
    model = tmp_path / "model"
    make_pipeline(seed=0).save_pretrained(model)
    _run(evaluate, data, model, tmp_path / "out", methods="real,sard")
    runs = tmp_path / "out" / "runs" / "widget"
    stamps = {row: (runs / row / "seed-0" / "counts.json").stat().st_mtime_ns for row in ("real", "sard")}
    _run(evaluate, data, model, tmp_path / "out", methods="real,sard")  # the same model: all kept
    assert {row: (runs / row / "seed-0" / "counts.json").stat().st_mtime_ns for row in stamps} == stamps
    for change in ("weights", "settings"):
        if change == "weights":
            make_pipeline(seed=1).save_pretrained(model)
        else:
            index = json.loads((model / "model_index.json").read_text())
            (model / "model_index.json").write_text(json.dumps({**index, "max_crop_size": 24}))
        # The synthetic set made with the old model is refused rather than mixed in; a new folder is clean.
        with pytest.raises(ConfigError, match="pipeline_sha256 differ"):
            _run(evaluate, data, model, tmp_path / "out", methods="real,sard")
        shutil.rmtree(tmp_path / "out" / "synthetic")
        _run(evaluate, data, model, tmp_path / "out", methods="real,sard")
        now = {row: (runs / row / "seed-0" / "counts.json").stat().st_mtime_ns for row in stamps}
        assert now["real"] == stamps["real"] and now["sard"] != stamps["sard"]
        stamps = now


def test_crops_at_the_images_own_scale(evaluate, data, checkpoint, tmp_path):
    """With crops, the segmenter trains on 32 px crops of the 40 x 48 images and is tested on whole images at
    their own size (counts over 40 x 48 pixels each), or scaled to max_side on the longer side."""
    crop = ["--crop", "32"]
    _run(evaluate, data, checkpoint, tmp_path / "own", methods="real", extra=crop)
    counts = json.loads((tmp_path / "own" / "runs" / "widget" / "real" / "seed-0" / "counts.json").read_text())
    assert sum(counts["counts"]["all"].values()) == 9 * 40 * 48
    assert counts["fingerprint"]["config"]["crop"] == 32
    assert "32 px crops of the images at their own size" in (tmp_path / "own" / "results.md").read_text()
    _run(evaluate, data, checkpoint, tmp_path / "scaled", methods="real", extra=[*crop, "--max_side", "36"])
    counts = json.loads((tmp_path / "scaled" / "runs" / "widget" / "real" / "seed-0" / "counts.json").read_text())
    assert sum(counts["counts"]["all"].values()) == 9 * 30 * 36  # 40 x 48 scaled by 36 / 48


def test_a_data_root_with_one_category_runs_draem_on_procedural_textures(evaluate, checkpoint, tmp_path):
    """No other category to take textures from and no --texture_dir: DRAEM falls back to procedural textures,
    warns once, and the synthetic set, the run and the report record it."""
    from sard.synthesis import methods as synthesis_methods

    alone = make_dataset(tmp_path / "data", "mvtec", category="widget", defects={"a": 3}, n_good=2)
    synthesis_methods._warned.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        evaluate.main(["--data_root", str(alone.data_root), "--category", "widget", "--methods", "draem,real+draem",
                       "--output_dir", str(tmp_path / "out"), "--seeds", "0,1", *TINY])
    texture_warnings = [w for w in caught if "procedural" in str(w.message)]
    assert len(texture_warnings) == 1
    settings = json.loads((tmp_path / "out" / "synthetic" / "seed-1" / "draem" / "widget" / "synthesis.json")
                          .read_text())
    assert settings["textures"].startswith("procedural")
    manifest = (tmp_path / "out" / "synthetic" / "seed-0" / "draem" / "widget" / "manifest.jsonl").read_text()
    records = [json.loads(line) for line in manifest.splitlines() if '"draem"' in line]
    assert records and all(r["texture"].startswith("procedural:") for r in records)
    body = json.loads((tmp_path / "out" / "runs" / "widget" / "real+draem" / "seed-0" / "counts.json").read_text())
    assert body["textures"]["draem"].startswith("procedural")
    assert "DRAEM textures on widget: procedural" in (tmp_path / "out" / "results.md").read_text()


def test_bad_arguments_fail_before_writing(evaluate, data, tmp_path):
    with pytest.raises(ConfigError, match="checkpoint"):
        _run(evaluate, data, "", tmp_path / "a", methods="sard")
    with pytest.raises(ConfigError, match="unknown row"):
        _run(evaluate, data, "", tmp_path / "b", methods="real,gan")
    with pytest.raises(ConfigError, match="seeds"):
        _run(evaluate, data, "", tmp_path / "b", methods="real", extra=["--seeds", "0,x"])
    with pytest.raises(ConfigError, match="segmenter"):
        _run(evaluate, data, "", tmp_path / "c", methods="real", extra=["--segmenter", "resnet"])
    assert not any((tmp_path / name).exists() for name in "abc")


def test_checkpoint_per_category(evaluate):
    assert evaluate.checkpoints_by_category("ckpt", ["a", "b"]) == {"a": "ckpt", "b": "ckpt"}
    assert evaluate.checkpoints_by_category("a=x,b=y", ["a", "b", "c"]) == {"a": "x", "b": "y", "c": ""}


@pytest.mark.parametrize("name", ["eval-cpu.yaml", "eval-cpu-128.yaml", "eval-cpu-magnetic-tile.yaml",
                                  "eval-cpu-ball-screw.yaml", "eval-gpu-256.yaml"])
def test_shipped_configs_load(name):
    config = load(EvalConfig, CONFIGS / name)
    assert config.resolution in (128, 256)


def test_config_errors_list_every_bad_key():
    with pytest.raises(ConfigError) as error:
        load(EvalConfig, overrides={"resolution": 100, "loss": "l2", "steps": 0})
    assert all(key in str(error.value) for key in ("resolution", "loss", "steps"))
    with pytest.raises(ConfigError, match="Unknown"):
        load(EvalConfig, overrides={"learning_rate": 1.0})
    with pytest.raises(ConfigError, match="real_share"):
        load(EvalConfig, overrides={"real_share": 1.0})


def test_a_real_share_counts_in_the_runs_identity_only_when_set():
    # runs finished before the key existed keep their fingerprint; a run with a share is another run
    assert "real_share" not in load(EvalConfig).identity()
    assert load(EvalConfig, overrides={"real_share": 0.75}).identity()["real_share"] == 0.75


TINY_SEGFORMER = {"hidden": (8, 16, 24, 32), "heads": (1, 2, 3, 4), "decoder": 16}


@pytest.mark.parametrize("model", [SegFormer(**TINY_SEGFORMER), UNet(channels=(4, 8))])
def test_segmenters_give_logits_at_input_size(model):
    x = torch.randn(2, 3, 64, 96)
    assert model(x).shape == (2, 2, 64, 96)


def test_segformer_b0_size_and_transformers_names():
    model = SegFormer()
    assert 3.6e6 < sum(p.numel() for p in model.parameters()) < 3.8e6  # MiT-B0 + decoder: 3.7 M
    names = set(model.state_dict())
    assert "segformer.encoder.block.0.0.attention.self.query.weight" in names
    assert "segformer.encoder.block.3.1.mlp.dwconv.dwconv.weight" in names
    assert "decode_head.linear_c.0.proj.weight" in names


def test_pretrained_weights_load_from_a_local_file(tmp_path):
    torch.manual_seed(0)
    source = UNet(channels=(4, 8))
    save_file(source.state_dict(), tmp_path / "model.safetensors")
    torch.manual_seed(1)
    model = build_segmenter("unet", str(tmp_path), channels=(4, 8))
    x = torch.randn(1, 3, 16, 16)
    assert torch.equal(model.eval()(x), source.eval()(x))
    with pytest.raises(ValueError, match="fits"):
        load_pretrained(SegFormer(**TINY_SEGFORMER), tmp_path)
    with pytest.raises(FileNotFoundError):
        load_pretrained(model, tmp_path / "missing.safetensors")


def _rows():
    rows = []
    for method, base in (("sard", 60.0), ("draem", 50.0)):
        for category, shift in (("tile", 0.0), ("screw", 10.0)):
            for defect in ("crack", "all"):
                rows.append({"method": method, "category": category, "defect": defect, "seeds": 3,
                             "iou": base - 40 + shift, "iou_std": 1.0, "miou": base + shift, "miou_std": 0.5,
                             "macc": base + 20 + shift, "macc_std": 2.0, "aacc": 90.0 + shift / 10, "aacc_std": 0.1})
    return rows


def test_report_table_averages_the_categories(tmp_path):
    table = markdown_table(_rows())
    assert "| method | tile | screw | average |" in table
    assert "| sard | 60.00 / 80.00 / 20.00 | 70.00 / 90.00 / 30.00 | 65.00 / 85.00 / 25.00 |" in table
    assert "| tile | crack | 60.00 / 80.00 / 20.00 | 50.00 / 70.00 / 10.00 |" in table
    assert "| sard | 3 | **20.00 ± 1.00** | **60.00 ± 0.50** | **80.00 ± 2.00** | **90.00 ± 0.10** |" in table
    write_csv(_rows(), tmp_path / "r.csv")
    assert read_csv(tmp_path / "r.csv") == _rows()
    nan_row = [{**_rows()[0], "iou": math.nan}]
    assert "–" in markdown_table(nan_row)


def test_bar_chart_draws_one_panel_per_metric(tmp_path):
    bar_chart(_rows(), tmp_path / "chart.png", metrics=("miou", "iou", "macc"), size=(300, 200))
    image = np.asarray(PIL.Image.open(tmp_path / "chart.png"))
    assert image.shape == (3 * 200 + 40, 300, 3) and (image != 255).any()  # three panels and the legend


def test_bar_chart_legend_wraps_instead_of_cutting_names_off(tmp_path):
    """Seven rows (the benchmark's) do not fit on one legend line of a narrow chart: it wraps, and every name
    is drawn inside the image (the last column of pixels stays white)."""
    methods = ["none", "real", "sard", "real+sard", "cutpaste", "draem", "real+draem"]
    rows = [{**row, "method": method} for method in methods for row in _rows() if row["method"] == "sard"]
    bar_chart(rows, tmp_path / "chart.png", metrics=("iou",), size=(400, 200))
    image = np.asarray(PIL.Image.open(tmp_path / "chart.png").convert("L"))
    legend = image[200:]
    assert legend.shape[0] > 40  # more than one legend line
    assert (legend[:, -16:] == 255).all()  # nothing runs past the right margin
    inked_lines = {y // 28 for y in np.nonzero((legend < 128).any(axis=1))[0]}
    assert len(inked_lines) >= 2


@pytest.mark.parametrize(("heading", "category", "types"), [
    ("### MVTec-AD's bottle", "bottle", 3), ("### Magnetic tiles", "magnetic_tile", 5),
    ("### Ball screws", "ball_screw", 1)])
def test_readme_benchmark_tables_are_the_committed_results(heading, category, types):
    """A category's README tables (mean ± spread per row; mIoU / mAcc / IoU per row and defect type) are
    docs/benchmark/CAT's results.csv, which the command above them wrote."""
    root = Path(__file__).resolve().parents[1]
    with open(BOTTLE_BENCHMARK.parent / category / "results.csv", newline="") as file:
        results = {(r["method"], r["defect"]): r for r in csv.DictReader(file)}
    section = (root / "README.md").read_text().split(heading, 1)[1].split("\n### ", 1)[0]
    tables = [[line.split("|")[1:-1] for line in block.splitlines()]
              for block in re.findall(r"(?:^\|.*\n)+", section, flags=re.MULTILINE)]
    assert len(tables) == 2
    spreads, per_type = tables
    metrics = [c.strip().replace("IoU(defect)", "iou").lower() for c in spreads[0][1:]]
    for cells in spreads[2:]:
        r = results[(cells[0].strip(), "all")]
        expected = [f"{float(r[m]):.2f} ± {float(r[m + '_std']):.2f}" for m in metrics]
        assert [c.strip() for c in cells[1:]] == expected, cells[0]
    defects = ["all" if h.strip() == f"{category}, all" else h.strip() for h in per_type[0][1:]]
    for cells in per_type[2:]:
        for defect, cell in zip(defects, cells[1:]):
            r = results[(cells[0].strip(), defect)]
            expected = f"{float(r['miou']):.2f} / {float(r['macc']):.2f} / {float(r['iou']):.2f}"
            assert cell.strip() == expected, (cells[0], defect)
    assert len(spreads) - 2 == len(per_type) - 2 == 7 and len(defects) == types + 1 and defects[0] == "all"


@pytest.mark.parametrize("category", ["bottle", "magnetic_tile", "ball_screw"])
def test_committed_counts_give_the_committed_results(category):
    """docs/benchmark/CAT keeps each finished (row, seed)'s pixel counts (``runs/``) beside the report, so a
    later session copies it into its OUT and adds rows or seeds; the counts, read back with the committed config,
    give the committed per-seed table."""
    folder = BOTTLE_BENCHMARK.parent / category
    config = load(EvalConfig, folder / "config.yaml")
    expected = read_csv(folder / "results_seeds.csv")
    rows = sorted({r["method"] for r in expected})
    seeds = sorted({r["seed"] for r in expected})
    per_seed, _ = benchmark.collect(folder, [category], rows, seeds, config)
    assert len(per_seed) == len(expected)
    found = {(r["method"], r["defect"], r["seed"]): r for r in per_seed}
    for row in expected:
        got = found[row["method"], row["defect"], row["seed"]]
        for metric in ("iou", "miou", "macc", "aacc"):
            assert round(got[metric], 2) == pytest.approx(row[metric], abs=0.006), (row["method"], row["defect"])


def test_match_surroundings_reruns_only_the_rows_that_paint_with_sard():
    """The placement setting acts on SARD's sets alone, so the fingerprints of the other rows do not change."""
    plain, matched = EvalConfig(), EvalConfig(match_surroundings=8)

    def same(row):
        return benchmark.run_fingerprint(plain, "c", 0, row, "ckpt") == benchmark.run_fingerprint(matched, "c", 0, row,
                                                                                                 "ckpt")

    assert all(same(row) for row in ("none", "real", "cutpaste", "real+draem"))
    assert not any(same(row) for row in ("sard", "real+sard"))
