"""The models the demo serves: every bundled checkpoint (found in its folder) and one given checkpoint, each
described by its model card and loaded on first use into a cache of bounded size."""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import BUNDLED_ROOT, DEFAULT_MODEL
from ..pipeline import SARDPipeline

# The weights the cache keeps loaded at most (the model in use always stays, however large): a bundled model is
# 14 MB, so every one of them fits; a large model of your own pushes the least recently used ones out.
DEFAULT_CACHE_BYTES = 2 * 1024**3


@dataclass
class ModelChoice:
    """One model the demo offers.

    Args:
        key (`str`): its name in the page's chooser value and in the API's ``model`` argument.
        label (`str`): what the chooser shows.
        load (`Callable[[], SARDPipeline]`): loads it (called on first use only).
        defect_types (`list[str]`, *optional*): its defect types, when known without loading it.
        steps (`int`, *optional*): its number of reverse steps ``T`` (the most, and the default), likewise.
        card (`str`): one line from its model card: what it was trained on, and the licences.
        checkpoint (`str`, *optional*): the folder or hub id it loads from.
    """

    key: str
    label: str
    load: Callable[[], SARDPipeline]
    defect_types: list[str] | None = None
    steps: int | None = None
    card: str = ""
    checkpoint: str | None = None

    @classmethod
    def from_checkpoint(
        cls, checkpoint: str | Path, key: str | None = None, label: str | None = None, device: str = "cpu"
    ) -> ModelChoice:
        """A checkpoint folder or Hugging Face Hub id; a folder's defect types and card are read without loading
        its weights, a hub id's types are known once it is loaded."""
        checkpoint = str(checkpoint)
        folder = Path(checkpoint).expanduser()
        types, steps = _read_config(folder)
        return cls(
            key=key or checkpoint,
            label=label or checkpoint,
            load=lambda: SARDPipeline.from_pretrained(checkpoint).to(device),
            defect_types=types,
            steps=steps,
            card=card_line(folder) if folder.is_dir() else f"From the Hugging Face Hub: {checkpoint}.",
            checkpoint=checkpoint,
        )

    @classmethod
    def from_pipeline(cls, pipe: SARDPipeline | Callable[[], SARDPipeline], key: str = "model") -> ModelChoice:
        """A pipeline already in memory, or a function that loads one (its types are known once loaded)."""
        if isinstance(pipe, SARDPipeline):
            return cls(key, key, lambda: pipe, pipe.defect_types, pipe.scheduler.config.num_train_timesteps)
        return cls(key, key, pipe)


def bundled_models(root: str | Path | None = None, device: str = "cpu") -> list[ModelChoice]:
    """Every checkpoint folder in ``root`` (default: :data:`BUNDLED_ROOT`, the package's own) that has a
    ``model_index.json``, :data:`DEFAULT_MODEL` first, then by name. Keys are the folder names; labels read them
    as words ("ball-screw": "Ball screw")."""
    root = Path(BUNDLED_ROOT if root is None else root)
    folders = sorted(p for p in root.iterdir() if (p / "model_index.json").is_file()) if root.is_dir() else []
    folders.sort(key=lambda p: p.name != DEFAULT_MODEL)
    return [ModelChoice.from_checkpoint(p, p.name, p.name.replace("-", " ").replace("_", " ").capitalize(), device)
            for p in folders]  # fmt: skip


def model_choices(checkpoint: str | None = None, root: str | Path | None = None, device: str = "cpu"):
    """The bundled models plus ``checkpoint`` (a folder or hub id), and the key of the default one:
    ``checkpoint`` when given (a bundled folder counts as that bundled model), else :data:`DEFAULT_MODEL`.

    Returns:
        `tuple[list[ModelChoice], str | None]`: the choices, and the default's key (None when there is none).
    """
    choices = bundled_models(root, device)
    if checkpoint is None:
        keys = [c.key for c in choices]
        return choices, (DEFAULT_MODEL if DEFAULT_MODEL in keys else (keys[0] if keys else None))
    path = Path(checkpoint).expanduser()
    for choice in choices:
        if path.is_dir() and path.resolve() == Path(choice.checkpoint).resolve():
            return choices, choice.key
    name = path.name if path.is_dir() else checkpoint
    given = ModelChoice.from_checkpoint(checkpoint, label=f"Your checkpoint: {name}", device=device)
    return [given, *choices], given.key


def _read_config(folder: Path) -> tuple[list[str] | None, int | None]:
    """Defect types and ``T`` from a checkpoint folder's configs, or None where they cannot be read (loading
    the checkpoint then says what is wrong)."""
    try:
        denoiser = json.loads((folder / "denoiser" / "config.json").read_text())
        scheduler = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
        types, steps = [str(t) for t in denoiser["defect_types"]], int(scheduler["num_train_timesteps"])
    except (OSError, ValueError, KeyError, TypeError):
        return None, None
    return (types, steps) if types and steps > 0 else (None, None)


def card_line(folder: str | Path) -> str:
    """One line from a checkpoint's model card (``README.md``, as ``train_sard.py`` writes it): the data it
    was trained on, the model's licence and the data's terms. "" without a card."""
    try:
        text = (Path(folder) / "README.md").read_text()
    except (OSError, UnicodeDecodeError):
        return ""
    licence = re.search(r"\A---\n.*?^license: *(\S+)", text, re.M | re.S)
    data = re.search(r"^(.+?), category `[^`]+`.*?Licence of the data: (.+?)\.?$", text, re.M)
    parts = []
    if data:
        parts.append(f"Trained on {data[1]}")
    if licence:
        parts.append(f"licence: {licence[1]}" + (f" (data: {data[2]})" if data else ""))
    return "; ".join(parts) + "." if parts else ""


def describe(choice: ModelChoice, defect_types: list[str], steps: int) -> str:
    """The page's line about the chosen model: its name, types and steps, and its card's line."""
    kinds = ", ".join(defect_types)
    line = f"**Model: {choice.label}**: {len(defect_types)} defect type{'s' * (len(defect_types) != 1)} ({kinds}), "
    return line + f"{steps} steps at most. {choice.card}".rstrip()


def pipeline_bytes(pipe: SARDPipeline) -> int:
    """The memory of a pipeline's weights and buffers, in bytes."""
    modules = [m for m in pipe.components.values() if isinstance(m, torch.nn.Module)]
    tensors = [t for m in modules for t in (*m.parameters(), *m.buffers())]
    return sum(t.numel() * t.element_size() for t in tensors)


class ModelCache:
    """The demo's models, each loaded on first use (once, also when several requests ask for it at the same
    time) and kept while the loaded weights stay within ``max_bytes``; past that, the least recently used
    models are dropped (and loaded again when asked for). The model just used always stays.

    Args:
        choices (`Sequence[ModelChoice]`): the models, keys unique.
        default (`str`, *optional*): the key of the model used when none is named (default: the first).
        max_bytes (`int`): the memory bound of the loaded weights.
    """

    def __init__(self, choices: Sequence[ModelChoice], default: str | None = None,
                 max_bytes: int = DEFAULT_CACHE_BYTES):  # fmt: skip
        self.choices = {choice.key: choice for choice in choices}
        if not self.choices or len(self.choices) != len(choices):
            raise ValueError("The demo needs at least one model, each with its own key.")
        self.default = default or next(iter(self.choices))
        if self.default not in self.choices:
            raise ValueError(f"The default model {self.default!r} is not one of {', '.join(self.choices)}.")
        self.max_bytes = max_bytes
        self._loaded: OrderedDict[str, tuple[SARDPipeline, int]] = OrderedDict()  # least recently used first
        self._loading = {key: threading.Lock() for key in self.choices}
        self._lock = threading.Lock()

    @classmethod
    def of(cls, models) -> ModelCache:
        """``models`` as a cache: a cache, a list of [`ModelChoice`], a pipeline, or a function that loads one."""
        if isinstance(models, ModelCache):
            return models
        if isinstance(models, (list, tuple)):
            return cls(models)
        return cls([ModelChoice.from_pipeline(models)])

    def choice(self, key: str | None) -> ModelChoice:
        """The model called ``key`` ("" or None: the default one).

        Raises:
            ValueError: no such model.
        """
        if not key:
            return self.choices[self.default]
        if key not in self.choices:
            raise ValueError(f"Unknown model {key!r:.80}; this demo serves: {', '.join(self.choices)}.")
        return self.choices[key]

    def get(self, key: str | None = None) -> SARDPipeline:
        """The pipeline of model ``key`` ("" or None: the default one), loaded if it is not in memory."""
        choice = self.choice(key)
        with self._loading[choice.key]:  # one load per model at a time; other models stay usable meanwhile
            with self._lock:
                if choice.key in self._loaded:
                    self._loaded.move_to_end(choice.key)
                    return self._loaded[choice.key][0]
            pipe = choice.load()
            with self._lock:
                self._loaded[choice.key] = (pipe, pipeline_bytes(pipe))
                while len(self._loaded) > 1 and sum(size for _, size in self._loaded.values()) > self.max_bytes:
                    self._loaded.popitem(last=False)
            return pipe

    def info(self, key: str | None = None) -> tuple[list[str], int]:
        """The defect types and ``T`` of model ``key``: from its folder's config, or by loading it."""
        choice = self.choice(key)
        if choice.defect_types is None or choice.steps is None:
            pipe = self.get(choice.key)
            choice.defect_types, choice.steps = pipe.defect_types, pipe.scheduler.config.num_train_timesteps
        return list(choice.defect_types), choice.steps

    def loaded(self) -> list[str]:
        """The keys of the models in memory, least recently used first."""
        with self._lock:
            return list(self._loaded)


def checkpoint_problem(checkpoint: str) -> str | None:
    """Why ``checkpoint`` cannot be loaded as a checkpoint, or None. A hub id (``owner/name``) is only
    checked when it is loaded."""
    path = Path(checkpoint).expanduser()
    if path.is_dir():
        if (path / "model_index.json").is_file():
            return None
        return (f"{checkpoint} is not a SARD checkpoint (it has no model_index.json): pass a folder that "
                "SARDPipeline.save_pretrained wrote, such as a training run's output or one of its checkpoint-* "
                "folders.")  # fmt: skip
    if path.exists():
        return f"{checkpoint} is a file: pass a checkpoint folder or a Hugging Face Hub id (owner/name)."
    if checkpoint.count("/") == 1 and not checkpoint.startswith((".", "/", "~")):
        return None
    return f"There is no folder {checkpoint}: pass a checkpoint folder or a Hugging Face Hub id (owner/name)."
