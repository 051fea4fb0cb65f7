"""The benchmark of synthetic data (``train/evaluate.py``): what is a synthetic data set worth?

Train the same segmenter on each row's data, test it on real defects. A row (see :mod:`.rows`) is ``none``
(normal images only), a synthesis method (``sard``, ``cutpaste``, ``draem``, ``real``) or a union
(``real+sard``). For each category and seed: synthesise ``n_per_defect`` pairs per defect type with each method
the rows need (``OUT/synthetic/seed-S/<method>/<category>/``, resumable), train the config's segmenter on each
row's pairs plus the normal images (same seed and budget for every row), and test it on the held-out two thirds
of the real anomalies and ``test/good``. Each seed redoes the synthesis and the segmenter; the report gives the
mean and spread over the seeds and marks the differences the seeds cannot tell apart. Writes ``OUT/results.csv``
(means and spreads), ``OUT/results_seeds.csv`` (every seed), ``OUT/results.md`` and ``OUT/results.png``.
Finished (category, row, seed) runs are kept in ``OUT/runs/<category>/<row>/seed-S/`` and skipped when rerun
with the same config, so a run can be stopped and resumed, and categories evaluated by separate commands into
the same OUT share one table. Under ``accelerate launch``, synthesis is shared among the processes and the
(row, seed) trainings are dealt out to them.

:func:`run` is the benchmark; :func:`main` is the command line around it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch
import yaml
from tqdm.auto import tqdm

from .. import files
from ..config import ConfigError, add_override_arguments, load, parse_overrides
from ..datasets import read_dataset
from ..processes import process_state, set_threads
from ..synthesis import SynthesisSettings, synthesize_category
from ..synthesis.writer import SETTINGS, read_manifest
from . import aggregate, harness, report
from .config import EvalConfig
from .metrics import Confusion
from .rows import DEFAULT_ROWS, components, parse_rows, synthesis_methods


def parse_args(argv=None) -> tuple[argparse.Namespace, EvalConfig]:
    """The command line of ``train/evaluate.py``: ``(args, config)``."""
    parser = argparse.ArgumentParser(description="What is a synthetic data set worth? Train the same segmenter on "
                                     "each row's data, test on real defects.",
                                     epilog="Every key of the config can be overridden as --key value.")
    parser.add_argument("--data_root", required=True)
    parser.add_argument("--category", required=True, help="a category, or several separated by commas")
    parser.add_argument("--methods", default=",".join(DEFAULT_ROWS),
                        help="the rows, comma-separated: none, sard, cutpaste, draem, real, or a union such as "
                        "real+sard (default: %(default)s)")
    parser.add_argument("--seeds", default="", help="comma-separated seeds, each a whole comparison (default: the "
                        "config's seed)")
    parser.add_argument("--checkpoint", default="", help="SARD pipeline (for sard), or CAT=PATH,CAT=PATH")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--config", help="YAML file (the repository's train/configs/eval-*.yaml)")
    add_override_arguments(parser, EvalConfig)
    args = parser.parse_args(argv)
    try:
        args.seeds = [int(x) for x in args.seeds.split(",") if x.strip()] if args.seeds else []
    except ValueError:
        raise ConfigError(f"--seeds: cannot read {args.seeds!r} as comma-separated integers") from None
    return args, load(EvalConfig, args.config, parse_overrides(args, EvalConfig))


def checkpoints_by_category(value: str, categories: list[str]) -> dict[str, str]:
    if "=" not in value:
        return dict.fromkeys(categories, value)
    pairs = dict(part.split("=", 1) for part in value.split(",") if part)
    return {c: pairs.get(c, "") for c in categories}


def synthesis_settings(config: EvalConfig, method: str, seed: int, checkpoint: str) -> SynthesisSettings:
    return SynthesisSettings(
        method=method, n_per_defect=config.n_per_defect, seed=seed,
        checkpoint=checkpoint if method == "sard" else None,
        texture_dir=(config.texture_dir or None) if method == "draem" else None,
        foreground=config.foreground, augmentation=config.augmentation(), batch_size=config.sard_batch_size,
        num_inference_steps=config.num_inference_steps or None,
        background=config.background if method == "sard" else "clean",
        region_constraint=config.region_constraint or method != "sard",
    )


def training_records(synthetic: dict[str, Path], row: str, train_good: list[Path]) -> list[dict]:
    """The row's pairs (each of its methods' manifests, in order, each record with its ``method``) and then the
    category's normal images."""
    records = [dict(r, method=method) for method in components(row) for r in read_manifest(synthetic[method])
               if r["mask"] is not None]
    return records + [{"image": str(path), "mask": None} for path in train_good]


def run_config(config: EvalConfig, seed: int) -> EvalConfig:
    return dataclasses.replace(config, seed=seed)


def collect(output_dir: Path, categories: list[str], rows: list[str], seeds: list[int], config: EvalConfig):
    """Per-seed metric rows of every finished (category, row, seed) under ``OUT/runs`` made with this config,
    and per category the texture sources the DRAEM sets recorded."""
    per_seed, textures = [], {}
    runs = output_dir / "runs"
    found = sorted(p.name for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []
    for category in categories + [c for c in found if c not in categories]:
        for row in rows:
            for seed in seeds:
                path = runs / category / row / f"seed-{seed}" / "counts.json"
                if not path.is_file():
                    continue
                body = json.loads(path.read_text())
                if body["fingerprint"]["config"] != json.loads(json.dumps(run_config(config, seed).identity())):
                    continue
                counts = {k: Confusion(**v) for k, v in body["counts"].items()}
                per_seed += [{**r, "seed": seed} for r in harness.metric_rows(row, category, counts)]
                for method, source in body.get("textures", {}).items():
                    textures.setdefault(category, {}).setdefault(source, set()).add(method)
    return per_seed, textures


def describe(config: EvalConfig, seeds: list[int], textures: dict) -> str:
    weights = f"`{config.pretrained}`" if config.pretrained else "scratch"
    net = config.segmenter + (f" (width {config.unet_width})" if config.segmenter == "unet" else "")
    if config.crop:
        scale = (f"{config.fit_side} px on the longer side" if config.fit_side else
                 f"at most {config.max_side} px on the longer side" if config.max_side else "their own size")
        view = (f"{config.crop} px crops of the images at {scale} ({round(100 * config.defect_crop)} % of the pairs' "
                "crops around a defect), tested on whole images at that scale")
    else:
        view = f"whole images at {config.resolution} x {config.resolution} px"
    loss = config.loss + (f", defect weight {config.defect_weight:g}" if config.defect_weight != 1.0 else "")
    if config.input_norm != "fixed":
        view += ", each image standardised (zero mean, unit spread)"
    note = (f"Segmenter: {net} from {weights}, {view}; {config.steps} steps of {config.batch_size}, loss {loss}; "
            f"{config.n_per_defect} pairs per defect type and method plus the normal images"
            + (f" ({round(100 * config.real_share)} % of a union's pairs drawn from the real ones)"
               if config.real_share else "") + "; seeds "
            f"{', '.join(map(str, seeds))} (each seed: synthesis and segmenter).")
    for category, sources in textures.items():
        for source in sorted(sources):
            note += f" DRAEM textures on {category}: {source}."
    return note


def run_dir_of(output_dir: Path, category: str, seed: int, row: str) -> Path:
    """Where the (category, row, seed) run keeps its counts."""
    return output_dir / "runs" / category / row / f"seed-{seed}"


def run_fingerprint(config: EvalConfig, category: str, seed: int, row: str, checkpoint: str) -> dict:
    """What a (category, row, seed) run's counts depend on: the seeded config and its sets' synthesis settings."""
    return {"config": run_config(config, seed).identity(), "category": category,
            "synthesis": {m: synthesis_settings(config, m, seed, checkpoint).identity() for m in components(row)}}


def run(data_root: str | Path, categories: list[str], rows: list[str], seeds: list[int], checkpoints: dict[str, str],
        output_dir: str | Path, config: EvalConfig, state=None) -> dict[str, Path]:
    """The benchmark: for each category and seed, synthesise with every method the rows need, train one segmenter
    per (row, seed) and test it on the held-out real anomalies; then the report of every finished run in
    ``output_dir`` made with this config. Resumable: what is done (same settings) is skipped.

    Args:
        rows: as :func:`~sard.evaluation.rows.parse_rows` gives them (``none``, a method, or a union).
        checkpoints: category -> SARD pipeline (needed when a row uses ``sard``).
        state: accelerate's process state (:func:`sard.processes.process_state`; default: this process alone).

    Returns:
        The report's paths (``csv``, ``md``, ``png``, ``seeds_csv``) on the main process; ``{}`` on the others.
    """
    started, started_cpu = time.perf_counter(), time.process_time()
    methods = synthesis_methods(rows)
    missing = [c for c in categories if "sard" in methods and not checkpoints.get(c)]
    if missing:
        raise ConfigError(f"the sard rows need --checkpoint for {', '.join(missing)} (or CAT=PATH,...), or "
                          "leave them out of --methods on categories without a SARD model.")
    state = process_state() if state is None else state
    set_threads(config.num_threads, state)
    output_dir = Path(output_dir)
    if state.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))

    for category in categories:
        dataset = read_dataset(data_root, category, config.data_format)
        checkpoint = checkpoints.get(category, "")
        # What is left to do: the (seed, row) runs without counts made under the same settings. Decided before any
        # process writes, so that every process synthesises the same sets.
        units = [(seed, row) for seed in seeds for row in rows]
        fingerprints = {unit: run_fingerprint(config, category, *unit, checkpoint) for unit in units}
        pending = [u for u in units if harness.load_counts(run_dir_of(output_dir, category, *u) / "counts.json",
                                                           fingerprints[u]) is None]
        state.wait_for_everyone()

        # 1. Synthesis per seed and method that a pending run needs, shared among the processes; resumable.
        synthetic, timings, textures = {}, {}, {}
        needed = {(seed, method) for seed, row in pending for method in components(row)}
        for seed in seeds:
            for method in methods:
                if (seed, method) not in needed:
                    continue
                settings = synthesis_settings(config, method, seed, checkpoint)
                start, cpu = time.perf_counter(), time.process_time()
                try:
                    root = synthesize_category(data_root, category, output_dir / "synthetic" / f"seed-{seed}"
                                               / method, settings, config.data_format, state=state)
                except (ValueError, FileNotFoundError) as error:
                    raise ConfigError(f"{method} on {category}: {error}") from error
                synthetic[seed, method] = root
                timings[seed, method] = {"synthesis_seconds": round(time.perf_counter() - start, 1),
                                         "synthesis_cpu_seconds": round(time.process_time() - cpu, 1)}
                if method == "draem":
                    textures[seed] = json.loads((root / SETTINGS).read_text()).get("textures", "")

        # 2. One segmenter per pending (row, seed), dealt out to the processes, tested on the held-out set.
        items = harness.test_items(dataset)
        mine = pending[state.process_index :: state.num_processes]
        test = harness.HeldOutSet.load(items, config) if mine else None
        for seed, row in mine:
            run_dir = run_dir_of(output_dir, category, seed, row)
            seeded = run_config(config, seed)
            parts = components(row)
            fingerprint = fingerprints[seed, row]
            start, cpu = time.perf_counter(), time.process_time()
            records = training_records({m: synthetic[seed, m] for m in parts}, row, dataset.train_good)
            data = harness.TrainingSet.from_records(records, seeded)
            bar = tqdm(total=config.steps, desc=f"train {row} on {category}, seed {seed}", dynamic_ncols=True,
                       disable=not state.is_local_main_process and state.num_processes > 1)

            def progress(step, loss, bar=bar):
                bar.update(1)
                if step % 20 == 0:
                    bar.set_postfix(loss=f"{loss:.3f}")

            model = harness.train_segmenter(seeded, data, state.device, progress)
            bar.close()
            trained, trained_cpu = time.perf_counter(), time.process_time()
            counts = harness.evaluate_segmenter(model, test, config.eval_batch_size, state.device, config.input_norm)
            extra = {"textures": {"draem": textures[seed]}} if "draem" in parts else {}
            harness.save_counts(run_dir / "counts.json", counts, fingerprint, **extra)
            if config.save_segmenter:  # to look at its predictions: build_segmenter(...) then load_pretrained
                from safetensors.torch import save_file

                save_file({k: v.contiguous().cpu() for k, v in model.state_dict().items()},
                          run_dir / "segmenter.safetensors")
            # Wall and CPU seconds (CPU: all threads of this process, so a busy machine does not inflate it).
            seconds = {**{f"{m} {k}": v for m in parts for k, v in timings[seed, m].items()},
                       "training_seconds": round(trained - start, 1),
                       "training_cpu_seconds": round(trained_cpu - cpu, 1),
                       "test_seconds": round(time.perf_counter() - trained, 1),
                       "test_cpu_seconds": round(time.process_time() - trained_cpu, 1),
                       "training_images": len(data.images), "test_images": len(items),
                       "threads": torch.get_num_threads(), "device": str(state.device)}
            (run_dir / "timing.json").write_text(json.dumps(seconds, indent=2))
        state.wait_for_everyone()

    # 3. The report: every (category, row, seed) in OUT/runs evaluated with this config.
    if state.is_main_process:
        per_seed, textures = collect(output_dir, categories, rows, seeds, config)
        paths = report.write_report(aggregate.aggregate(per_seed), output_dir, describe(config, seeds, textures),
                                    per_seed)
        total = {"wall_seconds": round(time.perf_counter() - started, 1),
                 "cpu_seconds": round(time.process_time() - started_cpu, 1), "threads": torch.get_num_threads()}
        files.write_json(output_dir / "timing.json", total)
        return {**paths, "timing": output_dir / "timing.json"}
    return {}


def main(argv=None) -> dict[str, Path]:
    """``train/evaluate.py``: parse the command line, run the benchmark, print the table."""
    args, config = parse_args(argv)
    categories = [c for c in args.category.split(",") if c]
    try:
        rows = parse_rows(args.methods)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    checkpoints = checkpoints_by_category(args.checkpoint, categories)
    paths = run(args.data_root, categories, rows, args.seeds or [config.seed], checkpoints, args.output_dir, config)
    if paths:
        total = json.loads(paths["timing"].read_text())
        print(paths["md"].read_text())
        print(f"Wrote {paths['csv']}, {paths['md']} and {paths['png']} "
              f"({total['wall_seconds'] / 60:.1f} min, {total['cpu_seconds'] / 60:.1f} CPU min in this process).")
    return paths
