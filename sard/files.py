"""Files that are complete or absent: writes under a temporary name renamed into place, and SHA-256 checksums.

A process killed mid-write leaves at most a hidden ``.<name>.tmp-<pid>`` next to the target, never a truncated
target: readers (a resumed run, a report) see the previous version or the new one.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path next to ``path`` to write to; renamed over ``path`` when the block ends, removed if it
    raises. The parent folder is created; the name is hidden and unique per process, so processes writing the
    same file do not share a temporary.

    Example: ``with atomic_path(out / "image.png") as tmp: image.save(tmp, format="PNG")``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield temporary
        os.replace(temporary, path)  # atomic on POSIX and Windows: the file appears complete or not at all
    finally:
        temporary.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(text)


def write_json(path: str | os.PathLike, value) -> None:
    """Write ``value`` as indented JSON to ``path`` atomically."""
    write_text(path, json.dumps(value, indent=2))


def sha256(path: str | os.PathLike) -> str:
    """The hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
