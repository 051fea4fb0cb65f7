"""Data set readers: the MVTec-AD, BTAD and plain-folder layouts, the protocol split, and bad files."""

from __future__ import annotations

import warnings

import numpy as np
import PIL.Image
import pytest
from fixtures import make_dataset

from sard.datasets import DatasetError, detect_format, load_mask, load_rgb, read_dataset


def _names(paths) -> list[str]:
    return [p.name for p in paths]


def _rel(anomalies, root) -> dict[str, list[tuple[str, str | None]]]:
    """Per defect type, ``(image, mask)`` paths relative to the category folder."""
    def rel(path):
        return path.relative_to(root).as_posix() if path else None

    return {d: [(rel(a.image), rel(a.mask)) for a in items] for d, items in anomalies.items()}


# ----------------------------------------------------------------------------------------------- layouts


def test_mvtec_layout(tmp_path):
    data = make_dataset(tmp_path, "mvtec", defects={"scratch": 4, "dent": 2}, n_good=3)
    dataset = read_dataset(tmp_path, "widget")
    assert dataset.data_format == "mvtec" and dataset.name == "widget" and dataset.root == data.root
    assert dataset.defect_types == ["dent", "scratch"]
    assert _rel(dataset.anomalies, data.root) == {
        "dent": [("test/dent/000.png", "ground_truth/dent/000_mask.png"),
                 ("test/dent/001.png", "ground_truth/dent/001_mask.png")],
        "scratch": [(f"test/scratch/{i:03d}.png", f"ground_truth/scratch/{i:03d}_mask.png") for i in range(4)],
    }
    assert [p.relative_to(data.root).as_posix() for p in dataset.train_good] == [
        "train/good/000.png", "train/good/001.png", "train/good/002.png"]
    assert _names(dataset.test_good) == ["000.png", "001.png", "002.png"]
    assert all(a.defect == d for d, items in dataset.anomalies.items() for a in items)


def test_mvtec_mask_is_stem_mask_not_another_file(tmp_path):
    """``<stem>_mask.png`` is the mask even when a file named ``<stem>.png`` sits in the same folder."""
    data = make_dataset(tmp_path, "mvtec", defects={"scratch": 3})
    decoy = data.root / "ground_truth" / "scratch" / "001.png"
    PIL.Image.new("L", (48, 40), 0).save(decoy)
    dataset = read_dataset(tmp_path, "widget")
    assert [a.mask.name for a in dataset.anomalies["scratch"]] == ["000_mask.png", "001_mask.png", "002_mask.png"]


def test_btad_layout(tmp_path):
    data = make_dataset(tmp_path, "btad", category="01", defects={"ko": 5}, n_good=2)
    dataset = read_dataset(tmp_path, "01")
    assert dataset.data_format == "btad" and dataset.defect_types == ["ko"]
    assert _rel(dataset.anomalies, data.root) == {
        "ko": [(f"test/ko/{i:03d}.bmp", f"ground_truth/ko/{i:03d}.png") for i in range(5)]
    }
    train_good = [p.relative_to(data.root).as_posix() for p in dataset.train_good]
    assert train_good == ["train/ok/000.bmp", "train/ok/001.bmp"]
    assert _names(dataset.test_good) == ["000.bmp", "001.bmp"]
    # .bmp images are read as RGB like any other.
    assert load_rgb(dataset.anomalies["ko"][0].image).mode == "RGB"


@pytest.mark.parametrize("mask_suffix", ["", "_mask"])
def test_folder_layout_with_defect_subfolders(tmp_path, mask_suffix):
    data = make_dataset(tmp_path, "folder", category="part", defects={"hole": 3, "burr": 2}, mask_suffix=mask_suffix)
    dataset = read_dataset(tmp_path, "part")
    assert dataset.data_format == "folder" and dataset.defect_types == ["burr", "hole"]
    assert _rel(dataset.anomalies, data.root) == {
        "burr": [(f"images/burr/{i:03d}.png", f"masks/burr/{i:03d}{mask_suffix}.png") for i in range(2)],
        "hole": [(f"images/hole/{i:03d}.png", f"masks/hole/{i:03d}{mask_suffix}.png") for i in range(3)],
    }
    assert [p.relative_to(data.root).as_posix() for p in dataset.train_good] == [
        "good/000.png", "good/001.png", "good/002.png"]
    # Without a test_good folder the normal images serve both roles.
    assert dataset.test_good == dataset.train_good


def test_flat_folder_is_one_defect_type(tmp_path):
    data = make_dataset(tmp_path, "folder", defects={"x": 4}, flat=True)
    dataset = read_dataset(data.root)  # the category folder itself, no category
    assert dataset.defect_types == ["defect"]
    expected = [(f"images/{i:03d}.png", f"masks/{i:03d}.png") for i in range(4)]
    assert _rel(dataset.anomalies, data.root) == {"defect": expected}


@pytest.mark.parametrize("layout", ["mvtec", "btad", "folder"])
def test_auto_detection_and_explicit_format_agree(tmp_path, layout):
    data = make_dataset(tmp_path, layout)
    assert detect_format(data.root) == layout
    auto = read_dataset(tmp_path, "widget")
    explicit = read_dataset(tmp_path, "widget", data_format=layout)
    assert auto.data_format == explicit.data_format == layout
    assert auto.anomalies == explicit.anomalies and auto.train_good == explicit.train_good
    # The category folder can be given directly as the root.
    assert read_dataset(data.root).anomalies == auto.anomalies


def test_missing_root_or_category_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="--data_root"):
        read_dataset(tmp_path / "nowhere", "widget")
    make_dataset(tmp_path, "mvtec")
    with pytest.raises(DatasetError, match="category 'bottle'.*--category"):
        read_dataset(tmp_path, "bottle")


def test_unknown_layout_names_the_supported_ones(tmp_path):
    (tmp_path / "widget" / "photos").mkdir(parents=True)
    with pytest.raises(DatasetError) as error:
        read_dataset(tmp_path, "widget")
    message = str(error.value)
    for expected in ("MVTec-AD", "BTAD", "images/", "--data_format"):
        assert expected in message
    with pytest.raises(DatasetError, match="data_format must be one of"):
        read_dataset(tmp_path, "widget", data_format="coco")


def test_layout_without_anomalies_or_normals_is_an_error(tmp_path):
    data = make_dataset(tmp_path, "mvtec", defects={"scratch": 2})
    for path in (data.root / "train" / "good").iterdir():
        path.unlink()
    with pytest.raises(DatasetError, match="no normal images"):
        read_dataset(tmp_path, "widget")
    (tmp_path / "empty" / "train" / "good").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no anomalous images"):
        read_dataset(tmp_path, "empty")


# ----------------------------------------------------------------------------------------------- images


def test_load_rgb_reads_every_mode_as_rgb(tmp_path):
    gray = np.array([[0, 100], [200, 255]], dtype=np.uint8)
    PIL.Image.fromarray(gray, mode="L").save(tmp_path / "l.png")
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 10, 20, 30, np.array([[0, 255], [128, 7]])
    PIL.Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    palette = PIL.Image.fromarray(np.array([[0, 1], [1, 2]], dtype=np.uint8), mode="P")
    palette.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 759)
    palette.save(tmp_path / "p.png")
    sixteen = PIL.Image.fromarray(np.array([[0, 65535], [25700, 257]], dtype=np.uint16))  # 257 * v -> v
    assert sixteen.mode == "I;16"
    sixteen.save(tmp_path / "i16.png")

    expected = {
        "l.png": np.repeat(gray[..., None], 3, axis=2),
        "rgba.png": rgba[..., :3],
        "p.png": np.array([[[255, 0, 0], [0, 255, 0]], [[0, 255, 0], [0, 0, 255]]], dtype=np.uint8),
        "i16.png": np.repeat(np.array([[0, 255], [100, 1]], dtype=np.uint8)[..., None], 3, axis=2),
    }
    for name, pixels in expected.items():
        image = load_rgb(tmp_path / name)
        assert image.mode == "RGB", name
        np.testing.assert_array_equal(np.asarray(image), pixels, err_msg=name)


def test_load_mask_binarises_at_half(tmp_path):
    PIL.Image.fromarray(np.array([[0, 127], [128, 255]], dtype=np.uint8)).save(tmp_path / "m.png")
    np.testing.assert_array_equal(load_mask(tmp_path / "m.png"), [[False, False], [True, True]])


# ----------------------------------------------------------------------------------------------- the split


def test_protocol_split_is_first_third_by_file_name(tmp_path):
    """Per type, sorted by file name (not by creation order): the first floor(n/3) train, the rest are held out."""
    data = make_dataset(tmp_path, "mvtec", defects={"scratch": 6, "dent": 3, "crack": 2, "hole": 5})
    train, held_out = read_dataset(tmp_path, "widget").split("protocol")
    assert {d: _names(a.image for a in items) for d, items in train.items()} == {
        "scratch": ["000.png", "001.png"],
        "dent": ["000.png"],
        "crack": [],
        "hole": ["000.png"],
    }
    assert {d: _names(a.image for a in items) for d, items in held_out.items()} == {
        "scratch": ["002.png", "003.png", "004.png", "005.png"],
        "dent": ["001.png", "002.png"],
        "crack": ["000.png", "001.png"],
        "hole": ["001.png", "002.png", "003.png", "004.png"],
    }
    assert train["scratch"][0].image == data.images("scratch")[0]


def test_split_all_trains_on_everything(tmp_path):
    make_dataset(tmp_path, "mvtec", defects={"scratch": 4, "dent": 2})
    dataset = read_dataset(tmp_path, "widget")
    train, held_out = dataset.split("all")
    assert train == dataset.anomalies and held_out == {"scratch": [], "dent": []}
    assert dataset.training_anomalies("all") == dataset.anomalies
    with pytest.raises(ValueError, match="protocol"):
        dataset.split("half")


# ----------------------------------------------------------------------------------------------- bad files


def test_every_bad_file_is_listed_in_one_error(tmp_path):
    data = make_dataset(
        tmp_path, "mvtec", defects={"scratch": 4, "dent": 3},
        problems={"missing_mask": ("scratch", 1), "mask_size": ("scratch", 2), "unreadable": ("scratch", 3),
                  "unreadable_mask": ("dent", 1), "unreadable_good": ("", 0), "empty_mask": ("dent", 0)},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning about the empty mask either: the data set is refused first
        with pytest.raises(DatasetError) as error:
            read_dataset(tmp_path, "widget")
    message = str(error.value)
    assert message.startswith(f"5 problem(s) in {data.root}")
    lines = message.splitlines()[1:]
    assert len(lines) == 5
    assert f"missing mask for {data.problems['missing_mask']}" in message
    assert f"mask of another size: {data.problems['mask_size']} is 40 x 48, its image 48 x 40" in message
    assert f"unreadable image: {data.problems['unreadable']}" in message
    assert f"unreadable mask: {data.problems['unreadable_mask']}" in message
    assert f"unreadable image: {data.problems['unreadable_good']}" in message
    assert str(data.problems["empty_mask"]) not in message  # an empty mask is not an error


@pytest.mark.parametrize("layout", ["mvtec", "btad", "folder"])
@pytest.mark.parametrize("problem", ["missing_mask", "mask_size", "unreadable"])
def test_each_problem_alone_fails_at_start(tmp_path, layout, problem):
    data = make_dataset(tmp_path, layout, problems=[problem])
    with pytest.raises(DatasetError, match="1 problem") as error:
        read_dataset(tmp_path, "widget")
    assert str(data.problems[problem]) in str(error.value)
    # check=False reads the layout without opening the files.
    assert read_dataset(tmp_path, "widget", check=False).data_format == layout


def test_empty_mask_is_a_warning_and_left_out_of_training(tmp_path):
    data = make_dataset(tmp_path, "mvtec", defects={"scratch": 6, "dent": 3}, problems=["empty_mask"])
    empty = data.problems["empty_mask"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = read_dataset(tmp_path, "widget")
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and str(empty) in messages[0] and messages[0].startswith("1 empty mask")
    assert [a.mask for a in dataset.empty_masks] == [empty]
    # Still part of the protocol split (the split is of files), but not trained on.
    train, _ = dataset.split()
    assert _names(a.image for a in train["scratch"]) == ["000.png", "001.png"]
    used = dataset.training_anomalies()
    assert _names(a.image for a in used["scratch"]) == ["001.png"]
    assert _names(a.image for a in used["dent"]) == ["000.png"]
