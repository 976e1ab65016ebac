"""The reference's private method names: aliases of the public methods, overridable by either spelling."""

import pytest
import torch as th

from guided_diffusion.diffusion.gaussian import GaussianDiffusion
from guided_diffusion.diffusion.reference_names import REFERENCE_ALIASES
from guided_diffusion.diffusion.respacing import SpacedDiffusion
from guided_diffusion.diffusion.schedule import get_named_beta_schedule
from guided_diffusion.diffusion.types import LossType, ModelMeanType, ModelVarType


def _diffusion_kwargs(T=20):
    return dict(betas=get_named_beta_schedule("cosine", T), model_mean_type=ModelMeanType.EPSILON,
                model_var_type=ModelVarType.LEARNED_RANGE, loss_type=LossType.MSE)


def _recording_model(seen):
    def model(x, t, **kwargs):
        seen.append(t.clone())
        return th.zeros(x.shape[0], 2 * x.shape[1], *x.shape[2:])

    return model


def test_reference_names_are_the_public_methods():
    for private, public in REFERENCE_ALIASES.items():
        assert getattr(GaussianDiffusion, private) is getattr(GaussianDiffusion, public)


@pytest.mark.parametrize("base", [GaussianDiffusion, SpacedDiffusion])
def test_private_override_reaches_every_caller(base):
    class Reversed(base):
        def _scale_timesteps(self, t):
            return self.num_timesteps - 1 - super()._scale_timesteps(t)  # super() must not recurse

    kwargs = _diffusion_kwargs()
    d = Reversed(set(range(20)), **kwargs) if base is SpacedDiffusion else Reversed(**kwargs)
    seen = []
    x, t = th.randn(2, 3, 4, 4), th.tensor([0, 7])
    d.p_mean_variance(_recording_model(seen), x, t)
    d.training_losses(_recording_model(seen), x, t)
    d.calc_bpd_loop(_recording_model(seen), x[:, :, :1, :1].clamp(-1, 1))
    assert th.equal(seen[0], 19 - t) and th.equal(seen[1], 19 - t)
    # calc_bpd_loop walks t = 19 .. 0, so the model sees 0 .. 19
    assert [s.tolist() for s in seen[2:]] == [[i, i] for i in range(20)]
    assert th.equal(d.scale_timesteps(t), 19 - t)


def test_public_override_reaches_the_private_name_and_callers():
    calls = []

    class Counted(GaussianDiffusion):
        def predict_xstart_from_eps(self, x_t, t, eps):
            calls.append("eps")
            return super().predict_xstart_from_eps(x_t, t, eps)

        def _vb_terms_bpd(self, *args, **kwargs):
            calls.append("vb")
            return super()._vb_terms_bpd(*args, **kwargs)

    d = Counted(**_diffusion_kwargs())
    x, t = th.randn(2, 3, 4, 4), th.tensor([0, 7])
    d.p_mean_variance(_recording_model([]), x, t)
    assert calls == ["eps"]
    d.training_losses(_recording_model([]), x, t)  # learned sigma: the vb term
    assert calls == ["eps", "vb", "eps"]
    assert Counted._predict_xstart_from_eps is Counted.predict_xstart_from_eps
    assert Counted.vb_terms_bpd is Counted._vb_terms_bpd
