"""The output folder: --output_dir wins over $OPENAI_LOGDIR, which wins over a temp folder."""

from guided_diffusion import logger
from guided_diffusion.sampling.logdir import setup_output


def _setup(monkeypatch, output_dir, env=None):
    if env is None:
        monkeypatch.delenv("OPENAI_LOGDIR", raising=False)
    else:
        monkeypatch.setenv("OPENAI_LOGDIR", env)
    previous = logger.Logger.CURRENT
    logger.Logger.CURRENT = None
    try:
        return setup_output(output_dir)
    finally:
        logger.Logger.CURRENT.close()
        logger.Logger.CURRENT = previous


def test_output_dir_wins_over_the_environment(tmp_path, monkeypatch):
    assert _setup(monkeypatch, str(tmp_path / "flag"), env=str(tmp_path / "env")) == str(tmp_path / "flag")
    assert (tmp_path / "flag" / "log.txt").exists()
    assert _setup(monkeypatch, "", env=str(tmp_path / "env")) == str(tmp_path / "env")


def test_without_either_a_fresh_folder_is_made(tmp_path, monkeypatch):
    first = _setup(monkeypatch, "")
    assert "openai-" in first
