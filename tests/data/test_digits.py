"""The embedded digits: arrays, splits, rendering, materialised folders."""

import os

from PIL import Image
import numpy as np
import pytest

from guided_diffusion.data import digits as digits
from guided_diffusion.data.image_folder import classes_from_file_names, list_image_files_recursively


def test_embedded_arrays_shape_range_and_class_counts():
    images, labels = digits.load_digits_arrays()
    assert images.shape == (1797, 8, 8) and images.dtype == np.uint8
    assert images.max() == 16 and images.min() == 0
    counts = np.bincount(labels)
    assert counts.sum() == 1797 and len(counts) == 10 and counts.min() >= 170


def test_npz_is_small():
    assert os.path.getsize(digits._NPZ_PATH) < 130_000


def test_splits_are_disjoint_cover_all_and_heldout_balanced():
    train, held = digits.split_indices("train"), digits.split_indices("heldout")
    assert len(held) == 300 and len(train) == 1497
    assert not set(train) & set(held)
    assert np.array_equal(np.sort(np.concatenate([train, held])), digits.split_indices("all"))
    _, labels = digits.load_digits_arrays()
    assert np.bincount(labels[held]).tolist() == [30] * 10


def test_split_is_fixed_across_calls():
    assert np.array_equal(digits.split_indices("heldout"), digits.split_indices("heldout"))


def test_unknown_split_lists_allowed():
    with pytest.raises(ValueError, match="train, heldout, all"):
        digits.split_indices("test")


def test_render_white_on_black_rgb_and_size():
    images8 = np.zeros((2, 8, 8), np.uint8)
    images8[1] = 16
    out = digits.render(images8, 16)
    assert out.shape == (2, 16, 16, 3) and out.dtype == np.uint8
    assert out[0].max() == 0 and out[1].min() == 255  # empty -> black, full ink -> white
    assert np.array_equal(out[..., 0], out[..., 2])


def test_render_at_8_keeps_scaled_values():
    images8, _ = digits.load_digits_arrays()
    out = digits.render(images8[:3], 8)
    np.testing.assert_array_equal(out[..., 1], np.round(images8[:3] * 255.0 / 16.0).astype(np.uint8))


def test_materialize_names_files_by_label_and_reuses(tmp_path):
    folder, reused = digits.materialize_digits("heldout", 12, root=tmp_path)
    assert not reused
    files = list_image_files_recursively(folder)
    assert len(files) == 300
    _, labels = digits.load_digits_arrays()
    idx = digits.split_indices("heldout")
    names = sorted(os.path.basename(f) for f in files)
    assert names == sorted(f"{labels[i]}_{i:05d}.png" for i in idx)
    assert sorted(set(classes_from_file_names(files))) == list(range(10))
    img = np.asarray(Image.open(files[0]))
    assert img.shape == (12, 12, 3)
    mtime = os.path.getmtime(files[0])
    folder2, reused2 = digits.materialize_digits("heldout", 12, root=tmp_path)
    assert folder2 == folder and reused2 and os.path.getmtime(files[0]) == mtime
    assert not [n for n in os.listdir(os.path.dirname(folder)) if n.startswith(".tmp")]


def test_incomplete_folder_is_rebuilt(tmp_path):
    folder = tmp_path / "digits" / "heldout_8px"
    folder.mkdir(parents=True)
    (folder / "0_00000.png").write_bytes(b"truncated")
    out, reused = digits.materialize_digits("heldout", 8, root=tmp_path)
    assert not reused and len(list_image_files_recursively(out)) == 300


def test_reference_npz_matches_rendered_heldout(tmp_path):
    path = tmp_path / "ref.npz"
    assert digits.write_reference_npz(path, image_size=16) == 300
    with np.load(path, allow_pickle=False) as f:
        arr, y = f["arr_0"], f["arr_1"]
    assert arr.shape == (300, 16, 16, 3) and arr.dtype == np.uint8 and y.dtype == np.int64
    images, labels, _ = digits.digits_images("heldout", 16)
    assert np.array_equal(arr, images) and np.array_equal(y, labels)


def test_resolve_data_dir_prefers_given_dir(tmp_path, monkeypatch):
    msgs = []
    assert digits.resolve_data_dir("/some/dir", 32, log=msgs.append) == ("/some/dir", False)
    monkeypatch.setenv("GUIDED_DIFFUSION_CACHE", str(tmp_path))
    folder, chosen = digits.resolve_data_dir("", 8, split="heldout", log=msgs.append)
    assert chosen and folder.startswith(str(tmp_path)) and "embedded digits" in msgs[-1]
