from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from tolerances import EXACT, PREPROCESS

from edgevit.data.datasets import calibration_images, load_dataset
from edgevit.data.preprocess import PreprocessSpec, preprocess_image, sample_photos
from edgevit.errors import DataError


def test_digits_split_is_fixed_stratified_and_disjoint():
    train, val, full = (load_dataset("digits", s) for s in ("train", "val", "all"))
    assert len(full) == 1797 and len(train) + len(val) == 1797
    assert full.classes == tuple("0123456789")
    # every class in both splits, about 20% validation each
    for c in range(10):
        n_val, n_all = (val.labels == c).sum(), (full.labels == c).sum()
        assert abs(n_val / n_all - 0.2) < 0.02
    again = load_dataset("digits", "val")
    assert all(np.array_equal(a, b) for a, b in zip(again.items, val.items))


def test_digits_upsampled_to_model_size():
    val = load_dataset("digits", "val").subset(range(8))
    x, y = val.arrays(PreprocessSpec(size=48, resize_mode="warp"))
    assert x.shape == (8, 3, 48, 48) and x.dtype == np.float32 and y.shape == (8,)
    PREPROCESS.check(x[:, 0] * 0.229 + 0.485, x[:, 1] * 0.224 + 0.456)  # grey


def _folder(root, classes=("cat", "dog"), per_class=3):
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(np.full((20, 30, 3), 40 * i, np.uint8)).save(root / c / f"{i}.png")
    return root


def test_image_folder(tmp_path):
    data = load_dataset(_folder(tmp_path / "d", per_class=5), "all")
    assert data.classes == ("cat", "dog") and len(data) == 10
    x, y = data.arrays(PreprocessSpec(size=16))
    assert x.shape == (10, 3, 16, 16) and sorted(set(y.tolist())) == [0, 1]


def test_bad_folders_name_themselves(tmp_path):
    with pytest.raises(DataError, match="neither 'digits' nor an existing folder"):
        load_dataset(tmp_path / "missing")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="has no images"):
        load_dataset(tmp_path / "empty")


def test_calibration_folder_errors_and_warnings(tmp_path):
    spec = PreprocessSpec(size=16)
    (tmp_path / "none").mkdir()
    with pytest.raises(DataError, match="none"):
        calibration_images(tmp_path / "none", 4, spec)
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(9):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(flat / f"{i}.jpg")
    (flat / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.warns(UserWarning, match="only 9"):
        x = calibration_images(flat, 10, spec)
    assert x.shape == (9, 3, 16, 16)
    assert calibration_images(flat, 2, spec).shape == (2, 3, 16, 16)  # as few as asked for is fine


def test_a_calibration_set_of_one_image_is_refused(tmp_path):
    """Issue 17, finding 11: one image gives meaningless activation ranges; it was only a warning."""
    spec = PreprocessSpec(size=16)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "only.jpg")
    with pytest.raises(DataError, match="has only 1 readable image.*fewer than 8.*'digits'"):
        calibration_images(tmp_path, 128, spec)
    assert calibration_images("digits", 5, spec).shape == (5, 3, 16, 16)


def test_undecodable_image_is_named(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG garbage")
    with pytest.raises(DataError, match="bad.png"):
        preprocess_image(bad, PreprocessSpec(size=8))


def test_crop_policy_matches_definition():
    _, photo = sample_photos(("chelsea",))[0]  # 300 x 451
    spec = PreprocessSpec(size=224, crop_pct=0.875)
    assert spec.resize_size == 256
    x = preprocess_image(photo, spec)
    assert x.shape == (3, 224, 224)
    nhwc = preprocess_image(photo, PreprocessSpec(size=224, layout="NHWC"))
    EXACT.check(nhwc.transpose(2, 0, 1), x)
