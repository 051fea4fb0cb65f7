"""The page's examples: each is a normal image with a mask drawn for it (``<stem>_mask.png`` beside it: paint
where the defect goes, read as its alpha), a defect type and the model it is made for. Clicking one puts its
image in the file box and the editor, its mask on the editor's layer, and selects its type and model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import image_io


@dataclass(frozen=True)
class Example:
    """One example of the page.

    Args:
        image (`Path`): a normal (defect-free) image; its mask is ``<stem>_mask.png`` in the same folder.
        defect (`str`): the defect type to paint, one of the model's.
        model (`str`): the key of the model it is made for (see :mod:`sard.demo.models`).
        label (`str`): the text of its button.
    """

    image: Path
    defect: str
    model: str
    label: str

    @property
    def key(self) -> str:
        """Its name in the page (the image's stem)."""
        return Path(self.image).stem

    @property
    def mask_path(self) -> Path:
        return Path(self.image).with_name(f"{self.key}_mask.png")

    def editor_value(self) -> dict:
        """The editor's value for this example: the image, with its mask painted on a layer."""
        return {"background": str(self.image), "layers": [str(self.mask_path)], "composite": None}

    def mask(self) -> np.ndarray:
        """Its mask as a boolean `(H, W)` array of the image's size."""
        return image_io.decode_mask(self.mask_path)


def examples_for(model: str, examples: list[Example]) -> list[Example]:
    """The examples shown with ``model``: those made for it, or all of them when none is (each example then
    switches to its own model)."""
    return [e for e in examples if e.model == model] or list(examples)
