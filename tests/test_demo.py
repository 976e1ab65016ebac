"""scripts/demo.py end to end in --quick mode (tiny step counts): the pipeline, its outputs and reuse."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _demo(out):
    return subprocess.run([sys.executable, os.path.join(REPO, "scripts", "demo.py"), "--quick", "--output_dir", out],
                          cwd=REPO, capture_output=True, text=True, timeout=1800)


@pytest.mark.slow
def test_quick_demo_writes_table_and_grids_then_reuses_everything(tmp_path):
    out = str(tmp_path / "demo")
    first = _demo(out)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    with open(os.path.join(out, "results.json")) as f:
        results = json.load(f)
    rows = results["runs"]
    assert 0.0 <= results["judge_accuracy_heldout"] <= 1.0
    assert [r["run"] for r in rows] == ["scale_0", "scale_1", "scale_4", "ddim_scale_4"]
    assert [r["scale"] for r in rows] == [0.0, 1.0, 4.0, 4.0]
    for row in rows:
        assert os.path.exists(row["grid"])
        assert 0.0 <= row["Accuracy"] <= 1.0 and 0.0 <= row["Precision"] <= 1.0 and 0.0 <= row["Recall"] <= 1.0
        assert row["FID"] >= 0.0
    second = _demo(out)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("reusing") >= 1 + 3 + 2 * len(rows)  # data, 3 checkpoints, samples + scores
    assert "image_train.py" not in second.stdout and "classifier_sample.py" not in second.stdout
    assert "evaluator.py" not in second.stdout
    with open(os.path.join(out, "results.json")) as f:
        assert json.load(f)["runs"] == rows
