"""
How the demo's recipe was chosen: each candidate recipe runs the real demo (`scripts/demo.py
--recipe ... --rows ...`) into its own folder, and one table compares what they cost and what
the independent judge, FID (beside the real-vs-real floor), precision and recall say.

    python benchmarks/bench_demo_recipe.py [--out bench_out/demo_recipe] [--only a,b] [--rows ...]

Every candidate reuses its finished stages, so a killed run resumes where it stopped, and adding
a candidate only trains that one. Times are the demo's own stage seconds (training, sampling and
scoring), measured on this machine; the CPU is printed with the table.
"""

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from guided_diffusion.demo.recipe import Recipe  # noqa: E402
from guided_diffusion.runtime.precision import describe_cpu  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROWS = "null_scale_0,null_scale_4,scale_4,dpm_scale_4,free_3"

# name -> (what it tries, recipe changes from the demo's defaults in guided_diffusion/demo/recipe.py)
DEMO = Recipe()
CANDIDATES = {
    "chosen": (f"the demo's defaults (label dropout {DEMO.class_dropout_prob:g}, lr {DEMO.lr:g}, batch "
               f"{DEMO.train_batch}, {DEMO.train_steps} steps, precision {DEMO.precision})", {}),
    "dropout_0.15": ("run 2's label dropout", dict(class_dropout_prob=0.15)),
    "ancestral_100": ("run 2's 100 ancestral steps", dict(ancestral_steps=100)),
    "lr_3e-4": ("an earlier demo's learning rate", dict(lr=3e-4)),
    "old_budget": ("an earlier demo's budget: batch 32, lr 3e-4, fp32",
                   dict(train_batch=32, guide_batch=32, lr=3e-4, precision="fp32")),
    "wide_96": ("wider base model, fewer steps in about the same time", dict(num_channels=96, train_steps=DEMO.train_steps * 3 // 4)),
    "short_guide": ("a guide trained for half as long", dict(guide_steps=DEMO.guide_steps // 2)),
    "dropout_0.5": ("half the labels dropped: more training for the null branch", dict(class_dropout_prob=0.5)),
    "dropout_0.5_no_nn_dropout": ("the same without the network's dropout",
                                  dict(class_dropout_prob=0.5, dropout=0.0)),
    "dropout_0.5_twice_trained": ("label dropout 0.5, twice the base steps (over the 15 minutes)",
                                  dict(class_dropout_prob=0.5, train_steps=DEMO.train_steps * 2)),
}


def run_candidate(name, changes, out, rows):
    """Run (or resume) the demo for one candidate. :return: its results.json as a dict."""
    folder = os.path.join(out, name)
    cmd = [sys.executable, os.path.join(REPO, "scripts", "demo.py"), "--output_dir", folder,
           "--recipe", json.dumps(changes), "--rows", rows]
    print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
    with open(os.path.join(out, f"{name}.log"), "w") as log:
        code = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT).returncode
    if code != 0:
        print(f"   failed (exit {code}); see {os.path.join(out, name + '.log')}", flush=True)
        return None
    with open(os.path.join(folder, "results.json")) as f:
        return json.load(f)


def summary_row(name, what, results):
    rows = {r["run"]: r for r in results["rows"]}
    seconds = results["stage_seconds"]
    train = sum(v for k, v in seconds.items() if k in ("diffusion", "guide"))

    def cell(run, key, se=None):
        if run not in rows:
            return "–"
        value = rows[run][key]
        return f"{value:.3f} ± {rows[run][se]:.3f}" if se else f"{value:.2f}"

    return (f"| {name} | {what} | {train:.0f} | {results['demo_seconds_all_stages']:.0f} | "
            f"{cell('null_scale_0', 'FID')} / {results['floor']['FID']:.2f} | {cell('null_scale_4', 'FID')} | "
            f"{cell('null_scale_4', 'Precision', 'precision_se')} | {cell('null_scale_0', 'Recall', 'recall_se')} | "
            f"{cell('null_scale_4', 'judge', 'judge_se')} | {cell('scale_4', 'judge', 'judge_se')} | "
            f"{cell('dpm_scale_4', 'judge', 'judge_se')} | {cell('free_3', 'judge', 'judge_se')} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--out", default=os.path.join(REPO, "bench_out", "demo_recipe"))
    parser.add_argument("--only", default="", help="comma list of candidate names (default: all)")
    parser.add_argument("--rows", default=ROWS, help="demo rows each candidate samples")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n] or list(CANDIDATES)
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        raise SystemExit(f"bench_demo_recipe.py: unknown candidate(s) {', '.join(unknown)}; "
                         f"known: {', '.join(CANDIDATES)}")
    os.makedirs(args.out, exist_ok=True)
    lines = [f"CPU: {describe_cpu()}", "",
             "| candidate | what it tries | train s | all stages s | FID null 0 / floor | FID null 4 "
             "| precision null 4 | recall null 0 | judge null 4 | judge conditional 4 | judge dpm++ 20 | judge free 3 |",
             "|" + "---|" * 12]
    for name in names:
        what, changes = CANDIDATES[name]
        results = run_candidate(name, changes, args.out, args.rows)
        if results is not None:
            lines.append(summary_row(name, what, results))
            print(lines[-1], flush=True)
    text = "\n".join(lines)
    print("\n" + text)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
