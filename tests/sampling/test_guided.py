"""The model and gradient functions of a guided run: which branch, which gradient, which errors."""

import pytest
import torch as th

from guided_diffusion.config.factory import create_gaussian_diffusion
from guided_diffusion.sampling.cfg import NOT_GIVEN
from guided_diffusion.sampling.guided import GuidedFunctions

K = 3


class LabelEcho:
    """A 'network' whose output row is its label (broadcast), so the branch used is visible."""

    def __init__(self, class_cond=True, null_class=True):
        self.num_classes = K if class_cond else None
        self.null_label = K if class_cond and null_class else None
        self.seen = []

    def __call__(self, x, t, y=None):
        self.seen.append(None if y is None else y.tolist())
        return th.zeros_like(x) if y is None else y.float().view(-1, 1, 1, 1).expand_as(x).clone()


class Classifier(th.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = th.nn.Parameter(th.ones(K, 4))
        self.calls = 0

    def forward(self, x, t):
        self.calls += 1
        return x.flatten(1) @ self.w.t()


DIFFUSION = create_gaussian_diffusion(steps=100, timestep_respacing="10")
X, T, Y = th.zeros(2, 1, 2, 2), th.tensor([50, 50]), th.tensor([0, 2])


def test_plain_conditional_run_passes_the_labels_and_no_gradient():
    model = LabelEcho()
    fns = GuidedFunctions(model, DIFFUSION)
    assert th.equal(fns.model_fn(X, T, y=Y)[:, 0, 0, 0], Y.float()) and fns.cond_fn is None
    assert fns.describe() == "no guidance beyond the model's labels"


def test_classifier_on_a_dropout_model_guides_the_null_branch():
    model, clf = LabelEcho(), Classifier()
    fns = GuidedFunctions(model, DIFFUSION, classifier=clf, classifier_scale=2.0)
    assert th.equal(fns.model_fn(X, T, y=Y), th.full_like(X, float(K)))
    assert model.seen == [[K, K]]
    assert fns.cond_fn(X, T, y=Y).shape == X.shape and clf.calls == 1


def test_classifier_on_a_model_without_null_class_keeps_the_conditional_branch():
    model = LabelEcho(null_class=False)
    fns = GuidedFunctions(model, DIFFUSION, classifier=Classifier(), classifier_scale=2.0)
    fns.model_fn(X, T, y=Y)
    assert model.seen == [[0, 2]]
    unconditional = LabelEcho(class_cond=False)
    GuidedFunctions(unconditional, DIFFUSION, classifier=Classifier(), classifier_scale=2.0).model_fn(X, T, y=Y)
    assert unconditional.seen == [None]  # labels are for the classifier only


def test_both_kinds_with_an_interval_count_passes_and_gradients():
    model, clf = LabelEcho(), Classifier()
    fns = GuidedFunctions(model, DIFFUSION, classifier=clf, classifier_scale=1.0, guidance_scale=3.0,
                          guidance_interval="40,60")
    assert fns.steps_inside == sum(40 <= s <= 60 for s in DIFFUSION.timestep_map)
    out = fns.model_fn(X, T, y=Y)  # inside: null + 3 (label - null)
    assert th.allclose(out[:, 0, 0, 0], K + 3.0 * (Y.float() - K))
    fns.model_fn(X, th.tensor([10, 10]), y=Y)  # outside: the plain conditional pass
    assert model.seen == [[0, 2, K, K], [0, 2]]
    assert fns.cond_fn(X, th.tensor([10, 10]), y=Y) is None and clf.calls == 0
    assert fns.cond_fn(X, T, y=Y) is not None and clf.calls == 1
    text = fns.describe()
    assert "1 batched 2N passes, 1 conditional" in text and "computed at 1 steps, skipped at 1" in text


def test_interval_without_any_guidance_is_refused():
    with pytest.raises(ValueError, match="--guidance_interval limits guidance, but this run has none"):
        GuidedFunctions(LabelEcho(), DIFFUSION, guidance_interval="10,20")


@pytest.mark.parametrize("model, words", [
    (LabelEcho(class_cond=False), "unconditional"),
    (LabelEcho(null_class=False), "no null class; train with --class_dropout_prob"),
])
def test_guidance_scale_needs_a_dropout_model(model, words):
    with pytest.raises(ValueError, match=words):
        GuidedFunctions(model, DIFFUSION, guidance_scale=2.0)


def test_bad_interval_is_named():
    with pytest.raises(ValueError, match=r"--guidance_interval 60,40: lo > hi"):
        GuidedFunctions(LabelEcho(), DIFFUSION, guidance_scale=2.0, guidance_interval="60,40")
    assert GuidedFunctions(LabelEcho(), DIFFUSION, guidance_scale=NOT_GIVEN).cfg is None
