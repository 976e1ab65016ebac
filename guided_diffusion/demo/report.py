"""
The demo's table: one row per sampling run with FID (beside the real-vs-real floor), precision
and recall with their standard errors, the independent judge's accuracy, model evaluations and
seconds per sample.

Standard errors are binomial, sqrt(p (1 - p) / n): precision is a fraction of the n samples
(those inside the real images' k-NN manifold) and recall a fraction of the n_ref real images, so
this treats the manifolds as fixed and understates the noise a little. FID has no closed-form
error; the floor row (real training digits against the held-out ones, at the same sizes) shows
how far from 0 the metric sits when nothing is wrong.
"""

import math

import numpy as np

from ..scoring.pixel_judge import binomial_stderr

HEADER = ("| run | guidance | sampler | steps | NFE | s/sample | FID (floor {floor}) | precision | recall "
          "| independent judge |")


def _pm(value, stderr, digits=3):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f} ± {stderr:.{digits}f}"


def add_stderrs(row, num_samples, num_reference):
    """Add `precision_se` and `recall_se` to a row dict holding `Precision` and `Recall`."""
    row["precision_se"] = binomial_stderr(row["Precision"], num_samples)
    row["recall_se"] = binomial_stderr(row["Recall"], num_reference)
    return row


def format_table(rows, floor):
    """
    :param rows: dicts with run, guidance, sampler, steps, nfe, seconds_per_sample, FID,
                 Precision(+_se), Recall(+_se), judge, judge_se, same_family.
    :param floor: the floor row's dict (FID, Precision, Recall of real against real).
    """
    lines = [HEADER.format(floor=f"{floor['FID']:.2f}"), "|" + "---|" * 10]
    for r in rows:
        lines.append(
            f"| {r['run']} | {r['guidance']} | {r['sampler']} | {r['steps']} | {r['nfe']} | "
            f"{r['seconds_per_sample']:.3f} | {r['FID']:.2f} | {_pm(r['Precision'], r['precision_se'])} | "
            f"{_pm(r['Recall'], r['recall_se'])} | {_pm(r['judge'], r['judge_se'])} |")
    lines.append(f"| real vs real (floor) | – | – | – | – | – | {floor['FID']:.2f} | "
                 f"{_pm(floor['Precision'], floor['precision_se'])} | {_pm(floor['Recall'], floor['recall_se'])} "
                 f"| {_pm(floor.get('judge'), floor.get('judge_se', 0.0))} (held-out) |")
    return "\n".join(lines)


def histogram_line(histogram):
    """'0: 9.7%, 1: 10.3%, ...' for a label histogram (fractions summing to 1)."""
    return ", ".join(f"{c}: {100 * p:.1f}%" for c, p in enumerate(histogram))


def trade_off(rows_by_name, names):
    """
    The paper's trade-off across classifier scales, read off the rows `names` (the lowest scale
    first, the highest last): for each metric, the change from the first to the last scale in
    units of its standard error (sqrt of the summed variances), so a reader can tell a trend from
    noise. The rows share seeds, so this overstates the noise of a change;
    benchmarks/bench_trade_off.py gives the paired errors.

    :return: {"judge": z, "Precision": z, "Recall": z} or {} when a row is missing.
    """
    if not all(n in rows_by_name for n in names):
        return {}
    first, last = rows_by_name[names[0]], rows_by_name[names[-1]]
    out = {}
    for key, se in (("judge", "judge_se"), ("Precision", "precision_se"), ("Recall", "recall_se")):
        spread = float(np.hypot(first[se], last[se]))
        out[key] = (last[key] - first[key]) / spread if spread > 0 else float("nan")
    return out
