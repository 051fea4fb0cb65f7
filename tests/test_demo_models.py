"""The demo's models (bundled ones found in their folder, a given checkpoint, the cache) and its examples, without
Gradio."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from conftest import T, make_pipeline

from sard.demo import models
from sard.demo.editor import mask_from_editor
from sard.demo.examples import Example, examples_for
from sard.demo.models import ModelCache, ModelChoice

ROOT = Path(__file__).resolve().parents[1]
CARD = """---
license: cc-by-sa-4.0
library_name: diffusers
---

# SARD: widget defects

## Training data

Widget Set (widgets), category `widget` (mvtec layout). Licence of the data: CC BY 4.0.
"""


@pytest.fixture
def bundled(tmp_path) -> Path:
    """A checkpoints folder like ``sard/checkpoints``: two tiny models (one with a card) and a stray folder."""
    make_pipeline(defect_types=("scratch", "dent")).save_pretrained(tmp_path / "widget-plate")
    (tmp_path / "widget-plate" / "README.md").write_text(CARD)
    make_pipeline(defect_types=("crack",)).save_pretrained(tmp_path / models.DEFAULT_MODEL)
    (tmp_path / "notes").mkdir()
    return tmp_path


# --- which models ----------------------------------------------------------------------------------------------


def test_bundled_models_are_found_in_their_folder_default_first(bundled):
    found = models.bundled_models(bundled)
    assert [(c.key, c.label) for c in found] == [("magnetic-tile", "Magnetic tile"), ("widget-plate", "Widget plate")]
    assert [(c.defect_types, c.steps) for c in found] == [(["crack"], T), (["scratch", "dent"], T)]
    assert found[1].card == "Trained on Widget Set (widgets); licence: cc-by-sa-4.0 (data: CC BY 4.0)."
    assert found[0].card == ""  # no model card
    assert found[1].load().defect_types == ["scratch", "dent"]


def test_the_bundled_checkpoints_and_their_cards():
    found = {c.key: c for c in models.bundled_models()}
    assert {"magnetic-tile", "ball-screw"} <= set(found) and next(iter(found)) == "magnetic-tile"
    assert found["ball-screw"].defect_types == ["pitting"]
    assert found["magnetic-tile"].defect_types == ["blowhole", "break", "crack", "fray", "uneven"]
    assert "BSData" in found["ball-screw"].card and "cc-by-sa-4.0" in found["ball-screw"].card
    assert "Magnetic Tile Defect" in found["magnetic-tile"].card and "citation" in found["magnetic-tile"].card


def test_model_choices_add_a_given_checkpoint_first(bundled, tmp_path_factory):
    choices, default = models.model_choices(None, bundled)
    assert default == models.DEFAULT_MODEL and len(choices) == 2
    # A bundled folder given as the checkpoint is that bundled model.
    choices, default = models.model_choices(str(bundled / "widget-plate"), bundled)
    assert default == "widget-plate" and len(choices) == 2
    own = tmp_path_factory.mktemp("runs") / "my-parts"
    make_pipeline(defect_types=("chip",)).save_pretrained(own)
    choices, default = models.model_choices(str(own), bundled)
    assert default == str(own) and [c.key for c in choices] == [str(own), models.DEFAULT_MODEL, "widget-plate"]
    assert choices[0].label == "Your checkpoint: my-parts" and choices[0].defect_types == ["chip"]
    choices, default = models.model_choices("owner/name", bundled)
    assert default == "owner/name" and choices[0].defect_types is None  # known once it is downloaded
    assert "Hugging Face Hub" in choices[0].card


def test_describe_names_the_model_its_types_and_card(bundled):
    choice = models.bundled_models(bundled)[1]
    line = models.describe(choice, ["scratch", "dent"], 4)
    assert line.startswith("**Model: Widget plate**: 2 defect types (scratch, dent), 4 steps at most.")
    assert line.endswith(choice.card) and "\n" not in line
    assert "1 defect type (" in models.describe(choice, ["crack"], 4)


def test_checkpoint_problem(tmp_path):
    assert "no model_index.json" in models.checkpoint_problem(str(tmp_path))
    (tmp_path / "model_index.json").write_text("{}")
    assert models.checkpoint_problem(str(tmp_path)) is None
    assert "is a file" in models.checkpoint_problem(str(tmp_path / "model_index.json"))
    assert models.checkpoint_problem("owner/model") is None  # a hub id: checked when loaded
    assert "There is no folder" in models.checkpoint_problem(str(tmp_path / "missing"))


# --- the cache ---------------------------------------------------------------------------------------------------


def _counted(key: str, loads: list, seed: int = 0, types=("a", "b")) -> ModelChoice:
    def load():
        loads.append(key)
        return make_pipeline(seed, types)

    return ModelChoice(key, key.upper(), load, list(types), T)


def test_cache_loads_each_model_on_first_use_once():
    loads = []
    cache = ModelCache([_counted("a", loads), _counted("b", loads)])
    assert cache.info("b") == (["a", "b"], T) and not loads  # from the config, without loading
    threads = [threading.Thread(target=cache.get, args=("b",)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert loads == ["b"] and cache.loaded() == ["b"]
    assert cache.get("") is cache.get(None) is cache.get("a") and loads == ["b", "a"]  # "": the default, "a"


def test_cache_keeps_the_loaded_weights_within_its_bound():
    loads = []
    size = models.pipeline_bytes(make_pipeline())
    assert size > 1000
    cache = ModelCache([_counted(k, loads) for k in "abc"], max_bytes=2 * size)
    for key in "abcb":
        cache.get(key)
    assert cache.loaded() == ["c", "b"] and loads == ["a", "b", "c"]  # "a", least recently used, dropped
    cache.get("a")
    assert cache.loaded() == ["b", "a"] and loads == ["a", "b", "c", "a"]  # loaded again when asked for
    tiny = ModelCache([_counted(k, loads) for k in "xy"], max_bytes=1)
    tiny.get("x")
    tiny.get("y")
    assert tiny.loaded() == ["y"]  # the model in use stays, however large


def test_cache_errors_and_types_known_only_once_loaded():
    with pytest.raises(ValueError, match="Unknown model 'bottle'; this demo serves: a, b"):
        ModelCache([_counted("a", []), _counted("b", [])]).get("bottle")
    with pytest.raises(ValueError, match="each with its own key"):
        ModelCache([_counted("a", []), _counted("a", [])])
    with pytest.raises(ValueError, match="default model 'c'"):
        ModelCache([_counted("a", [])], default="c")
    loads = []
    lazy = ModelCache.of(lambda: loads.append(1) or make_pipeline(defect_types=("pit",)))
    assert not loads and lazy.info() == (["pit"], T) and loads == [1]
    pipe = make_pipeline()
    assert ModelCache.of(pipe).get() is pipe and ModelCache.of(pipe).info() == (["a", "b"], T)


# --- examples ------------------------------------------------------------------------------------------------------


def _examples(folder: Path) -> list[Example]:
    for name in ("tile_crack", "tile_fray", "ballscrew_pit"):
        for suffix in ("", "_mask"):
            shutil.copy(ROOT / "examples" / f"{name}{suffix}.png", folder)
    return [
        Example(folder / "tile_crack.png", "crack", "magnetic-tile", "A crack"),
        Example(folder / "tile_fray.png", "fray", "magnetic-tile", "A band"),
        Example(folder / "ballscrew_pit.png", "pitting", "ball-screw", "A pit"),
    ]


def test_examples_for_a_model_or_all(tmp_path):
    crack, fray, pit = _examples(tmp_path)
    assert examples_for("magnetic-tile", [crack, fray, pit]) == [crack, fray]
    assert examples_for("ball-screw", [crack, fray, pit]) == [pit]
    assert examples_for("my-model", [crack, fray, pit]) == [crack, fray, pit]  # each then picks its model


def test_example_masks_read_the_same_as_editor_layers_and_as_mask_files(tmp_path):
    for example in _examples(tmp_path):
        mask = example.mask()
        image = PIL.Image.open(example.image)
        assert mask.shape == image.size[::-1] and 0 < mask.mean() < 0.5
        value = {**example.editor_value(), "background": image}
        assert np.array_equal(np.asarray(mask_from_editor(value)) > 0, mask)
