import csv
import json
import os

import numpy as np
import pytest

from guided_diffusion.runtime import logger


pytestmark = pytest.mark.usefixtures("restore_logger")


def test_csv_header_grows_and_old_rows_are_padded(tmp_path):
    logger.configure(dir=str(tmp_path), format_strs=["csv"])
    logger.logkv("b", 1)
    logger.dumpkvs()
    logger.logkv("b", 2)
    logger.logkv("a", 3)
    logger.dumpkvs()
    with open(tmp_path / "progress.csv") as f:
        rows = list(csv.reader(f))
    assert rows == [["b", "a"], ["1", ""], ["2", "3"]]


def test_json_writes_one_object_per_dump_with_numpy_as_float(tmp_path):
    logger.configure(dir=str(tmp_path), format_strs=["json"])
    logger.logkv("loss", np.float32(0.25))
    logger.logkv("step", 7)
    logger.dumpkvs()
    logger.logkv("step", 8)
    logger.dumpkvs()
    lines = (tmp_path / "progress.json").read_text().splitlines()
    assert [json.loads(l) for l in lines] == [{"loss": 0.25, "step": 7}, {"step": 8}]


def test_logkv_mean_is_running_mean_and_dump_clears(tmp_path):
    logger.configure(dir=str(tmp_path), format_strs=[])
    for v in [1.0, 2.0, 6.0]:
        logger.logkv_mean("x", v)
    assert logger.dumpkvs() == {"x": 3.0}
    assert logger.dumpkvs() == {}


def test_human_table_and_text_in_log_txt(tmp_path):
    logger.configure(dir=str(tmp_path), format_strs=["log"])
    logger.log("hello", 3)
    logger.logkv("loss", 0.5)
    logger.logkv("a_long_key_name", "v")
    logger.dumpkvs()
    text = (tmp_path / "log.txt").read_text().splitlines()
    assert text[0] == f"Logging to {tmp_path}"
    assert text[1] == "hello 3"
    # keys sorted case-insensitively, floats as %-8.3g, boxed by dashes of matching width
    assert text[3] == "| a_long_key_name | v        |"
    assert text[4] == "| loss            | 0.5      |"
    assert text[2] == text[5] == "-" * len(text[3])


def test_set_level_filters_messages(tmp_path):
    logger.configure(dir=str(tmp_path), format_strs=["log"])
    logger.set_level(logger.WARN)
    logger.info("quiet")
    logger.warn("loud")
    assert (tmp_path / "log.txt").read_text().splitlines()[1:] == ["loud"]


def test_env_vars_choose_dir_and_formats(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_LOGDIR", str(tmp_path / "run"))
    monkeypatch.setenv("OPENAI_LOG_FORMAT", "json,log")
    monkeypatch.delenv("PMI_RANK", raising=False)
    logger.configure()
    assert logger.get_dir() == str(tmp_path / "run")
    assert sorted(os.listdir(tmp_path / "run")) == ["log.txt", "progress.json"]


def test_nonzero_rank_uses_mpi_format_and_suffix(tmp_path, monkeypatch):
    monkeypatch.setenv("PMI_RANK", "2")
    monkeypatch.delenv("OPENAI_LOG_FORMAT_MPI", raising=False)
    logger.configure(dir=str(tmp_path))
    assert os.listdir(tmp_path) == ["log-rank002.txt"]


def test_default_dir_is_fresh_openai_folder_in_tmp(monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_LOGDIR", raising=False)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    logger.configure(format_strs=[])
    d = logger.get_dir()
    assert os.path.dirname(d) == str(tmp_path) and os.path.basename(d).startswith("openai-")


def test_unknown_format_names_allowed_set(tmp_path):
    with pytest.raises(ValueError, match="bogus.*stdout"):
        logger.configure(dir=str(tmp_path), format_strs=["bogus"])


class _FakeComm:
    """Two ranks' dicts seen from rank 0."""

    rank = 0

    def __init__(self, other):
        self.other = other

    def gather(self, obj):
        return [obj, self.other]


def test_dumpkvs_with_comm_weights_means_by_counts(tmp_path):
    logger.configure(dir=str(tmp_path), format_strs=[], comm=_FakeComm({"x": (4.0, 3), "y": (1.0, 1)}))
    logger.logkv_mean("x", 0.0)  # count 1
    assert logger.dumpkvs() == {"x": pytest.approx(3.0), "y": 1.0}


def test_scoped_configure_restores_previous(tmp_path):
    logger.configure(dir=str(tmp_path / "a"), format_strs=[])
    with logger.scoped_configure(dir=str(tmp_path / "b"), format_strs=[]):
        assert logger.get_dir() == str(tmp_path / "b")
    assert logger.get_dir() == str(tmp_path / "a")


def test_configure_append_continues_and_discard_rows_drops_resumed_steps(tmp_path):
    logger.configure(dir=str(tmp_path), format_strs=["log", "csv"])
    for step in range(4):
        logger.logkv("step", step)
        logger.dumpkvs()
    logger.configure(dir=str(tmp_path), format_strs=["log", "csv"], append=True)
    logger.discard_rows("step", 2)
    for step in (2, 3, 4):
        logger.logkv("step", step)
        logger.dumpkvs()
    with open(tmp_path / "progress.csv") as f:
        assert [r["step"] for r in csv.DictReader(f)] == ["0", "1", "2", "3", "4"]
    assert (tmp_path / "log.txt").read_text().count(f"Logging to {tmp_path}") == 2


def test_default_dir_names_a_new_openai_folder(monkeypatch, tmp_path):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    first = logger.default_dir()
    assert os.path.dirname(first) == str(tmp_path) and os.path.basename(first).startswith("openai-")
    assert not os.path.exists(first)
