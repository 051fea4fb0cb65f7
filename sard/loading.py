"""Checks a checkpoint folder before diffusers reads it, so that a bad folder fails with a clear message.

diffusers imports whatever library and class ``model_index.json`` names; a SARD checkpoint may only
name SARD's own components, and its weights may only be safetensors files (a pickle can run code).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch

from .denoiser import SARDDenoiser
from .files import sha256

# model_index.json records where each component's class lives; these paths are part of the format.
COMPONENTS = {"denoiser": ("sard.denoiser", "SARDDenoiser"), "scheduler": ("sard.scheduler", "SARDScheduler")}
PIPELINE_CONFIG = {"resolution", "crop_size", "context", "max_crop_size"}  # whole numbers of pixels
PIPELINE_SWITCHES = {"grain"}  # true or false
PIPELINE_TABLES = {"grain_strength"}  # a positive number per defect type
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"}
WEIGHTS = "diffusion_pytorch_model.safetensors"


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be loaded; the message names the file and what to do."""


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{path} is missing; the checkpoint is incomplete. Save it again with save_pretrained.")
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path} is not valid JSON ({error}); the file is damaged.") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a JSON object; the file is damaged.")
    return data


def check_checkpoint(folder: str | Path) -> None:
    """Raise :class:`CheckpointError` unless ``folder`` is a loadable SARD checkpoint made of safetensors."""
    folder = Path(folder)
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        raise CheckpointError(
            f"{folder} is not a SARD checkpoint (no model_index.json). Pass a folder written by "
            "SARDPipeline.save_pretrained or by training (a run folder or one of its checkpoint-N folders), or a "
            "Hugging Face Hub id."
        )
    index = _read_json(index_path)
    if index.get("_class_name") != "SARDPipeline":
        raise CheckpointError(f"{index_path} describes a {index.get('_class_name')!r}, not a SARDPipeline.")
    for name, (module, class_name) in COMPONENTS.items():
        entry = index.get(name)
        if entry not in ([module, class_name], ["sard", class_name]):
            raise CheckpointError(f"{index_path}: {name!r} must be [{module!r}, {class_name!r}], found {entry!r}.")
    metadata = {"_class_name", "_diffusers_version", "_name_or_path"}
    unexpected = set(index) - set(COMPONENTS) - PIPELINE_CONFIG - PIPELINE_SWITCHES - PIPELINE_TABLES - metadata
    if unexpected:
        raise CheckpointError(f"{index_path} has unexpected entries: {', '.join(sorted(unexpected))}.")
    for key in PIPELINE_CONFIG & set(index):
        if not isinstance(index[key], int) or index[key] < 0:
            raise CheckpointError(f"{index_path}: {key} must be a non-negative integer, found {index[key]!r}.")
    for key in PIPELINE_SWITCHES & set(index):
        if not isinstance(index[key], bool):
            raise CheckpointError(f"{index_path}: {key} must be true or false, found {index[key]!r}.")
    for key in PIPELINE_TABLES & set(index):
        table = index[key]
        if not (isinstance(table, dict) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < math.inf for v in table.values())):
            raise CheckpointError(f"{index_path}: {key} must be a positive number per defect type, found "
                                  f"{table!r}.")

    component_dirs = [folder / name for name in COMPONENTS]
    for path in [*folder.iterdir(), *(p for d in component_dirs if d.is_dir() for p in d.iterdir())]:
        if path.suffix.lower() in PICKLE_SUFFIXES:
            raise CheckpointError(
                f"{path} is a pickle file, which can run code when loaded; SARD loads only safetensors weights. "
                "Remove it, or convert it: torch.load it yourself if you trust it, then save_pretrained."
            )
    config_path = folder / "denoiser" / "config.json"
    config = _read_json(config_path)
    _read_json(folder / "scheduler" / "scheduler_config.json")
    weights = folder / "denoiser" / WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"{weights} is missing; the checkpoint has no denoiser weights.")
    found = _safetensors_shapes(weights)
    if found is None:
        raise CheckpointError(f"{weights} is damaged or truncated; download or save the checkpoint again.")
    try:
        with torch.device("meta"):  # shapes only, no memory
            expected = {k: list(v.shape) for k, v in SARDDenoiser.from_config(config).state_dict().items()}
    except Exception as error:  # any constructor error means the config cannot describe a denoiser
        raise CheckpointError(f"{config_path} does not describe a SARD denoiser ({error}).") from None
    if expected != found:
        name = sorted(set(expected) ^ set(found) or {k for k in expected if expected[k] != found[k]})[0]
        raise CheckpointError(
            f"{config_path} does not match {weights.name}: {name} is {found.get(name, 'absent')} in the weights "
            f"but {expected.get(name, 'absent')} for the config. Use the config saved with these weights."
        )


def pipeline_digest(folder: str | Path) -> str:
    """SHA-256 of what decides a local checkpoint's output: the pipeline's settings in ``model_index.json``, the
    components' configs and the denoiser's weights. Records made with a model (a benchmark's counts, a synthetic
    set) keep it, so that new weights or settings at the same path are not taken for the old ones. Metadata
    (``_diffusers_version``, ``_name_or_path``...) is left out: saving again with another diffusers is the same
    model; so are the grain settings when grain is off, which is what a model saved before them does."""
    folder = Path(folder)

    def settings(path: Path) -> dict:
        return {k: v for k, v in _read_json(path).items() if not k.startswith("_")}

    pipeline = settings(folder / "model_index.json")
    # Off, the grain settings change nothing, and a model saved before them has none.
    grain = {"grain", "grain_strength"} if pipeline.get("grain") else set()
    pipeline = {k: v for k, v in pipeline.items() if k in PIPELINE_CONFIG or k in grain}
    parts = {"pipeline": pipeline,
             "denoiser": settings(folder / "denoiser" / "config.json"),
             "scheduler": settings(folder / "scheduler" / "scheduler_config.json"),
             "weights": sha256(folder / "denoiser" / WEIGHTS)}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _safetensors_shapes(path: Path) -> dict[str, list[int]] | None:
    """Tensor shapes from the file's header, or None when the header does not parse or the data it
    describes does not end exactly at the end of the file (a truncated or padded file)."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as handle:
            header_size = int.from_bytes(handle.read(8), "little")
            if header_size > size - 8:
                return None
            header = json.loads(handle.read(header_size))
        tensors = {k: v for k, v in header.items() if k != "__metadata__"}
        data_end = max((v["data_offsets"][1] for v in tensors.values()), default=0)
        shapes = {k: list(v["shape"]) for k, v in tensors.items()}
    except (ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError, AttributeError):
        return None
    return shapes if size == 8 + header_size + data_end else None
