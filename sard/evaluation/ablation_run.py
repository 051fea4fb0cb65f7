"""The ablation's run (``train/ablate.py``): train the variants on a category, benchmark each one, report.

For one category (the variants are described in :mod:`.ablation`):

1. Models (``OUT/CAT/models/<model>/``): the base model and the training-time variants (``no_mask_head``,
   ``lambda_rec_0``) are trained with :func:`sard.training.trainer.train`, the same recipe, seed and budget, each
   with one switch changed. A given base checkpoint is used as the base instead (then it should have the same
   budget: the comparison is fair only with the same one). The sampling-time variants (``background_noised``,
   ``unconstrained``) sample with the base model.
2. Per variant: the benchmark of :mod:`.benchmark` with the main table's config (``OUT/CAT/eval/<variant>/``:
   synthesis, segmenter, test on the held-out real anomalies), and the realism probe (``OUT/CAT/probe/``: the
   same held-out masks filled by every variant, contrast and texture against the real defects, background drift
   before the paste; see :mod:`.probe`).
3. ``OUT/ablation.md``, ``OUT/ablation.csv``, ``OUT/ablation.png`` (every category in OUT run with this config)
   and ``OUT/figure-CAT.png`` (the held-out masks filled by each variant, side by side).

Rerunning skips what is done: a killed ablation resumes per variant, a training from its last checkpoint.
``OUT/CAT/timing.json`` adds up the wall and CPU seconds of every phase over the sessions.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
import warnings
from pathlib import Path

import PIL.Image
import torch
import yaml

from .. import config as configs
from .. import figures
from ..config import ConfigError
from ..datasets import read_dataset
from ..files import sha256, write_json
from ..pipeline import SARDPipeline
from ..processes import require_one_process
from ..training.config import TrainConfig
from ..training.held_out import HeldOutAccuracy, held_out_accuracy, read_loss_log
from ..training.trainer import train
from . import ablation_report, benchmark, fidelity_run, probe
from .ablation import RUNTIME_KEYS, VARIANTS, AblationConfig, Variant, load_ablation_config, parse_variants
from .config import EvalConfig
from .fidelity_report import read_fidelity_csv
from .report import read_csv


def parse_args(argv=None) -> argparse.Namespace:
    """The command line of ``train/ablate.py``."""
    parser = argparse.ArgumentParser(
        description="What each part of SARD is worth: train the ablation's variants on a category, benchmark each.")
    parser.add_argument("--data_root", required=True)
    parser.add_argument("--category", required=True)
    parser.add_argument("--config", required=True,
                        help="ablation config (the repository's train/configs/ablation-*.yaml)")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--variants", default="", help=f"comma-separated, of {', '.join(VARIANTS)} (default: all)")
    parser.add_argument("--base_checkpoint", default="", help="use this SARD pipeline as the base model")
    return parser.parse_args(argv)


class Timing:
    """Wall and CPU seconds per phase, added up over sessions in ``timing.json``."""

    def __init__(self, path: Path):
        self.path = path
        self.values = json.loads(path.read_text()) if path.is_file() else {}

    def add(self, phase: str, wall: float, cpu: float) -> None:
        entry = self.values.setdefault(phase, {"wall_seconds": 0.0, "cpu_seconds": 0.0})
        entry["wall_seconds"] = round(entry["wall_seconds"] + wall, 1)
        entry["cpu_seconds"] = round(entry["cpu_seconds"] + cpu, 1)
        write_json(self.path, self.values)

    def run(self, phase: str, function, *args):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return function(*args)
        finally:
            self.add(phase, time.perf_counter() - wall, time.process_time() - cpu)


def weights_digest(folder: Path) -> str:
    """SHA-256 of a pipeline's denoiser weights: which model a result was made with."""
    files = sorted((Path(folder) / "denoiser").glob("*.safetensors"))
    if not files:
        raise ConfigError(f"{folder} is not a SARD pipeline folder (no denoiser/*.safetensors).")
    return sha256(files[0])


def _comparable(values: dict) -> dict:
    values = {k: v for k, v in values.items() if k not in RUNTIME_KEYS}
    return json.loads(json.dumps(values))


def config_differences(folder: Path, expected: TrainConfig) -> list[str] | None:
    """The training keys (and data root) in which the run in ``folder`` differs from ``expected``; None when
    ``folder`` (or its parent, for a checkpoint-N folder) has no ``config.yaml``."""
    for candidate in (folder / "config.yaml", folder.parent / "config.yaml"):
        if candidate.is_file():
            found = yaml.safe_load(candidate.read_text()) or {}
            break
    else:
        return None
    wanted = dataclasses.asdict(expected)
    keys = sorted(k for k in set(_comparable(found)) | set(_comparable(wanted)) if found.get(k) != wanted.get(k))
    if Path(found.get("data_root", "")).resolve() != Path(wanted["data_root"]).resolve():
        keys.append("data_root")
    return keys


def train_model(config: TrainConfig) -> Path:
    """Train (or resume, or skip when finished) one model; returns its pipeline folder."""
    folder = Path(config.output_dir)
    differences = config_differences(folder, config)
    if differences:
        raise ConfigError(
            f"{folder} holds a run with other training settings ({', '.join(differences)} differ). Pass another "
            "--output_dir, or delete that folder to train it again."
        )
    if (folder / "model_index.json").is_file() and (folder / "README.md").is_file():
        return folder  # finished: training writes the model card after the final pipeline
    train(config)
    return folder


def evaluate_variant(data_root: str, category: str, config: AblationConfig, variant: Variant, checkpoint: Path,
                     root: Path) -> dict:
    """The evaluation harness on ``variant``'s synthetic set; ``{defect: {"miou", "acc", "iou"}}``."""
    folder = root / "eval" / variant.name
    marker = folder / "model.json"
    digest = weights_digest(checkpoint)
    if marker.is_file() and json.loads(marker.read_text())["denoiser_sha256"] != digest:
        raise ConfigError(
            f"{folder} was made with another {variant.model} model than {checkpoint}. Delete it (or pass another "
            "--output_dir) to evaluate this one."
        )
    write_json(marker, {"checkpoint": str(checkpoint), "denoiser_sha256": digest})
    switches = {"background": variant.background, "region_constraint": variant.region_constraint}
    eval_config = configs.load(EvalConfig, config.eval_config, {**config.eval_overrides(category), **switches})
    benchmark.run(data_root, [category], ["sard"], [eval_config.seed], {category: str(checkpoint)}, folder,
                  eval_config)
    return downstream_of(folder, category)


def downstream_of(folder: Path, category: str) -> dict:
    path = folder / "results.csv"
    if not path.is_file():
        return {}
    # The ablation's accuracy column is the overall pixel accuracy (the benchmark's aAcc), as when it was run.
    return {r["defect"]: {"miou": r["miou"], "acc": r["aacc"], "iou": r["iou"]}
            for r in read_csv(path) if r["method"] == "sard" and r["category"] == category}


def fidelity_variant(data_root: str, category: str, config: AblationConfig, variant: Variant, checkpoint: Path,
                     root: Path) -> None:
    """``train/fidelity.py`` on ``variant``'s model into ``OUT/CAT/fidelity/<variant>/`` (skipped when done with
    the same model and options). Only for variants that sample as the pipeline does: the command has no switches."""
    folder = root / "fidelity" / variant.name
    marker = folder / "model.json"
    stamp = {"checkpoint": str(checkpoint), "denoiser_sha256": weights_digest(checkpoint), "options": config.fidelity}
    if marker.is_file():
        before = json.loads(marker.read_text())
        if before["denoiser_sha256"] != stamp["denoiser_sha256"] or before["options"] != stamp["options"]:
            raise ConfigError(f"{folder} was measured with another {variant.model} model or other fidelity options. "
                              "Delete it (or pass another --output_dir) to measure this one.")
        if (folder / "fidelity.csv").is_file():
            return
    write_json(marker, stamp)
    harness = config.evaluation(category)
    options = {"seed": harness.seed, "num_threads": harness.num_threads, **config.fidelity}
    argv = ["--checkpoint", str(checkpoint), "--data_root", data_root, "--category", category, "--output_dir",
            str(folder)]
    for key, value in options.items():
        argv += [f"--{key}", str(value)]
    fidelity_run.main(argv)


def samples_as_the_pipeline(variant: Variant) -> bool:
    return variant.background == "clean" and variant.region_constraint


def fidelity_of(folder: Path) -> dict:
    """``{defect (and "all"): fidelity row}`` of a variant's fidelity folder, ``{}`` when not measured."""
    path = folder / "fidelity.csv"
    return {r["defect"]: r for r in read_fidelity_csv(path)} if path.is_file() else {}


def discriminator_of(model: Path) -> HeldOutAccuracy | None:
    """What the discriminator of a trained model did over its last quarter (its run's or bundle's loss log)."""
    for path in (model / "losses.csv", model / "training_log" / "losses.csv"):
        if path.is_file():
            return held_out_accuracy(read_loss_log(path))
    return None


def load_pipeline(checkpoint: Path) -> SARDPipeline:
    pipe = SARDPipeline.from_pretrained(checkpoint)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to("cuda") if torch.cuda.is_available() else pipe


def probe_variant(pipe, items, config: AblationConfig, variant: Variant, digest: str, root: Path, keep,
                  category: str) -> list:
    """The realism probe of one variant (skipped when done with the same model and settings)."""
    eval_config = config.evaluation(category)
    path = root / "probe" / f"{variant.name}.json"
    fingerprint = {"denoiser_sha256": digest, "background": variant.background,
                   "region_constraint": variant.region_constraint, "seed": eval_config.seed,
                   "num_inference_steps": eval_config.num_inference_steps, "ring_width": config.ring_width,
                   "items": [[str(i.anomaly.image), str(i.canvas)] for i in items]}
    if path.is_file() and json.loads(path.read_text())["fingerprint"] == fingerprint:
        return json.loads(path.read_text())["records"]
    records, tiles = probe.run_probe(pipe, items, eval_config.seed, variant.background, variant.region_constraint,
                                     eval_config.num_inference_steps or None, config.ring_width,
                                     eval_config.sard_batch_size, keep)
    ablation_report.save_tiles(tiles, root / "probe" / "tiles" / variant.name)
    write_json(path, {"fingerprint": fingerprint, "records": records})
    return records


def probe_real(pipe, items, config: AblationConfig, root: Path, keep) -> list:
    path = root / "probe" / "real.json"
    fingerprint = {"ring_width": config.ring_width, "items": [str(i.anomaly.image) for i in items],
                   "crop": {k: pipe.config[k] for k in ("resolution", "crop_size", "context")},
                   "stride": pipe.denoiser.stride}
    if path.is_file() and json.loads(path.read_text())["fingerprint"] == fingerprint:
        return json.loads(path.read_text())["records"]
    records, tiles = probe.real_records(items, pipe, config.ring_width, keep)
    ablation_report.save_tiles(tiles, root / "probe" / "tiles" / "real")
    write_json(path, {"fingerprint": fingerprint, "records": records})
    return records


def figure(root: Path, variants: list[Variant], keep: list[tuple[str, int]]):
    """The held-out masks of ``keep`` filled by each variant, side by side, with the input and the real defect."""
    tiles = root / "probe" / "tiles"
    titles = ["normal image\n+ held-out mask", *[v.name.replace("_", " ") for v in variants]]
    raw = any(not v.region_constraint for v in variants)
    if raw:
        titles.append("unconstrained,\nbefore the paste")
    titles.append("real held-out\ndefect")
    rows = []
    for defect, j in keep:
        found = {v.name: ablation_report.load_tile(tiles / v.name, defect, j) for v in variants}
        first = next((t for t in found.values() if t is not None), None)
        if first is None:
            continue
        cells = [figures.outline(PIL.Image.fromarray(first.known), first.mask)]
        cells += [PIL.Image.fromarray(t.painted) if t else None for t in found.values()]
        if raw:
            loose = next((found[v.name] for v in variants if not v.region_constraint), None)
            cells.append(PIL.Image.fromarray(loose.sample) if loose else None)
        real = ablation_report.load_tile(tiles / "real", defect, j)
        cells.append(PIL.Image.fromarray(real.known) if real else None)
        rows.append((f"{defect} #{j}", cells))
    return figures.tile_grid(titles, rows) if rows else None


def write_report(output_dir: Path, config: AblationConfig, identity: dict) -> list[dict]:
    """Rows of every category in ``output_dir`` run with this config; writes the CSV, the table and the chart."""
    rows, given = [], []
    for marker in sorted(output_dir.glob("*/ablation.json")):
        body = json.loads(marker.read_text())
        if body["identity"] != json.loads(json.dumps(identity)):
            warnings.warn(f"Left out of the report: {marker.parent.name} (run with another ablation config).",
                          stacklevel=2)
            continue
        root, category = marker.parent, body["category"]
        if body["base_checkpoint"]:
            given.append(f" The base model of {category} was given (`{body['base_checkpoint']}`), not trained here.")
        variants = [VARIANTS[n] for n in VARIANTS if n in body["variants"]]
        downstream = {v.name: downstream_of(root / "eval" / v.name, category) for v in variants}
        probes = {}
        for v in variants:
            path = root / "probe" / f"{v.name}.json"
            if path.is_file():
                probes[v.name] = probe.summaries(json.loads(path.read_text())["records"])
        real_path = root / "probe" / "real.json"
        real = probe.summaries(json.loads(real_path.read_text())["records"]) if real_path.is_file() else {}
        fidelities = {v.name: fidelity_of(root / "fidelity" / v.name) for v in variants}
        base = Path(body["base_checkpoint"] or root / "models" / "base")
        discriminators = {v.name: discriminator_of(base if v.name == "base" else root / "models" / v.name)
                          for v in variants if v.model == v.name}
        rows += ablation_report.ablation_rows(category, variants, {k: v for k, v in downstream.items() if v},
                                              probes, real, {k: v for k, v in fidelities.items() if v},
                                              {k: v for k, v in discriminators.items() if v})
    train, harness = identity["train"], identity["eval"]
    note = (
        f"Models: `{Path(config.train_config).name}` with {train['max_steps']} steps of {train['batch_size']}, seed "
        f"{train['seed']}, the same for every trained variant. Downstream: the main table's harness "
        f"(`{Path(config.eval_config).name}`: {harness['segmenter']} from scratch, {harness['resolution']} px, "
        f"{harness['steps']} steps, seed {harness['seed']}, {harness['n_per_defect']} pairs per defect type"
        f"{eval_categories_note(config)}). "
        f"Realism: up to {config.probe_per_defect} held-out masks per defect type, filled by every variant with the "
        f"same seeds, measured at the model's working scale with a ring of {config.ring_width} px: contrast = "
        "mean inside - mean in the ring (grey levels), texture ratio = mean |Laplacian| inside / in the ring, gaps "
        "= painted - real (texture: log2 of the ratios), drift = mean |change| in the ring before the paste "
        "(0: bit for bit)." + fidelity_note(config) + "".join(given)
    )
    descriptions = {name: v.description for name, v in VARIANTS.items()}
    (output_dir / "ablation.md").write_text(note + "\n\n" + ablation_report.markdown(rows, descriptions))
    ablation_report.write_csv(rows, output_dir / "ablation.csv")
    if rows:
        ablation_report.bar_chart(rows, output_dir / "ablation.png")
    return rows


def eval_categories_note(config: AblationConfig) -> str:
    """``; for magnetic_tile with input_norm per_image, ...``: the categories with a harness of their own."""
    return "".join(f"; for {category} with " + ", ".join(f"{k} {v}" for k, v in overrides.items())
                   for category, overrides in sorted(config.eval_categories.items()))


def fidelity_note(config: AblationConfig) -> str:
    if config.fidelity is None:
        return ""
    options = ", ".join(f"--{k} {v}" for k, v in config.fidelity.items())
    return (" Fidelity: `train/fidelity.py`" + (f" ({options})" if options else "") + " on each variant that samples "
            "as the pipeline does: held-out masks painted into held-out normal images at full resolution; C2ST = "
            "held-out accuracy of a small classifier telling painted from real defect crops (0.5: "
            "indistinguishable), texture ratio and contrast against the real defects' p10-p90, diversity = "
            "per-pixel std across seeds / the real defects' spatial std. Discriminator: each head's accuracy on "
            "held-out real defects against the denoiser's fakes at t = 1, over the last quarter of training (0.5: "
            "chance; `losses.csv`).")


def run(data_root: str, category: str, config: AblationConfig, variants: list[Variant], output_dir: str | Path,
        base_checkpoint: str | Path | None = None) -> Path:
    """The ablation of one category (see :mod:`sard.evaluation.ablation`): train the models the ``variants``
    need (or take ``base_checkpoint`` as the base), benchmark and probe each variant, write the report of every
    category in ``output_dir`` and this category's figure. Resumable per variant; returns the report's path."""
    require_one_process("the ablation")
    output_dir = Path(output_dir)
    root = output_dir / category
    # Everything that can be wrong is checked before anything is trained.
    dataset = read_dataset(data_root, category, config.evaluation(category).data_format)
    models = list(dict.fromkeys(["base", *(v.model for v in variants)]))
    trainings = {m: config.training(VARIANTS[m], data_root, category, root / "models" / m) for m in models}
    base_checkpoint = Path(base_checkpoint) if base_checkpoint else None
    if base_checkpoint is not None:
        weights_digest(base_checkpoint)
        differences = config_differences(base_checkpoint, trainings["base"])
        if differences is None:
            warnings.warn(f"{base_checkpoint} has no config.yaml; check that it was trained with the ablation's "
                          "recipe and budget, or the trained variants are not compared fairly with it.", stacklevel=2)
        elif differences:
            warnings.warn(f"{base_checkpoint} was trained with other settings than the ablation's recipe "
                          f"({', '.join(differences)}): the trained variants are not compared fairly with it.",
                          stacklevel=2)
    identity = config.identity()
    # The report shows every variant run into this folder with this config, by this command or an earlier one.
    marker = root / "ablation.json"
    before = json.loads(marker.read_text()) if marker.is_file() else {}
    if before.get("identity") == json.loads(json.dumps(identity)):
        variants = [v for name, v in VARIANTS.items() if name in before["variants"] or v in variants]
    write_json(marker, {"identity": identity, "category": category, "variants": [v.name for v in variants],
                         "base_checkpoint": str(base_checkpoint or "")})
    items = probe.probe_items(dataset, config.probe_per_defect)
    keep = [(i.defect, i.j) for i in items if i.j < config.figure_per_defect]
    timing = Timing(root / "timing.json")

    for model in models:  # the base first; each variant right after its model, so results come in early
        if model == "base" and base_checkpoint is not None:
            checkpoint = base_checkpoint
        else:
            checkpoint = timing.run(f"train {model}", train_model, trainings[model])
        pipe, digest = load_pipeline(checkpoint), weights_digest(checkpoint)
        if model == "base":
            timing.run("probe real", probe_real, pipe, items, config, root, keep)
        for variant in (v for v in variants if v.model == model):
            timing.run(f"evaluate {variant.name}", evaluate_variant, data_root, category, config, variant,
                       checkpoint, root)
            timing.run(f"probe {variant.name}", probe_variant, pipe, items, config, variant, digest, root, keep,
                       category)
            if config.fidelity is not None and samples_as_the_pipeline(variant):
                timing.run(f"fidelity {variant.name}", fidelity_variant, data_root, category, config, variant,
                           checkpoint, root)
            write_report(output_dir, config, identity)

    grid = figure(root, variants, keep)
    if grid is not None:
        grid.save(output_dir / f"figure-{category}.png")
    write_report(output_dir, config, identity)
    return output_dir / "ablation.md"


def main(argv=None) -> Path:
    """``train/ablate.py``: parse the command line, run the ablation of one category, print the report."""
    args = parse_args(argv)
    report = run(args.data_root, args.category, load_ablation_config(args.config), parse_variants(args.variants),
                 args.output_dir, args.base_checkpoint or None)
    print(report.read_text())
    print(f"Wrote {report}, ablation.csv, ablation.png and figure-{args.category}.png.")
    return report


