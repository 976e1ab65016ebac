"""The two interpolation sources: folder and npz reading, index parsing, size checks."""

import numpy as np
import pytest
from PIL import Image

from guided_diffusion.sampling.interp_sources import check_model_size, folder_sources, npz_sources, parse_indices


def _write(folder, name, array):
    Image.fromarray(array).save(folder / name)


def _images(n, size=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_parse_indices():
    assert parse_indices("3, 0") == (3, 0)
    for bad in ("1", "1,2,3", "a,b", "-1,2", ""):
        with pytest.raises(ValueError, match="--indices must be two non-negative integers"):
            parse_indices(bad)


def test_folder_sources_follow_the_loader_order_and_keep_pixels(tmp_path):
    imgs = _images(3)
    (tmp_path / "sub").mkdir()
    _write(tmp_path, "b.png", imgs[1])
    _write(tmp_path, "a.png", imgs[0])
    _write(tmp_path / "sub", "c.png", imgs[2])
    got, paths = folder_sources(str(tmp_path))
    assert np.array_equal(got, imgs[:2]) and paths[0].endswith("a.png")
    got, paths = folder_sources(str(tmp_path), (2, 0))
    assert np.array_equal(got, imgs[[2, 0]]) and paths[0].endswith("c.png")


def test_folder_sources_of_different_sizes_are_refused(tmp_path):
    _write(tmp_path, "a.png", _images(1, 8)[0])
    _write(tmp_path, "b.png", _images(1, 16)[0])
    with pytest.raises(ValueError, match=r"different sizes, 8x8 .*a\.png.* and 16x16 .*b\.png"):
        folder_sources(str(tmp_path))


def test_folder_errors_name_the_flag(tmp_path):
    with pytest.raises(ValueError, match="--data_dir .* is not a folder"):
        folder_sources(str(tmp_path / "missing"))
    _write(tmp_path, "a.png", _images(1)[0])
    with pytest.raises(ValueError, match="has 1 images, so indices run from 0 to 0"):
        folder_sources(str(tmp_path))


def test_npz_sources_pick_rows(tmp_path):
    imgs = _images(4)
    np.savez(tmp_path / "s.npz", arr_0=imgs, arr_1=np.arange(4))
    assert np.array_equal(npz_sources(str(tmp_path / "s.npz"), (3, 1)), imgs[[3, 1]])
    with pytest.raises(ValueError, match="--indices 0,4: --base_samples .* has 4 images"):
        npz_sources(str(tmp_path / "s.npz"), (0, 4))


def test_npz_errors_name_the_flag(tmp_path):
    with pytest.raises(ValueError, match="--base_samples .*: no such file"):
        npz_sources(str(tmp_path / "none.npz"))
    np.savez(tmp_path / "f.npz", arr_0=np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="expected uint8 images"):
        npz_sources(str(tmp_path / "f.npz"))
    np.savez(tmp_path / "x.npz", images=_images(2))
    with pytest.raises(ValueError, match="no 'arr_0'"):
        npz_sources(str(tmp_path / "x.npz"))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable npz"):
        npz_sources(str(tmp_path / "junk.npz"))


def test_model_size_check():
    assert check_model_size(_images(2, 8), 8, "--data_dir").shape == (2, 8, 8, 3)
    with pytest.raises(ValueError, match=r"--base_samples: the sources are 16x16 pixels but the model takes 8x8"):
        check_model_size(_images(2, 16), 8, "--base_samples")
