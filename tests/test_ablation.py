"""The ablation: each switch changes what it should and nothing else; the probe, the report and train/ablate.py
end to end on a tiny fixture (resumable)."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import warnings
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
import yaml
from conftest import box_mask, make_pipeline, seeded
from fixtures import make_dataset

from sard.config import ConfigError, load
from sard.datasets import load_mask, read_dataset
from sard.evaluation import ablation_report, ablation_run, probe
from sard.evaluation.ablation import VARIANTS, load_ablation_config, parse_variants
from sard.synthesis import cli as synthesis_cli
from sard.training.config import TrainConfig
from sard.training.held_out import HeldOutAccuracy, held_out_accuracy
from sard.training.trainer import train

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGS = REPO_ROOT / "train" / "configs"

pytestmark = pytest.mark.filterwarnings("ignore:1 empty mask")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Two defect types; a/004 (held out) has an empty mask."""
    return make_dataset(tmp_path_factory.mktemp("data"), "mvtec", category="widget", defects={"a": 6, "b": 3},
                        problems={"empty_mask": ("a", 4)})


# The fidelity command at its smallest: enough for its classifier test to run, not to mean anything.
TINY_FIDELITY = {"masks_per_type": 2, "diversity_masks": 1, "seeds": 2, "folds": 2, "c2st_steps": 2, "crop_size": 16}


def _config(tmp_path: Path, train=None, **extra) -> Path:
    """An ablation config on debug.yaml with a tiny harness, one thread everywhere, no fidelity figures."""
    body = {"train_config": str(CONFIGS / "debug.yaml"), "train": {"max_steps": 1, "num_threads": 1, **(train or {})},
            "eval_config": str(CONFIGS / "eval-cpu-128.yaml"),
            "eval": {"n_per_defect": 1, "resolution": 32, "steps": 1, "batch_size": 2, "num_threads": 1},
            "probe_per_defect": 1, "ring_width": 2, "figure_per_defect": 1, "fidelity": None, **extra}
    path = tmp_path / "ablation.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


# --- the switches -----------------------------------------------------------------------------------------------


def test_each_variant_turns_one_switch(data, tmp_path):
    config = load_ablation_config(_config(tmp_path))
    base = dataclasses.asdict(config.training(VARIANTS["base"], data.data_root, data.category, tmp_path / "m"))
    switches = {}
    for name, variant in VARIANTS.items():
        trained = dataclasses.asdict(config.training(variant, data.data_root, data.category, tmp_path / "m"))
        changed = {k: v for k, v in trained.items() if base[k] != v}
        sampling_changed = {k: getattr(variant, k) for k in ("background", "region_constraint")
                            if getattr(variant, k) != {"background": "clean", "region_constraint": True}[k]}
        switches[name] = {**changed, **sampling_changed}
        assert variant.model == (name if changed else "base")
    assert switches == {"base": {}, "no_mask_head": {"mask_head": False}, "lambda_rec_0": {"lambda_rec": 0.0},
                        "background_noised": {"background": "noised"}, "unconstrained": {"region_constraint": False}}


def test_a_variant_that_is_the_base_recipe_is_refused(data, tmp_path):
    config = load_ablation_config(_config(tmp_path, train={"lambda_rec": 0.0}))
    with pytest.raises(ConfigError, match="lambda_rec = 0.0: lambda_rec_0 would be the base model"):
        config.training(VARIANTS["lambda_rec_0"], data.data_root, data.category, tmp_path / "m")


def _losses(folder: Path) -> dict:
    with open(folder / "losses.csv", newline="") as handle:
        row = next(csv.DictReader(handle))
    return {k: float(v) for k, v in row.items() if v not in ("", None) and k != "wall_seconds"}


def test_training_switches_change_only_their_terms(data, tmp_path):
    """Step 1 of the three trained models, same seed and batch: the weights and the batch are the same, so
    every loss term that does not involve the switch is equal, and the switched term alone differs."""
    config = load_ablation_config(_config(tmp_path, train={"log_every": 1}))
    losses = {}
    for name in ("base", "no_mask_head", "lambda_rec_0"):
        run = config.training(VARIANTS[name], data.data_root, data.category, tmp_path / name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            train(run)
        losses[name] = _losses(tmp_path / name)
    base, rec0, global_only = losses["base"], losses["lambda_rec_0"], losses["no_mask_head"]
    # lambda_rec = 0: the discriminator block and every adversarial term are unchanged; the denoiser's loss
    # loses exactly lambda_rec * rec (1 * rec here; the log keeps 6 significant digits).
    for key in ("d_loss", "d_global", "d_mask", "d_x0", "g_global", "g_mask", "g_x0", "rec"):
        assert rec0[key] == base[key], key
    assert base["g_loss"] - rec0["g_loss"] == pytest.approx(base["rec"], abs=2e-5)
    # Global head only: its logits, the denoiser and the batch are those of the base model at step 1; the mask
    # head's terms are gone (zero, and the x0 term that only that head judges is not computed at all).
    assert global_only["d_global"] == base["d_global"] and global_only["rec"] == base["rec"]
    assert global_only["d_mask"] == 0.0 and global_only["g_mask"] == 0.0 and base["d_mask"] > 0.0
    assert "d_x0" not in global_only and "g_x0" not in global_only
    assert global_only["d_loss"] == pytest.approx(global_only["d_global"], abs=2e-5)
    from safetensors.torch import load_file

    state = load_file(tmp_path / "no_mask_head" / "checkpoint-1" / "training_state" / "discriminator.safetensors")
    base_state = load_file(tmp_path / "base" / "checkpoint-1" / "training_state" / "discriminator.safetensors")
    assert set(base_state) - set(state) == {"mask_logits_head.weight", "mask_logits_head.bias"}


class _Recorder:
    """Wraps a denoiser's forward and keeps a copy of every input."""

    def __init__(self, denoiser):
        self.calls, self.forward = [], denoiser.forward

    def __call__(self, x_t, t, z, mask, known, labels):
        self.calls.append([v.clone() for v in (x_t, t, z, mask, known, labels)])
        return self.forward(x_t, t, z, mask, known, labels)


def _sample_with_record(background, region_constraint, image, mask):
    pipe = make_pipeline()
    recorder = _Recorder(pipe.denoiser)
    pipe.denoiser.forward = recorder
    crops = pipe.sample_crops(image, mask, defect="a", generator=seeded(3), background=background,
                              region_constraint=region_constraint)
    return crops[0], recorder.calls


def test_sampling_switches_change_only_the_background_handling(rng):
    image = rng.integers(0, 256, (27, 31, 3), dtype=np.uint8)
    mask = box_mask(27, 31)
    runs = {mode: _sample_with_record(*mode, image, mask)
            for mode in (("clean", True), ("noised", True), ("clean", False))}
    clean, noised, loose = runs[("clean", True)], runs[("noised", True)], runs[("clean", False)]
    crop = clean[0]
    inside = crop.mask.bool().expand(3, -1, -1)
    for crop_, calls in runs.values():
        assert len(calls) == len(clean[1])
        assert torch.equal(crop_.known, crop.known) and torch.equal(crop_.mask, crop.mask)
        for step, (call, reference) in enumerate(zip(calls, clean[1])):
            # What the network is told besides x_t (level, latent, mask, visible background, label) never changes.
            for a, b in zip(call[1:], reference[1:]):
                assert torch.equal(a, b), step
        # x_T: the same noise inside the mask in every mode.
        assert torch.equal(calls[0][0][0][inside], clean[1][0][0][0][inside])
    # Outside the mask: the clean crop at every step (SARD) ...
    for call in clean[1]:
        assert torch.equal(call[0][0][~inside], crop.known[~inside])
    # ... the crop diffused to the step's level (RePaint) ...
    for call in noised[1]:
        assert not torch.equal(call[0][0][~inside], crop.known[~inside])
    # ... and without the constraint the same start as noised, then whatever the network made of it.
    assert torch.equal(loose[1][0][0], noised[1][0][0])
    # Before the paste: the constrained crops keep the background bit for bit; the unconstrained one does not.
    assert torch.equal(clean[0].sample[~inside], crop.known[~inside])
    assert torch.equal(noised[0].sample[~inside], crop.known[~inside])
    assert not torch.allclose(loose[0].sample[~inside], crop.known[~inside], atol=1e-3)
    # After the paste every mode gives the input back outside the mask, bit for bit.
    for background, region_constraint in runs:
        out = make_pipeline()(image, mask, defect="a", generator=seeded(3), background=background,
                              region_constraint=region_constraint, output_type="np").images[0]
        np.testing.assert_array_equal(out[~mask], image[~mask])


def test_sample_crops_are_what_call_pastes(rng):
    image = rng.integers(0, 256, (27, 31, 3), dtype=np.uint8)  # under the working resolution: no resampling
    mask = box_mask(27, 31)
    pipe = make_pipeline()
    crop = pipe.sample_crops(image, mask, defect="b", generator=seeded(1))[0]
    out = pipe(image, mask, defect="b", generator=seeded(1), output_type="np").images[0]
    inside = crop.mask[0].numpy() > 0
    # Where the crop lies in the image: the offset between the mask's first row and column in each.
    top = int(np.nonzero(mask.any(1))[0][0] - np.nonzero(inside.any(1))[0][0])
    left = int(np.nonzero(mask.any(0))[0][0] - np.nonzero(inside.any(0))[0][0])
    height, width = inside.shape
    np.testing.assert_allclose(crop.known.permute(1, 2, 0).numpy(),
                               image[top : top + height, left : left + width] / 127.5 - 1.0, atol=1e-6)
    expected = np.rint(np.clip((crop.sample.permute(1, 2, 0).numpy() + 1.0) / 2.0, 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(out[top : top + height, left : left + width][inside], expected[inside])


def test_working_crop_is_the_pipelines_crop(rng):
    image = rng.integers(0, 256, (90, 70, 3), dtype=np.uint8)  # over the working resolution (32): resampled
    mask = box_mask(90, 70, 0.2, 0.3, 0.2)
    pipe = make_pipeline()
    crop = pipe.sample_crops(image, mask, defect="a", generator=seeded(0), num_inference_steps=1)[0]
    pixels, work_mask = probe.working_crop(image, mask, pipe)
    np.testing.assert_allclose(pixels, probe.to_grey_levels(crop.known), atol=1e-4)
    np.testing.assert_array_equal(work_mask, crop.mask[0].numpy() > 0)


def test_synthesis_and_harness_pass_the_sampling_switches_on(data, tmp_path):
    """train/synthesize.py and the harness's config carry the sampling switches to the pipeline; sets and runs
    made before the switches existed (the defaults) keep their identity."""
    from sard.evaluation.config import EvalConfig
    from sard.synthesis import SynthesisSettings
    from sard.synthesis.writer import read_manifest

    assert "background" not in SynthesisSettings("sard", 1).identity()
    assert "region_constraint" not in load(EvalConfig).identity()
    assert load(EvalConfig, None, {"background": "noised"}).identity()["background"] == "noised"
    checkpoint = tmp_path / "ckpt"
    make_pipeline().save_pretrained(checkpoint)
    sets = {}
    for name, flags in (("rcd", []), ("noised", ["--background", "noised"]), ("loose", ["--no_region_constraint"])):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            synthesis_cli.main(["--checkpoint", str(checkpoint), "--data_root", str(data.data_root), "--category",
                             data.category, "--method", "sard", "--n_per_defect", "1", "--output_dir",
                             str(tmp_path / name), "--num_threads", "1", *flags])
        root = tmp_path / name / data.category
        identity = json.loads((root / "synthesis.json").read_text())["identity"]
        sets[name] = {r["image"].split("/")[-1] + r["defect"]: np.asarray(PIL.Image.open(r["image"]))
                      for r in read_manifest(root) if r["mask"]}
        for record in (r for r in read_manifest(root) if r["mask"]):
            mask = load_mask(record["mask"])
            out, source = np.asarray(PIL.Image.open(record["image"])), np.asarray(PIL.Image.open(record["source"]))
            np.testing.assert_array_equal(out[~mask], source[~mask])
        assert {k: identity.get(k) for k in ("background", "region_constraint")} == {
            "rcd": {"background": None, "region_constraint": None},
            "noised": {"background": "noised", "region_constraint": None},
            "loose": {"background": None, "region_constraint": False}}[name]
    for key in sets["rcd"]:  # the same masks and seeds, other fills
        assert not np.array_equal(sets["rcd"][key], sets["noised"][key])
        assert not np.array_equal(sets["rcd"][key], sets["loose"][key])


# --- the probe --------------------------------------------------------------------------------------------------


def test_probe_items_are_held_out_with_a_mask(data):
    dataset = read_dataset(data.data_root, data.category)
    items = probe.probe_items(dataset, per_defect=3)
    held_a = [image for image, _ in data.anomalies["a"][2:]]  # floor(6 / 3) = 2 train
    assert [i.anomaly.image for i in items if i.defect == "a"] == [held_a[0], held_a[1], held_a[3]]  # 004 is empty
    assert [i.anomaly.image for i in items if i.defect == "b"] == [image for image, _ in data.anomalies["b"][1:]]
    assert all(i.canvas in dataset.train_good for i in items)
    assert len(probe.probe_items(dataset, per_defect=1)) == 2


def test_probe_measures_the_same_fills_with_the_same_seeds(data):
    dataset = read_dataset(data.data_root, data.category)
    items = probe.probe_items(dataset, per_defect=2)
    pipe = make_pipeline()  # it knows the defect types "a" and "b", as the fixture has
    first, tiles = probe.run_probe(pipe, items, seed=0, ring_width=2, batch_size=3, keep_tiles=[("a", 0)])
    again, _ = probe.run_probe(pipe, items, seed=0, ring_width=2, batch_size=1)
    # Per-item seeds: the batch size does not matter (up to float rounding of batched convolutions).
    assert [r["image"] for r in first] == [r["image"] for r in again]
    for a, b in zip(first, again):
        assert a == {k: pytest.approx(v, rel=1e-4, abs=1e-4) if isinstance(v, float) else v for k, v in b.items()}
    assert all(r["drift"] == 0.0 for r in first)  # the region constraint: not one background value moved
    loose, _ = probe.run_probe(pipe, items, seed=0, ring_width=2, region_constraint=False)
    assert all(r["drift"] > 0.0 for r in loose)
    tile = tiles[("a", 0)]
    np.testing.assert_array_equal(tile.painted[~tile.mask], tile.known[~tile.mask])
    real, _ = probe.real_records(items, pipe, ring_width=2)
    summary = probe.summaries(real)
    # The fixture's defects are boxes 110 grey levels brighter than their texture.
    assert 80 < summary["all"]["contrast"] < 120 and "drift" not in summary["all"]
    assert summary["all"]["n"] == len(items)


def test_probe_of_a_grey_category_measures_the_grey_result(tmp_path):
    data = make_dataset(tmp_path, "mvtec", category="tile", defects={"a": 3, "b": 3}, mode="L")
    dataset = read_dataset(data.data_root, data.category)
    items = probe.probe_items(dataset, per_defect=1)
    _, tiles = probe.run_probe(make_pipeline(), items, keep_tiles=[("a", 0)])
    painted = tiles[("a", 0)].painted
    assert (painted[..., 0] == painted[..., 1]).all() and (painted[..., 0] == painted[..., 2]).all()


# --- the report -------------------------------------------------------------------------------------------------


def _summary(contrast, ratio, n=2, drift=None):
    return {"n": n, "contrast": contrast, "texture_ratio": ratio, **({"drift": drift} if drift is not None else {})}


def test_report_rows_table_and_chart(tmp_path):
    variants = parse_variants("unconstrained")
    assert [v.name for v in variants] == ["base", "unconstrained"]  # the base is always compared with
    downstream = {"base": {"a": {"miou": 60.0, "acc": 90.0, "iou": 30.0}, "all": {"miou": 55.0, "acc": 91.0,
                                                                                    "iou": 20.0}}}
    probes = {"base": {"a": _summary(-10.0, 2.0, drift=0.0), "all": _summary(-10.0, 2.0, drift=0.0)},
              "unconstrained": {"a": _summary(-30.0, 0.5, drift=3.5), "all": _summary(-30.0, 0.5, drift=3.5)}}
    real = {"a": _summary(-20.0, 1.0), "all": _summary(-20.0, 1.0)}
    rows = ablation_report.ablation_rows("tile", variants, downstream, probes, real)
    index = {(r["variant"], r["defect"]): r for r in rows}
    assert [k for k in index] == [("base", "a"), ("base", "all"), ("unconstrained", "a"), ("unconstrained", "all"),
                                  ("real", "a"), ("real", "all")]
    assert index[("base", "all")]["contrast_gap"] == 10.0 and index[("base", "all")]["texture_gap"] == 1.0
    assert index[("unconstrained", "a")]["texture_gap"] == -1.0 and index[("unconstrained", "a")]["drift"] == 3.5
    assert math.isnan(index[("unconstrained", "all")]["miou"])  # not evaluated: shown as "–"
    table = ablation_report.markdown(rows, {"base": "SARD"})
    assert "| base |  | SARD | 55.00 | 91.00 | 20.00 | -10.0 | 2.00 | +10.0 | +1.00 | 0 |" in table
    assert "| real held-out defects |  |  | – | – | – | -20.0 | 1.00 | – | – | – |" in table
    ablation_report.write_csv(rows, tmp_path / "a.csv")
    with open(tmp_path / "a.csv", newline="") as handle:
        assert list(csv.DictReader(handle))[1]["contrast_gap"] == "10.0"
    ablation_report.bar_chart(rows, tmp_path / "a.png")
    assert PIL.Image.open(tmp_path / "a.png").size == (900, 5 * 300 + 40)


def test_config_files(tmp_path):
    for name in ("ablation-cpu.yaml", "ablation-debug.yaml", "ablation-dmg-cpu.yaml"):
        config = load_ablation_config(CONFIGS / name)
        assert Path(config.train_config).is_file() and Path(config.eval_config).is_file()
        config.evaluation()
        load(TrainConfig, config.train_config, {**config.train, "data_root": str(tmp_path)})
        for overrides in config.categories.values():  # known keys (the stage-1 models are made by hand)
            load(TrainConfig, config.train_config,
                 {**config.train, **overrides, "init_from": "", "data_root": str(tmp_path)})
    bad = tmp_path / "bad.yaml"
    bad.write_text("train_config: debug.yaml\nprobes: 3\n")
    with pytest.raises(ConfigError, match="Unknown config key.*probes.*missing config key.*eval_config"):
        load_ablation_config(bad)
    bad.write_text("train_config: debug.yaml\neval_config: eval-cpu-128.yaml\neval: {background: noised}\n")
    with pytest.raises(ConfigError, match="eval sets background, which each variant sets for itself"):
        load_ablation_config(bad)
    with pytest.raises(ConfigError, match="Unknown variant"):
        parse_variants("base,no_rcd")
    bad.write_text("train_config: debug.yaml\neval_config: eval-cpu-128.yaml\ncategories: {tile: 640}\n")
    with pytest.raises(ConfigError, match="categories must map a category to its overrides"):
        load_ablation_config(bad)
    bad.write_text("train_config: debug.yaml\neval_config: eval-cpu-128.yaml\n"
                   "eval_categories: {tile: {background: noised}}\n")
    with pytest.raises(ConfigError, match="eval_categories.tile sets background"):
        load_ablation_config(bad)
    bad.write_text(f"train_config: debug.yaml\neval_config: {CONFIGS / 'eval-cpu-128.yaml'}\n"
                   "eval_categories: {tile: {input_nrom: per_image}}\n")
    with pytest.raises(ConfigError, match="input_nrom"):
        load_ablation_config(bad)


def test_category_overrides_reach_every_model_of_that_category_only(data, tmp_path):
    config = load_ablation_config(_config(tmp_path, categories={"widget": {"resolution": 48, "crop_size": 16}}))
    for name in ("base", "no_mask_head"):
        widget = config.training(VARIANTS[name], str(data.data_root), "widget", tmp_path / name)
        assert (widget.resolution, widget.crop_size) == (48, 16)
        assert widget.mask_head == (name == "base")  # the variant's switch still on top
        other = config.training(VARIANTS[name], str(data.data_root), "gadget", tmp_path / name)
        assert (other.resolution, other.crop_size) != (48, 16)
    # They are part of what the numbers depend on: another override is another ablation.
    again = load_ablation_config(_config(tmp_path, categories={"widget": {"resolution": 64}}))
    assert again.identity() != config.identity()


def test_eval_category_overrides_reach_that_category_harness_only(data, tmp_path, monkeypatch):
    plain = load_ablation_config(_config(tmp_path))
    config = load_ablation_config(_config(tmp_path, eval_categories={"widget": {"input_norm": "per_image",
                                                                                "defect_weight": 3.0}}))
    widget, other = config.evaluation("widget"), config.evaluation("gadget")
    assert (widget.input_norm, widget.defect_weight) == ("per_image", 3.0)
    assert (other.input_norm, other.defect_weight) == ("fixed", 1.0)
    assert widget.steps == other.steps == 1  # the shared overrides stay underneath
    assert config.identity() != plain.identity()
    assert "eval_categories" not in plain.identity()  # earlier runs keep their identity
    # The downstream benchmark of a variant runs with its category's harness, the variant's switch on top.
    seen = []
    monkeypatch.setattr(ablation_run.benchmark, "run", lambda *args: seen.append(args[-1]))
    monkeypatch.setattr(ablation_run, "weights_digest", lambda checkpoint: "digest")
    monkeypatch.setattr(ablation_run, "downstream_of", lambda folder, category: {})
    ablation_run.evaluate_variant(str(data.data_root), "widget", config, VARIANTS["background_noised"], tmp_path,
                                  tmp_path / "widget")
    ablation_run.evaluate_variant(str(data.data_root), "gadget", config, VARIANTS["base"], tmp_path,
                                  tmp_path / "gadget")
    assert [(c.input_norm, c.background) for c in seen] == [("per_image", "noised"), ("fixed", "clean")]


def test_fidelity_and_discriminator_rows(tmp_path):
    variants = parse_variants("no_mask_head,unconstrained")
    probes = {v.name: {"a": _summary(-10.0, 2.0, drift=0.0), "all": _summary(-10.0, 2.0, drift=0.0)}
              for v in variants}
    real = {"a": _summary(-20.0, 1.0), "all": _summary(-20.0, 1.0)}

    def measured(c2st, texture, inside):
        row = {"c2st": c2st, "c2st_se": 0.03, "texture_ratio": texture, "texture_in_range": inside,
               "texture_real_p10": 0.8, "texture_real_p90": 1.6, "contrast": -12.0, "contrast_in_range": True,
               "diversity": 0.3, "colour": 4.0 if inside else 10.9, "colour_in_range": inside}
        return {"a": row, "all": row}

    fidelity = {"base": measured(0.75, 1.1, True), "no_mask_head": measured(0.9, 0.5, False)}
    judges = {"base": HeldOutAccuracy(10, 20, 2, {"global": {1: 0.61, 2: 0.5}, "mask": {1: 0.7, 2: 0.55}}),
              "no_mask_head": HeldOutAccuracy(10, 20, 2, {"global": {1: 0.58, 2: 0.5}})}
    rows = ablation_report.ablation_rows("tile", variants, {}, probes, real, fidelity, judges)
    index = {(r["variant"], r["defect"]): r for r in rows}
    assert index[("base", "all")]["disc_mask_t1"] == 0.7 and index[("base", "all")]["disc_global_t1"] == 0.61
    assert math.isnan(index[("no_mask_head", "all")]["disc_mask_t1"])  # it has no mask-aware head
    assert math.isnan(index[("base", "a")]["disc_mask_t1"])  # a model's figure: on its "all" row only
    assert math.isnan(index[("unconstrained", "all")]["c2st"])  # sampling-time variants are not measured
    table = ablation_report.markdown(rows, {"base": "SARD"})
    assert "| base | SARD | 0.75 ± 0.03 | 1.10 | 1 of 1 | -12.0 | 0.30 | +4.0 (yes) | 0.61 | 0.70 |" in table
    assert "| no_mask_head |  | 0.90 ± 0.03 | 0.50 | 0 of 1 | -12.0 | 0.30 | +10.9 (no) | 0.58 | – |" in table
    assert "| a | no_mask_head | 0.90 | 0.50 | 0.80–1.60 | no | -12.0 | yes | 0.30 |" in table
    # Without fidelity figures and discriminator logs the report is the one it was.
    plain = ablation_report.ablation_rows("tile", variants, {}, probes, real)
    assert "Fidelity" not in ablation_report.markdown(plain)


def test_held_out_accuracy_is_the_mean_of_the_last_quarter():
    rows = [{"step": str(10 * i), "held_out_acc_global_t1": "", "held_out_acc_mask_t1": ""} for i in range(1, 4)]
    assert held_out_accuracy(rows) is None  # never measured
    rows = [{"step": str(10 * i), "held_out_acc_global_t1": str(0.5 + i / 100), "held_out_acc_mask_t1": str(i / 10),
             "held_out_acc_global_t2": "0.5", "held_out_acc_mask_t2": "0.6"} for i in range(1, 9)]
    rows.insert(3, {"step": "35", "held_out_acc_global_t1": "", "held_out_acc_mask_t1": ""})  # a step not measured
    summary = held_out_accuracy(rows)
    assert (summary.first_step, summary.last_step, summary.n) == (70, 80, 2)
    assert summary.accuracy["mask"] == pytest.approx({1: 0.75, 2: 0.6})
    assert summary.accuracy["global"][1] == pytest.approx(0.575)
    global_only = [{k: v for k, v in r.items() if "mask" not in k} for r in rows]
    assert set(held_out_accuracy(global_only).accuracy) == {"global"}


# --- the ablation (train/ablate.py) end to end ---------------------------------------------------------------------


def test_ablate_end_to_end_then_resume(data, tmp_path):
    train_settings = {"max_steps": 2, "held_out_every": 2, "log_every": 1}
    config = _config(tmp_path, train=train_settings, fidelity=TINY_FIDELITY)
    out = tmp_path / "out"
    argv = ["--data_root", str(data.data_root), "--category", data.category, "--config", str(config),
            "--output_dir", str(out), "--variants", "unconstrained"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ablation_run.main(argv)
    with open(out / "ablation.csv", newline="") as handle:
        rows = {(r["variant"], r["defect"]): r for r in csv.DictReader(handle)}
    assert set(rows) == {(v, d) for v in ("base", "unconstrained", "real") for d in ("a", "b", "all")}
    assert float(rows[("base", "all")]["drift"]) == 0.0 and float(rows[("unconstrained", "all")]["drift"]) > 0.0
    assert 0.0 <= float(rows[("unconstrained", "all")]["miou"]) <= 100.0
    assert "### widget" in (out / "ablation.md").read_text()
    # The fidelity figures of the base (the unconstrained variant samples otherwise: not measured), and its
    # discriminator's held-out accuracy from its loss log.
    assert 0.0 <= float(rows[("base", "all")]["c2st"]) <= 1.0 and rows[("unconstrained", "all")]["c2st"] == "nan"
    assert 0.0 <= float(rows[("base", "all")]["disc_mask_t1"]) <= 1.0
    assert "| base | SARD as configured |" in (out / "ablation.md").read_text().split("Fidelity (")[1]
    # One row per defect type, columns: input, the two variants, the raw unconstrained crop, the real defect.
    assert PIL.Image.open(out / "figure-widget.png").size[0] == 5 * 128
    weights = out / "widget" / "models" / "base" / "denoiser" / "diffusion_pytorch_model.safetensors"
    counts = out / "widget" / "eval" / "base" / "runs" / "widget" / "sard" / "seed-0" / "counts.json"
    fidelity = out / "widget" / "fidelity" / "base" / "fidelity.csv"
    stamps = {p: p.stat().st_mtime_ns
              for p in (weights, counts, out / "widget" / "probe" / "unconstrained.json", fidelity)}
    table = (out / "ablation.csv").read_text()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ablation_run.main(argv)  # everything is done: nothing is trained, evaluated or probed again
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert (out / "ablation.csv").read_text() == table
    timing = json.loads((out / "widget" / "timing.json").read_text())
    assert {"train base", "evaluate base", "probe unconstrained", "fidelity base"} <= set(timing)
    # Another budget into the same folder is refused, not mixed in.
    other = tmp_path / "other"
    other.mkdir()
    argv[argv.index("--config") + 1] = str(_config(other, train={**train_settings, "max_steps": 3},
                                                   fidelity=TINY_FIDELITY))
    with pytest.raises(ConfigError, match="other training settings \\(max_steps differ\\)"):
        ablation_run.main(argv)


# --- the published results ----------------------------------------------------------------------------------------


def test_readme_ablation_tables_are_the_committed_report():
    """Every table row of the README's ablation results is a row of the report the command wrote, so the two
    cannot drift apart when either is edited."""
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## What each part of SARD is worth")[1].split("\n## ")[0]
    results = section.split("### Results")[1]
    rows = [line for line in results.splitlines() if line.startswith("| ") and not line.startswith("|---")]
    reports = ("ablation_cpu.md", "ablation_dmg_cpu.md")  # the stage-1 recipe's ablation, and the stage-2 one's
    report = [line for name in reports for line in (REPO_ROOT / "docs" / "ablation" / name).read_text().splitlines()]
    assert len(rows) >= 14  # both categories: header, five variants and the real defects
    missing = [row for row in rows if row not in report]
    assert not missing, f"README rows not in docs/ablation/{' or '.join(reports)}: {missing}"


def test_synthesis_refuses_a_negative_match_surroundings(data, tmp_path):
    from sard.config import ConfigError

    with pytest.raises(ConfigError, match="match_surroundings must be 0"):
        synthesis_cli.main(["--data_root", str(data.data_root), "--category", data.category, "--method", "cutpaste",
                            "--n_per_defect", "1", "--output_dir", str(tmp_path / "out"),
                            "--match_surroundings", "-1"])
    assert not (tmp_path / "out").exists()
