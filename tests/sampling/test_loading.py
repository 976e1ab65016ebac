"""Checkpoint loading for inference: every failure names the flag; loaded networks are frozen."""

import argparse

import pytest
import torch as th

from guided_diffusion.config.defaults import classifier_defaults
from guided_diffusion.sampling.loading import (
    NETWORKS, build_and_load, build_from_flags, load_checkpoint, load_for_inference,
)
from sample_helpers import CLASSIFIER_FLAGS, MODEL_FLAGS, SR_FLAGS, build_classifier, perturb_and_save


def _flags():
    return {}


def test_load_for_inference_loads_exactly_and_freezes(tmp_path):
    source = build_classifier()
    with th.no_grad():
        for p in source.parameters():
            p.add_(1.0)
    path = str(tmp_path / "c.pt")
    th.save(source.state_dict(), path)
    target = build_classifier().train()
    load_for_inference(target, path, _flags(), "classifier", "--classifier_path", use_fp16=False)
    assert not target.training and not any(p.requires_grad for p in target.parameters())
    for k, v in source.state_dict().items():
        assert th.equal(target.state_dict()[k], v)


@pytest.mark.parametrize("path,expected", [("", "--classifier_path is required"),
                                           ("missing.pt", "--classifier_path"),
                                           ("text.pt", "not a readable PyTorch checkpoint")])
def test_unloadable_paths_name_the_flag(tmp_path, path, expected):
    (tmp_path / "text.pt").write_text("not a checkpoint")
    full = str(tmp_path / path) if path else ""
    with pytest.raises(ValueError, match=expected):
        load_checkpoint(build_classifier(), full, _flags(), "classifier", "--classifier_path")


def test_mismatch_and_check_hook_name_the_flag(tmp_path):
    path = str(tmp_path / "wide.pt")
    th.save(build_classifier(classifier_width=64).state_dict(), path)
    with pytest.raises(ValueError, match="--classifier_path .* does not fit the classifier"):
        load_checkpoint(build_classifier(), path, _flags(), "classifier", "--classifier_path")

    def refuse(state):
        raise ValueError(f"refused {len(state)} tensors")

    with pytest.raises(ValueError, match="refused"):
        load_checkpoint(build_classifier(classifier_width=64), path, _flags(), "classifier", "--classifier_path",
                        check=refuse)


def _namespace(kind, **over):
    defaults = NETWORKS[kind][0]()
    return argparse.Namespace(**{**defaults, **over})


def test_build_from_flags_reads_the_kind_defaults_keys_from_the_namespace():
    args = _namespace("classifier", image_size=8, **CLASSIFIER_FLAGS, num_classes=3, unrelated=1)
    classifier, diffusion, flags = build_from_flags(args, "classifier")
    assert diffusion is None and set(flags) == set(classifier_defaults())
    assert classifier.out_channels == 3 and classifier.model_channels == CLASSIFIER_FLAGS["classifier_width"]
    args = _namespace("model", **MODEL_FLAGS)
    model, diffusion, _ = build_from_flags(args, "model")
    assert model.model_channels == MODEL_FLAGS["num_channels"] and diffusion.num_timesteps == 4


@pytest.mark.parametrize("kind,path_flag", [("model", "--model_path"), ("sr", "--model_path"),
                                            ("classifier", "--classifier_path")])
def test_build_and_load_reads_the_kinds_checkpoint_flag(tmp_path, kind, path_flag):
    flags = {"model": MODEL_FLAGS, "sr": SR_FLAGS, "classifier": dict(image_size=8, **CLASSIFIER_FLAGS)}[kind]
    source, _, _ = build_from_flags(_namespace(kind, **flags), kind)
    path = str(tmp_path / "net.pt")
    perturb_and_save(source, path, 0, 0.1)
    args = _namespace(kind, **flags, model_path=path, classifier_path=path)
    network, _ = build_and_load(args, kind)
    assert all(th.equal(a, b) for a, b in zip(network.state_dict().values(), source.state_dict().values()))
    assert not network.training
    with pytest.raises(ValueError, match=f"{path_flag} is required"):
        build_and_load(_namespace(kind, **flags, model_path="", classifier_path=""), kind)
