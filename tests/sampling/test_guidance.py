"""Classifier guidance: the cond_fn gradient in closed form, label routing, size checks."""

import pytest
import torch as th

from guided_diffusion.sampling.guidance import (
    check_classifier_matches,
    check_classifier_size,
    checkpoint_image_size,
    make_cond_fn,
    make_model_fn,
)
from sample_helpers import LinearClassifier, build_classifier


def test_cond_fn_is_scaled_log_softmax_gradient_closed_form():
    clf = LinearClassifier(3 * 4 * 4, 5)
    x = th.randn(3, 3, 4, 4, generator=th.Generator().manual_seed(1))
    y = th.tensor([0, 4, 2])
    with th.no_grad():  # sampling loops run without grad; cond_fn must still work
        grad = make_cond_fn(clf, 2.5)(x, th.zeros(3), y=y)
    w = clf.w.detach()
    p = th.softmax(x.flatten(1) @ w.t(), dim=-1)
    expected = 2.5 * (w[y] - p @ w)  # d/dx log softmax(Wx)[y] = W_y - sum_k p_k W_k
    assert grad.dtype == th.float32 and grad.shape == x.shape
    assert th.allclose(grad.flatten(1), expected, atol=1e-5)


def test_cond_fn_requires_labels():
    with pytest.raises(ValueError, match="labels"):
        make_cond_fn(LinearClassifier(3, 2), 1.0)(th.zeros(1, 3, 1, 1), th.zeros(1))


def test_model_fn_passes_labels_only_to_class_conditional_models():
    seen = []

    def model(x, t, y=None):
        seen.append(y)
        return x

    y = th.tensor([1])
    make_model_fn(model, class_cond=False)(th.zeros(1), th.zeros(1), y=y)
    make_model_fn(model, class_cond=True)(th.zeros(1), th.zeros(1), y=y)
    assert seen[0] is None and seen[1] is y


def test_classifier_size_mismatch_is_a_clear_error():
    check_classifier_matches(64, 64)
    with pytest.raises(ValueError, match="32x32.*64x64"):
        check_classifier_matches(64, 32)


def test_checkpoint_image_size_is_read_off_the_attention_pool():
    built = build_classifier()  # 8x8
    trained_at_16 = build_classifier(image_size=16, classifier_attention_resolutions="8")
    assert checkpoint_image_size(built.state_dict(), built, 8) == 8
    assert checkpoint_image_size(trained_at_16.state_dict(), built, 8) == 16
    check_classifier_size(built.state_dict(), built, 8)
    with pytest.raises(ValueError, match="16x16 images but the diffusion model samples 8x8"):
        check_classifier_size(trained_at_16.state_dict(), built, 8)
