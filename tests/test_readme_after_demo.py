"""
The README's "After the demo" section, executed: every command of its code blocks runs against the
output of the quick demo (`scripts/demo.py --quick`, run once for the module) and must exit 0 and
write the files its `# ->` comment names (and print the lines its `# prints:` comment names).

The README is written for the full demo, so the test rewrites only what differs in the quick one:
`demo_out/` becomes the quick demo's folder, `python` this interpreter, and a step number of a demo
stage (a checkpoint name, or `--lr_anneal_steps` / `--iterations` of a run continued in a demo
folder) keeps its distance from that stage's final step: the full demo's final step (demo.recipe.Recipe)
becomes the quick demo's (read from the stage's args.json). The model and classifier flags are
not rewritten: they must equal the ones the demo recorded in args.json.
"""

import json
import os
import re
import shlex
import subprocess
import sys

import pytest

from guided_diffusion.config.defaults import classifier_defaults, model_and_diffusion_defaults
from guided_diffusion.demo.recipe import Recipe, classifier_flags, model_flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FULL = Recipe()
# stage folder -> (the full demo's final step, the args.json key that holds a run's final step)
STAGES = {
    "diffusion": (FULL.train_steps, "lr_anneal_steps"),
    "guide": (FULL.guide_steps, "iterations"),
}


def _section():
    text = open(os.path.join(REPO, "README.md")).read()
    start = text.index("\n## After the demo\n")
    return text[start: text.index("\n## ", start + 1)]


def _blocks():
    return re.findall(r"^```\n(.*?)^```$", _section(), flags=re.MULTILINE | re.DOTALL)


def _commands(block):
    """:return: [(command, [comment lines that follow it])] with continuation lines joined."""
    out = []
    for line in block.replace("\\\n", " ").splitlines():
        if line.startswith("#"):
            out[-1][1].append(line)
        elif line.strip():
            out.append((line.split("  #")[0].strip(), []))
    return out


def _assignments():
    """The shell variables the section defines (MODEL_FLAGS=...), as flag lists."""
    found = {}
    for block in _blocks():
        for command, _ in _commands(block):
            match = re.fullmatch(r'([A-Z_]+)="(.*)"', command)
            if match:
                found[match.group(1)] = shlex.split(match.group(2))
    return found


@pytest.fixture(scope="module")
def demo(quick_demo):
    """The quick demo's output folder and each stage's final step there."""
    out, _ = quick_demo
    finals = {}
    for stage, (_, key) in STAGES.items():
        with open(os.path.join(out, stage, "args.json")) as f:
            finals[stage] = json.load(f)[key]
    return out, finals


def _step_shift(finals):
    """Rewrite a demo stage's step numbers: the full demo's final step becomes the quick one's."""
    def checkpoint(match):
        stage, name, step = match.group(1), match.group(2), int(match.group(3))
        return f"demo_out/{stage}/{name}{step - STAGES[stage][0] + finals[stage]:06d}.pt"

    def rewrite(command):
        command = re.sub(r"demo_out/(\w+)/([\w.]*?_?)(\d{6})\.pt",
                         lambda m: checkpoint(m) if m.group(1) in STAGES else m.group(0), command)
        continued = re.search(r"--output_dir demo_out/(\w+)(\s|$)", command)
        if continued and continued.group(1) in STAGES:
            stage = continued.group(1)
            command = re.sub(r"--(lr_anneal_steps|iterations) (\d+)",
                             lambda m: f"--{m.group(1)} {int(m.group(2)) - STAGES[stage][0] + finals[stage]}", command)
        return command

    return rewrite


def _expected_files(comments, rewrite):
    """Paths named by `# -> DIR/FILE, FILE2 (what it is), ...` comments (later names share DIR)."""
    paths = []
    for comment in comments:
        if comment.startswith("# ->"):
            names = re.findall(r"[\w./-]+\.(?:npz|png|json|pt|csv)\b", comment)
            folder = os.path.dirname(names[0])
            paths += [rewrite(n if "/" in n else f"{folder}/{n}") for n in names]
    return paths


def _given(name):
    flags = _assignments()[name]
    return dict(zip(flags[::2], flags[1::2]))


def test_the_section_gives_the_demo_flags_and_the_demo_numbers():
    for name, flags in (("MODEL_FLAGS", model_flags(FULL)), ("CLASSIFIER_FLAGS", classifier_flags(FULL))):
        assert _given(name) == {f"--{k}": str(v) for k, v in flags.items()}, (
            f"README {name} differ from scripts/demo.py; update the 'After the demo' section")
    section = _section()
    for stage, (final, _) in STAGES.items():
        assert re.search(rf"demo_out/{stage}/[\w.]*?{final:06d}\.pt", section), (stage, final)
    assert f"ema_{FULL.ema_rate}_" in section


@pytest.mark.slow
def test_every_command_runs_on_the_quick_demo_and_writes_what_it_says(demo):
    out, finals = demo
    for name, stage, keys in (("MODEL_FLAGS", "diffusion", model_and_diffusion_defaults()),
                              ("CLASSIFIER_FLAGS", "guide", classifier_defaults())):
        with open(os.path.join(out, stage, "args.json")) as f:
            recorded = json.load(f)
        for flag, value in _given(name).items():  # the flags as the demo's own run recorded them
            assert flag[2:] in keys and str(recorded[flag[2:]]) == value, (name, flag, value, recorded.get(flag[2:]))
    rewrite = _step_shift(finals)
    variables = "\n".join(f'{k}="{" ".join(v)}"' for k, v in _assignments().items())
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
               GUIDED_DIFFUSION_CACHE=os.path.join(out, "cache"), PYTHONPATH=REPO,
               OMP_NUM_THREADS="1")  # tiny convolutions: extra threads only fight the other tests for cores
    ran = 0
    for block in _blocks():
        for command, comments in _commands(block):
            if re.fullmatch(r"[A-Z_]+=.*", command) or command.startswith(". .venv/bin/activate"):
                continue
            shell = rewrite(command).replace("demo_out/", out + "/").replace(".venv/bin/python", sys.executable)
            proc = subprocess.run(["bash", "-c", f"set -e\n{variables}\n{shell}"], cwd=REPO, env=env,
                                  capture_output=True, text=True, timeout=1800)
            assert proc.returncode == 0, (command, proc.stdout[-2000:], proc.stderr[-3000:])
            for path in _expected_files(comments, rewrite):
                assert os.path.exists(path.replace("demo_out/", out + "/")), (command, path)
            for comment in comments:
                if comment.startswith("# prints:"):
                    for label in comment[len("# prints:"):].split(","):
                        assert f"\n{label.strip()}: " in "\n" + proc.stdout, (command, label, proc.stdout[-2000:])
            if "--resume_checkpoint auto" in command:  # the section says a rerun has nothing to do
                again = subprocess.run(["bash", "-c", f"set -e\n{variables}\n{shell}"], cwd=REPO, env=env,
                                       capture_output=True, text=True, timeout=600)
                assert again.returncode == 0 and "nothing to do: step" in again.stdout, again.stdout + again.stderr
            ran += 1
    assert ran >= 6
