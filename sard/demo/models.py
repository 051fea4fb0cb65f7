"""The model the demo serves, loaded on first use, and the check of a checkpoint given on the command line."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from ..pipeline import SARDPipeline


class LazyPipeline:
    """A pipeline loaded on first use, once, also when several requests ask for it at the same time.

    Args:
        pipe_or_loader ([`SARDPipeline`] or callable): a pipeline, or a function without arguments that
            returns one (e.g. ``lambda: SARDPipeline.from_pretrained(path)``).
    """

    def __init__(self, pipe_or_loader: SARDPipeline | Callable[[], SARDPipeline]):
        self._pipe = pipe_or_loader if isinstance(pipe_or_loader, SARDPipeline) else None
        self._loader = None if self._pipe is not None else pipe_or_loader
        self._lock = threading.Lock()

    def get(self) -> SARDPipeline:
        with self._lock:
            if self._pipe is None:
                self._pipe = self._loader()
            return self._pipe


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
