"""
The one sampling entry point: `generate_samples` turns a model and diffusion (optionally a
classifier, labels, low-resolution inputs) into uint8 images with per-sample seeds. The sampling
scripts call it for each shard (through `shard_batches`); a notebook calls it directly:

    images, labels = generate_samples(model, diffusion, num_samples=16, batch_size=8,
                                      classifier=classifier, classifier_scale=4.0,
                                      labels="balanced", sampler="dpm++2m", steps=20)

Classifier-free guidance (a model built with --class_dropout_prob) takes `guidance_scale=3.0`,
and either kind can be limited to training timesteps with `guidance_interval="100,800"`
(`guided.GuidedFunctions`).

Sample i depends only on (seed, i) and its label / low-resolution input, not on the batch size,
the device batch it shares, or how the indices are split over shards and MPI ranks.

`save_trajectory=K` also writes the denoising trajectory of the first batch (x_t and the
predicted x_0 at K timesteps, denser near the end: `trajectory.frame_timesteps`) as PNG strips;
the recorder only watches the sampling loop, so the samples are bit-identical without it.

`precision="auto"` (or "bf16", "fp16") runs the model and the classifier gradient under autocast,
`compile=True` through torch.compile (`runtime.speed`); the default fp32 runs the networks as
they are, so its samples are bit-identical to a run without these arguments.
"""

import sys

import numpy as np
import torch as th
from tqdm.auto import tqdm

from ..data.pixels import from_uint8_nhwc, to_uint8_nhwc
from ..diffusion.respacing import SpacedDiffusion, space_timesteps
from ..models.unet import SuperResModel
from ..runtime import distributed as dist_util
from ..runtime import logger
from ..runtime.speed import fast_networks, frozen_parameters
from .cfg import NOT_GIVEN
from .guided import GuidedFunctions
from .labels import check_labels, labels_for_indices, parse_class_labels
from .samplers import resolve_sampler, run_sampler
from .seeds import PerSampleNoise
from .trajectory import TrajectoryRecorder, check_num_frames, save_strips

# rows of a trajectory strip: the first samples of the first batch, like the first grid row
TRAJECTORY_ROWS = 8


def respace(diffusion, steps):
    """
    The same process on `steps` of its timesteps (`space_timesteps`' rules).

    :param diffusion: a GaussianDiffusion over all its original timesteps (e.g. built with
                      timestep_respacing="").
    :param steps: an int (that many, evenly spread) or a --timestep_respacing string ("ddim25",
                  "logsnr20").
    :return: a SpacedDiffusion whose model calls see the original timestep indices.
    :raises ValueError: when `diffusion` already skips timesteps (its original betas are gone).
    """
    timestep_map = list(getattr(diffusion, "timestep_map", range(diffusion.num_timesteps)))
    if timestep_map != list(range(diffusion.num_timesteps)):
        raise ValueError(f"steps={steps!r} needs a diffusion over all its timesteps, but this one already "
                         f"runs on {diffusion.num_timesteps} of {max(timestep_map) + 1}: build it with "
                         f"timestep_respacing='' (or pass the respacing there instead of steps)")
    kept = space_timesteps(diffusion.num_timesteps, str(steps), betas=diffusion.betas)
    return SpacedDiffusion(use_timesteps=kept,
                           betas=diffusion.betas, model_mean_type=diffusion.model_mean_type,
                           model_var_type=diffusion.model_var_type, loss_type=diffusion.loss_type,
                           rescale_timesteps=diffusion.rescale_timesteps)


def known_classes(model, classifier=None):
    """
    :return: how many classes the networks know (the model's label rows and the classifier's
             outputs, the smaller of the two), or None when neither takes labels.
    """
    counts = [getattr(model, "num_classes", None)]
    if classifier is not None:
        counts.append(classifier.out_channels)
    counts = [int(n) for n in counts if n]
    return min(counts) if counts else None


def _label_spec(labels, num_classes):
    """`labels` as `labels_for_indices` takes it: None, "balanced" or a tuple, checked."""
    if labels is None or isinstance(labels, str):
        return parse_class_labels(labels, num_classes)
    table = np.asarray(labels)
    if table.ndim != 1 or table.size == 0 or not np.issubdtype(table.dtype, np.integer):
        raise ValueError(f"labels must be None, 'balanced', a comma list or a non-empty sequence of ints, "
                         f"got {table.dtype} of shape {table.shape}")
    check_labels(table, num_classes)
    return tuple(int(v) for v in table)


def _resolve_classes(model, classifier, labels, num_classes):
    """:return: (num_classes, label spec), both None when no network takes labels."""
    known = known_classes(model, classifier)
    if known is None:
        if labels is not None and not (isinstance(labels, str) and not labels.strip()):
            raise ValueError("labels need a class-conditional model or a classifier")
        return None, None
    if num_classes is not None and not 0 < num_classes <= known:
        raise ValueError(f"num_classes must be in [1, {known}] (the classes the networks know), got {num_classes}")
    num_classes = num_classes or known
    return num_classes, _label_spec(labels, num_classes)


class _Job:
    """What every batch of one `generate_samples` call shares, resolved and checked once."""

    def __init__(self, model, diffusion, *, classifier, classifier_scale, guidance_scale, guidance_interval,
                 labels, num_classes, low_res, sampler, eta, clip_denoised, device, speed):
        self.diffusion, self.sampler, self.eta, self.clip_denoised = diffusion, sampler, eta, clip_denoised
        self.device = device or next(model.parameters()).device
        precision, compile, networks = speed
        networks = networks or fast_networks(model, classifier, precision=precision, compile=compile,
                                             device=self.device)
        self.classifier = classifier
        self.num_classes, self.labels = _resolve_classes(model, classifier, labels, num_classes)
        if isinstance(model, SuperResModel) != (low_res is not None):
            raise ValueError("low_res (uint8 [M, h, w, 3]) is needed exactly when the model is a SuperResModel")
        self.low_res = None if low_res is None else np.asarray(low_res)
        self.guided = GuidedFunctions(
            networks.model, diffusion, classifier=networks.classifier, classifier_scale=classifier_scale,
            guidance_scale=NOT_GIVEN if guidance_scale is None else guidance_scale,
            guidance_interval=guidance_interval, null_labels=self.labels == "null",
        )
        self.shape = (3, model.image_size, model.image_size)

    def batch(self, indices, seed, watch=None):
        """
        :param watch: passed to `run_sampler` (e.g. a trajectory recorder's watch).
        :return: (uint8 images [len(indices), H, W, 3], int64 labels [len(indices)] or None).
        """
        indices = np.asarray(indices, dtype=np.int64)
        model_kwargs, labels = {}, None
        if self.labels == "null":
            labels = np.full(len(indices), self.guided.null_label, dtype=np.int64)
        elif self.num_classes is not None:
            labels = labels_for_indices(self.labels, seed, indices, self.num_classes)
        if labels is not None:
            model_kwargs["y"] = th.from_numpy(labels).to(self.device)
        if self.low_res is not None:
            model_kwargs["low_res"] = from_uint8_nhwc(self.low_res[indices % len(self.low_res)], self.device)
        noise = PerSampleNoise(seed, indices, self.device)
        with th.no_grad():
            x = run_sampler(self.diffusion, self.sampler, self.guided.model_fn, (len(indices),) + self.shape,
                            noise, eta=self.eta, clip_denoised=self.clip_denoised, model_kwargs=model_kwargs,
                            cond_fn=self.guided.cond_fn, device=self.device, watch=watch)
        # null-label samples belong to no class: no labels are reported for them
        return to_uint8_nhwc(x), None if self.labels == "null" else labels


def generate_samples(model, diffusion, *, num_samples=None, indices=None, batch_size=16, seed=0,
                     sampler="ancestral", steps=None, eta=0.0, clip_denoised=True, classifier=None,
                     classifier_scale=0.0, guidance_scale=None, guidance_interval="", labels=None,
                     num_classes=None, low_res=None, device=None, progress=True, save_trajectory=0,
                     trajectory_stem=None, precision="fp32", compile=False, networks=None):
    """
    Sample images with per-sample seeds.

    :param model: UNetModel or SuperResModel (in eval mode); class-conditional when it has
                  `num_classes`, then it gets each sample's label.
    :param diffusion: a (Spaced)GaussianDiffusion; its timesteps are the step grid.
    :param num_samples: sample indices 0 .. num_samples - 1; or give `indices` instead.
    :param indices: the global sample indices to produce (e.g. one shard of a larger run).
    :param batch_size: samples per forward pass.
    :param seed: the run seed: sample i's noise and random label come from (seed, i).
    :param sampler: one of `samplers.SAMPLERS` ("ancestral", "ddim", "dpm++2m", ...).
    :param steps: respace `diffusion` (over all its timesteps) to this many steps first (an
                  int, or a --timestep_respacing string); None keeps its grid.
    :param eta: DDIM's eta (ddim only).
    :param classifier: a noise-aware classifier for guidance (its outputs bound the labels).
    :param classifier_scale: the guidance scale s (0: the classifier only bounds the labels).
    :param guidance_scale: classifier-free guidance scale w >= 0 for a model with a null class;
                           None: not given (plain conditional sampling, or with a classifier the
                           null-label branch; see `cfg.classifier_free_scales`).
    :param guidance_interval: "lo,hi": guidance of either kind only at training timesteps
                              lo <= t <= hi; "" every step.
    :param labels: when a network takes labels: None (uniform per sample from its own seeded
                   stream), "balanced" (i % num_classes), a comma list string, or a sequence of
                   ints cycled over the samples (sample i gets labels[i % len(labels)]), or
                   "null" (the null label: the unconditional branch; no labels are returned).
    :param num_classes: draw labels from [0, num_classes) (default: every class the networks
                        know; the null class of a label-dropout model is not one of them).
    :param low_res: SuperResModel only: uint8 [M, h, w, 3]; sample i upsamples low_res[i % M].
    :param device: where sampling runs (default: the model's device).
    :param progress: a tqdm bar (images) on rank 0.
    :param save_trajectory: K > 0: write the first batch's trajectory (its first TRAJECTORY_ROWS
                            samples, K frames; `trajectory.save_strips`) at `trajectory_stem`;
                            0: none. K may not exceed the sampling steps.
    :param trajectory_stem: path prefix of the strips, e.g. "<dir>/samples_16x64x64x3".
    :param precision, compile: "fp32" (networks as they are), "bf16", "fp16" or "auto"; torch.compile: for the model
        and the classifier gradient (`runtime.speed`); `networks`, wrapped once by `shard_batches`, overrides both.
    :return: (images uint8 numpy [N, H, W, 3], labels int64 numpy [N], or None when no network
             takes labels), rows in the order of the indices.
    :raises ValueError: for bad arguments (sampler, eta, labels, classes, low_res, counts,
                        save_trajectory).
    """
    indices = _sample_indices(num_samples, indices, batch_size)
    sampler = resolve_sampler(sampler, eta=eta)
    if steps is not None:
        diffusion = respace(diffusion, steps)
    job = _Job(model, diffusion, classifier=classifier, classifier_scale=classifier_scale,
               guidance_scale=guidance_scale, guidance_interval=guidance_interval, labels=labels,
               num_classes=num_classes, low_res=low_res, sampler=sampler, eta=eta,
               clip_denoised=clip_denoised, device=device, speed=(precision, compile, networks))
    recorder = _recorder(diffusion, save_trajectory, trajectory_stem)
    images, out_labels = _run_batches(job, indices, batch_size, seed, progress, recorder, trajectory_stem)
    labels_out = None if out_labels[0] is None else np.concatenate(out_labels)
    if job.guided.describe() != job.guided.NOTHING:
        logger.log(f"guidance: {job.guided.describe()}")
    return np.concatenate(images), labels_out


def _sample_indices(num_samples, indices, batch_size):
    """:return: int64 [N] global sample indices (0 .. num_samples - 1, or `indices`), N >= 1."""
    if (num_samples is None) == (indices is None):
        raise ValueError("give exactly one of num_samples and indices")
    indices = np.arange(num_samples, dtype=np.int64) if indices is None else np.asarray(indices, dtype=np.int64)
    if len(indices) == 0 or batch_size <= 0:
        raise ValueError(f"need at least one sample and batch_size > 0, got {len(indices)} and {batch_size}")
    return indices


def _run_batches(job, indices, batch_size, seed, progress, recorder, trajectory_stem):
    """
    Sample `indices` in batches of `batch_size` under a tqdm bar (rank 0 with `progress`); the
    first batch feeds `recorder` (if any), whose strips are then written at `trajectory_stem`.

    :return: (list of uint8 [n, H, W, 3] arrays, list of int64 [n] arrays or Nones), per batch.
    """
    images, out_labels = [], []
    show = progress and dist_util.get_rank() == 0
    desc = f"sampling ({job.sampler})"
    # the classifier gradient is taken w.r.t. x only: frozen parameters keep no gradient graph
    with frozen_parameters(job.classifier), tqdm(total=len(indices), unit="img", desc=desc, disable=not show,
                                                 file=sys.stderr) as bar:
        for start in range(0, len(indices), batch_size):
            watch = recorder.watch if recorder is not None and start == 0 else None
            batch_images, batch_labels = job.batch(indices[start:start + batch_size], seed, watch=watch)
            if watch is not None:
                paths = save_strips(trajectory_stem, recorder, getattr(job.diffusion, "timestep_map", None))
                logger.log(f"trajectory strips: {', '.join(paths)}")
            images.append(batch_images)
            out_labels.append(batch_labels)
            bar.update(len(batch_images))
    return images, out_labels


def _recorder(diffusion, save_trajectory, trajectory_stem):
    """A TrajectoryRecorder for K = save_trajectory frames, or None for K = 0."""
    if not check_num_frames(save_trajectory, diffusion.num_timesteps):
        return None
    if not trajectory_stem:
        raise ValueError("save_trajectory needs trajectory_stem, the path prefix of the strips")
    return TrajectoryRecorder(diffusion.num_timesteps, save_trajectory, rows=TRAJECTORY_ROWS)


def shard_batches(model, diffusion, save_trajectory=0, trajectory_stem=None, precision="fp32", compile=False,
                  **kwargs):
    """
    The `make_batch(indices, seed)` of the shard loop (`runner.sample_to_npz`): one
    `generate_samples` call per shard.

    :param precision, compile: as for `generate_samples`; resolved, logged and compiled once here.

    :param save_trajectory: K > 0: the shard that starts at sample 0 (the first one, made by
                            rank 0) also writes its trajectory strips at `trajectory_stem` (a
                            resumed run whose first shard is already on disk writes none).
                            Checked here, before any sampling.
    :param kwargs: `generate_samples` keywords other than num_samples, indices, batch_size,
                   seed and progress.
    :return: make_batch(indices, seed) -> {"arr_0": uint8 [n, H, W, 3], "arr_1": int64 [n]
             when a network takes labels}.
    :raises ValueError: for a save_trajectory larger than the sampling steps (naming the flag).
    """
    steps = kwargs.get("steps")
    _recorder(diffusion if steps is None else respace(diffusion, steps), save_trajectory, trajectory_stem)
    networks = fast_networks(model, kwargs.get("classifier"), precision=precision, compile=compile,
                             device=kwargs.get("device"))

    def make_batch(indices, seed):
        first = save_trajectory if indices[0] == 0 else 0
        images, labels = generate_samples(model, diffusion, indices=indices, batch_size=len(indices), seed=seed,
                                          progress=False, save_trajectory=first, trajectory_stem=trajectory_stem,
                                          networks=networks, **kwargs)
        return {"arr_0": images} if labels is None else {"arr_0": images, "arr_1": labels}

    return make_batch
