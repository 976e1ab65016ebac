"""Timestep samplers: uniform and loss-second-moment, single and multi-process."""

import ast
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch as th
import torch.multiprocessing as mp

from guided_diffusion.diffusion.timestep_sampler import (
    create_named_schedule_sampler,
    LossSecondMomentResampler,
    UniformSampler,
)


class FakeDiffusion:
    def __init__(self, T):
        self.num_timesteps = T


def test_named_samplers_and_unknown_name():
    assert isinstance(create_named_schedule_sampler("uniform", FakeDiffusion(5)), UniformSampler)
    s = create_named_schedule_sampler("loss-second-moment", FakeDiffusion(5))
    assert isinstance(s, LossSecondMomentResampler)
    assert s.history_per_term == 10 and s.uniform_prob == 0.001
    with pytest.raises(ValueError) as err:
        create_named_schedule_sampler("importance", FakeDiffusion(5))
    assert "importance" in str(err.value) and "uniform" in str(err.value) and "loss-second-moment" in str(err.value)
    assert isinstance(err.value, NotImplementedError)  # what the reference raised


def test_uniform_sampler_weights_are_one():
    s = UniformSampler(FakeDiffusion(7))
    np.random.seed(0)
    t, w = s.sample(500, "cpu")
    assert t.dtype == th.int64 and w.dtype == th.float32 and t.shape == w.shape == (500,)
    assert t.min() >= 0 and t.max() <= 6 and len(set(t.tolist())) == 7
    assert th.equal(w, th.ones(500))


def test_sample_uses_numpy_choice_and_importance_weights():
    s = LossSecondMomentResampler(FakeDiffusion(4), history_per_term=1, uniform_prob=0.0)
    s.update_with_all_losses([0, 1, 2, 3], [1.0, 2.0, 3.0, 4.0])
    p = np.array([1.0, 2.0, 3.0, 4.0]) / 10
    np.random.seed(3)
    t, w = s.sample(2000, "cpu")
    np.random.seed(3)
    assert np.array_equal(t.numpy(), np.random.choice(4, size=(2000,), p=p))
    assert np.allclose(w.numpy(), 1 / (4 * p[t.numpy()]))
    assert abs(w.mean().item() - 1) < 0.05  # E[1 / (T p_t)] = 1: the estimate stays unbiased


def test_loss_second_moment_uniform_until_warm_then_rms_mix():
    T, hist = 3, 10
    s = LossSecondMomentResampler(FakeDiffusion(T))
    rng = np.random.default_rng(0)
    losses = {t: rng.uniform(0.1, 2.0, size=hist + 2) for t in range(T)}
    for k in range(hist):
        for t in range(T if k < hist - 1 else T - 1):
            s.update_with_all_losses([t], [losses[t][k]])
    assert np.array_equal(s.weights(), np.ones(T))  # timestep 2 has only 9 losses
    s.update_with_all_losses([2], [losses[2][hist - 1]])
    # Two more losses for t = 0: the two oldest are shifted out.
    s.update_with_all_losses([0, 0], list(losses[0][hist:hist + 2]))
    kept = {0: losses[0][2:], 1: losses[1][:hist], 2: losses[2][:hist]}
    rms = np.array([np.sqrt(np.mean(kept[t] ** 2)) for t in range(T)])
    expected = rms / rms.sum() * 0.999 + 0.001 / T
    assert np.allclose(s.weights(), expected, rtol=1e-12)
    assert s.weights().sum() == pytest.approx(1.0)


def test_local_update_without_distributed_is_plain_update():
    s = LossSecondMomentResampler(FakeDiffusion(2), history_per_term=2)
    s.update_with_local_losses(th.tensor([0, 1, 0, 1]), th.tensor([1.0, 2.0, 3.0, 4.0]))
    assert np.allclose(s.weights(), np.array([np.sqrt(5), np.sqrt(10)]) / (np.sqrt(5) + np.sqrt(10)) * 0.999 + 0.0005)


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _dist_worker(rank, world, port, queue):
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    th.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        s = LossSecondMomentResampler(FakeDiffusion(3), history_per_term=2)
        # Rank 0 has 3 losses, rank 1 has 1: gathering must pad to the larger batch.
        if rank == 0:
            s.update_with_local_losses(th.tensor([0, 1, 2]), th.tensor([1.0, 2.0, 3.0]))
        else:
            s.update_with_local_losses(th.tensor([0]), th.tensor([5.0]))
        queue.put((rank, (s._loss_counts.tolist(), s._loss_history.tolist())))
    finally:
        th.distributed.destroy_process_group()


def run_two_ranks():
    """Run _dist_worker on 2 forked ranks and return {rank: (counts, history)}."""
    ctx = mp.get_context("fork")  # fork: no re-import of torch in the workers
    queue = ctx.SimpleQueue()
    mp.start_processes(_dist_worker, args=(2, _free_port(), queue), nprocs=2, join=True,
                       start_method="fork")
    return dict(queue.get() for _ in range(2))


def test_distributed_update_gathers_unequal_batches():
    if not th.distributed.is_available():
        pytest.skip("torch.distributed unavailable")
    # A fresh interpreter: this pytest process may already hold a default process group
    # (from other tests), which forked workers would inherit.
    code = "import sys, test_timestep_sampler as m; sys.stdout.write(repr(m.run_two_ranks()))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=os.path.dirname(__file__),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = ast.literal_eval(proc.stdout)
    expected_counts = [2, 1, 1]
    expected_hist = [[1.0, 5.0], [2.0, 0.0], [3.0, 0.0]]
    for rank in (0, 1):
        counts, hist = results[rank]
        assert counts == expected_counts and hist == expected_hist
