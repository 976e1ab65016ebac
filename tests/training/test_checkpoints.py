"""Choosing, loading and writing the files of a training checkpoint."""

import os

import pytest
import torch as th

from guided_diffusion import logger
from guided_diffusion.training import checkpoints
from guided_diffusion.training import state as train_state
from train_helpers import logdir, setup_model  # noqa: F401


def _checkpoint(folder, step, rates=(0.9999,)):
    names = [train_state.model_filename(step), train_state.opt_filename(step), train_state.state_filename(step)]
    for name in names + [train_state.ema_filename(r, step) for r in rates]:
        (folder / name).write_bytes(b"x")


def test_find_ema_checkpoint(tmp_path):
    (tmp_path / "ema_0.9999_000007.pt").write_bytes(b"x")
    main = str(tmp_path / "model000007.pt")
    assert checkpoints.find_ema_checkpoint(main, 7, 0.9999) == str(tmp_path / "ema_0.9999_000007.pt")
    assert checkpoints.find_ema_checkpoint(main, 7, 0.99) is None
    assert checkpoints.find_ema_checkpoint(None, 7, 0.9) is None


def test_explicit_resume_path_must_exist_and_name_a_step(tmp_path):
    with pytest.raises(FileNotFoundError, match="model000010.nothere.pt"):
        checkpoints.check_resume_path(str(tmp_path / "model000010.nothere.pt"))
    (tmp_path / "weights.pt").write_bytes(b"x")
    with pytest.raises(ValueError, match="weights.pt"):
        checkpoints.check_resume_path(str(tmp_path / "weights.pt"))
    (tmp_path / "model000042.pt").write_bytes(b"x")
    assert checkpoints.check_resume_path(str(tmp_path / "model000042.pt")) == 42


def test_resolve_prefers_the_hook_then_the_flag(tmp_path, logdir):
    _checkpoint(tmp_path, 3)
    hooked = str(tmp_path / "elsewhere" / "model000009.pt")
    assert checkpoints.resolve_resume_checkpoint("auto", [0.9999], str(tmp_path), hooked=hooked) == hooked
    assert checkpoints.resolve_resume_checkpoint("", [0.9999], str(tmp_path)) is None
    path = str(tmp_path / "model000003.pt")
    assert checkpoints.resolve_resume_checkpoint(path, [0.9999], str(tmp_path / "other")) == path
    assert checkpoints.resolve_resume_checkpoint("auto", [0.9999], str(tmp_path)) == path
    assert f"resuming from {path}" in open(os.path.join(logdir, "log.txt")).read()


def test_load_model_state_names_the_file_and_the_flag(tmp_path):
    small, _, _ = setup_model()
    big, _, big_flags = setup_model(num_channels=64)
    with pytest.raises(ValueError, match="(?s)model000001.pt: .*--num_channels 32"):
        checkpoints.load_model_state(big, small.state_dict(), str(tmp_path / "model000001.pt"), big_flags)
    checkpoints.load_model_state(big, big.state_dict(), "same.pt", big_flags)


def test_save_state_file_writes_atomically_and_loads_back(tmp_path):
    sd = {"w": th.arange(4.0)}
    path = str(tmp_path / "model000001.pt")
    checkpoints.save_state_file(sd, path)
    assert os.listdir(tmp_path) == ["model000001.pt"]
    assert th.equal(th.load(path, weights_only=True)["w"], sd["w"])


def test_auto_says_what_it_found(tmp_path):
    path, message = checkpoints.find_auto_checkpoint(str(tmp_path / "new"), [0.9999])
    assert path is None and "holds no checkpoint yet: starting at step 0" in message
    (tmp_path / "log.txt").write_text("only logs\n")
    assert "holds no checkpoint yet" in checkpoints.find_auto_checkpoint(str(tmp_path), [0.9999])[1]
    _checkpoint(tmp_path, 6)
    path, message = checkpoints.find_auto_checkpoint(str(tmp_path), [0.9999])
    assert path == str(tmp_path / "model000006.pt") and message.endswith(f"resuming from {path} (step 6)")
    path, message = checkpoints.find_auto_checkpoint(str(tmp_path), [0.999])
    assert path is None and "files of other runs (ema_0.9999_000006.pt, model000006.pt" in message
    assert "the newest, model000006.pt, lacks ema_0.999_000006.pt" in message


def test_remove_partial_files_only_touches_checkpoint_temps(tmp_path):
    for name in (".tmp-opt000003.pt-a1", ".tmp-ema_0.9999_000003.pt-b2", ".tmp-train_state000003.json-c3",
                 ".tmp-args.json-d4", "model000002.pt"):
        (tmp_path / name).write_bytes(b"x")
    removed = checkpoints.remove_partial_files(str(tmp_path))
    assert removed == [".tmp-ema_0.9999_000003.pt-b2", ".tmp-opt000003.pt-a1", ".tmp-train_state000003.json-c3"]
    assert sorted(os.listdir(tmp_path)) == [".tmp-args.json-d4", "model000002.pt"]
    assert checkpoints.remove_partial_files(str(tmp_path / "missing")) == []
