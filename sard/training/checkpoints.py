"""Checkpoints that survive being killed: written to a temporary folder, verified, then renamed.

A checkpoint folder ``checkpoint-N/`` is a loadable pipeline in diffusers layout (the EMA denoiser)
plus ``training_state/`` with what resuming needs. ``trainer_state.json`` is written last and holds a
SHA-256 of every file, so a folder that is incomplete or damaged is never picked up by ``--resume latest``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..files import sha256

STATE_FILE = "trainer_state.json"
_NAME = re.compile(r"^checkpoint-(\d+)$")


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != STATE_FILE)


def _fsync_tree(folder: Path) -> None:
    for path in [*folder.rglob("*"), folder]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save_checkpoint(
    output_dir: Path,
    step: int,
    pipeline,
    tensors: dict[str, dict[str, torch.Tensor]],
    objects: dict[str, dict],
    info: dict,
    total_limit: int,
) -> Path:
    """Write ``checkpoint-<step>`` atomically and keep only the newest ``total_limit`` checkpoints.

    Args:
        pipeline: saved with ``save_pretrained`` (what ``SARDPipeline.from_pretrained`` loads).
        tensors: name -> state dict of tensors, each saved as ``training_state/<name>.safetensors``.
        objects: name -> state dict with non-tensor parts (optimisers), saved with ``torch.save`` and read
            back with ``weights_only=True``, which cannot execute code.
        info: JSON-serialisable facts (step, wall time, ...) stored in ``trainer_state.json``.
    """
    final = output_dir / f"checkpoint-{step}"
    if final.exists():
        problem = verify_checkpoint(final)
        if problem is None:
            return final
        # A damaged folder of this step (never picked by --resume latest): the new save takes its place.
        warnings.warn(f"Replacing {final}: {problem}.", stacklevel=2)
    temporary = output_dir / f".checkpoint-{step}.partial"
    shutil.rmtree(temporary, ignore_errors=True)
    pipeline.save_pretrained(temporary)
    state_dir = temporary / "training_state"
    state_dir.mkdir()
    for name, state in tensors.items():
        save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, state_dir / f"{name}.safetensors")
    for name, state in objects.items():
        torch.save(state, state_dir / f"{name}.pt")
    checksums = {str(p.relative_to(temporary)): sha256(p) for p in _files(temporary)}
    (temporary / STATE_FILE).write_text(json.dumps({**info, "step": step, "sha256": checksums}, indent=2))
    _fsync_tree(temporary)
    if final.exists():
        shutil.rmtree(final)
    os.replace(temporary, final)  # atomic: the folder appears complete or not at all
    _prune(output_dir, total_limit, keep=final)
    return final


def _checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    if not output_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in output_dir.iterdir() if (m := _NAME.match(p.name)) and p.is_dir()]
    return sorted(found)


def _prune(output_dir: Path, total_limit: int, keep: Path) -> None:
    """Delete all but the newest ``total_limit`` checkpoints, and the leftovers of interrupted saves.

    ``keep`` (the checkpoint just written) survives even when newer folders exist, e.g. those of a run
    resumed from an earlier checkpoint, or damaged ones that ``--resume latest`` skips.
    """
    checkpoints = [(step, path) for step, path in _checkpoints(output_dir) if path != keep]
    for _, path in checkpoints[: max(0, len(checkpoints) + 1 - total_limit)]:
        shutil.rmtree(path, ignore_errors=True)
    for partial in output_dir.glob(".checkpoint-*.partial"):
        shutil.rmtree(partial, ignore_errors=True)


def verify_checkpoint(path: Path) -> str | None:
    """None if the checkpoint is complete and undamaged, else what is wrong with it."""
    state_path = path / STATE_FILE
    if not state_path.is_file():
        return f"{state_path.name} is missing (the save did not finish)"
    try:
        checksums = json.loads(state_path.read_text())["sha256"]
    except (ValueError, KeyError, TypeError):  # not JSON, or JSON of another shape
        return f"{state_path.name} is damaged"
    for name, expected in checksums.items():
        file = path / name
        if not file.is_file():
            return f"{name} is missing"
        if sha256(file) != expected:
            return f"{name} is damaged (checksum mismatch)"
    return None


def find_latest(output_dir: Path) -> Path | None:
    """The newest complete and undamaged checkpoint in ``output_dir``; damaged ones are skipped with a warning."""
    for _, path in reversed(_checkpoints(output_dir)):
        problem = verify_checkpoint(path)
        if problem is None:
            return path
        warnings.warn(f"Skipping {path}: {problem}.", stacklevel=2)
    return None


def resolve_resume(resume: str, output_dir: Path) -> Path | None:
    """The checkpoint ``--resume`` names: "latest" (None when there is none yet) or a folder."""
    if not resume:
        return None
    if resume == "latest":
        return find_latest(output_dir)
    path = Path(resume)
    problem = verify_checkpoint(path) if path.is_dir() else "no such folder"
    if problem:
        raise ValueError(f"Cannot resume from {path}: {problem}.")
    return path


def load_state(path: Path) -> tuple[dict, dict[str, dict[str, torch.Tensor]], dict[str, dict]]:
    """``(info, tensors, objects)`` as given to :func:`save_checkpoint`."""
    info = json.loads((path / STATE_FILE).read_text())
    state_dir = path / "training_state"
    tensors = {p.stem: load_file(p) for p in state_dir.glob("*.safetensors")}
    objects = {p.stem: torch.load(p, map_location="cpu", weights_only=True) for p in state_dir.glob("*.pt")}
    return info, tensors, objects
