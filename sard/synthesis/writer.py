"""Write a synthetic data set in the MVTec-AD layout, with a manifest; resumable and sharded.

Layout of ``<output_dir>/<category>/``:

- ``test/<defect>/<k:04d>.png`` and ``ground_truth/<defect>/<k:04d>_mask.png``: the synthetic pairs;
- ``train/good/``: a copy of the source's normal images (the negatives every method's set includes);
- ``manifest.jsonl``: one line per file (pairs and normal images) with where it came from;
- ``synthesis.json``: the settings; a folder is only resumed with the same settings.

An item is done when its image exists: the mask is written first, then its manifest record, then the
image, each atomically (a temporary file renamed), so an interrupted run leaves no partial file and a
rerun skips exactly what is done. Items are dealt out to processes by position (``accelerate launch``
runs one process per GPU or per CPU share); each process writes its own manifest part, and the main
process merges the parts when all are done.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import PIL.Image
from tqdm.auto import tqdm

from ..datasets import read_dataset
from ..files import atomic_path, write_text
from ..loading import pipeline_digest
from ..processes import process_state
from .masks import MaskAugmentation
from .methods import Item, build_synthesizer

MANIFEST = "manifest.jsonl"
SETTINGS = "synthesis.json"


@dataclass
class SynthesisSettings:
    """What a synthetic set depends on.

    Attributes:
        method: "sard", "cutpaste", "draem" or "real".
        n_per_defect: pairs per defect type.
        seed: every item's randomness derives from (seed, defect type, k).
        checkpoint: the SARD pipeline (folder or hub id), for ``sard``.
        texture_dir: DRAEM's textures (default: the other categories' normal images, else procedural ones;
            ``synthesis.json`` records which).
        foreground: keep masks on the product (estimated from the normal images).
        augmentation: how training masks are varied (``sard``, ``real``; ``match_surroundings``: ``sard``).
        batch_size: images per pipeline call (``sard``).
        num_inference_steps: reverse steps (``sard``; default: the model's).
        background: ``"clean"`` or ``"noised"`` (``sard``; the pipeline's argument, an ablation).
        region_constraint: False lets the network update the whole crop (``sard``; the pipeline's argument, an
            ablation).
    """

    method: str
    n_per_defect: int
    seed: int = 0
    checkpoint: str | None = None
    texture_dir: str | None = None
    foreground: bool = True
    augmentation: MaskAugmentation = field(default_factory=MaskAugmentation)
    batch_size: int = 8
    num_inference_steps: int | None = None
    background: str = "clean"
    region_constraint: bool = True

    def identity(self) -> dict:
        """The settings that decide the pairs' content (not how many, nor how fast)."""
        values = dataclasses.asdict(self)
        for key in ("n_per_defect", "batch_size"):
            values.pop(key)
        # The sampling ablations only count when used: sets written before they existed stay valid.
        for key, default in (("background", "clean"), ("region_constraint", True)):
            if values[key] == default:
                values.pop(key)
        # Only SARD places training masks by their surroundings; the first draw is the placement of old.
        if values["augmentation"]["match_surroundings"] <= 1 or self.method != "sard":
            values["augmentation"].pop("match_surroundings")
        # A local checkpoint by its content too: other weights or settings at the same path are another model.
        if self.method == "sard" and self.checkpoint and (Path(self.checkpoint) / "model_index.json").is_file():
            values["pipeline_sha256"] = pipeline_digest(self.checkpoint)
        return values


def pair_paths(root: Path, item: Item) -> tuple[Path, Path]:
    return (root / "test" / item.defect / f"{item.k:04d}.png",
            root / "ground_truth" / item.defect / f"{item.k:04d}_mask.png")


def _atomic_save(image: PIL.Image.Image, path: Path) -> None:
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def _atomic_copy(source: Path, path: Path) -> None:
    with atomic_path(path) as tmp:
        shutil.copyfile(source, tmp)


def _check_settings(root: Path, settings: SynthesisSettings) -> None:
    path = root / SETTINGS
    if not path.is_file():
        return
    before = json.loads(path.read_text()).get("identity")
    now = json.loads(json.dumps(settings.identity()))
    if before != now:
        changed = sorted(k for k in set(before or {}) | set(now) if (before or {}).get(k) != now.get(k))
        raise ValueError(
            f"{root} holds a synthetic set made with other settings ({', '.join(changed)} differ). Pass another "
            "--output_dir, or delete that folder to start again."
        )


def plan(defect_types: list[str], n_per_defect: int) -> list[Item]:
    """Every item, defect types in sorted order, k = 0..n-1 within each."""
    return [Item(d, i, k) for i, d in enumerate(sorted(defect_types)) for k in range(n_per_defect)]


def merge_manifest(root: Path, items: list[Item], train_good: list[Path]) -> list[dict]:
    """Merge the processes' manifest parts into ``manifest.jsonl``: the planned items that are done (the
    last record of each), then the normal images."""
    records = {}
    for part in sorted((root / ".manifest").glob("part-*.jsonl")):
        for line in part.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                records[(record["defect"], record["k"])] = record
    lines = []
    for item in items:
        image, mask = pair_paths(root, item)
        if image.is_file() and (item.defect, item.k) in records:
            record = records[(item.defect, item.k)]
            lines.append({"image": str(image.relative_to(root)), "mask": str(mask.relative_to(root)), **record})
    for path in train_good:
        lines.append({"image": f"train/good/{path.name}", "mask": None, "defect": "good", "source": str(path)})
    write_text(root / MANIFEST, "".join(json.dumps(line) + "\n" for line in lines))
    return lines


def read_manifest(root: str | Path) -> list[dict]:
    """The manifest of a synthetic set, paths made absolute."""
    root = Path(root)
    path = root / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"No {MANIFEST} in {root}: synthesise the set first (synthesize_category).")
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for record in records:
        record["image"] = str(root / record["image"])
        record["mask"] = str(root / record["mask"]) if record["mask"] else None
    return records


def synthesize_category(
    data_root: str | Path,
    category: str | None,
    output_dir: str | Path,
    settings: SynthesisSettings,
    data_format: str = "auto",
    state=None,
    pipeline=None,
    progress: bool = True,
) -> Path:
    """Write ``settings.n_per_defect`` pairs per defect type of one category, skipping what is done.

    Args:
        state (`accelerate.PartialState`, *optional*): the process's place among the processes that share
            the work (default: a fresh one; one process when not launched with ``accelerate launch``).
        pipeline (`SARDPipeline`, *optional*): an already loaded pipeline for ``sard``.

    Returns:
        `Path`: the category folder of the synthetic set.
    """
    if settings.n_per_defect < 1:
        raise ValueError(f"n_per_defect must be at least 1, got {settings.n_per_defect}.")
    if state is None:
        state = process_state()
    dataset = read_dataset(data_root, category, data_format)
    root = Path(output_dir) / dataset.name
    _check_settings(root, settings)
    synthesizer = build_synthesizer(
        settings.method, dataset, settings.seed, settings.augmentation, settings.foreground, settings.checkpoint,
        pipeline, settings.texture_dir, settings.batch_size, settings.num_inference_steps,
        device=state.device if settings.method == "sard" and pipeline is None else None,
        background=settings.background, region_constraint=settings.region_constraint,
    )
    state.wait_for_everyone()
    if state.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        info = {"identity": settings.identity(), "n_per_defect": settings.n_per_defect,
                "data_root": str(data_root), "category": dataset.name, "foreground": synthesizer.foreground.describe()}
        if hasattr(synthesizer, "texture_source"):  # DRAEM: which textures filled the masks
            info["textures"] = synthesizer.texture_source
        (root / SETTINGS).write_text(json.dumps(info, indent=2))
    state.wait_for_everyone()

    items = plan(dataset.defect_types, settings.n_per_defect)
    mine = items[state.process_index :: state.num_processes]
    todo = [item for item in mine if not pair_paths(root, item)[0].is_file()]
    bar = tqdm(total=len(mine), initial=len(mine) - len(todo), desc=f"{settings.method} {dataset.name}",
               disable=not (progress and state.is_main_process), dynamic_ncols=True)
    part = root / ".manifest" / f"part-{state.process_index:03d}.jsonl"
    part.parent.mkdir(parents=True, exist_ok=True)
    with part.open("a") as records:
        for start in range(0, len(todo), synthesizer.batch_size):
            batch = todo[start : start + synthesizer.batch_size]
            for item, result in zip(batch, synthesizer(batch)):
                image_path, mask_path = pair_paths(root, item)
                _atomic_save(PIL.Image.fromarray(result.mask.astype(np.uint8) * 255), mask_path)
                records.write(json.dumps(result.record) + "\n")
                records.flush()
                _atomic_save(result.image, image_path)
                bar.update(1)
    bar.close()

    if state.is_main_process:
        good = root / "train" / "good"
        good.mkdir(parents=True, exist_ok=True)
        for path in dataset.train_good:
            if not (good / path.name).is_file():
                _atomic_copy(path, good / path.name)
    state.wait_for_everyone()
    if state.is_main_process:
        merge_manifest(root, items, dataset.train_good)
    state.wait_for_everyone()
    return root
