"""
Denoising trajectories: which timesteps to show, and the frames of any sampler's loop.

Every sampler (ancestral, DDIM, DPM-Solver++) runs through the one progressive loop, which
yields one dict per timestep t = S-1 .. 0 of the (possibly respaced) process of S steps, with
"sample" (the state the step produced) and "pred_xstart" (the x_0 the model predicted in that
step). The frame of timestep t holds both. In the numbering of Ho et al. (x_0 is the data) the
step at t produces x_t, so the frame at t = 0 is the final sample.

Frame rule (`frame_timesteps`): K frames at

    t_k = floor((S - 1) * (1 - k / (K - 1))^2 + 1/2),   k = 0 .. K-1,

made strictly decreasing by t_k = min(max(t_k, K - 1 - k), t_{k-1} - 1). So t_0 = S - 1 (the
first step, almost pure noise) and t_{K-1} = 0 (the final sample), and the gaps shrink
linearly towards the end, where the image forms: with evenly spaced frames most of the strip
shows noise. K = S shows every step; K = 1 shows only t = 0.
"""

import math
import os

import numpy as np
import torch as th

from ..data.pixels import to_uint8_nhwc
from ..runtime.fileio import atomic_savez
from .grid import save_grid


def check_num_frames(num_frames, num_timesteps):
    """
    :param num_frames: K, the --save_trajectory value (0 means no trajectory).
    :param num_timesteps: S, the steps of the (respaced) sampling process.
    :raises ValueError: when K < 0 or K > S, naming the flag and the limit.
    """
    if num_frames < 0:
        raise ValueError(f"--save_trajectory must be >= 0 (0: no trajectory), got {num_frames}")
    if num_frames > num_timesteps:
        raise ValueError(
            f"--save_trajectory {num_frames} is larger than the {num_timesteps} steps of the "
            f"sampling process; use at most {num_timesteps} (or respace to more steps)"
        )
    return int(num_frames)


def frame_timesteps(num_timesteps, num_frames):
    """
    The K timesteps of the frame rule in the module docstring.

    :param num_timesteps: S >= 1.
    :param num_frames: K in [1, S].
    :return: a list of K ints, strictly decreasing from S - 1 (when K > 1) to 0.
    """
    if num_frames < 1:
        raise ValueError(f"a trajectory needs at least one frame, got {num_frames}")
    check_num_frames(num_frames, num_timesteps)
    if num_frames == 1:
        return [0]
    out = []
    for k in range(num_frames):
        raw = math.floor((num_timesteps - 1) * (1 - k / (num_frames - 1)) ** 2 + 0.5)
        t = max(raw, num_frames - 1 - k)  # leave room for the frames still to come
        if out:
            t = min(t, out[-1] - 1)
        out.append(t)
    return out


class TrajectoryRecorder:
    """
    Collects the frames of sampling loops without touching their values.

    Each `watch(progressive)` call is one batch: it yields the loop's dicts unchanged, keeping
    detached CPU copies of "sample" and "pred_xstart" at the timesteps of `frame_timesteps`,
    until `rows` rows (over all batches so far) are kept.

    :param num_timesteps: S, the steps of the loops to watch.
    :param num_frames: K in [1, S].
    :param rows: how many rows to keep over all batches (None: all).
    """

    def __init__(self, num_timesteps, num_frames, rows=None):
        self.num_timesteps = int(num_timesteps)
        self.timesteps = frame_timesteps(num_timesteps, num_frames)
        self.rows = rows
        self._wanted = set(self.timesteps)
        self._batches = []  # per batch: (steps seen, x_t frames, pred_x0 frames)

    def _room(self):
        kept = sum(b["x_t"][0].shape[0] for b in self._batches if b["x_t"])
        return None if self.rows is None else max(0, self.rows - kept)

    def watch(self, progressive):
        """
        :param progressive: a generator of step dicts for t = S-1 .. 0.
        :return: a generator of the same dicts.
        """
        room = self._room()
        batch = {"steps": 0, "x_t": [], "x0": []}
        if room != 0:
            self._batches.append(batch)
        for out in progressive:
            t = self.num_timesteps - 1 - batch["steps"]
            batch["steps"] += 1
            if room != 0 and t in self._wanted:
                batch["x_t"].append(_keep(out["sample"], room))
                batch["x0"].append(_keep(out["pred_xstart"], room))
            yield out

    def frames(self):
        """
        :return: (x_t, pred_x0), each a float32 tensor [rows, K, C, H, W] (column k at
                 timestep `self.timesteps[k]`).
        :raises RuntimeError: if nothing was watched or a watched loop did not run S steps.
        """
        if not self._batches:
            raise RuntimeError("no sampling loop was watched")
        for b in self._batches:
            if b["steps"] != self.num_timesteps:
                raise RuntimeError(f"a watched loop ran {b['steps']} steps, expected {self.num_timesteps}")
        x_t = th.cat([th.stack(b["x_t"], dim=1) for b in self._batches])
        x0 = th.cat([th.stack(b["x0"], dim=1) for b in self._batches])
        return x_t, x0


def _keep(x, room):
    return x[:room].detach().to("cpu", th.float32).clone()


def samples_stem(out_dir, num_samples, image_size):
    """
    The path prefix of a sampling run's final files (`outputs.save_samples`), which its strips
    share: "<out_dir>/samples_{N}x{S}x{S}x3".
    """
    return os.path.join(out_dir, f"samples_{num_samples}x{image_size}x{image_size}x3")


def frame_captions(timesteps, timestep_map=None):
    """
    :param timesteps: steps of the (respaced) process.
    :param timestep_map: the respaced process's original timesteps (SpacedDiffusion's), if any;
                         captions then show the original timestep the model sees.
    :return: a list of strings "t=<timestep>".
    """
    if timestep_map is not None:
        timesteps = [timestep_map[t] for t in timesteps]
    return [f"t={int(t)}" for t in timesteps]


def save_strips(stem, recorder, timestep_map=None):
    """
    Write the frames of `recorder` as two PNG strips, one row per sample and one column per
    timestep (captioned with the model's timestep), and an npz of the same frames:

    - `<stem>_trajectory_x_t.png`: the sample after each shown step;
    - `<stem>_trajectory_pred_x0.png`: the x_0 predicted in that step;
    - `<stem>_trajectory.npz`: x_t and pred_x0 as uint8 [rows, K, H, W, 3], timesteps (steps of
      the process) and model_timesteps (the timesteps the model saw), int64 [K].

    :param stem: path prefix, e.g. "<out_dir>/samples_16x8x8x3".
    :param timestep_map: a respaced process's original timesteps (SpacedDiffusion's), if any.
    :return: the two PNG paths.
    """
    x_t, x0 = recorder.frames()
    rows, k = x_t.shape[:2]
    captions = frame_captions(recorder.timesteps, timestep_map) * rows
    arrays, paths = {}, []
    for name, frames in (("x_t", x_t), ("pred_x0", x0)):
        cells = to_uint8_nhwc(frames.reshape(rows * k, *frames.shape[2:]))
        arrays[name] = cells.reshape(rows, k, *cells.shape[1:])
        paths.append(f"{stem}_trajectory_{name}.png")
        save_grid(paths[-1], cells, captions, max_images=rows * k, max_cols=k)
    model_t = [timestep_map[t] for t in recorder.timesteps] if timestep_map is not None else recorder.timesteps
    atomic_savez(f"{stem}_trajectory.npz", timesteps=np.asarray(recorder.timesteps, dtype=np.int64),
                 model_timesteps=np.asarray(model_t, dtype=np.int64), **arrays)
    return paths
