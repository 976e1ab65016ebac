"""QKV attention layouts, SDPA against the explicit formula, AttentionBlock and AttentionPool2d."""

import math

import pytest
import torch as th

from guided_diffusion.models import attention as A
from guided_diffusion.models.attention import (
    AttentionBlock,
    AttentionPool2d,
    QKVAttention,
    QKVAttentionLegacy,
)


def reference_heads(q, k, v):
    """Independent attention: per head softmax(q^T k / sqrt(C)) applied to v, in float64.

    :param q, k, v: [N, H, C, T]. :return: [N, H*C, T].
    """
    q, k, v = q.double(), k.double(), v.double()
    n, h, c, t = q.shape
    w = th.matmul(q.transpose(-1, -2), k) / math.sqrt(c)  # [N, H, T, S]
    w = th.softmax(w, dim=-1)
    out = th.matmul(v, w.transpose(-1, -2))  # [N, H, C, T]
    return out.reshape(n, h * c, t)


def _qkv(n=2, heads=3, ch=8, length=10, seed=0):
    g = th.Generator().manual_seed(seed)
    return [th.randn(n, heads, ch, length, generator=g) for _ in range(3)]


def _legacy_layout(q, k, v):
    n, h, c, t = q.shape
    return th.stack([q, k, v], dim=2).reshape(n, h * 3 * c, t)  # per head [q_h, k_h, v_h]


def _new_layout(q, k, v):
    n, h, c, t = q.shape
    return th.cat([z.reshape(n, h * c, t) for z in (q, k, v)], dim=1)  # [Q, K, V]


def test_legacy_and_new_order_agree_on_permuted_qkv():
    q, k, v = _qkv()
    ref = reference_heads(q, k, v).float()
    legacy = QKVAttentionLegacy(3)(_legacy_layout(q, k, v))
    new = QKVAttention(3)(_new_layout(q, k, v))
    assert th.allclose(legacy, ref, atol=1e-5)
    assert th.allclose(new, ref, atol=1e-5)
    # the same flat tensor read in the other order is a different computation
    assert not th.allclose(QKVAttention(3)(_legacy_layout(q, k, v)), ref, atol=1e-3)


@pytest.mark.parametrize("split", [A.qkv_heads_legacy, A.qkv_heads_new])
def test_sdpa_equals_explicit_formula_float32(split):
    qkv = th.randn(2, 3 * 4 * 16, 37)
    q, k, v = split(qkv, 4)
    sdpa = A.attention_sdpa(q, k, v)
    explicit = A.attention_explicit(q, k, v)
    assert sdpa.shape == explicit.shape == (8, 16, 37)
    assert (sdpa - explicit).abs().max().item() < 2e-6


def test_sdpa_equals_explicit_with_grad():
    q, k, v = [th.randn(4, 8, 12, requires_grad=True) for _ in range(3)]
    a = A.attention_sdpa(q, k, v)
    ga = th.autograd.grad(a.pow(2).sum(), (q, k, v))
    b = A.attention_explicit(q, k, v)
    gb = th.autograd.grad(b.pow(2).sum(), (q, k, v))
    for x, y in zip(ga, gb):
        assert th.allclose(x, y, atol=1e-5)


def test_half_precision_uses_explicit_formula():
    qkv = th.randn(2, 3 * 2 * 8, 9).half()
    out = QKVAttention(2)(qkv)
    assert out.dtype == th.float16
    q, k, v = A.qkv_heads_new(qkv, 2)
    assert th.equal(out, A.attention_explicit(q, k, v).reshape(2, -1, 9))


def test_attention_block_heads_from_head_channels():
    assert AttentionBlock(64, num_heads=4).num_heads == 4
    assert AttentionBlock(64, num_heads=4, num_head_channels=16).num_heads == 4
    assert AttentionBlock(128, num_head_channels=64).num_heads == 2


def test_attention_block_rejects_indivisible_head_channels():
    with pytest.raises(ValueError, match=r"96.*64"):
        AttentionBlock(96, num_head_channels=64)
    with pytest.raises(ValueError, match=r"64.*num_heads 3"):
        AttentionBlock(64, num_heads=3)


def test_attention_block_is_identity_at_init_and_proj_out_zero():
    block = AttentionBlock(32, num_heads=2)
    assert (block.proj_out.weight == 0).all() and (block.proj_out.bias == 0).all()
    x = th.randn(2, 32, 4, 4)
    assert th.equal(block(x), x)


@pytest.mark.parametrize("new_order", [False, True])
def test_attention_block_matches_reference(new_order):
    th.manual_seed(0)
    block = AttentionBlock(32, num_heads=2, use_new_attention_order=new_order)
    th.nn.init.normal_(block.proj_out.weight)
    x = th.randn(2, 32, 3, 5)
    flat = x.reshape(2, 32, 15)
    qkv = block.qkv(block.norm(flat))
    if new_order:
        q, k, v = (z.reshape(2, 2, 16, 15) for z in qkv.chunk(3, dim=1))
    else:
        q, k, v = qkv.reshape(2, 2, 48, 15).split(16, dim=2)
    ref = flat + block.proj_out(reference_heads(q, k, v).float())
    assert th.allclose(block(x), ref.reshape(2, 32, 3, 5), atol=1e-5)


def test_attention_block_checkpoint_same_gradients():
    th.manual_seed(0)
    plain = AttentionBlock(32, num_heads=2)
    th.nn.init.normal_(plain.proj_out.weight)
    ckpt = AttentionBlock(32, num_heads=2, use_checkpoint=True)
    ckpt.load_state_dict(plain.state_dict())
    x1 = th.randn(2, 32, 4, 4, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    plain(x1).pow(2).sum().backward()
    ckpt(x2).pow(2).sum().backward()
    assert th.allclose(x1.grad, x2.grad, atol=1e-5)
    for (name, p1), p2 in zip(plain.named_parameters(), ckpt.parameters()):
        assert p2.grad is not None, name
        assert th.allclose(p1.grad, p2.grad, atol=1e-5), name


def test_attention_pool_matches_reference():
    th.manual_seed(0)
    pool = AttentionPool2d(4, 32, 16, output_dim=5)
    x = th.randn(3, 32, 4, 4)
    flat = x.reshape(3, 32, 16)
    tokens = th.cat([flat.mean(-1, keepdim=True), flat], -1) + pool.positional_embedding[None]
    qkv = pool.qkv_proj(tokens)
    q, k, v = (z.reshape(3, 2, 16, 17) for z in qkv.chunk(3, dim=1))  # always new order
    ref = pool.c_proj(reference_heads(q, k, v).float())[:, :, 0]
    out = pool(x)
    assert out.shape == (3, 5)
    assert th.allclose(out, ref, atol=1e-5)
    assert pool.positional_embedding.shape == (32, 17)


def test_use_sdpa_dispatch(monkeypatch):
    x = th.zeros(1)
    assert A.use_sdpa(x) is False  # automatic: explicit formula on the CPU
    assert A.use_sdpa(th.zeros(1, device="meta")) is True  # any accelerator-like device
    monkeypatch.setattr(A, "USE_SDPA", True)
    assert A.use_sdpa(x) is True
    assert A.use_sdpa(x.half()) is False  # half precision always rounds like the original


@pytest.mark.parametrize("new_order", [False, True])
def test_attention_block_same_output_with_sdpa_forced(monkeypatch, new_order):
    th.manual_seed(0)
    block = AttentionBlock(64, num_head_channels=16, use_new_attention_order=new_order)
    th.nn.init.normal_(block.proj_out.weight)
    x = th.randn(2, 64, 8, 8)
    monkeypatch.setattr(A, "USE_SDPA", False)
    explicit = block(x)
    monkeypatch.setattr(A, "USE_SDPA", True)
    sdpa = block(x)
    assert (sdpa - explicit).abs().max().item() < 5e-6


def test_count_flops_attn_counts_two_matmuls():
    class Counter:
        total_ops = th.zeros(1, dtype=th.float64)

    m = Counter()
    QKVAttention.count_flops(m, None, (th.zeros(2, 48, 3, 4),))
    assert m.total_ops.item() == 2 * 2 * (12**2) * 48
