"""Tiny synthetic anomaly data sets in the layouts the readers accept: MVTec-AD, BTAD and a plain folder.

:func:`make_dataset` writes one category of small images (default 40 x 48 px) with a textured background
and a bright rectangular defect per anomaly, each with its mask, and can plant the problems users run into
(a missing mask, a mask of another size, an unreadable file, an empty mask). File names are written in a
shuffled order and chosen so that a sort by name is not the creation order: tests of the protocol split
state the expected lists by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import PIL.Image

# A mask that should be empty is plain black; every other mask has a box of these proportions.
_BOX = (0.25, 0.3, 0.4)  # top, left, size as fractions of the image

PROBLEMS = ("missing_mask", "mask_size", "unreadable", "unreadable_mask", "unreadable_good", "empty_mask")


@dataclass
class FixtureData:
    """What :func:`make_dataset` wrote.

    Attributes:
        data_root: pass as ``--data_root``.
        category: pass as ``--category``.
        root: the category folder (``data_root / category``).
        anomalies: per defect type, ``(image, mask)`` sorted by file name (mask None when it was removed).
        train_good: the normal training images, sorted.
        problems: problem name -> the file it affects (the image for a missing mask, else the bad file).
    """

    data_root: Path
    category: str
    root: Path
    anomalies: dict[str, list[tuple[Path, Path | None]]] = field(default_factory=dict)
    train_good: list[Path] = field(default_factory=list)
    problems: dict[str, Path] = field(default_factory=dict)

    def images(self, defect: str) -> list[Path]:
        return [image for image, _ in self.anomalies[defect]]


def _names(count: int) -> list[str]:
    """``count`` stems in a creation order that differs from their sorted order (a reversed rotation)."""
    stems = [f"{i:03d}" for i in range(count)]
    return stems[1:][::-1] + stems[:1]


def _texture(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    height, width = size
    base = rng.integers(60, 120, (height, width, 1)) + rng.integers(-12, 13, (height, width, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


def _box(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    height, width = size
    top, left, side = _BOX
    r0 = int(top * height) + int(rng.integers(-3, 4))
    c0 = int(left * width) + int(rng.integers(-3, 4))
    mask = np.zeros(size, dtype=bool)
    mask[r0 : r0 + int(side * height), c0 : c0 + int(side * width)] = True
    return mask


def _save(pixels: np.ndarray, path: Path, mode: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = PIL.Image.fromarray(pixels)
    if mode == "L":
        image = image.convert("L")
    image.save(path)


def _save_mask(mask: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    PIL.Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(path)


def _paths(layout: str, root: Path, defect: str, stem: str, ext: str, mask_suffix: str, flat: bool):
    if layout == "mvtec":
        return root / "test" / defect / f"{stem}{ext}", root / "ground_truth" / defect / f"{stem}_mask.png"
    if layout == "btad":
        return root / "test" / "ko" / f"{stem}{ext}", root / "ground_truth" / "ko" / f"{stem}.png"
    images, masks = (root / "images", root / "masks") if flat else (root / "images" / defect, root / "masks" / defect)
    return images / f"{stem}{ext}", masks / f"{stem}{mask_suffix}.png"


def _good_dirs(layout: str, root: Path) -> tuple[Path, Path | None]:
    if layout == "mvtec":
        return root / "train" / "good", root / "test" / "good"
    if layout == "btad":
        return root / "train" / "ok", root / "test" / "ok"
    return root / "good", None


def make_dataset(
    data_root: Path,
    layout: str = "mvtec",
    category: str = "widget",
    defects: dict[str, int] | None = None,
    n_good: int = 3,
    size: tuple[int, int] = (40, 48),
    mode: str = "RGB",
    problems: dict[str, tuple[str, int]] | list[str] | tuple[str, ...] = (),
    mask_suffix: str = "",
    flat: bool = False,
    seed: int = 0,
) -> FixtureData:
    """Write one category of a tiny anomaly data set under ``data_root / category``.

    Args:
        layout: "mvtec" (``test/<defect>/``, ``ground_truth/<defect>/<stem>_mask.png``), "btad" (``train/ok``,
            ``test/ko/*.bmp``, ``ground_truth/ko/<stem>.png``; one defect type "ko") or "folder"
            (``images/<defect>/``, ``masks/<defect>/<stem><mask_suffix>.png``, ``good/``).
        defects: defect type -> number of anomalies (BTAD: only the count of the first entry is used).
        n_good: normal images for training (MVTec and BTAD also get as many test normals).
        size: ``(height, width)`` of every image.
        mode: "RGB" or "L" (grayscale, like Magnetic Tile).
        problems: a list of names from :data:`PROBLEMS`, each planted in the first defect type at a fixed
            position (empty_mask: sorted index 0, a training image of the protocol split; missing_mask: 1;
            mask_size: 2; unreadable / unreadable_mask: 3; unreadable_good: the first normal image), or a
            dict name -> ``(defect, sorted index)`` to choose the place.
        mask_suffix: for the folder layout, "" or "_mask".
        flat: for the folder layout, no defect sub-folders (``images/*``, ``masks/*``): one type "defect".
    """
    if layout not in ("mvtec", "btad", "folder"):
        raise ValueError(f"layout must be mvtec, btad or folder, got {layout!r}")
    defects = dict(defects or {"scratch": 4, "dent": 3})
    if layout == "btad" or flat:
        defects = {"ko" if layout == "btad" else "defect": next(iter(defects.values()))}
    if not isinstance(problems, dict):
        default_index = {"empty_mask": 0, "missing_mask": 1, "mask_size": 2, "unreadable": 3, "unreadable_mask": 3}
        first = next(iter(defects))
        problems = {p: (first, default_index.get(p, 0)) for p in problems}
    unknown = set(problems) - set(PROBLEMS)
    if unknown:
        raise ValueError(f"unknown problem(s) {sorted(unknown)}; known: {PROBLEMS}")

    rng = np.random.default_rng(seed)
    root = Path(data_root) / category
    data = FixtureData(Path(data_root), category, root)
    ext = ".bmp" if layout == "btad" else ".png"

    train_dir, test_dir = _good_dirs(layout, root)
    for folder in (train_dir, test_dir):
        if folder is None:
            continue
        for stem in _names(n_good):
            path = folder / f"{stem}{ext}"
            _save(_texture(rng, size), path, mode)
            if folder == train_dir:
                data.train_good.append(path)
    data.train_good.sort()

    for defect, count in defects.items():
        written = {}
        for stem in _names(count):
            image_path, mask_path = _paths(layout, root, defect, stem, ext, mask_suffix, flat)
            pixels = _texture(rng, size)
            mask = _box(size, rng)
            pixels[mask] = np.clip(pixels[mask].astype(int) + 110, 0, 255).astype(np.uint8)
            _save(pixels, image_path, mode)
            _save_mask(mask, mask_path)
            written[stem] = (image_path, mask_path)
        data.anomalies[defect] = [written[stem] for stem in sorted(written)]

    for problem, (defect, index) in problems.items():
        if problem == "unreadable_good":
            target = data.train_good[index]
            target.write_bytes(b"this is not an image")
            data.problems[problem] = target
            continue
        image_path, mask_path = data.anomalies[defect][index]
        if problem == "missing_mask":
            mask_path.unlink()
            data.anomalies[defect][index] = (image_path, None)
            data.problems[problem] = image_path
        elif problem == "mask_size":
            _save_mask(_box((size[0] + 8, size[1] - 8), rng), mask_path)
            data.problems[problem] = mask_path
        elif problem == "unreadable":
            image_path.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
            data.problems[problem] = image_path
        elif problem == "unreadable_mask":
            mask_path.write_bytes(b"not a mask")
            data.problems[problem] = mask_path
        elif problem == "empty_mask":
            _save_mask(np.zeros(size, dtype=bool), mask_path)
            data.problems[problem] = mask_path
    return data
