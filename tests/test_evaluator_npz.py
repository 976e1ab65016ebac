"""Streaming .npz reading and input validation for the evaluator."""

import zipfile

import numpy as np
import pytest

from evaluations.batch_stats import load_batch
from evaluations.fid import frechet_distance
from evaluations.npz_reader import (
    EvaluatorInputError,
    NpzArrayReader,
    open_image_batch,
    read_statistics,
)


def _images(n=7, h=5, w=6, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize("batch_size", [1, 3, 7, 100])
def test_streamed_batches_equal_in_memory_array(tmp_path, compressed, batch_size):
    imgs = _images()
    path = str(tmp_path / "b.npz")
    (np.savez_compressed if compressed else np.savez)(path, arr_0=imgs, arr_1=np.arange(7))
    reader = open_image_batch(path)
    batches = list(reader.iter_batches(batch_size))
    assert [len(b) for b in batches] == [min(batch_size, 7 - s) for s in range(0, 7, batch_size)]
    np.testing.assert_array_equal(np.concatenate(batches), imgs)


def test_stream_reads_only_batch_sized_chunks(tmp_path, monkeypatch):
    imgs = _images(n=9)
    path = str(tmp_path / "b.npz")
    np.savez(path, arr_0=imgs)
    sizes = []
    real_open = zipfile.ZipFile.open

    def spy_open(self, *args, **kwargs):
        f = real_open(self, *args, **kwargs)
        real_read = f.read

        def read(n=-1):
            sizes.append(n)
            return real_read(n)

        f.read = read
        return f

    monkeypatch.setattr(zipfile.ZipFile, "open", spy_open)
    list(NpzArrayReader(path).iter_batches(2))
    row = 5 * 6 * 3
    assert -1 not in sizes and max(sizes) <= 2 * row


def test_fortran_ordered_array_is_read_correctly(tmp_path):
    imgs = np.asfortranarray(_images())
    path = str(tmp_path / "f.npz")
    np.savez(path, arr_0=imgs)
    np.testing.assert_array_equal(np.concatenate(list(open_image_batch(path).iter_batches(2))), imgs)


@pytest.mark.parametrize(
    "arrays, pattern",
    [
        ({"images": _images()}, "no array named 'arr_0'"),
        ({"arr_0": _images().astype(np.float32)}, "convert float images to uint8"),
        ({"arr_0": _images()[..., 0]}, "rank 4"),
        ({"arr_0": np.zeros((4, 5, 5, 1), np.uint8)}, "1 channels"),
        ({"arr_0": np.zeros((4, 3, 5, 5), np.uint8)}, "5 channels"),
        ({"arr_0": _images(n=1)}, "at least 2"),
    ],
)
def test_bad_image_batches_raise_clear_errors(tmp_path, arrays, pattern):
    path = str(tmp_path / "bad.npz")
    np.savez(path, **arrays)
    with pytest.raises(EvaluatorInputError, match=pattern):
        open_image_batch(path)


def test_missing_and_non_npz_files_raise(tmp_path):
    with pytest.raises(EvaluatorInputError, match="not found"):
        open_image_batch(str(tmp_path / "nope.npz"))
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(EvaluatorInputError, match="not an .npz"):
        open_image_batch(str(junk))


def test_object_arrays_are_refused(tmp_path):
    path = str(tmp_path / "obj.npz")
    np.savez(path, arr_0=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(EvaluatorInputError):
        open_image_batch(path)


def _stats(d=4):
    return {"mu": np.zeros(d), "sigma": np.eye(d), "mu_s": np.ones(d), "sigma_s": 2 * np.eye(d)}


def test_read_statistics_returns_float64_pairs(tmp_path):
    path = str(tmp_path / "s.npz")
    np.savez(path, **{k: v.astype(np.float32) for k, v in _stats().items()})
    stats = read_statistics(path)
    np.testing.assert_array_equal(stats["spatial"][1], 2 * np.eye(4))
    assert stats["pool"][0].dtype == np.float64


@pytest.mark.parametrize(
    "change, pattern",
    [
        ({"sigma": np.eye(3)}, "do not match"),
        ({"mu": np.zeros((4, 1))}, "do not match"),
        ({"sigma_s": np.full((4, 4), np.nan)}, "NaN"),
        ({"mu": np.array([0, np.inf, 0, 0])}, "NaN or infinite"),
    ],
)
def test_bad_statistics_raise_clear_errors(tmp_path, change, pattern):
    path = str(tmp_path / "s.npz")
    np.savez(path, **{**_stats(), **change})
    with pytest.raises(EvaluatorInputError, match=pattern):
        read_statistics(path)


def test_incomplete_statistics_raise(tmp_path):
    path = str(tmp_path / "s.npz")
    stats = _stats()
    del stats["sigma_s"]
    np.savez(path, **stats)
    with pytest.raises(EvaluatorInputError, match="lacks"):
        read_statistics(path)


def test_statistics_of_wrong_dimension_are_rejected(tmp_path):
    # consistent mu/sigma, but 4-d instead of the 2048-d pool features
    path = str(tmp_path / "s.npz")
    np.savez(path, arr_0=_images(), pool_features=np.zeros((7, 2048), np.float32), **_stats())
    with pytest.raises(EvaluatorInputError, match="expected 2048"):
        load_batch(path, get_extractor=None)


def test_file_without_images_or_cache_is_rejected(tmp_path):
    path = str(tmp_path / "s.npz")
    np.savez(path, arr_1=np.arange(3))
    with pytest.raises(EvaluatorInputError, match="no images"):
        load_batch(path, get_extractor=None)


def test_package_exports_library_api():
    import evaluations

    assert evaluations.frechet_distance is frechet_distance and callable(evaluations.precision_recall)
