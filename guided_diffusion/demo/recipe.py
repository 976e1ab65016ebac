"""
What `make demo` trains and samples: the recipe (model, guide and training budget) and the rows
of its table (which script, which guidance, which sampler). `benchmarks/bench_demo_recipe.py`
varies the recipe's fields; the defaults below are the recipe it chose.
"""

import dataclasses
from dataclasses import dataclass

from ..diffusion.respacing import space_timesteps
from ..diffusion.schedule import get_named_beta_schedule

IMAGE_SIZE = 8  # the digits' native 8x8
NUM_CLASSES = 10
RANKS = 2  # MPI processes for training and sampling, one per core of a 2-core machine
DIFFUSION_STEPS = 1000
SEED = 0


@dataclass(frozen=True)
class Recipe:
    """
    Every knob of the demo's training and sampling budget. Batch sizes are global (split over
    the ranks); step counts are optimizer steps.
    """

    # base model: class-conditional with label dropout, so that one checkpoint serves classifier
    # guidance (on its null label) and classifier-free guidance (on its labels)
    num_channels: int = 64
    num_res_blocks: int = 1
    channel_mult: str = "1,2"
    attention_resolutions: str = "4"
    # no dropout: 2400 steps over 1,497 digits underfit rather than overfit (lower loss, the same
    # judge, precision and recall a standard error higher; benchmarks/README.md)
    dropout: float = 0.0
    # 0.5 rather than 0.15 or 0.3: every classifier-guided row samples the null-label branch
    # alone, and the labelled rows keep a wide margin (benchmarks/README.md)
    class_dropout_prob: float = 0.5
    noise_schedule: str = "cosine"
    train_steps: int = 2400
    train_batch: int = 64
    lr: float = 1e-3
    ema_rate: str = "0.995"
    # the guide: a noisy classifier over all timesteps
    guide_width: int = 64
    guide_depth: int = 1
    guide_steps: int = 600
    guide_batch: int = 64
    guide_lr: float = 1e-3
    # sampling
    # 200 rather than 300 per row: Inception on the upscaled digits costs more than sampling them,
    # and 300 took the demo past 15 minutes on a slow day of the 2-core machine (993 s with the
    # venv); README "The demo" reports the rows again at 1,000 samples, with paired errors
    num_samples: int = 200
    sample_batch: int = 100
    ancestral_steps: int = 50
    fast_steps: int = 20
    # Kynkaenniemi et al. 2024 guide only for noise levels sigma in (0.28, 5.42]; on the cosine
    # schedule, sigma_t = sqrt((1 - abar_t) / abar_t) lies there for training timesteps 167..881
    guidance_interval: str = "167,881"
    precision: str = "auto"

    def replace(self, **changes):
        """:raises ValueError: for a field the recipe does not have."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            known = ", ".join(f.name for f in dataclasses.fields(self))
            raise ValueError(f"unknown recipe field(s) {', '.join(unknown)}; known: {known}")
        return dataclasses.replace(self, **changes)


# `make demo --quick`: checks the pipeline end to end in about a minute, not the quality
QUICK_CHANGES = dict(train_steps=10, train_batch=8, guide_steps=6, guide_batch=8,
                     num_samples=20, sample_batch=10, ancestral_steps=10, fast_steps=10)


def model_flags(recipe):
    """The model and diffusion flags shared by image_train.py and the sampling scripts."""
    return dict(image_size=IMAGE_SIZE, num_channels=recipe.num_channels, num_res_blocks=recipe.num_res_blocks,
                channel_mult=recipe.channel_mult, attention_resolutions=recipe.attention_resolutions,
                num_head_channels=32, dropout=recipe.dropout, learn_sigma=True, class_cond=True,
                num_classes=NUM_CLASSES, class_dropout_prob=recipe.class_dropout_prob,
                diffusion_steps=DIFFUSION_STEPS, noise_schedule=recipe.noise_schedule)


def classifier_flags(recipe):
    """The guide's network flags."""
    return dict(image_size=IMAGE_SIZE, classifier_width=recipe.guide_width, classifier_depth=recipe.guide_depth,
                classifier_channel_mult="1,2", classifier_attention_resolutions="4",
                classifier_pool="attention", num_classes=NUM_CLASSES)


@dataclass(frozen=True)
class Row:
    """
    One sampling run of the table. `classifier_scale` set: classifier_sample.py, guiding the
    model's null-label branch (as the original guides an unconditional model) or, with
    `conditional`, its branch of the requested label (the paper's ADM-G: what the original's
    classifier_sample.py does with a class-conditional model). Else image_sample.py with
    `guidance_scale` (classifier-free guidance on the requested labels).
    """

    name: str
    sampler: str  # ancestral, ddim, dpm++2m, ...
    fast: bool = False  # the recipe's fast_steps instead of ancestral_steps
    classifier_scale: float = None
    guidance_scale: float = None
    interval: bool = False  # limit guidance to the recipe's guidance_interval
    conditional: bool = False  # classifier rows: guide the requested label's branch, not the null label's

    @property
    def guidance(self):
        if self.classifier_scale is not None:
            branch = "conditional" if self.conditional else "null label"
            return f"classifier {self.classifier_scale:g}, {branch}"
        if self.guidance_scale == 1.0 and not self.interval:
            return "free 1 = classifier 0, conditional"  # plain conditional sampling, either way
        kind = f"free {self.guidance_scale:g}"
        return kind + (" (interval)" if self.interval else "")


# The table. The classifier's trade-off runs on the conditional branch, where classifier scale 0
# is plain conditional sampling: the `free_1` row (classifier-free w = 1), not sampled twice.
# `null_scale_4` guides the null label, so its class comes from the classifier alone.
ROWS = (
    Row("free_1", "ancestral", guidance_scale=1.0),
    Row("scale_1", "ancestral", classifier_scale=1.0, conditional=True),
    Row("scale_4", "ancestral", classifier_scale=4.0, conditional=True),
    Row("dpm_scale_4", "dpm++2m-sde", fast=True, classifier_scale=4.0, conditional=True),
    Row("null_scale_4", "ancestral", classifier_scale=4.0),
    Row("free_3", "ancestral", guidance_scale=3.0),
    Row("free_3_interval", "ancestral", guidance_scale=3.0, interval=True),
)
# rows that --rows can ask for beyond the table's (the 15 minutes hold no more): the null
# label's own scales, from its unguided samples (scale 0) up
EXTRA_ROWS = (
    Row("null_scale_0", "ancestral", classifier_scale=0.0),
    Row("null_scale_1", "ancestral", classifier_scale=1.0),
    Row("null_dpm_scale_4", "dpm++2m-sde", fast=True, classifier_scale=4.0),
)
# the rows of the paper's trade-off across classifier scales 0, 1 and 4 (`report.trade_off`)
TRADE_OFF_ROWS = ("free_1", "scale_1", "scale_4")
# unguided rows, whose label histograms show whether the model covers every digit: the conditional
# model asked for balanced labels, and the unconditional (null-label) model
UNGUIDED_ROWS = ("free_1", "null_scale_0")


def select_rows(names):
    """
    :param names: "" (the table's rows) or a comma list of names from ROWS and EXTRA_ROWS.
    :raises ValueError: unknown names.
    """
    if not names:
        return ROWS
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    known = {row.name: row for row in ROWS + EXTRA_ROWS}
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise ValueError(f"--rows: unknown row(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return tuple(known[n] for n in wanted)


def row_steps(row, recipe):
    """:return: the row's number of sampling steps."""
    return recipe.fast_steps if row.fast else recipe.ancestral_steps


def _betas(recipe):
    return get_named_beta_schedule(recipe.noise_schedule, DIFFUSION_STEPS)


def row_respacing(row, recipe):
    """
    The row's --timestep_respacing: DPM-Solver++ steps uniformly in log-SNR (`logsnrN`), where a
    multistep solver's error is spread evenly; the other samplers use the original's even spacing.
    """
    steps = row_steps(row, recipe)
    return f"logsnr{steps}" if row.sampler.startswith("dpm++") else str(steps)


def model_evaluations(row, recipe):
    """
    Network evaluations per sample: one per step, plus one more at each step where
    classifier-free guidance (w not 0 or 1) mixes a conditional and a null-label pass, which is
    every step or, with an interval, the grid's timesteps inside it.
    """
    timesteps = sorted(space_timesteps(DIFFUSION_STEPS, row_respacing(row, recipe), betas=_betas(recipe)))
    if row.guidance_scale in (None, 0.0, 1.0):
        return len(timesteps)
    lo, hi = (int(v) for v in recipe.guidance_interval.split(",")) if row.interval else (0, DIFFUSION_STEPS - 1)
    return len(timesteps) + sum(lo <= t <= hi for t in timesteps)


def sampling_flags(row, recipe):
    """:return: (script name, the row's own flags beyond the model flags)."""
    flags = dict(sampler=row.sampler, timestep_respacing=row_respacing(row, recipe), num_samples=recipe.num_samples,
                 batch_size=recipe.sample_batch, class_labels="balanced", seed=SEED, progress=False)
    if row.classifier_scale is not None:
        flags["classifier_scale"] = row.classifier_scale
        if row.conditional:
            flags["guidance_scale"] = 1.0  # classifier_sample.py: w = 1 is the plain conditional branch
        return "classifier_sample.py", flags
    flags["guidance_scale"] = row.guidance_scale
    if row.interval:
        flags["guidance_interval"] = recipe.guidance_interval
    return "image_sample.py", flags
