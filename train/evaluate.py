"""What is a synthetic data set worth? Train the same segmenter on each method's set, test on real defects.

    python train/evaluate.py --data_root ROOT --category CAT --methods sard,cutpaste,draem,real \
        --checkpoint CKPT --output_dir OUT [--config CONFIG] [--key value ...]

For each category (``--category`` takes a comma-separated list) and method: synthesise
``n_per_defect`` pairs per defect type (``OUT/synthetic/<method>/<category>/``, resumable), train the
segmenter of the config on them plus the normal images (same seed and budget for every method), and
test it on the held-out two thirds of the real anomalies and ``test/good``. Writes ``OUT/results.csv``
(columns method,category,defect,iou,miou,acc, in percent), ``OUT/results.md`` and ``OUT/results.png``.
Finished (category, method) runs are kept in ``OUT/runs/`` and skipped when rerun with the same config,
so categories evaluated by separate commands into the same OUT share one table. ``--checkpoint`` is one
SARD pipeline, or one per category: ``magnetic_tile=PATH,ball_screw=PATH``. Every key of the config can be
overridden as ``--key value``. With ``accelerate launch``, synthesis is shared among the processes and
the methods are dealt out to them for training (on CPUs: ``ACCELERATE_USE_CPU=true accelerate launch
--multi_gpu --num_processes 2``, the way train/configs/eval-cpu.yaml fits 30 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
import yaml
from tqdm.auto import tqdm

from sard.datasets import DatasetError, read_dataset
from sard.evaluation import harness, report
from sard.evaluation.config import CONFIG_FIELDS, EvalConfig, EvalConfigError, load_config, parse_value
from sard.evaluation.metrics import Confusion
from sard.synthesis import METHODS, SynthesisSettings, synthesize_category
from sard.synthesis.writer import process_state, read_manifest


def parse_args(argv=None) -> tuple[argparse.Namespace, EvalConfig]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Every key of the config can be overridden as --key value.")
    parser.add_argument("--data_root", required=True)
    parser.add_argument("--category", required=True, help="a category, or several separated by commas")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of {', '.join(METHODS)}")
    parser.add_argument("--checkpoint", default="", help="SARD pipeline (for sard), or CAT=PATH,CAT=PATH")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--config", help="YAML file (train/configs/eval-*.yaml)")
    defaults = EvalConfig()
    for name in CONFIG_FIELDS:
        parser.add_argument(f"--{name}", default=None, metavar="V", help=f"(default: {getattr(defaults, name)})")
    args = parser.parse_args(argv)
    overrides = {n: parse_value(n, getattr(args, n)) for n in CONFIG_FIELDS if getattr(args, n) is not None}
    return args, load_config(args.config, overrides)


def checkpoints_by_category(value: str, categories: list[str]) -> dict[str, str]:
    if "=" not in value:
        return dict.fromkeys(categories, value)
    pairs = dict(part.split("=", 1) for part in value.split(",") if part)
    return {c: pairs.get(c, "") for c in categories}


def main(argv=None) -> None:
    started, started_cpu = time.perf_counter(), time.process_time()
    args, config = parse_args(argv)
    categories = [c for c in args.category.split(",") if c]
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"error: unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}.")
    checkpoints = checkpoints_by_category(args.checkpoint, categories)
    missing = [c for c in categories if "sard" in methods and not checkpoints[c]]
    if missing:
        raise SystemExit(f"error: the sard method needs --checkpoint for {', '.join(missing)} (or CAT=PATH,...).")
    state = process_state()
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    elif state.device.type == "cpu":
        local = int(os.environ.get("LOCAL_WORLD_SIZE", state.num_processes))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))
    output_dir = Path(args.output_dir)
    if state.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))

    for category in categories:
        try:
            dataset = read_dataset(args.data_root, category, config.data_format)
        except DatasetError as error:
            raise SystemExit(f"error: {error}") from None
        # 1. Synthesis, shared among the processes; resumable.
        synthetic, timings = {}, {}
        for method in methods:
            settings = SynthesisSettings(
                method=method, n_per_defect=config.n_per_defect, seed=config.seed,
                checkpoint=checkpoints[category] if method == "sard" else None,
                texture_dir=(config.texture_dir or None) if method == "draem" else None,
                foreground=config.foreground, augmentation=config.augmentation(), batch_size=config.sard_batch_size,
                num_inference_steps=config.num_inference_steps or None,
                background=config.background if method == "sard" else "clean",
                region_constraint=config.region_constraint or method != "sard",
            )
            start, cpu = time.perf_counter(), time.process_time()
            try:
                synthetic[method] = synthesize_category(args.data_root, category, output_dir / "synthetic" / method,
                                                        settings, config.data_format, state=state)
            except (ValueError, FileNotFoundError) as error:
                raise SystemExit(f"error: {method} on {category}: {error}") from None
            timings[method] = {"synthesis_seconds": round(time.perf_counter() - start, 1),
                               "synthesis_cpu_seconds": round(time.process_time() - cpu, 1), "settings": settings}

        # 2. One segmenter per method (methods dealt out to the processes), tested on the held-out set.
        items = harness.test_items(dataset)
        mine = methods[state.process_index :: state.num_processes]
        test = harness.HeldOutSet.load(items, config.resolution) if mine else None
        for method in mine:
            run_dir = output_dir / "runs" / category / method
            settings = timings[method]["settings"]
            fingerprint = {"config": config.identity(), "synthesis": settings.identity(), "category": category}
            if harness.load_counts(run_dir / "counts.json", fingerprint) is not None:
                continue
            start, cpu = time.perf_counter(), time.process_time()
            data = harness.TrainingSet.from_manifest(read_manifest(synthetic[method]), config.resolution)
            bar = tqdm(total=config.steps, desc=f"train {method} on {category}", dynamic_ncols=True,
                       disable=not state.is_local_main_process and state.num_processes > 1)

            def progress(step, loss, bar=bar):
                bar.update(1)
                if step % 20 == 0:
                    bar.set_postfix(loss=f"{loss:.3f}")

            model = harness.train_segmenter(config, data, state.device, progress)
            bar.close()
            trained, trained_cpu = time.perf_counter(), time.process_time()
            counts = harness.evaluate_segmenter(model, test, config.eval_batch_size, state.device)
            harness.save_counts(run_dir / "counts.json", counts, fingerprint)
            # Wall and CPU seconds (CPU: all threads of this process, so a busy machine does not inflate it).
            seconds = {**{k: v for k, v in timings[method].items() if k != "settings"},
                       "training_seconds": round(trained - start, 1),
                       "training_cpu_seconds": round(trained_cpu - cpu, 1),
                       "test_seconds": round(time.perf_counter() - trained, 1),
                       "test_cpu_seconds": round(time.process_time() - trained_cpu, 1),
                       "training_images": len(data.images), "test_images": len(items),
                       "threads": torch.get_num_threads(), "device": str(state.device)}
            (run_dir / "timing.json").write_text(json.dumps(seconds, indent=2))
        state.wait_for_everyone()

    # 3. The report: every (category, method) in OUT/runs evaluated with this config.
    if state.is_main_process:
        rows = []
        found = sorted(p.name for p in (output_dir / "runs").iterdir() if p.is_dir())
        for category in categories + [c for c in found if c not in categories]:
            for method in methods:
                path = output_dir / "runs" / category / method / "counts.json"
                if not path.is_file():
                    continue
                body = json.loads(path.read_text())
                if body["fingerprint"]["config"] != json.loads(json.dumps(config.identity())):
                    continue
                counts = {k: Confusion(**v) for k, v in body["counts"].items()}
                rows += harness.metric_rows(method, category, counts)
        weights = f"`{config.pretrained}`" if config.pretrained else "scratch"
        note = (f"Segmenter: {config.segmenter} from {weights}, {config.resolution} px, {config.steps} steps of "
                f"{config.batch_size}, seed {config.seed}; {config.n_per_defect} synthetic pairs per defect type "
                "plus the normal images.")
        paths = report.write_report(rows, output_dir, note)
        print(paths["md"].read_text())
        total = {"wall_seconds": round(time.perf_counter() - started, 1),
                 "cpu_seconds": round(time.process_time() - started_cpu, 1), "threads": torch.get_num_threads()}
        (output_dir / "timing.json").write_text(json.dumps(total, indent=2))
        print(f"Wrote {paths['csv']}, {paths['md']} and {paths['png']} "
              f"({total['wall_seconds'] / 60:.1f} min, {total['cpu_seconds'] / 60:.1f} CPU min in this process).")


if __name__ == "__main__":
    try:
        main()
    except EvalConfigError as error:
        raise SystemExit(f"error: {error}") from None
