"""
End-to-end demo of guided diffusion on the embedded handwritten digits (`make demo`).

Trains a class-conditional model with label dropout and a noisy classifier (the guide), then
samples with classifier guidance (scales 1 and 4 on the requested label's branch, ancestral and
DPM-Solver++; 4 on the null label) and classifier-free guidance (scales 1 and 3, and 3 inside an
interval), and scores every batch against the held-out digits: FID beside the real-vs-real
floor, precision and recall, and an independent pixel k-NN judge. Every stage is a real
script whose command is printed; a second run reuses every finished stage (delete a folder under
the output directory to redo it).

    python scripts/demo.py [--output_dir demo_out] [--quick] [--rows free_1,null_scale_0]
                           [--recipe '{"train_steps": 4000}']
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from guided_diffusion.demo import report  # noqa: E402
from guided_diffusion.demo.pipeline import run_demo  # noqa: E402
from guided_diffusion.demo.recipe import QUICK_CHANGES, TRADE_OFF_ROWS, UNGUIDED_ROWS, Recipe, select_rows  # noqa: E402
from guided_diffusion.demo.stages import REPO  # noqa: E402
from guided_diffusion.runtime.cli import run_cli  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--output_dir", default=os.path.join(REPO, "demo_out"), help="where every stage writes")
    parser.add_argument("--quick", action="store_true", help="tiny step counts: checks the pipeline, not quality")
    parser.add_argument("--rows", default="", help="comma list of table rows to run (default: all)")
    parser.add_argument("--recipe", default="", help="JSON object of recipe fields to change (see demo/recipe.py)")
    args = parser.parse_args()
    try:
        changes = json.loads(args.recipe) if args.recipe else {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"--recipe must be a JSON object, e.g. '{{\"train_steps\": 4000}}': {exc}") from None
    recipe = Recipe().replace(**dict(QUICK_CHANGES if args.quick else {}, **changes))
    rows = select_rows(args.rows)
    out = os.path.abspath(args.output_dir)
    # the digits' image folders live under the output directory, not in the user's cache
    os.environ["GUIDED_DIFFUSION_CACHE"] = os.path.join(out, "cache")
    print(f"demo: writing everything under {out}")
    results = run_demo(out, recipe, rows)

    table = report.format_table(results["rows"], results["floor"])
    by_name = {r["run"]: r for r in results["rows"]}
    lines = [table, "", f"CPU: {results['cpu']}",
             f"stages: {results['demo_seconds_all_stages']:.0f} s in all "
             f"({results['demo_seconds_this_run']:.0f} s in this run)"]
    for name in UNGUIDED_ROWS:
        if name in by_name:
            lines.append(f"independent judge's labels, unguided ({name}): "
                         + report.histogram_line(by_name[name]["histogram"]))
    trend = report.trade_off(by_name, TRADE_OFF_ROWS)
    if trend:
        lines.append(f"classifier scale 0 -> 4 on the conditional branch ({' -> '.join(TRADE_OFF_ROWS)}), "
                     "change in standard errors: "
                     + ", ".join(f"{k} {v:+.1f}" for k, v in trend.items()))
    text = "\n".join(lines)
    print(f"\n[6/6] results\n\n{text}")
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(f"\nwrote {os.path.join(out, 'results.md')} and results.json")


if __name__ == "__main__":
    run_cli(main)
