"""Image folders: listing, labels, crops, sharding, exact resume and error messages."""

from PIL import Image
import numpy as np
import pytest
import torch

from guided_diffusion.data import image_folder


def _write(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _ramp(h, w):
    """RGB image whose red channel encodes the column and green the row."""
    arr = np.zeros((h, w, 3), dtype=np.uint8)
    arr[:, :, 0] = np.arange(w, dtype=np.uint8)[None, :] * (255 // max(w - 1, 1))
    arr[:, :, 1] = np.arange(h, dtype=np.uint8)[:, None] * (255 // max(h - 1, 1))
    return arr


def test_listing_is_recursive_sorted_and_filters_extensions(tmp_path):
    for name in ["b/x_2.JPEG", "a_1.png", "c_0.gif", "notes.txt", "noext", "z/y/d_5.jpg"]:
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")
    got = [p[len(str(tmp_path)) + 1 :] for p in image_folder.list_image_files_recursively(tmp_path)]
    assert got == ["a_1.png", "b/x_2.JPEG", "c_0.gif", "z/y/d_5.jpg"]


def test_labels_from_prefix_in_sorted_class_order(tmp_path):
    names = ["dog_1.png", "cat_1.png", "dog_2.png", "ant_9.png", "cat_big_3.png"]
    for n in names:
        _write(tmp_path / n, np.zeros((4, 4, 3), np.uint8))
    files = image_folder.list_image_files_recursively(tmp_path)
    # sorted files: ant_9, cat_1, cat_big_3, dog_1, dog_2 ; classes ant=0, cat=1, dog=2
    assert image_folder.classes_from_file_names(files) == [0, 1, 1, 2, 2]
    names = image_folder.folder_class_names(tmp_path)
    assert names == image_folder.class_names_from_file_names(files) == ["ant", "cat", "dog"]
    assert [names[c] for c in image_folder.classes_from_file_names(files)] == ["ant", "cat", "cat", "dog", "dog"]
    data = image_folder.load_data(data_dir=tmp_path, batch_size=5, image_size=4, class_cond=True,
                       deterministic=True, random_flip=False, shard=0, num_shards=1)
    _, cond = next(data)
    assert cond["y"].dtype == torch.int64 and cond["y"].tolist() == [0, 1, 1, 2, 2]


def test_center_crop_rule_box_halving_then_bicubic_then_center():
    src = Image.fromarray(_ramp(30, 50))  # PIL size (w=50, h=30), target 10
    out = image_folder.center_crop_arr(src, 10)
    # short side 30 >= 2*10 -> BOX to (25, 15); 15 < 20 stops; BICUBIC to (round(25*10/15)=17, 10)
    expect = np.array(src.resize((25, 15), resample=Image.BOX).resize((17, 10), resample=Image.BICUBIC))
    assert out.shape == (10, 10, 3)
    np.testing.assert_array_equal(out, expect[:, 3:13])


def test_center_crop_halves_while_short_side_at_least_twice_target():
    src = Image.fromarray(_ramp(40, 80))  # (80, 40) -> (40, 20) -> (20, 10): 20 >= 2*10 halves too
    out = image_folder.center_crop_arr(src, 10)
    expect = np.array(src.resize((40, 20), resample=Image.BOX).resize((20, 10), resample=Image.BOX))
    np.testing.assert_array_equal(out, expect[:, 5:15])


def test_random_crop_short_side_in_range_and_window_inside():
    import random

    src = Image.fromarray(_ramp(16, 16))
    sizes = set()
    for s in range(40):
        rng = random.Random(s)
        side = rng.randrange(16, 21)  # replay the first draw: ceil(16/1.0) .. ceil(16/0.8)
        sizes.add(side)
        out = image_folder.random_crop_arr(src, 16, rng=random.Random(s))
        full = np.array(src.resize((side, side), resample=Image.BICUBIC))
        windows = [full[y : y + 16, x : x + 16] for y in range(side - 15) for x in range(side - 15)]
        assert any(np.array_equal(out, w) for w in windows)
    assert sizes == {16, 17, 18, 19, 20}


def test_flip_mirrors_columns_and_happens_about_half_the_time(tmp_path):
    arr = _ramp(8, 8)
    _write(tmp_path / "a_0.png", arr)
    ds = image_folder.ImageDataset(8, image_folder.list_image_files_recursively(tmp_path), random_flip=True)
    plain = arr.astype(np.float32).transpose(2, 0, 1) / 127.5 - 1
    flips = 0
    import random

    for s in range(200):
        x, _ = ds[0, random.Random(s)]
        if np.array_equal(x, plain[:, :, ::-1]):
            flips += 1
        else:
            np.testing.assert_array_equal(x, plain)
    assert 70 < flips < 130


def test_values_scaled_to_minus_one_one(tmp_path):
    arr = np.zeros((4, 4, 3), np.uint8)
    arr[0, 0] = 255
    _write(tmp_path / "a.png", arr)
    x, cond = next(image_folder.load_data(data_dir=tmp_path, batch_size=1, image_size=4, random_flip=False, shard=0, num_shards=1))
    assert x.shape == (1, 3, 4, 4) and x.dtype == torch.float32 and cond == {}
    assert x[0, :, 0, 0].tolist() == [1.0, 1.0, 1.0] and x.min().item() == -1.0


def test_sharding_rank_r_of_w_sees_files_r_step_w(tmp_path):
    for i in range(7):
        _write(tmp_path / f"{i}_x.png", np.full((2, 2, 3), i * 30, np.uint8))
    files = image_folder.list_image_files_recursively(tmp_path)
    for r in range(3):
        ds = image_folder.ImageDataset(2, files, shard=r, num_shards=3)
        assert ds.local_images == files[r::3]
        data = image_folder.load_data(data_dir=tmp_path, batch_size=len(files[r::3]) - (r == 0), image_size=2,
                           class_cond=True, shard=r, num_shards=3, random_flip=False)
        _, cond = next(data)
        assert set(cond["y"].tolist()) <= set(range(r, 7, 3))


def test_every_epoch_is_a_permutation_and_partial_batch_dropped(tmp_path):
    for i in range(10):
        _write(tmp_path / f"{i}_x.png", np.full((2, 2, 3), i, np.uint8))
    data = image_folder.load_data(data_dir=tmp_path, batch_size=3, image_size=2, class_cond=True, seed=5, shard=0, num_shards=1)
    assert data.batches_per_epoch == 3
    epoch0 = torch.cat([next(data)[1]["y"] for _ in range(3)]).tolist()
    epoch1 = torch.cat([next(data)[1]["y"] for _ in range(3)]).tolist()
    assert len(set(epoch0)) == 9 and len(set(epoch1)) == 9 and epoch0 != epoch1


def test_state_dict_resumes_exact_stream(tmp_path):
    for i in range(6):
        _write(tmp_path / f"{i}_x.png", _ramp(6, 6))
    kw = dict(data_dir=tmp_path, batch_size=4, image_size=4, class_cond=True, random_crop=True, shard=0, num_shards=1)
    a = image_folder.load_data(seed=11, **kw)
    ref = [next(a) for _ in range(5)]
    b = image_folder.load_data(seed=11, **kw)
    for _ in range(2):
        next(b)
    c = image_folder.load_data(seed=999, **kw)
    c.load_state_dict(b.state_dict())
    for x_ref, x in zip(ref[2:], [next(c) for _ in range(3)]):
        assert torch.equal(x_ref[0], x[0]) and torch.equal(x_ref[1]["y"], x[1]["y"])


def test_default_seed_follows_torch_manual_seed(tmp_path):
    for i in range(4):
        _write(tmp_path / f"{i}_x.png", np.full((2, 2, 3), i, np.uint8))
    torch.manual_seed(3)
    s1 = image_folder.load_data(data_dir=tmp_path, batch_size=2, image_size=2, shard=0, num_shards=1).seed
    torch.manual_seed(3)
    s2 = image_folder.load_data(data_dir=tmp_path, batch_size=2, image_size=2, shard=0, num_shards=1).seed
    assert s1 == s2


def test_missing_dir_error_names_it(tmp_path):
    with pytest.raises(ValueError, match="nowhere"):
        image_folder.load_data(data_dir=tmp_path / "nowhere", batch_size=1, image_size=8)
    with pytest.raises(ValueError, match="unspecified"):
        image_folder.load_data(data_dir="", batch_size=1, image_size=8)


def test_empty_dir_error(tmp_path):
    (tmp_path / "readme.txt").write_text("no images")
    with pytest.raises(ValueError, match="contains no images"):
        image_folder.load_data(data_dir=tmp_path, batch_size=1, image_size=8)


def test_class_cond_without_prefix_error_names_file(tmp_path):
    _write(tmp_path / "a_1.png", np.zeros((2, 2, 3), np.uint8))
    _write(tmp_path / "plain.png", np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(ValueError, match="plain.png"):
        image_folder.load_data(data_dir=tmp_path, batch_size=1, image_size=2, class_cond=True)


@pytest.mark.parametrize("batch_size", [1, 4])
def test_folder_whose_only_image_is_undecodable_names_it(tmp_path, batch_size):
    (tmp_path / "only.png").write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match=r"cannot decode image .*only\.png") as err:
        image_folder.load_data(data_dir=tmp_path, batch_size=batch_size, image_size=2, shard=0, num_shards=1)
    assert "batch_size" not in str(err.value)


def test_short_shard_with_a_broken_file_names_the_file_not_the_count(tmp_path):
    _write(tmp_path / "a.png", np.zeros((2, 2, 3), np.uint8))
    (tmp_path / "b.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match=r"cannot decode image .*b\.png"):
        image_folder.load_data(data_dir=tmp_path, batch_size=3, image_size=2, shard=0, num_shards=1)


def test_corrupt_image_error_names_path(tmp_path):
    _write(tmp_path / "a_1.png", np.zeros((2, 2, 3), np.uint8))
    (tmp_path / "b_2.png").write_bytes(b"\x89PNG not really")
    data = image_folder.load_data(data_dir=tmp_path, batch_size=2, image_size=2, shard=0, num_shards=1)
    with pytest.raises(ValueError, match=r"cannot decode image .*b_2\.png"):
        next(data)


def test_grey_and_rgba_files_become_rgb(tmp_path):
    Image.fromarray(np.full((4, 4), 255, np.uint8), mode="L").save(tmp_path / "a_0.png")
    Image.fromarray(np.full((4, 4, 4), 255, np.uint8), mode="RGBA").save(tmp_path / "b_0.png")
    x, _ = next(image_folder.load_data(data_dir=tmp_path, batch_size=2, image_size=4, shard=0, num_shards=1))
    assert x.shape == (2, 3, 4, 4) and torch.all(x == 1.0)


def test_shard_smaller_than_batch_is_an_error(tmp_path):
    for i in range(3):
        _write(tmp_path / f"{i}_x.png", np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(ValueError, match="fewer than batch_size=2"):
        image_folder.load_data(data_dir=tmp_path, batch_size=2, image_size=2, shard=1, num_shards=2)


def test_worker_loader_matches_in_process_and_leaves_global_rng_alone(tmp_path):
    for i in range(6):
        _write(tmp_path / f"{i}_x.png", _ramp(6, 6))
    kw = dict(data_dir=tmp_path, batch_size=2, image_size=4, class_cond=True, random_crop=True, shard=0, num_shards=1, seed=3)
    plain = image_folder.load_data(num_workers=0, **kw)
    workers = image_folder.load_data(num_workers=1, **kw)
    torch.manual_seed(0)
    expected_draw = torch.rand(1)
    torch.manual_seed(0)
    for _ in range(4):
        a, b = next(plain), next(workers)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1]["y"], b[1]["y"])
    assert torch.equal(torch.rand(1), expected_draw)
