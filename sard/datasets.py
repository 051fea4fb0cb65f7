"""Readers for anomaly data sets in the layouts users bring: MVTec-AD, BTAD and a plain folder.

Each reader returns a :class:`DefectDataset`: the normal images and, per defect type, the anomalous
images with their masks, sorted by file name. :meth:`DefectDataset.split` applies the protocol of the
field (AnomalyDiffusion, FAST, SARD): per defect type the first floor(n/3) anomalies train the
generator, the other two thirds are held out for testing.

Layouts (images in any format PIL reads; any size and mode):

- ``mvtec``: ``<root>/<category>/train/good/*``, ``test/good/*``, ``test/<defect>/*``,
  ``ground_truth/<defect>/<stem>_mask.*``
- ``btad``: ``<root>/<category>/train/ok/*``, ``test/ok/*``, ``test/ko/*``, ``ground_truth/ko/<stem>.*``
- ``folder``: ``<root>/[<category>/]images/[<defect>/]*``, ``masks/[<defect>/]<stem>[_mask].*`` and the
  normal images in ``good/*`` (a flat ``images/`` folder is one defect type called "defect")
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import PIL.Image

from . import image_io

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
FORMATS = ("mvtec", "btad", "folder")


class DatasetError(ValueError):
    """A data set that cannot be used as it is; the message lists every problem found."""


@dataclass(frozen=True)
class Anomaly:
    """An anomalous image, its mask and its defect type."""

    image: Path
    mask: Path | None
    defect: str


@dataclass
class DefectDataset:
    """The files of one category.

    Attributes:
        root: the category folder.
        name: the category name.
        data_format: "mvtec", "btad" or "folder".
        train_good / test_good: normal images, sorted by name.
        anomalies: per defect type, the anomalous images sorted by file name.
        empty_masks: anomalies whose mask has no defect pixel (labels with nothing to learn from).
    """

    root: Path
    name: str
    data_format: str
    train_good: list[Path]
    test_good: list[Path]
    anomalies: dict[str, list[Anomaly]]
    empty_masks: list[Anomaly] = field(default_factory=list)

    @property
    def defect_types(self) -> list[str]:
        return sorted(self.anomalies)

    def split(self, split: str = "protocol") -> tuple[dict[str, list[Anomaly]], dict[str, list[Anomaly]]]:
        """``(train, held_out)`` per defect type.

        ``"protocol"``: the first floor(n/3) by file name train, the rest are held out.
        ``"all"``: every anomaly trains and none is held out (a user's own few defects).
        """
        if split == "all":
            return {d: list(a) for d, a in self.anomalies.items()}, {d: [] for d in self.anomalies}
        if split != "protocol":
            raise ValueError(f"split must be 'protocol' or 'all', got {split!r}.")
        train, held_out = {}, {}
        for defect, items in self.anomalies.items():
            n_train = len(items) // 3
            train[defect], held_out[defect] = items[:n_train], items[n_train:]
        return train, held_out

    def training_anomalies(self, split: str = "protocol") -> dict[str, list[Anomaly]]:
        """The anomalies that train the generator: the training split without the empty masks."""
        empty = set(self.empty_masks)
        return {d: [a for a in items if a not in empty] for d, items in self.split(split)[0].items()}


def _images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def _find_mask(folder: Path, stem: str, suffixes: tuple[str, ...]) -> Path | None:
    for suffix in suffixes:
        for path in _images(folder):
            if path.stem == stem + suffix:
                return path
    return None


def detect_format(category_root: Path) -> str:
    """Guess the layout of a category folder from its sub-folders."""
    if (category_root / "train" / "good").is_dir() or (category_root / "test" / "good").is_dir():
        return "mvtec"
    if (category_root / "train" / "ok").is_dir() or (category_root / "test" / "ko").is_dir():
        return "btad"
    if (category_root / "images").is_dir():
        return "folder"
    raise DatasetError(
        f"{category_root} looks like none of the supported layouts: MVTec-AD (train/good, test/<defect>, "
        "ground_truth/<defect>), BTAD (train/ok, test/ko, ground_truth/ko) or a plain folder (images/, masks/, "
        "good/). Pass --data_format or fix the folder."
    )


def _read_mvtec(root: Path) -> tuple[list[Path], list[Path], dict[str, list[Anomaly]]]:
    anomalies = {}
    test = root / "test"
    for defect_dir in sorted(p for p in test.iterdir() if p.is_dir() and p.name != "good") if test.is_dir() else []:
        masks = root / "ground_truth" / defect_dir.name
        anomalies[defect_dir.name] = [
            Anomaly(path, _find_mask(masks, path.stem, ("_mask", "")), defect_dir.name)
            for path in _images(defect_dir)
        ]
    return _images(root / "train" / "good"), _images(root / "test" / "good"), anomalies


def _read_btad(root: Path) -> tuple[list[Path], list[Path], dict[str, list[Anomaly]]]:
    masks = root / "ground_truth" / "ko"
    anomalies = [Anomaly(p, _find_mask(masks, p.stem, ("", "_mask")), "ko") for p in _images(root / "test" / "ko")]
    return _images(root / "train" / "ok"), _images(root / "test" / "ok"), {"ko": anomalies} if anomalies else {}


def _read_folder(root: Path) -> tuple[list[Path], list[Path], dict[str, list[Anomaly]]]:
    images, masks = root / "images", root / "masks"
    anomalies = {}
    subfolders = sorted(p for p in images.iterdir() if p.is_dir()) if images.is_dir() else []
    groups = [(p.name, p, masks / p.name) for p in subfolders] or [("defect", images, masks)]
    for defect, image_dir, mask_dir in groups:
        found = [Anomaly(p, _find_mask(mask_dir, p.stem, ("", "_mask")), defect) for p in _images(image_dir)]
        if found:
            anomalies[defect] = found
    good = _images(root / "good")
    # Without a separate test folder the normal images serve both roles.
    return good, _images(root / "test_good") or good, anomalies


_READERS = {"mvtec": _read_mvtec, "btad": _read_btad, "folder": _read_folder}


def _image_size(path: Path) -> tuple[int, int] | None:
    try:
        with PIL.Image.open(path) as image:
            image.verify()
        with PIL.Image.open(path) as image:
            return image.size
    except Exception:  # any decoding error means the file is unusable; the caller lists it
        return None


def check_files(dataset: DefectDataset) -> tuple[list[str], list[Anomaly]]:
    """Every problem of the data set as one line each, and the anomalies whose masks are empty."""
    problems, empty = [], []
    for path in dataset.train_good + dataset.test_good:
        if _image_size(path) is None:
            problems.append(f"unreadable image: {path}")
    for items in dataset.anomalies.values():
        for anomaly in items:
            size = _image_size(anomaly.image)
            if size is None:
                problems.append(f"unreadable image: {anomaly.image}")
            if anomaly.mask is None:
                problems.append(f"missing mask for {anomaly.image}")
                continue
            mask_size = _image_size(anomaly.mask)
            if mask_size is None:
                problems.append(f"unreadable mask: {anomaly.mask}")
            elif size is not None and mask_size != size:
                problems.append(
                    f"mask of another size: {anomaly.mask} is {mask_size[0]} x {mask_size[1]}, "
                    f"its image {size[0]} x {size[1]}"
                )
            elif not load_mask(anomaly.mask).any():
                empty.append(anomaly)
    return problems, empty


def read_dataset(
    data_root: str | Path, category: str | None = None, data_format: str = "auto", check: bool = True
) -> DefectDataset:
    """Read one category of a data set.

    Args:
        data_root: the data set root (or the category folder itself when ``category`` is None).
        category: the category's sub-folder, e.g. ``"bottle"``, ``"01"`` or ``"magnetic_tile"``.
        data_format: "mvtec", "btad", "folder" or "auto" (guess from the folders).
        check: open every file and fail with one message listing every bad one (unreadable files, missing
            masks, masks of another size). Empty masks are not errors: they are listed in ``empty_masks``
            with one warning that names them, and left out of training.

    Raises:
        DatasetError: the folder is missing or not a known layout, has no anomalies, or has bad files.
    """
    root = Path(data_root) / category if category else Path(data_root)
    if not root.is_dir():
        where = f"category {category!r} under {data_root}" if category else str(data_root)
        raise DatasetError(f"No data set folder at {root} ({where}); check --data_root and --category.")
    if data_format == "auto":
        data_format = detect_format(root)
    if data_format not in _READERS:
        raise DatasetError(f"data_format must be one of {', '.join(FORMATS)} or auto, got {data_format!r}.")
    train_good, test_good, anomalies = _READERS[data_format](root)
    dataset = DefectDataset(root, category or root.name, data_format, train_good, test_good, anomalies)
    if not anomalies:
        raise DatasetError(f"{root} ({data_format} layout) holds no anomalous images with masks.")
    if not train_good:
        raise DatasetError(f"{root} ({data_format} layout) holds no normal images to paint defects into.")
    if check:
        problems, dataset.empty_masks = check_files(dataset)
        if problems:
            listing = "\n  ".join(problems)
            raise DatasetError(f"{len(problems)} problem(s) in {root}; fix or remove these files:\n  {listing}")
        if dataset.empty_masks:
            names = ", ".join(str(a.mask) for a in dataset.empty_masks)
            warnings.warn(
                f"{len(dataset.empty_masks)} empty mask(s), skipped for training: {names}", stacklevel=2
            )
    return dataset


def load_rgb(path: Path) -> PIL.Image.Image:
    """An image file as 8-bit RGB, whatever its mode (grayscale is replicated, 16-bit scaled, alpha dropped)."""
    decoded = image_io.decode_image(path)
    rgb = image_io.to_unit_rgb(decoded.pixels, decoded)
    return PIL.Image.fromarray(np.rint(rgb * 255.0).astype(np.uint8))


def load_mask(path: Path) -> np.ndarray:
    """A mask file as a boolean array (white = defect, binarised at 0.5)."""
    return image_io.decode_mask(path)


def anomaly_pixels(anomalies: list[Anomaly]):
    """Each anomaly that has a mask as ``(float RGB image in [0, 1], bool mask)`` at full resolution, read one at
    a time (a generator)."""
    for anomaly in anomalies:
        if anomaly.mask is not None:
            yield np.asarray(load_rgb(anomaly.image), dtype=np.float64) / 255.0, load_mask(anomaly.mask)
