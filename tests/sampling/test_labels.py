"""Class labels for sampling: the --class_labels forms, per-sample assignment, range checks."""

import json

import numpy as np
import pytest

from guided_diffusion.sampling.labels import (
    check_labels,
    labels_for_indices,
    parse_class_labels,
)


def test_parse_class_labels_forms():
    assert parse_class_labels("", 10) is None
    assert parse_class_labels("balanced", 10) == "balanced"
    assert parse_class_labels(" 3, 1,4 ", 10) == (3, 1, 4)
    with pytest.raises(ValueError, match="outside"):
        parse_class_labels("3,10", 10)
    with pytest.raises(ValueError, match="'x' is not an integer, and no class names are recorded"):
        parse_class_labels("3,x", 10)


def _run_with_names(folder, names, checkpoint="model000004.pt"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "args.json").write_text(json.dumps({"image_size": 8, "class_names": names}))
    return str(folder / checkpoint)


def test_class_names_resolve_through_the_args_json_beside_the_checkpoint(tmp_path):
    path = _run_with_names(tmp_path / "guide", ["ant", "cat", "dog"])
    ckpts = [("--model_path", ""), ("--classifier_path", path)]
    assert parse_class_labels("dog, ant,1", 3, ckpts) == (2, 0, 1)  # names and integers mix
    with pytest.raises(ValueError, match=r"unknown class name 'emu'; the names in .*args.json \(beside "
                                         r"--classifier_path\) are: ant, cat, dog$"):
        parse_class_labels("cat,emu", 3, ckpts)
    # A name whose label the networks do not have is refused like the integer would be.
    with pytest.raises(ValueError, match=r"label 2 is outside \[0, 2\)"):
        parse_class_labels("dog", 2, ckpts)


def test_integers_stay_labels_even_when_a_class_is_named_by_digits(tmp_path):
    path = _run_with_names(tmp_path / "run", ["1", "10", "2"])  # sorted as strings: "10" is label 1
    assert parse_class_labels("10", 20, [("--model_path", path)]) == (10,)
    with pytest.raises(ValueError, match="outside"):
        parse_class_labels("10", 3, [("--model_path", path)])


def test_a_name_without_any_recorded_mapping_names_the_checkpoints(tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "args.json").write_text(json.dumps({"image_size": 8, "class_names": None}))  # an unlabelled run
    with pytest.raises(ValueError, match=f"'cat' is not an integer.*--model_path {bare / 'm.pt'}.*"
                                         r"labels in \[0, 10\)"):
        parse_class_labels("cat", 10, [("--model_path", str(bare / "m.pt"))])


def test_long_name_lists_are_cut_and_counted(tmp_path):
    names = [f"n{i:04d}" for i in range(1000)]
    path = _run_with_names(tmp_path / "imagenet", names)
    assert parse_class_labels("n0999", 1000, [("--model_path", path)]) == (999,)
    with pytest.raises(ValueError, match=r"are: n0000, .*, n0019, \.\.\. \(1000 in all\)$"):
        parse_class_labels("cat", 1000, [("--model_path", path)])


def test_records_that_map_names_differently_are_refused(tmp_path):
    model = _run_with_names(tmp_path / "model", ["cat", "dog"])
    same = _run_with_names(tmp_path / "same", ["cat", "dog"])
    other = _run_with_names(tmp_path / "other", ["dog", "eel"])
    assert parse_class_labels("dog", 2, [("--model_path", model), ("--classifier_path", same)]) == (1,)
    with pytest.raises(ValueError, match="differ"):
        parse_class_labels("dog", 2, [("--model_path", model), ("--classifier_path", other)])
    # Integer labels never read the records, so they still work.
    assert parse_class_labels("1", 2, [("--model_path", model), ("--classifier_path", other)]) == (1,)


def test_balanced_and_cycled_labels():
    idx = np.arange(7)
    assert labels_for_indices("balanced", 0, idx, 3).tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert labels_for_indices((5, 2), 0, idx, 10).tolist() == [5, 2, 5, 2, 5, 2, 5]
    assert labels_for_indices((5, 2), 0, idx, 10).dtype == np.int64


def test_random_labels_stay_below_num_classes():
    labels = labels_for_indices(None, 0, range(500), 3)
    assert set(labels.tolist()) == {0, 1, 2}


def test_check_labels_refuses_labels_at_or_above_num_classes():
    check_labels(np.array([0, 9]), 10)
    check_labels(np.array([], dtype=np.int64), 10)
    with pytest.raises(ValueError, match=r"\[0, 10\); got \[0, 10\]"):
        check_labels(np.array([0, 10]), 10)
    with pytest.raises(ValueError, match="my labels"):
        check_labels([-1], 10, "my labels")
