"""
Running the demo's stages: each is a real script of the checkout, started as a subprocess with
real flags (so every command the demo prints can be copied), its output teed into a log file,
with a heartbeat on the console. A stage whose output exists is reused, never redone.
"""

import json
import os
import re
import subprocess
import sys
import time

# the checkout the package was imported from: the demo runs its scripts/ and evaluations/
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def flag_args(flags):
    """{"a": 1} -> ["--a", "1"]."""
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


def script_command(script, flags, launcher=()):
    """The argv of scripts/<script> (or another repo-relative path) with `flags`."""
    path = script if os.sep in script else os.path.join("scripts", script)
    return list(launcher) + [sys.executable, os.path.join(REPO, path)] + flag_args(flags)


def run_stage(title, script, flags, log_path, env=None, launcher=()):
    """
    Run a script with stdout and stderr in `log_path`, printing the command and a heartbeat.

    :return: (the log's text, seconds the stage took).
    :raises SystemExit: when the script fails, with the last lines of its log.
    """
    cmd = script_command(script, flags, launcher)
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    if launcher:
        full_env["OMP_NUM_THREADS"] = "1"
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
    seconds = time.time() - start
    print(f"  done in {seconds:.0f} s", flush=True)
    with open(log_path) as f:
        return f.read(), seconds


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


class StageTimes:
    """Seconds per stage, kept in `path` (JSON) so that a resumed demo still reports them."""

    def __init__(self, path):
        self.path = path
        self.seconds = {}
        if os.path.exists(path):
            with open(path) as f:
                self.seconds = json.load(f)

    def record(self, name, seconds):
        self.seconds[name] = round(float(seconds), 1)
        tmp = f"{self.path}.tmp"
        with open(tmp, "w") as f:
            json.dump(self.seconds, f, indent=2, sort_keys=True)
        os.replace(tmp, self.path)

    def total(self):
        return sum(self.seconds.values())


def train(title, out, script, flags, final_name, times, launcher):
    """
    Train into `out` unless `final_name` is already there (a killed run resumes from its last
    checkpoint through --resume_checkpoint auto).

    :return: the final checkpoint's path.
    """
    os.makedirs(out, exist_ok=True)
    final = os.path.join(out, final_name)
    if os.path.exists(final):
        print(f"{title}\n  reusing {final} (delete {out} to retrain)")
        return final
    # the log goes beside the run folder: inside it, --resume_checkpoint auto would call it another run's file
    _, seconds = run_stage(title, script, dict(flags, resume_checkpoint="auto", output_dir=out),
                           f"{out}.log", launcher=launcher)
    times.record(os.path.basename(out), seconds)
    if not os.path.exists(final):
        raise SystemExit(f"demo: {script} finished without writing {final}")
    return final


def parse_metrics(text, names):
    """`name: value` lines of a script's output; a missing name reads as nan."""
    values = {}
    for name in names:
        match = re.search(rf"^{re.escape(name)}: (\S+)$", text, flags=re.MULTILINE)
        values[name] = float(match.group(1)) if match else float("nan")
    return values


def evaluate(ref, npzs, extra_flags, log_path):
    """
    Run evaluations/evaluator.py REF SAMPLE [SAMPLE ...] once for all batches (one Inception
    start-up). Unlike `run_stage`, stdout stays apart from stderr, where the progress bars would
    split the metric lines.

    :return: one {"FID", "sFID", "Precision", "Recall"} dict of floats per batch, in order.
    """
    cmd = [sys.executable, os.path.join(REPO, "evaluations", "evaluator.py"), ref, *npzs] + flag_args(extra_flags)
    print(f"[5/6] evaluating {len(npzs)} batches against the held-out digits\n"
          f"  $ python evaluations/evaluator.py {ref} {' '.join(npzs)} {' '.join(flag_args(extra_flags))}\n"
          f"  log: {log_path}", flush=True)
    with open(log_path, "w") as log:
        proc = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=log, text=True)
        log.write(proc.stdout)
    if proc.returncode != 0:
        raise SystemExit(f"demo: evaluator failed (exit {proc.returncode}); see {log_path}")
    blocks = proc.stdout.split("== ")[1:] if len(npzs) > 1 else [proc.stdout]
    return [parse_metrics(block, ["FID", "sFID", "Precision", "Recall"]) for block in blocks]
