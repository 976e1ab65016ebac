"""scripts/classifier_accuracy.py: the judge used by the demo."""

import numpy as np
import pytest
import torch as th
import torch.nn.functional as F

from guided_diffusion.data.digits import write_reference_npz

from sample_helpers import CLASSIFIER_FLAGS, MODEL_FLAGS, build_classifier, flag_list, one_thread, perturb_and_save
from sample_helpers import run_in_process

one_thread = pytest.fixture(scope="module")(one_thread)
NUM_CLASSES = 10


@pytest.fixture(scope="module")
def judged(tmp_path_factory):
    """A perturbed tiny classifier, its checkpoint and its own t=0 predictions on random images."""
    tmp = tmp_path_factory.mktemp("judge")
    th.manual_seed(0)
    classifier = perturb_and_save(build_classifier(num_classes=NUM_CLASSES), tmp / "classifier.pt", seed=1, std=0.2).eval()
    rng = np.random.RandomState(0)
    size = MODEL_FLAGS["image_size"]
    images = rng.randint(0, 256, size=(12, size, size, 3)).astype(np.uint8)
    x = th.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    with th.no_grad():
        log_probs = F.log_softmax(classifier(x, th.zeros(len(x), dtype=th.long))[:, :NUM_CLASSES], dim=-1)
    return tmp, images, log_probs


def _run(tmp, images, labels, monkeypatch, capsys):
    path = tmp / "samples.npz"
    np.savez(path, arr_0=images, arr_1=labels)
    args = ["--samples", path, "--classifier_path", tmp / "classifier.pt", "--num_classes", NUM_CLASSES,
            "--image_size", MODEL_FLAGS["image_size"], "--batch_size", 5] + flag_list(CLASSIFIER_FLAGS)
    code, out, err = run_in_process("classifier_accuracy.py", args, monkeypatch, capsys)
    assert code == 0, err
    values = dict(line.split(": ") for line in out.strip().splitlines())
    return float(values["Accuracy"]), float(values["Mean log p(y|x)"])


def test_accuracy_is_one_for_own_predictions_and_zero_for_shifted(judged, one_thread, monkeypatch, capsys):
    tmp, images, log_probs = judged
    predicted = log_probs.argmax(-1).numpy()
    accuracy, mean_log_prob = _run(tmp, images, predicted, monkeypatch, capsys)
    assert accuracy == 1.0
    expected = log_probs.gather(1, th.from_numpy(predicted).view(-1, 1)).mean().item()
    assert mean_log_prob == pytest.approx(expected, abs=1e-5)
    accuracy, _ = _run(tmp, images, (predicted + 1) % NUM_CLASSES, monkeypatch, capsys)
    assert accuracy == 0.0


def test_missing_labels_is_a_clear_error(judged, one_thread, monkeypatch, capsys, tmp_path):
    tmp, images, _ = judged
    path = tmp_path / "unlabelled.npz"
    np.savez(path, arr_0=images)
    args = ["--samples", path, "--classifier_path", tmp / "classifier.pt",
            "--image_size", MODEL_FLAGS["image_size"]] + flag_list(CLASSIFIER_FLAGS)
    code, _, err = run_in_process("classifier_accuracy.py", args, monkeypatch, capsys)
    assert code != 0
    assert "arr_1" in err


def test_labels_outside_num_classes_are_refused(judged, one_thread, monkeypatch, capsys, tmp_path):
    tmp, images, _ = judged
    path = tmp_path / "labelled.npz"
    np.savez(path, arr_0=images, arr_1=np.full(len(images), NUM_CLASSES))
    args = ["--samples", path, "--classifier_path", tmp / "classifier.pt", "--num_classes", NUM_CLASSES,
            "--image_size", MODEL_FLAGS["image_size"]] + flag_list(CLASSIFIER_FLAGS)
    code, _, err = run_in_process("classifier_accuracy.py", args, monkeypatch, capsys)
    assert code == 2 and f"must lie in [0, {NUM_CLASSES})" in err


def test_pixel_judge_scores_real_digits_and_sees_their_class_balance(tmp_path, monkeypatch, capsys):
    path = tmp_path / "heldout.npz"
    write_reference_npz(str(path), 8, split="heldout")
    args = ["--samples", path, "--judge", "pixel_knn", "--judge_data", "digits", "--image_size", 8,
            "--num_classes", NUM_CLASSES]
    code, out, err = run_in_process("classifier_accuracy.py", args, monkeypatch, capsys)
    assert code == 0, err
    values = dict(line.split(": ") for line in out.strip().splitlines())
    accuracy, stderr = float(values["Accuracy"]), float(values["Accuracy stderr"])
    assert accuracy >= 0.95 and stderr == pytest.approx(np.sqrt(accuracy * (1 - accuracy) / 300))
    histogram = np.array([float(v) for v in values["Label histogram"].split(",")])
    assert histogram.sum() == pytest.approx(1.0, abs=1e-3) and np.all(np.abs(histogram - 0.1) < 0.02)


@pytest.mark.parametrize("flags, message", [
    (["--judge", "knn"], "--judge 'knn' is not one of"),
    (["--judge", "pixel_knn", "--judge_data", "nowhere.npz"], "--judge_data must be"),
])
def test_pixel_judge_bad_flags_exit_2(tmp_path, monkeypatch, capsys, flags, message):
    path = tmp_path / "s.npz"
    np.savez(path, arr_0=np.zeros((2, 8, 8, 3), np.uint8), arr_1=np.zeros(2, np.int64))
    args = ["--samples", path, "--image_size", 8, "--num_classes", NUM_CLASSES] + flags
    code, out, err = run_in_process("classifier_accuracy.py", args, monkeypatch, capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
