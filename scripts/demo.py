"""
End-to-end demo of classifier guidance on the embedded handwritten digits (`make demo`).

Runs the real scripts as subprocesses with real flags, everything under one output folder:
  1. writes the digits (training split, and the 300 held-out images as the reference batch);
  2. trains a small unconditional diffusion model (`image_train.py`);
  3. trains a noisy classifier, the guide (`classifier_train.py`), and a clean one, the judge
     (`classifier_train.py --noised False`);
  4. samples with `classifier_sample.py` at guidance scales 0, 1 and 4 (ancestral) and with DDIM;
  5. scores each batch with `evaluations/evaluator.py` against the held-out digits and with
     `classifier_accuracy.py` (the judge's agreement with the requested labels);
  6. prints the table and the PNG grid of every run, and writes `results.md` / `results.json`.

A second run reuses every finished stage (and says so); delete a stage's folder to redo it.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

# The digits' native 8x8. At 64 channels GroupNorm(32) still sees 2 channels per group; at 32
# channels it becomes an instance norm that erases each channel's mean, and the model then cannot
# learn that digits are grey (16x16 runs at 32 channels came out with strong colour casts).
IMAGE_SIZE = 8
NUM_CLASSES = 10
RANKS = 2  # MPI processes for training and sampling (one per core of a 2-core machine)
DIFFUSION_FLAGS = dict(
    image_size=IMAGE_SIZE, num_channels=64, num_res_blocks=1, channel_mult="1,2",
    attention_resolutions="4", num_head_channels=32, dropout=0.1, learn_sigma=True,
    diffusion_steps=1000, noise_schedule="cosine",
)
CLASSIFIER_FLAGS = dict(
    image_size=IMAGE_SIZE, classifier_width=64, classifier_depth=1, classifier_channel_mult="1,2",
    classifier_attention_resolutions="4", classifier_pool="attention", num_classes=NUM_CLASSES,
)
EMA_RATE = "0.995"
# name -> (classifier scale, sampler flags); every run uses the same seed, hence the same noise
RUNS = {
    "scale_0": (0.0, dict(timestep_respacing="100")),
    "scale_1": (1.0, dict(timestep_respacing="100")),
    "scale_4": (4.0, dict(timestep_respacing="100")),
    "ddim_scale_4": (4.0, dict(timestep_respacing="ddim50", use_ddim=True)),
}
FULL = dict(diffusion_steps=3000, diffusion_batch=32, guide_steps=1000, judge_steps=500,
            classifier_batch=32, num_samples=300, sample_batch=150)
QUICK = dict(diffusion_steps=10, diffusion_batch=8, guide_steps=6, judge_steps=6,
             classifier_batch=8, num_samples=20, sample_batch=10)

def flag_args(flags):
    out = []
    for key, value in flags.items():
        out += [f"--{key}", str(value)]
    return out


def mpi_launcher(ranks):
    """
    `mpiexec -n ranks` from this interpreter's environment when it works here, else () (one
    process). Tiny convolutions scale badly over threads on a small CPU, so the demo runs its
    training and sampling as `ranks` single-threaded MPI processes instead.
    """
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if ranks < 2 or not os.path.exists(mpiexec):
        return ()
    probe = [mpiexec, "-n", str(ranks), sys.executable, "-c",
             "from mpi4py import MPI; assert MPI.COMM_WORLD.Get_size() > 1"]
    try:
        ok = subprocess.run(probe, capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    if not ok:
        print(f"demo: {mpiexec} does not start {ranks} ranks here; running single processes instead")
        return ()
    return (mpiexec, "-n", str(ranks))


def run_stage(title, script, flags, log_path, env=None, launcher=()):
    """Run scripts/<script> (or another repo path) with its output in `log_path`; show a heartbeat."""
    path = script if os.sep in script else os.path.join("scripts", script)
    cmd = list(launcher) + [sys.executable, os.path.join(REPO, path)] + flag_args(flags)
    threads = "1" if launcher else os.environ.get("OMP_NUM_THREADS", "")
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    if threads:
        full_env["OMP_NUM_THREADS"] = threads
    shown = ["python" if c == sys.executable else c for c in cmd]
    print(f"{title}\n  $ {' '.join(shown)}\n  log: {log_path}", flush=True)
    start, last_beat, status = time.time(), time.time(), ""
    with open(log_path, "w") as log, subprocess.Popen(
        cmd, cwd=REPO, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as proc:
        for line in proc.stdout:
            log.write(line)
            log.flush()  # so `tail -f` on the log follows the run
            status = _status_from(line.rstrip("\n").split("\r")[-1], status)
            if time.time() - last_beat > 20 and status:
                print(f"  ... {status} ({time.time() - start:.0f} s)", flush=True)
                last_beat = time.time()
        code = proc.wait()
    if code != 0:
        with open(log_path) as f:
            tail = "".join(f.readlines()[-15:])
        raise SystemExit(f"demo: {title.strip()} failed (exit {code}); last lines of {log_path}:\n{tail}")
    print(f"  done in {time.time() - start:.0f} s", flush=True)
    with open(log_path) as f:
        return f.read()


def _status_from(line, status):
    match = re.match(r"\|\s*(step|loss|train_loss|train_acc@1)\s*\|\s*(\S+)", line)
    if match:
        key, value = match.groups()
        if key == "step":
            return f"step {float(value):.0f}"  # the logger prints 1400 as 1.4e+03
        return f"{status.split(',')[0]}, {key} {value}"
    if "sampling" in line or "it/s" in line or "img" in line:
        return line.strip()[-80:]
    return status


def train(title, out, script, flags, final_name, launcher):
    """Train unless `final_name` already exists in `out`; :return: the checkpoint path."""
    os.makedirs(out, exist_ok=True)
    final = os.path.join(out, final_name)
    if os.path.exists(final):
        print(f"{title}\n  reusing {final} (delete {out} to retrain)")
        return final
    run_stage(title, script, dict(flags, resume_checkpoint="auto"), os.path.join(out, "train.log"),
              env={"OPENAI_LOGDIR": out}, launcher=launcher)
    if not os.path.exists(final):
        raise SystemExit(f"demo: {script} finished without writing {final}")
    return final


def parse_metrics(text, names):
    values = {}
    for name in names:
        match = re.search(rf"^{re.escape(name)}: (\S+)$", text, flags=re.MULTILINE)
        values[name] = float(match.group(1)) if match else float("nan")
    return values


def train_models(out, size, train_dir, launcher):
    """Train the diffusion model, the guide and the judge; :return: their checkpoint paths by name."""
    common = dict(data_dir=train_dir, seed=0, log_interval=100)
    ranks = RANKS if launcher else 1  # the scripts' --batch_size is per rank
    steps = size["diffusion_steps"]
    diffusion_ckpt = train(
        f"[2/6] diffusion model: {steps} steps, batch {size['diffusion_batch']}",
        os.path.join(out, "diffusion"), "image_train.py",
        dict(DIFFUSION_FLAGS, **common, batch_size=size["diffusion_batch"] // ranks, lr=3e-4,
             ema_rate=EMA_RATE, lr_anneal_steps=steps, save_interval=steps),
        f"ema_{EMA_RATE}_{steps:06d}.pt", launcher,
    )
    classifier_common = dict(CLASSIFIER_FLAGS, **common, batch_size=size["classifier_batch"] // ranks,
                             lr=1e-3, anneal_lr=True, eval_interval=100)
    guide_ckpt = train(
        f"[3/6] guide: noisy classifier, {size['guide_steps']} steps",
        os.path.join(out, "guide"), "classifier_train.py",
        dict(classifier_common, noised=True, iterations=size["guide_steps"], save_interval=size["guide_steps"],
             diffusion_steps=DIFFUSION_FLAGS["diffusion_steps"], noise_schedule=DIFFUSION_FLAGS["noise_schedule"]),
        f"model{size['guide_steps']:06d}.pt", launcher,
    )
    judge_ckpt = train(
        f"[3/6] judge: clean classifier, {size['judge_steps']} steps",
        os.path.join(out, "judge"), "classifier_train.py",
        dict(classifier_common, noised=False, iterations=size["judge_steps"], save_interval=size["judge_steps"]),
        f"model{size['judge_steps']:06d}.pt", launcher,
    )
    return dict(diffusion=diffusion_ckpt, guide=guide_ckpt, judge=judge_ckpt)


def main():
    parser = argparse.ArgumentParser(description="End-to-end classifier-guidance demo on the embedded digits.")
    parser.add_argument("--output_dir", default=os.path.join(REPO, "demo_out"))
    parser.add_argument("--quick", action="store_true", help="tiny step counts: checks the pipeline, not quality")
    args = parser.parse_args()
    size = QUICK if args.quick else FULL
    out = os.path.abspath(args.output_dir)
    os.makedirs(out, exist_ok=True)
    os.environ["GUIDED_DIFFUSION_CACHE"] = os.path.join(out, "cache")  # digits image folders live here
    t0 = time.time()
    print(f"demo: writing everything under {out}")

    from guided_diffusion.data import digits as digits

    reference = os.path.join(out, f"reference_heldout_{IMAGE_SIZE}px.npz")
    train_dir, _ = digits.materialize_digits("train", IMAGE_SIZE)
    if not os.path.exists(reference):
        digits.write_reference_npz(reference, IMAGE_SIZE, split="heldout")
        print(f"[1/6] digits: training split in {train_dir}; held-out reference batch {reference}")
    else:
        print(f"[1/6] digits: reusing {train_dir} and {reference}")

    launcher = mpi_launcher(RANKS)
    models = train_models(out, size, train_dir, launcher)

    ref_stats = os.path.join(out, f"reference_stats_{IMAGE_SIZE}px.npz")
    rows = [sample_and_score(name, scale, sampler, out, size, models, reference, ref_stats, launcher)
            for name, (scale, sampler) in RUNS.items()]
    judge_on_real = judge_accuracy(reference, models["judge"], os.path.join(out, "judge", "heldout_accuracy.log"))

    table = format_table(rows)
    summary = (f"judge accuracy on the {reference_count(reference)} held-out real digits: {judge_on_real:.3f} "
               f"(chance: {1 / NUM_CLASSES:.3f})")
    print(f"\n[6/6] results ({time.time() - t0:.0f} s in all)\n\n{table}\n\n{summary}")
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write(f"{table}\n\n{summary}\n")
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(dict(runs=rows, judge_accuracy_heldout=judge_on_real), f, indent=2)
    print(f"\nwrote {os.path.join(out, 'results.md')} and results.json")


def sample_and_score(name, scale, sampler, out, size, models, reference, ref_stats, launcher):
    """Sample one run with classifier_sample.py (or reuse it), then score it; :return: its table row."""
    run_dir = os.path.join(out, "samples", name)
    os.makedirs(run_dir, exist_ok=True)
    n = size["num_samples"]
    npz = os.path.join(run_dir, f"samples_{n}x{IMAGE_SIZE}x{IMAGE_SIZE}x3.npz")
    if os.path.exists(npz):
        print(f"[4/6] sampling {name}: reusing {npz}")
    else:
        flags = dict(DIFFUSION_FLAGS, **CLASSIFIER_FLAGS, **sampler, model_path=models["diffusion"],
                     classifier_path=models["guide"], classifier_scale=scale, num_samples=n,
                     batch_size=size["sample_batch"], class_labels="balanced",
                     seed=0, output_dir=run_dir, progress=False)
        run_stage(f"[4/6] sampling {name}: classifier scale {scale}, {sampler}", "classifier_sample.py",
                  flags, os.path.join(run_dir, "sample.log"), launcher=launcher)
    scores_path = os.path.join(run_dir, "scores.json")
    if os.path.exists(scores_path) and os.path.getmtime(scores_path) > os.path.getmtime(npz):
        print(f"[5/6] scores {name}: reusing {scores_path}")
        with open(scores_path) as f:
            scores = json.load(f)
    else:
        eval_flags = {"fid_method": "fast"}
        if not os.path.exists(ref_stats):
            eval_flags["save_ref_stats"] = ref_stats
        ref_arg = ref_stats if os.path.exists(ref_stats) else reference
        text = _evaluate(ref_arg, npz, eval_flags, os.path.join(run_dir, "evaluator.log"), name)
        scores = parse_metrics(text, ["FID", "sFID", "Precision", "Recall"])
        scores["Accuracy"] = judge_accuracy(npz, models["judge"], os.path.join(run_dir, "judge.log"))
        with open(scores_path, "w") as f:
            json.dump(scores, f, indent=2)
    grid = os.path.join(run_dir, f"samples_{n}x{IMAGE_SIZE}x{IMAGE_SIZE}x3.png")
    return dict(run=name, scale=scale, sampler="DDIM" if sampler.get("use_ddim") else "ancestral",
                grid=grid, **scores)


def judge_accuracy(npz, judge_ckpt, log_path):
    """The clean classifier's agreement with the labels in `npz` (classifier_accuracy.py)."""
    text = run_stage(f"[5/6] judging {os.path.basename(npz)}", "classifier_accuracy.py",
                     dict(CLASSIFIER_FLAGS, samples=npz, classifier_path=judge_ckpt),
                     log_path)
    return parse_metrics(text, ["Accuracy"])["Accuracy"]


def reference_count(reference):
    with np.load(reference, allow_pickle=False) as f:
        return len(f["arr_1"])


def _evaluate(ref, npz, extra_flags, log_path, name):
    """
    Run evaluations/evaluator.py REF SAMPLE; :return: its stdout (the five metric lines). Unlike
    `run_stage`, stdout stays apart from stderr, where the progress bars would split the lines.
    """
    path = os.path.join(REPO, "evaluations", "evaluator.py")
    cmd = [sys.executable, path, ref, npz] + flag_args(extra_flags)
    print(f"[5/6] evaluating {name}\n  $ python {' '.join(cmd[1:])}\n  log: {log_path}", flush=True)
    start = time.time()
    with open(log_path, "w") as log:
        proc = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=log, text=True)
        log.write(proc.stdout)
    if proc.returncode != 0:
        raise SystemExit(f"demo: evaluator failed on {npz} (exit {proc.returncode}); see {log_path}")
    print(f"  done in {time.time() - start:.0f} s", flush=True)
    return proc.stdout


def format_table(rows):
    lines = ["| run | sampler | scale | FID | sFID | precision | recall | judge accuracy | grid |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['sampler']} | {r['scale']:g} | {r['FID']:.2f} | {r['sFID']:.2f} | "
                     f"{r['Precision']:.3f} | {r['Recall']:.3f} | {r['Accuracy']:.3f} | {r['grid']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
