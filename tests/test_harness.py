"""The harness's views of the images: whole images at R x R, or crops at the images' own scale."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sard.config import load
from sard.evaluation.config import EvalConfig
from sard.evaluation.harness import (
    HeldOutSet,
    TrainingSet,
    evaluate_segmenter,
    random_crop,
    segmentation_loss,
    to_input,
    train_segmenter,
    working_size,
)


def _pair(height=40, width=60, box=(10, 20, 4, 6)):
    image = torch.arange(3 * height * width).reshape(3, height, width).remainder(251).to(torch.uint8)
    mask = torch.zeros(height, width, dtype=torch.bool)
    top, left, h, w = box
    mask[top : top + h, left : left + w] = True
    return image, mask


def test_working_size_scales_only_the_large_images():
    assert working_size((900, 900), 0) == (900, 900)
    assert working_size((900, 900), 450) == (450, 450)
    assert working_size((565, 230), 450) == (450, 183)  # 230 * 450 / 565 = 183.2
    assert working_size((300, 200), 450) == (300, 200)
    # fit_side: one field of view at several resolutions (ball_screw: 565 x 230 and 770 x 322) comes to one scale.
    assert working_size((770, 322), fit_side=565) == (565, 236)
    assert working_size((300, 200), fit_side=450) == (450, 300)  # scaled up too
    assert working_size((565, 230), fit_side=565) == (565, 230)


def test_scale_options_are_checked():
    from sard.config import ConfigError

    with pytest.raises(ConfigError, match="exclude each other"):
        load(EvalConfig, overrides={"crop": 64, "max_side": 128, "fit_side": 128})
    with pytest.raises(ConfigError, match="fit_side must be 0 or at least the crop"):
        load(EvalConfig, overrides={"crop": 64, "fit_side": 32})
    with pytest.raises(ConfigError, match="crop must be 0 or a multiple of 32"):
        load(EvalConfig, overrides={"crop": 40})


def test_crops_around_defects_hold_a_defect_pixel_and_match_the_image():
    image, mask = _pair()
    rng = np.random.default_rng(0)
    for _ in range(50):
        crop, crop_mask, valid = random_crop(image, mask, 16, rng, around_defect=True)
        assert crop.shape == (3, 16, 16) and crop_mask.shape == (16, 16) and valid.all()
        assert crop_mask.any()
        # The crop is a window of the image, and its mask the same window of the mask.
        windows = [(t, x) for t in range(40 - 15) for x in range(60 - 15)
                   if torch.equal(image[:, t : t + 16, x : x + 16], crop)]
        assert windows and any(torch.equal(mask[t : t + 16, x : x + 16], crop_mask) for t, x in windows)
    # Random crops mostly miss a 4 x 6 defect in a 40 x 60 image.
    hits = [random_crop(image, mask, 16, rng)[1].any().item() for _ in range(200)]
    assert 0 < sum(hits) < 100


def test_an_image_smaller_than_the_crop_is_padded_and_marked():
    image, mask = _pair(height=20, width=12, box=(2, 2, 3, 3))
    crop, crop_mask, valid = random_crop(image, mask, 32, np.random.default_rng(1), around_defect=True)
    assert torch.equal(crop[:, :20, :12], image) and not crop[:, 20:].any() and not crop[:, :, 12:].any()
    assert valid[:20, :12].all() and not valid[20:].any() and not valid[:, 12:].any()
    assert torch.equal(crop_mask[:20, :12], mask) and not crop_mask[~valid].any()


def test_padding_does_not_count_in_the_loss():
    torch.manual_seed(0)
    logits, target = torch.randn(2, 2, 8, 8), torch.rand(2, 8, 8) > 0.7
    valid = torch.zeros(2, 8, 8, dtype=torch.bool)
    valid[:, :5, :6] = True
    for kind in ("ce", "ce+dice"):
        padded = segmentation_loss(logits, target, kind, valid)
        # Changing the padded logits and targets changes nothing; the loss is that of the real pixels.
        other_logits, other_target = logits.clone(), target.clone()
        other_logits[~valid.unsqueeze(1).expand_as(logits)] = 5.0
        other_target[~valid] = True
        assert segmentation_loss(other_logits, other_target, kind, valid) == pytest.approx(padded.item())
        assert segmentation_loss(logits[:, :, :5, :6], target[:, :5, :6], kind).item() == pytest.approx(padded.item())
    # The defect weight of the cross-entropy, without padding, matches torch's weighted mean.
    weighted = segmentation_loss(logits, target, "ce", defect_weight=3.0)
    expected = torch.nn.functional.cross_entropy(logits, target.long(), weight=torch.tensor([1.0, 3.0]))
    assert weighted.item() == pytest.approx(expected.item())
    all_valid = torch.ones_like(valid)
    assert segmentation_loss(logits, target, "ce", all_valid, 3.0).item() == pytest.approx(expected.item())


def _records(tmp_path, sizes):
    import PIL.Image

    records = []
    for i, (height, width) in enumerate(sizes):
        image, mask = _pair(height, width, box=(height // 3, width // 3, 4, 5))
        PIL.Image.fromarray(image.permute(1, 2, 0).numpy()).save(tmp_path / f"{i}.png")
        PIL.Image.fromarray(mask.numpy().astype(np.uint8) * 255).save(tmp_path / f"{i}_mask.png")
        records.append({"image": str(tmp_path / f"{i}.png"), "mask": str(tmp_path / f"{i}_mask.png")})
    PIL.Image.fromarray(np.full((30, 50, 3), 90, np.uint8)).save(tmp_path / "good.png")
    return records + [{"image": str(tmp_path / "good.png"), "mask": None}]


def test_batches_of_crops_are_seeded_and_defect_crops_find_defects(tmp_path):
    config = load(EvalConfig, overrides={"crop": 32, "resolution": 32})
    data = TrainingSet.from_records(_records(tmp_path, [(40, 60), (64, 48), (20, 70)]), config)
    assert [tuple(im.shape) for im in data.images] == [(3, 40, 60), (3, 64, 48), (3, 20, 70), (3, 30, 50)]
    one = data.batch(np.random.default_rng([0, 3]), 16, 1.0, True, True, crop=32, defect_crop=1.0)
    two = data.batch(np.random.default_rng([0, 3]), 16, 1.0, True, True, crop=32, defect_crop=1.0)
    assert all(torch.equal(a, b) for a, b in zip(one, two))
    images, masks, valid = one
    assert images.shape == (16, 3, 32, 32) and masks.flatten(1).any(1).all()  # every crop holds its defect
    assert (~valid).any()  # the 20 px high image is padded
    normals = data.batch(np.random.default_rng(1), 8, 1e-9, False, False, crop=32)[1]
    assert not normals.any()


def test_whole_image_tests_count_every_pixel_at_the_working_scale(tmp_path):
    """Images of different sizes are predicted whole (padded to a multiple of 32 inside, cropped back)."""
    config = load(EvalConfig, overrides={"crop": 32, "max_side": 48, "steps": 2, "batch_size": 2, "segmenter": "unet",
                                    "unet_width": 4})
    records = _records(tmp_path, [(40, 60), (64, 48)])
    items = [("a", r["image"], r["mask"]) for r in records[:2]] + [("good", records[2]["image"], None)]
    test = HeldOutSet.load(items, config)
    assert [tuple(m.shape) for m in test.masks] == [(32, 48), (48, 36), (29, 48)]  # longer side 48
    model = train_segmenter(config, TrainingSet.from_records(records, config))
    counts = evaluate_segmenter(model, test, batch_size=2)
    assert counts["all"].total == 32 * 48 + 48 * 36 + 29 * 48 and counts["good"].total == 29 * 48
    assert counts["good"].tp == 0 and counts["good"].fn == 0


def test_a_wider_unet_is_built_from_the_width():
    config = load(EvalConfig, overrides={"segmenter": "unet", "unet_width": 8, "steps": 1, "batch_size": 1})
    assert config.segmenter_kwargs() == {"channels": (8, 16, 32, 64)}
    assert load(EvalConfig, overrides={"segmenter": "unet"}).segmenter_kwargs() == {}


def test_per_image_input_norm_standardises_each_image():
    """``per_image``: each image to zero mean and unit spread, whatever its brightness; a flat image stays finite
    (its spread counts as one grey level); ``fixed`` maps [0, 255] to [-1, 1]."""
    g = torch.Generator().manual_seed(0)
    dim = torch.randint(40, 60, (1, 3, 16, 16), generator=g, dtype=torch.int64)
    images = torch.cat([dim, dim * 3, torch.full_like(dim, 7)]).to(torch.uint8)
    x = to_input(images, "cpu", "per_image")
    assert torch.allclose(x.mean(dim=(1, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(x[:2].std(dim=(1, 2, 3)), torch.ones(2), atol=1e-5) and (x[2] == 0).all()
    assert torch.allclose(x[0], x[1], atol=1e-5)  # the same picture, three times as bright
    assert torch.equal(to_input(images, "cpu"), images.float() / 127.5 - 1.0)


def test_the_input_norm_is_the_same_in_training_and_testing(tmp_path, monkeypatch):
    """A segmenter trained on standardised images is tested on standardised images."""
    import sard.evaluation.harness as harness

    seen = []
    original = harness.to_input
    monkeypatch.setattr(harness, "to_input", lambda images, device, norm="fixed": seen.append(norm) or original(
        images, device, norm))
    config = load(EvalConfig, overrides={"steps": 2, "batch_size": 2, "segmenter": "unet", "unet_width": 4,
                                         "resolution": 32, "input_norm": "per_image"})
    records = _records(tmp_path, [(40, 60), (64, 48)])
    model = train_segmenter(config, TrainingSet.from_records(records, config))
    test = HeldOutSet.load([("a", r["image"], r["mask"]) for r in records[:2]], config)
    evaluate_segmenter(model, test, batch_size=2, norm=config.input_norm)
    assert seen == ["per_image"] * 3


def _tagged_set(methods):
    """One 8 x 8 pair per method, its image filled with the pair's index + 1, and one normal image (0)."""
    n = len(methods)
    images = [torch.full((3, 8, 8), i, dtype=torch.uint8) for i in range(1, n + 1)] + [torch.zeros(3, 8, 8).byte()]
    masks = [torch.ones(8, 8, dtype=torch.bool)] * n + [torch.zeros(8, 8, dtype=torch.bool)]
    anomalous = torch.tensor([True] * n + [False])
    return TrainingSet(images, masks, anomalous, torch.tensor([m == "real" for m in methods] + [False]))


def test_real_share_sets_how_often_a_union_draws_its_real_pairs():
    data = _tagged_set(["real", "sard", "sard", "sard"])
    drawn = data.batch(np.random.default_rng(0), 4000, 1.0, False, False)[0][:, 0, 0, 0]
    assert abs((drawn == 1).float().mean().item() - 0.25) < 0.03  # no share: every pair alike, 1 real of 4
    drawn = data.batch(np.random.default_rng(0), 4000, 1.0, False, False, real_share=0.8)[0][:, 0, 0, 0]
    assert abs((drawn == 1).float().mean().item() - 0.8) < 0.03
    assert set(drawn.tolist()) == {1, 2, 3, 4}  # the synthetic pairs share the rest alike


def test_without_a_share_batches_are_drawn_as_before():
    data = _tagged_set(["real", "sard", "sard"])
    untagged = TrainingSet(data.images, data.masks, data.anomalous)
    for share_free in (data, untagged):
        one = share_free.batch(np.random.default_rng([3, 1]), 32, 0.5, True, True)
        two = untagged.batch(np.random.default_rng([3, 1]), 32, 0.5, True, True)
        assert all(torch.equal(a, b) for a, b in zip(one[:2], two[:2]))
    # a share with pairs of one kind only changes nothing either
    only_synthetic = TrainingSet(data.images, data.masks, data.anomalous, torch.zeros(4, dtype=torch.bool))
    one = only_synthetic.batch(np.random.default_rng(5), 32, 0.5, False, False, real_share=0.7)
    two = untagged.batch(np.random.default_rng(5), 32, 0.5, False, False)
    assert torch.equal(one[0], two[0])


def test_records_tag_the_real_pairs(tmp_path):
    config = load(EvalConfig, overrides={"resolution": 32})
    records = _records(tmp_path, [(40, 60), (64, 48)])
    records[0]["method"], records[1]["method"] = "real", "sard"
    assert TrainingSet.from_records(records, config).real.tolist() == [True, False, False]
