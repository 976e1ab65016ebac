"""Checkpoint loading for inference: every failure names the flag; loaded networks are frozen."""

import pytest
import torch as th

from guided_diffusion.sampling.loading import load_checkpoint, load_for_inference
from sample_helpers import build_classifier


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
