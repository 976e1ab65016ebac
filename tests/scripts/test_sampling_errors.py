"""
Bad input to the sampling scripts: a one-line message naming the problem, exit status 2, and no
samples npz. The scripts' main() runs in-process (same code path as the CLI, without paying the
interpreter start-up per case); test_sample_scripts.py checks the real subprocess once.
"""

import os
import numpy as np
import pytest

from sample_helpers import (
    CLASSIFIER_FLAGS, MODEL_FLAGS, SR_FLAGS, build_classifier, build_model, build_sr, flag_list, one_thread,
    run_in_process, save_perturbed,
)

_one_thread = pytest.fixture(scope="module", autouse=True)(one_thread)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad_inputs")
    paths = save_perturbed(
        d,
        model=(build_model()[0], 0, 0.02),
        cond_model=(build_model(class_cond=True)[0], 3, 0.02),
        cfg_model=(build_model(class_cond=True, num_classes=10, class_dropout_prob=0.1)[0], 4, 0.02),
        classifier=(build_classifier(), 1, 0.05),
        sr=(build_sr()[0], 2, 0.02),
    )
    np.savez(str(d / "good.npz"), np.zeros((2, 8, 8, 3), np.uint8))
    np.savez(str(d / "wrong_key.npz"), images=np.zeros((2, 8, 8, 3), np.uint8))
    np.savez(str(d / "wrong_shape.npz"), np.zeros((2, 16, 16, 3), np.uint8))
    np.savez(str(d / "wrong_dtype.npz"), np.zeros((2, 8, 8, 3), np.float32))
    np.savez(str(d / "labels_10.npz"), np.zeros((2, 8, 8, 3), np.uint8), np.array([3, 10]))
    np.save(str(d / "single.npy"), np.zeros((2, 8, 8, 3), np.uint8))
    with open(str(d / "text.npz"), "w") as f:
        f.write("not a zip")
    paths["dir"] = str(d)
    return paths


def _run(script, args, out_dir, monkeypatch, capsys):
    code, _, err = run_in_process(script, list(args) + ["--output_dir", out_dir], monkeypatch, capsys)
    assert code == 2, err
    assert "Traceback" not in err
    if os.path.isdir(out_dir):
        assert not [f for f in os.listdir(out_dir) if f.startswith("samples_")]
    return err


def _model(files, **extra):
    flags = dict(MODEL_FLAGS, model_path=files["model"], num_samples=2, batch_size=2, seed=0)
    flags.update(extra)
    return flag_list(flags)


def _guided(files, **extra):
    flags = dict(CLASSIFIER_FLAGS, classifier_path=files["classifier"])
    flags.update(extra)
    return flag_list(flags)


# flags of the label-dropout checkpoint
_CFG = dict(class_cond=True, num_classes=10, class_dropout_prob=0.1, model_path="<cfg_model>")

IMAGE_CASES = {
    "num_samples_zero": (dict(num_samples=0), "--num_samples must be a positive integer, got 0"),
    "batch_size_negative": (dict(batch_size=-1), "--batch_size must be a positive integer, got -1"),
    "eta_without_ddim": (dict(eta=0.5), "--use_ddim True"),
    "negative_seed": (dict(seed=-3), "--seed"),
    "missing_model": (dict(model_path="/nonexistent/model.pt"), "/nonexistent/model.pt"),
    "no_model_path": (dict(model_path=""), "--model_path is required"),
    "mismatched_flags": (dict(num_channels=64), "--num_channels 32"),
    "class_cond_flag_differs": (dict(class_cond=True), "--class_cond False"),
    "respacing_too_many_steps": (dict(timestep_respacing="200"), "200"),
    "respacing_bad_ddim": (dict(timestep_respacing="ddim11"), "11"),
    "label_out_of_range": (dict(class_cond=True, class_labels="1,1000"), "outside [0, 1000)"),
    # the class count is the checkpoint's (1000 label rows here), so asking for more is a mismatch
    "too_many_classes": (dict(class_cond=True, num_classes=5000, model_path="<cond_model>"), "--num_classes"),
    "labels_for_unconditional_model": (dict(class_labels="1,2"), "--class_cond True"),
    "label_at_num_classes": (dict(class_cond=True, num_classes=10, class_labels="3,10"), "outside [0, 10)"),
    "unknown_sampler": (dict(sampler="euler"), "one of: auto, ancestral, ddim, dpm++2m, dpm++3m, dpm++2m-sde"),
    "eta_with_deterministic_solver": (dict(sampler="dpm++2m", eta=0.5), "deterministic solver"),
    "use_ddim_with_another_sampler": (dict(sampler="ancestral", use_ddim=True), "--use_ddim True asks for DDIM"),
    # classifier-free guidance
    "guidance_without_label_dropout": (dict(class_cond=True, guidance_scale=3.0, model_path="<cond_model>"),
                                       "this checkpoint has no null class; train with --class_dropout_prob"),
    "checkpoint_without_null_class": (
        dict(class_cond=True, class_dropout_prob=0.1, guidance_scale=3.0, model_path="<cond_model>"),
        "this checkpoint has no null class; train with --class_dropout_prob"),
    "null_class_checkpoint_without_the_flag": (dict(class_cond=True, num_classes=10, model_path="<cfg_model>"),
                                               "has a null class (11 label rows for 10 classes)"),
    "guidance_on_unconditional_model": (dict(guidance_scale=3.0), "this model is unconditional (--class_cond False)"),
    "negative_guidance_scale": (dict(guidance_scale=-0.5), "--guidance_scale must be >= 0"),
    "dropout_probability_one": (dict(class_cond=True, class_dropout_prob=1.0), "--class_dropout_prob must be in [0, 1)"),
    "interval_past_the_last_step": (_CFG | dict(guidance_scale=2.0, guidance_interval="0,100"), "[0, 99]"),
    "interval_reversed": (_CFG | dict(guidance_scale=2.0, guidance_interval="60,20"), "lo > hi"),
    "interval_without_guidance": (_CFG | dict(guidance_interval="10,20"), "this run has none"),
    "null_labels_with_guidance": (_CFG | dict(guidance_scale=2.0, class_labels="null"), "give class labels"),
}


@pytest.mark.parametrize("case", sorted(IMAGE_CASES))
def test_image_sample_bad_input(case, files, tmp_path, monkeypatch, capsys):
    extra, expected = IMAGE_CASES[case]
    if str(extra.get("model_path")).startswith("<"):
        extra = dict(extra, model_path=files[extra["model_path"].strip("<>")])
    err = _run("image_sample.py", _model(files, **extra), tmp_path, monkeypatch, capsys)
    assert expected in err


def test_not_a_checkpoint_file(files, tmp_path, monkeypatch, capsys):
    path = os.path.join(files["dir"], "text.npz")
    err = _run("image_sample.py", _model(files, model_path=path), tmp_path, monkeypatch, capsys)
    assert "not a readable PyTorch checkpoint" in err


GUIDED_CASES = {
    "no_classifier_path": (dict(classifier_path=""), "--classifier_path is required"),
    "missing_classifier": (dict(classifier_path="/nonexistent/c.pt"), "/nonexistent/c.pt"),
    "classifier_flags_differ": (dict(classifier_width=64), "--classifier_width 32"),
    "classifier_trained_at_other_size": (
        dict(image_size=16, classifier_attention_resolutions=8), "classifier checkpoint is for 8x8 images"),
    "label_at_num_classes": (dict(class_labels="5,1000"), "outside [0, 1000)"),
    "classifier_has_other_class_count": (dict(num_classes=10), "--num_classes 1000"),
    "null_labels_with_a_classifier": (dict(class_labels="null"), "give class labels"),
    "guidance_scale_on_an_unconditional_model": (dict(guidance_scale=2.0), "is unconditional"),
}


@pytest.mark.parametrize("case", sorted(GUIDED_CASES))
def test_classifier_sample_bad_input(case, files, tmp_path, monkeypatch, capsys):
    extra, expected = GUIDED_CASES[case]
    model_extra = {"image_size": extra.pop("image_size")} if "image_size" in extra else {}
    if model_extra:
        model_extra["attention_resolutions"] = 8
    args = _model(files, **model_extra) + _guided(files, **extra)
    err = _run("classifier_sample.py", args, tmp_path, monkeypatch, capsys)
    assert expected in err


SR_CASES = {
    "missing_base": ("missing.npz", {}, "no such file"),
    "wrong_key": ("wrong_key.npz", {}, "needs 'arr_0'"),
    "wrong_shape": ("wrong_shape.npz", {}, "expected ('M', 8, 8, 3)"),
    "wrong_dtype": ("wrong_dtype.npz", {}, "expected uint8"),
    "npy_not_npz": ("single.npy", {}, "not a readable npz"),
    "not_a_zip": ("text.npz", {}, "not a readable npz"),
    "labels_missing_for_class_cond": ("good.npz", {"class_cond": True}, "no 'arr_1' labels"),
    "label_at_num_classes": ("labels_10.npz", {"class_cond": True, "num_classes": 10}, "must lie in [0, 10)"),
}


@pytest.mark.parametrize("case", sorted(SR_CASES))
def test_super_res_sample_bad_base_samples(case, files, tmp_path, monkeypatch, capsys):
    name, extra, expected = SR_CASES[case]
    flags = dict(SR_FLAGS, model_path=files["sr"], base_samples=os.path.join(files["dir"], name),
                 num_samples=2, batch_size=2)
    flags.update(extra)
    err = _run("super_res_sample.py", flag_list(flags), tmp_path, monkeypatch, capsys)
    assert expected in err
