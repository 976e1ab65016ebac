"""Log outputs continued across runs: one CSV header, no lost or repeated rows, atomic rewrites."""

import csv
import json
import os

from guided_diffusion.runtime.log_formats import CSVOutputFormat, HumanOutputFormat, JSONOutputFormat, make_output_format


def _rows(path):
    with open(path) as f:
        return list(csv.reader(f))


def test_csv_append_keeps_one_header_and_extends_it(tmp_path):
    path = str(tmp_path / "progress.csv")
    out = CSVOutputFormat(path)
    out.writekvs({"step": 0, "loss": 1.5})
    out.close()
    out = CSVOutputFormat(path, append=True)
    assert out.keys == ["loss", "step"]
    out.writekvs({"step": 1, "loss": 1.25})
    out.writekvs({"step": 2, "loss": 1.0, "vb": 0.5})
    out.close()
    assert _rows(path) == [["loss", "step", "vb"], ["1.5", "0", ""], ["1.25", "1", ""], ["1.0", "2", "0.5"]]
    assert os.listdir(tmp_path) == ["progress.csv"]  # the header rewrite left no temp file


def test_csv_without_append_starts_over(tmp_path):
    path = str(tmp_path / "progress.csv")
    (tmp_path / "progress.csv").write_text("a\n1\n")
    out = CSVOutputFormat(path)
    out.writekvs({"b": 2})
    out.close()
    assert _rows(path) == [["b"], ["2"]]


def test_csv_discard_rows_drops_steps_at_or_after_start(tmp_path):
    path = str(tmp_path / "progress.csv")
    out = CSVOutputFormat(path)
    for step in range(5):
        out.writekvs({"step": step, "loss": 10 - step})
    out.writekvs({"note": "x"})  # a row without a step stays
    out.discard_rows("step", 3)
    out.writekvs({"step": 3, "loss": 0})
    out.discard_rows("missing_key", 0)
    out.close()
    assert [r[1] for r in _rows(path)[1:]] == ["0", "1", "2", "", "3"]


def test_a_row_cut_short_by_a_crash_is_dropped_on_append(tmp_path):
    (tmp_path / "progress.csv").write_text("step,loss\n0,1.0\n1,0.")
    out = CSVOutputFormat(str(tmp_path / "progress.csv"), append=True)
    out.writekvs({"step": 1, "loss": 0.5})
    out.close()
    assert _rows(tmp_path / "progress.csv") == [["step", "loss"], ["0", "1.0"], ["1", "0.5"]]


def test_json_append_and_discard(tmp_path):
    path = str(tmp_path / "progress.json")
    out = JSONOutputFormat(path)
    for step in range(3):
        out.writekvs({"step": step})
    out.close()
    with open(path, "a") as f:
        f.write('{"step": 3')  # cut short
    out = JSONOutputFormat(path, append=True)
    out.discard_rows("step", 2)
    out.writekvs({"step": 2})
    out.close()
    assert [json.loads(line)["step"] for line in open(path)] == [0, 1, 2]


def test_human_log_appends(tmp_path):
    path = str(tmp_path / "log.txt")
    for word in ("first", "second"):
        out = HumanOutputFormat(path, append=True)
        out.writeseq([word])
        out.close()
    assert open(path).read() == "first\nsecond\n"


def test_make_output_format_passes_append(tmp_path):
    (tmp_path / "log.txt").write_text("kept\n")
    out = make_output_format("log", str(tmp_path), append=True)
    out.writeseq(["new"])
    out.close()
    assert (tmp_path / "log.txt").read_text() == "kept\nnew\n"
