"""Layer helpers: timestep embedding, GroupNorm32, EMA, module factories, checkpointing."""

import math

import pytest
import torch as th
import torch.nn as nn
import torch.nn.functional as F

from guided_diffusion.models import layers


def test_timestep_embedding_closed_form_cos_first():
    t = th.tensor([0.0, 1.0, 17.0, 999.0, 2.5])
    dim = 8
    emb = layers.timestep_embedding(t, dim)
    assert emb.shape == (5, 8) and emb.dtype == th.float32
    half = dim // 2
    for n, tv in enumerate(t.tolist()):
        for i in range(half):
            arg = tv * math.exp(-math.log(10000) * i / half)
            assert emb[n, i].item() == pytest.approx(math.cos(arg), abs=2e-4)
            assert emb[n, half + i].item() == pytest.approx(math.sin(arg), abs=2e-4)


def test_timestep_embedding_odd_dim_zero_padded():
    t = th.tensor([3, 250])
    emb = layers.timestep_embedding(t, 7)
    assert emb.shape == (2, 7)
    assert th.equal(emb[:, -1], th.zeros(2))
    assert th.equal(emb[:, :6], layers.timestep_embedding(t, 6))


def test_timestep_embedding_max_period_changes_frequencies():
    t = th.tensor([5.0])
    emb = layers.timestep_embedding(t, 4, max_period=100)
    # i = 1 of half = 2: freq = 100^(-1/2) = 0.1
    assert emb[0, 1].item() == pytest.approx(math.cos(0.5), abs=1e-6)
    assert emb[0, 3].item() == pytest.approx(math.sin(0.5), abs=1e-6)


def test_groupnorm32_computes_in_float32_and_casts_back():
    norm = layers.normalization(64)
    assert isinstance(norm, nn.GroupNorm) and norm.num_groups == 32
    with th.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    # values whose squares overflow fp16 (> 65504): a half-precision variance would be inf
    x = (th.randn(2, 64, 4, 4) * 50 + 1000).half()
    out = norm(x)
    assert out.dtype == th.float16
    ref = F.group_norm(x.float(), 32, norm.weight, norm.bias, norm.eps).half()
    assert th.equal(out, ref)
    assert th.isfinite(out).all()


def test_update_ema_formula():
    target = [th.tensor([1.0, 2.0]), th.tensor([[4.0]])]
    source = [th.tensor([3.0, -2.0]), th.tensor([[0.0]])]
    layers.update_ema(target, source, rate=0.9)
    assert th.allclose(target[0], th.tensor([0.9 * 1 + 0.1 * 3, 0.9 * 2 + 0.1 * -2]))
    assert th.allclose(target[1], th.tensor([[3.6]]))
    assert th.equal(source[0], th.tensor([3.0, -2.0]))  # source untouched


def test_update_ema_default_rate_is_0_99():
    target, source = [th.zeros(3)], [th.ones(3)]
    layers.update_ema(target, source)
    assert th.allclose(target[0], th.full((3,), 0.01))


def test_zero_and_scale_module():
    lin = nn.Linear(3, 4)
    w = lin.weight.detach().clone()
    assert layers.scale_module(lin, 2.0) is lin
    assert th.allclose(lin.weight, 2 * w)
    assert layers.zero_module(lin) is lin
    assert all((p == 0).all() for p in lin.parameters())


def test_mean_flat():
    x = th.arange(24, dtype=th.float32).reshape(2, 3, 4)
    assert th.allclose(layers.mean_flat(x), th.tensor([5.5, 17.5]))


@pytest.mark.parametrize("dims,cls", [(1, nn.Conv1d), (2, nn.Conv2d), (3, nn.Conv3d)])
def test_conv_nd_and_avg_pool_nd_dims(dims, cls):
    assert isinstance(layers.conv_nd(dims, 2, 3, 1), cls)
    pool = layers.avg_pool_nd(dims, kernel_size=2)
    assert type(pool).__name__ == f"AvgPool{dims}d"


def test_conv_nd_rejects_unknown_dims():
    with pytest.raises(ValueError, match="4"):
        layers.conv_nd(4, 2, 3, 1)
    with pytest.raises(ValueError, match="0"):
        layers.avg_pool_nd(0, kernel_size=2)


def _two_layer():
    th.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.SiLU(), nn.Dropout(0.5), nn.Linear(7, 3))


@pytest.mark.parametrize("flag", [False, True])
def test_checkpoint_same_output_and_gradients(flag):
    net = _two_layer()
    x = th.randn(4, 5, requires_grad=True)

    th.manual_seed(1)
    ref = net(x)
    ref.pow(2).sum().backward()
    ref_grads = [p.grad.clone() for p in net.parameters()] + [x.grad.clone()]
    net.zero_grad()
    x.grad = None

    th.manual_seed(1)  # same dropout mask: the recomputation must replay the RNG
    out = layers.checkpoint(net, (x,), net.parameters(), flag)
    out.pow(2).sum().backward()
    grads = [p.grad for p in net.parameters()] + [x.grad]
    assert th.equal(out, ref)
    for g, r in zip(grads, ref_grads):
        assert th.allclose(g, r, atol=1e-6)


def test_checkpoint_saves_fewer_tensors():
    """With the flag set, intermediate activations are not kept for backward."""
    net = _two_layer()
    x = th.randn(4, 5, requires_grad=True)

    def count_saved(flag):
        saved = []
        with th.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
            layers.checkpoint(net, (x,), net.parameters(), flag)
        return len(saved)

    assert count_saved(True) < count_saved(False)
