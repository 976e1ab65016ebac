"""
Every numeric flag of every script with flags, at a value it cannot take (0 where a positive count
is needed, a negative other than a -1 sentinel, ...): exit 2 with one line naming the flag, before
any work (no output folder). The training scripts are covered in tests/test_train_scripts.py.
"""

import os

import pytest

from flag_helpers import BAD_VALUES, bad_flag_cases, parser_of
from guided_diffusion.config.flags import FLAG_RULES, RULES
from sample_helpers import run_in_process

# script -> positional arguments it needs before its flags are read
SCRIPTS = {
    "scripts/image_sample.py": [],
    "scripts/classifier_sample.py": [],
    "scripts/super_res_sample.py": [],
    "scripts/image_nll.py": [],
    "scripts/classifier_accuracy.py": [],
    "scripts/image_interpolate.py": [],
    "evaluations/evaluator.py": ["ref.npz", "sample.npz"],
}
CASES = [(script, flag, bad) for script in SCRIPTS for flag, bad in bad_flag_cases(script)]
OPTIONS = {script: {opt for a in parser_of(script)._actions for opt in a.option_strings} for script in SCRIPTS}


def test_every_rule_has_values_it_refuses():
    assert set(BAD_VALUES) == set(RULES) and set(FLAG_RULES.values()) <= set(RULES)
    for rule, values in BAD_VALUES.items():
        check = RULES[rule][0]
        assert values and not any(check(float(v)) for v in values), rule


def test_the_count_flags_of_each_script_are_covered():
    flags = {script: {flag for s, flag, _ in CASES if s == script} for script in SCRIPTS}
    for script in SCRIPTS:
        assert "batch_size" in flags[script], script
    for script in ("scripts/image_sample.py", "scripts/classifier_sample.py", "scripts/super_res_sample.py",
                   "scripts/image_nll.py"):
        assert {"num_samples", "seed", "diffusion_steps", "num_channels"} <= flags[script], script


# numeric flags without a range: any value is meaningful
UNCHECKED = {"classifier_scale"}  # guidance may push away from a class (s < 0)
TRAIN_SCRIPTS = ["scripts/image_train.py", "scripts/classifier_train.py", "scripts/super_res_train.py"]


@pytest.mark.parametrize("script", list(SCRIPTS) + TRAIN_SCRIPTS, ids=os.path.basename)
def test_every_numeric_flag_has_a_rule(script):
    numeric = {a.dest for a in parser_of(script)._actions
               if isinstance(a.default, (int, float)) and not isinstance(a.default, bool)}
    assert numeric - set(FLAG_RULES) - UNCHECKED == set(), "add the flags to config.flags.FLAG_RULES"


@pytest.mark.parametrize("script,flag,bad", CASES, ids=[f"{os.path.basename(s)}--{f}={b}" for s, f, b in CASES])
def test_impossible_value_exits_2_naming_the_flag(script, flag, bad, tmp_path, monkeypatch, capsys):
    folder, name = os.path.split(script)
    out_dir = tmp_path / "out"
    args = SCRIPTS[script] + [f"--{flag}", bad]
    if "--output_dir" in OPTIONS[script]:
        args += ["--output_dir", str(out_dir)]
    code, _, err = run_in_process(name, args, monkeypatch, capsys, folder=folder)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, (code, err)
    assert f"--{flag} " in lines[0] and float(lines[0].rsplit("got ", 1)[1]) == float(bad), lines[0]
    assert not out_dir.exists(), "work started before the flag check"
