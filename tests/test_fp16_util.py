"""fp16 helpers: master parameters, state dicts and dynamic loss scaling."""

import copy

import numpy as np
import pytest
import torch as th
import torch.nn as nn

from guided_diffusion import fp16_util as fu


class Tiny(nn.Module):
    """A conv (converted to fp16) followed by a linear head (kept float32)."""

    def __init__(self):
        super().__init__()
        th.manual_seed(0)
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.head = nn.Linear(4, 1)

    def convert_to_fp16(self):
        self.conv.apply(fu.convert_module_to_f16)

    def forward(self, x):
        h = self.conv(x.type(self.conv.weight.dtype)).float()
        return self.head(h.mean(dim=(2, 3)))


def test_param_groups_split_by_ndim_and_master_round_trip():
    model = Tiny()
    groups = fu.get_param_groups_and_shapes(model.named_parameters())
    assert [n for n, _ in groups[0][0]] == ["conv.bias", "head.bias"] and groups[0][1] == -1
    assert [n for n, _ in groups[1][0]] == ["conv.weight", "head.weight"] and groups[1][1] == (1, -1)
    masters = fu.make_master_params(groups)
    assert masters[0].shape == (5,) and masters[1].shape == (1, 2 * 4 * 9 + 4)
    assert all(m.dtype == th.float32 and m.requires_grad for m in masters)
    with th.no_grad():
        masters[1].add_(1.0)
    fu.master_params_to_model_params(groups, masters)
    assert th.allclose(model.head.weight, masters[1][0, -4:].view(1, 4))
    sd = fu.master_params_to_state_dict(model, groups, masters, use_fp16=True)
    assert list(sd) == list(model.state_dict())
    back = fu.state_dict_to_master_params(model, sd, use_fp16=True)
    assert all(th.equal(a, b) for a, b in zip(back, masters))


def test_model_grads_to_master_grads_fills_missing_with_zeros():
    model = Tiny()
    groups = fu.get_param_groups_and_shapes(model.named_parameters())
    masters = fu.make_master_params(groups)
    model.head.weight.grad = th.full_like(model.head.weight, 2.0)
    fu.model_grads_to_master_grads(groups, masters)
    assert th.equal(masters[1].grad[0, -4:], th.full((4,), 2.0))
    assert th.equal(masters[1].grad[0, :-4], th.zeros(72))
    assert th.equal(masters[0].grad, th.zeros(5))
    fu.zero_master_grads(masters)
    assert all(m.grad is None for m in masters)


def test_zero_grad_and_param_grad_or_zeros():
    p = nn.Parameter(th.ones(3))
    assert th.equal(fu.param_grad_or_zeros(p), th.zeros(3))
    p.grad = th.ones(3)
    fu.zero_grad([p])
    assert th.equal(p.grad, th.zeros(3))


@pytest.mark.parametrize("value,expected", [(float("inf"), True), (-float("inf"), True),
                                            (float("nan"), True), (3.0, False), (0.0, False)])  # fmt: skip
def test_check_overflow(value, expected):
    assert fu.check_overflow(value) is expected


def test_fp32_trainer_steps_like_plain_optimizer():
    model, ref = Tiny(), Tiny()
    trainer = fu.MixedPrecisionTrainer(model=model)
    assert trainer.master_params == list(model.parameters())
    opt = th.optim.SGD(trainer.master_params, lr=0.1)
    ref_opt = th.optim.SGD(ref.parameters(), lr=0.1)
    x = th.randn(3, 2, 5, 5)
    trainer.zero_grad()
    trainer.backward(model(x).sum())
    assert trainer.optimize(opt) is True
    ref(x).sum().backward()
    ref_opt.step()
    for a, b in zip(model.parameters(), ref.parameters()):
        assert th.equal(a, b)
    sd = trainer.master_params_to_state_dict(trainer.master_params)
    assert all(th.equal(sd[k], v) for k, v in model.state_dict().items())


def test_fp16_overflow_skips_step_then_recovers():
    model = Tiny()
    ref = copy.deepcopy(model)
    trainer = fu.MixedPrecisionTrainer(model=model, use_fp16=True, fp16_scale_growth=0.25)
    assert trainer.lg_loss_scale == fu.INITIAL_LOG_LOSS_SCALE == 20.0
    assert model.conv.weight.dtype == th.float16 and model.head.weight.dtype == th.float32
    opt = th.optim.SGD(trainer.master_params, lr=0.1)
    x = th.randn(3, 2, 5, 5) * 10

    # 2**20 times the conv gradient overflows fp16: the step must be skipped
    before = [p.detach().clone() for p in model.parameters()]
    masters_before = [m.detach().clone() for m in trainer.master_params]
    trainer.zero_grad()
    trainer.backward(model(x).sum() * 100)
    assert not th.isfinite(model.conv.weight.grad).all()
    assert trainer.optimize(opt) is False
    assert trainer.lg_loss_scale == 19.0
    assert all(th.equal(a, b) for a, b in zip(model.parameters(), before))
    assert all(th.equal(a, b) for a, b in zip(trainer.master_params, masters_before))
    assert all(m.grad is None for m in trainer.master_params)

    # a finite step updates the float32 masters by the unscaled gradient and grows the scale
    trainer.lg_loss_scale = 2.0
    trainer.zero_grad()
    trainer.backward(model(x).sum())
    assert trainer.optimize(opt) is True
    assert trainer.lg_loss_scale == 2.25
    ref(x).sum().backward()
    with th.no_grad():
        for p in ref.parameters():
            p -= 0.1 * p.grad
    expected = fu.get_param_groups_and_shapes(ref.named_parameters())
    for master, (group, shape) in zip(trainer.master_params, expected):
        flat = th.cat([p.detach().reshape(-1) for _, p in group]).view(shape)
        assert th.allclose(master, flat, atol=2e-3)
    assert th.equal(model.head.weight, trainer.master_params[1][0, -4:].view(1, 4))
    assert th.equal(model.conv.weight, trainer.master_params[1][0, :-4].view(4, 2, 3, 3).half())


def test_fp16_state_dict_is_float32_and_round_trips():
    model = Tiny()
    trainer = fu.MixedPrecisionTrainer(model=model, use_fp16=True)
    sd = trainer.master_params_to_state_dict(trainer.master_params)
    assert all(v.dtype == th.float32 for v in sd.values())
    assert th.equal(sd["conv.weight"], Tiny().conv.weight.detach())
    back = trainer.state_dict_to_master_params(sd)
    assert all(th.equal(a, b) for a, b in zip(back, trainer.master_params))


def test_trainer_logs_norms(tmp_path):
    from guided_diffusion import logger
    model = Tiny()
    trainer = fu.MixedPrecisionTrainer(model=model, use_fp16=True, initial_lg_loss_scale=3.0)
    opt = th.optim.SGD(trainer.master_params, lr=0.0)
    x = th.randn(2, 2, 5, 5)
    with logger.scoped_configure(dir=str(tmp_path), format_strs=[]):
        trainer.backward(model(x).sum())
        trainer.optimize(opt)
        kvs = logger.getkvs()
        assert kvs["lg_loss_scale"] == 3.0
        param_norm = np.sqrt(sum(float(m.detach().double().pow(2).sum()) for m in trainer.master_params))
        assert kvs["param_norm"] == pytest.approx(param_norm, rel=1e-5)
        assert kvs["grad_norm"] > 0
