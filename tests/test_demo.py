"""scripts/demo.py end to end in --quick mode (tiny step counts): the pipeline, its outputs and reuse."""

import json
import os

import pytest

from guided_diffusion.demo.recipe import ROWS
from conftest import run_quick_demo
from sample_helpers import run_in_process


@pytest.mark.slow
def test_quick_demo_writes_table_and_grids_then_reuses_everything(quick_demo):
    out, _ = quick_demo
    with open(os.path.join(out, "results.json")) as f:
        results = json.load(f)
    rows = results["rows"]
    assert [r["run"] for r in rows] == [row.name for row in ROWS]
    for row in rows + [results["floor"]]:
        assert 0.0 <= row["judge"] <= 1.0 and 0.0 <= row["Precision"] <= 1.0 and 0.0 <= row["Recall"] <= 1.0
        assert row["FID"] >= 0.0 and abs(sum(row["histogram"]) - 1.0) < 1e-6
    for row in rows:
        assert os.path.exists(row["grid"]) and row["nfe"] >= row["steps"] and row["seconds_per_sample"] > 0
    assert results["floor"]["judge"] >= 0.9  # the held-out real digits, whatever the quick models do
    second = run_quick_demo(out)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("reusing") >= 2 + 2 * len(rows) + 1  # 2 checkpoints, samples + scores, floor
    assert "image_train.py" not in second.stdout and "classifier_sample.py" not in second.stdout
    assert "evaluator.py" not in second.stdout
    with open(os.path.join(out, "results.json")) as f:
        assert json.load(f)["rows"] == rows


@pytest.mark.parametrize("extra, message", [
    (["--recipe", '{"train_stepz": 5}'], "unknown recipe field(s) train_stepz"),
    (["--recipe", "{oops"], "--recipe must be a JSON object"),
    (["--rows", "scale_9"], "--rows: unknown row(s) scale_9"),
])
def test_bad_recipe_and_rows_exit_2_naming_them(tmp_path, monkeypatch, capsys, extra, message):
    code, _, err = run_in_process("demo.py", ["--output_dir", tmp_path / "never", *extra], monkeypatch, capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not os.path.exists(tmp_path / "never")
