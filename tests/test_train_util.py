"""The face `train_util`: TrainLoop's original constructor, its patch points, and resume errors."""

import inspect
import os

import numpy as np
import pytest

from guided_diffusion import logger, train_util
from guided_diffusion.image_datasets import load_data
from guided_diffusion.train_util import TrainLoop, resolve_resume_checkpoint
from train_helpers import digits8, logdir, make_loop, setup_model  # noqa: F401


def _loop(model, diffusion, data, **kw):
    return make_loop(TrainLoop, model, diffusion, data, **kw)


def test_public_names_and_original_constructor():
    for name in ("TrainLoop", "parse_resume_step_from_filename", "get_blob_logdir", "find_resume_checkpoint",
                 "find_ema_checkpoint", "log_loss_dict", "INITIAL_LOG_LOSS_SCALE"):
        assert hasattr(train_util, name), name
    assert train_util.INITIAL_LOG_LOSS_SCALE == 20.0
    assert train_util.parse_resume_step_from_filename("/a/model000012.pt") == 12
    params = inspect.signature(TrainLoop).parameters
    original = ["model", "diffusion", "data", "batch_size", "microbatch", "lr", "ema_rate", "log_interval",
                "save_interval", "resume_checkpoint", "use_fp16", "fp16_scale_growth", "schedule_sampler",
                "weight_decay", "lr_anneal_steps"]
    assert list(params)[: len(original)] == original
    assert all(params[k].kind is inspect.Parameter.KEYWORD_ONLY for k in original)
    for method in ("run_loop", "run_step", "forward_backward", "save", "log_step", "_update_ema", "_anneal_lr",
                   "_load_and_sync_parameters", "_load_ema_parameters", "_load_optimizer_state"):
        assert callable(getattr(TrainLoop, method)), method


def test_patched_get_blob_logdir_redirects_saves(digits8, logdir, tmp_path, monkeypatch):
    elsewhere = tmp_path / "blob"
    elsewhere.mkdir()
    monkeypatch.setattr(train_util, "get_blob_logdir", lambda: str(elsewhere))
    model, diffusion, _ = setup_model()
    data = load_data(data_dir=digits8, batch_size=4, image_size=8, seed=1)
    _loop(model, diffusion, data, lr_anneal_steps=1).run_loop()
    assert {"model000000.pt", "model000001.pt", "ema_0.9_000001.pt", "opt000001.pt"} <= set(os.listdir(elsewhere))
    assert not [n for n in os.listdir(logdir) if n.endswith(".pt")]


def test_patched_resume_hooks_are_used(digits8, logdir, tmp_path, monkeypatch):
    model, diffusion, _ = setup_model()
    data = load_data(data_dir=digits8, batch_size=4, image_size=8, seed=1)
    _loop(model, diffusion, data, lr_anneal_steps=1).run_loop()
    renamed = tmp_path / "weights-at-one.pt"
    os.rename(os.path.join(logdir, "model000001.pt"), renamed)
    monkeypatch.setattr(train_util, "find_resume_checkpoint", lambda: str(renamed))
    monkeypatch.setattr(train_util, "parse_resume_step_from_filename", lambda path: 1)
    seen = []
    monkeypatch.setattr(train_util, "log_loss_dict", lambda diffusion, ts, losses: seen.append(sorted(losses)))
    loop = _loop(model, diffusion, data, lr_anneal_steps=2)
    assert loop.resume_path == str(renamed) and loop.resume_step == 1
    loop.run_loop()
    assert loop.global_step == 2 and seen and "loss" in seen[0]


def test_missing_resume_path_is_a_clear_error(logdir, tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere"):
        resolve_resume_checkpoint(str(tmp_path / "model000010.nothere.pt"))
    (tmp_path / "weights.pt").write_bytes(b"x")
    with pytest.raises(ValueError, match="weights.pt"):
        resolve_resume_checkpoint(str(tmp_path / "weights.pt"))


def test_auto_with_empty_logdir_starts_fresh(logdir):
    assert resolve_resume_checkpoint("auto", [0.9999]) is None


def test_resume_with_different_flags_fails_naming_checkpoint(digits8, logdir):
    model, diffusion, _ = setup_model()
    data = load_data(data_dir=digits8, batch_size=4, image_size=8, seed=1)
    _loop(model, diffusion, data, lr_anneal_steps=1).run_loop()
    other, diffusion2, flags2 = setup_model(num_channels=64)
    with pytest.raises(ValueError, match="model000001.pt"):
        _loop(other, diffusion2, data, resume_checkpoint=os.path.join(logdir, "model000001.pt"), model_flags=flags2)


# ---------------------------------------------------------------------------------------------
# Two ranks under mpiexec (gloo on CPU)

_TOY = '''
import sys, torch as th, numpy as np
from guided_diffusion import dist_util, logger
from guided_diffusion.image_datasets import load_data
from guided_diffusion.train_util import TrainLoop

class ToyModel(th.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = th.nn.Conv2d(3, 3, 3, padding=1)
    def forward(self, x, t, **kw):
        return self.conv(x)

class ToyDiffusion:
    """Loss independent of t and noise, so batches split over ranks can be compared exactly."""
    num_timesteps = 4
    def training_losses(self, model, x, t, model_kwargs=None, noise=None):
        return {"loss": ((model(x, t) - x.flip(-1)) ** 2).mean(dim=(1, 2, 3))}

def train(data_dir, logdir, batch_size, shard=None, num_shards=None, steps=3):
    logger.configure(dir=logdir, format_strs=["csv"] if shard is None else [])
    th.manual_seed(dist_util.get_rank() if shard is None else 0)  # ranks start different: sync must fix it
    model = ToyModel()
    data = load_data(data_dir=data_dir, batch_size=batch_size, image_size=8, deterministic=True,
                     random_flip=False, shard=shard, num_shards=num_shards, seed=0)
    loop = TrainLoop(model=model, diffusion=ToyDiffusion(), data=data, batch_size=batch_size, microbatch=-1,
                     lr=1e-2, ema_rate="0.9", log_interval=1, save_interval=1000, resume_checkpoint="",
                     lr_anneal_steps=steps)
    loop.run_loop()
    return th.cat([p.detach().flatten() for p in model.parameters()]), loop

if __name__ == "__main__":
    dist_util.setup_dist()
    params, loop = train(sys.argv[1], sys.argv[2], int(sys.argv[3]))
    np.save(sys.argv[2] + "/params_rank%d.npy" % dist_util.get_rank(), params.numpy())
    with open(sys.argv[2] + "/info_rank%d.txt" % dist_util.get_rank(), "w") as f:
        f.write("GLOBAL_BATCH %d DDP %s" % (loop.global_batch, loop.use_ddp))
'''


def _mpiexec():
    import shutil
    import sys

    exe = shutil.which("mpiexec") or os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return exe if os.path.exists(exe) else None


@pytest.mark.skipif(_mpiexec() is None, reason="mpiexec not installed")
def test_mpiexec_two_ranks_identical_params_and_double_global_batch(tmp_path):
    import subprocess
    import sys

    from PIL import Image

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    rng = np.random.RandomState(0)
    for i in range(4):
        Image.fromarray(rng.randint(0, 256, (8, 8, 3), dtype=np.uint8)).save(data_dir / f"{i}_x.png")
    toy = tmp_path / "toy.py"
    toy.write_text(_TOY)
    logdir = tmp_path / "mpi"
    logdir.mkdir()
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([_mpiexec(), "-n", "2", sys.executable, str(toy), str(data_dir), str(logdir), "2"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    for r in (0, 1):
        assert (logdir / f"info_rank{r}.txt").read_text() == "GLOBAL_BATCH 4 DDP True"
    p0, p1 = np.load(logdir / "params_rank0.npy"), np.load(logdir / "params_rank1.npy")
    assert np.array_equal(p0, p1)
    import csv

    with open(logdir / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["step"], r["samples"]) for r in rows] == [("0", "4"), ("1", "8"), ("2", "12")]  # 2 ranks x batch 2

    # One process with the whole batch of 4 (= both shards) takes the same steps.
    import importlib.util

    spec = importlib.util.spec_from_file_location("toy", toy)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    prev = logger.Logger.CURRENT
    try:
        ref, _ = mod.train(str(data_dir), str(tmp_path / "single"), 4, shard=0, num_shards=1)
    finally:
        logger.Logger.CURRENT = prev
    np.testing.assert_allclose(p0, ref.numpy(), rtol=1e-5, atol=1e-6)
