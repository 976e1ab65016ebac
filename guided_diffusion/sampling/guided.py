"""
The model and gradient functions of one guided sampling run: classifier-free guidance
(`cfg.ClassifierFreeModel`), classifier guidance (`guidance.make_cond_fn`), both at once, and a
guidance interval for either (`interval`).

Both kinds together: the model function returns the classifier-free guided prediction, and the
diffusion shifts it by the classifier gradient as for any model, so with DDIM and DPM-Solver++

    eps' = eps_null + w (eps_label - eps_null) - s sqrt(1 - abar_t) grad log p_phi(y | x_t)

(`condition_score`), and ancestral sampling shifts the mean of that eps by s Sigma grad
(`condition_mean`), as Dhariwal & Nichol's Algorithms 2 and 1 do for a plain model.
"""

from .cfg import NOT_GIVEN, ClassifierFreeModel, check_null_class, classifier_free_scales
from .guidance import make_cond_fn, make_model_fn
from .interval import GuidanceInterval, IntervalCondFn, parse_guidance_interval


def guidance_plan(guidance_scale, *, class_cond, dropout_model, classifier_guided, null_labels, has_interval):
    """
    `cfg.classifier_free_scales`, plus: an interval needs some guidance to limit.

    :return: (scale inside, scale outside) or None, as classifier_free_scales.
    :raises ValueError: naming the flags and the fix.
    """
    scales = classifier_free_scales(guidance_scale, class_cond=class_cond, classifier_guided=classifier_guided,
                                    dropout_model=dropout_model, null_labels=null_labels)
    if has_interval and scales is None and not classifier_guided:
        raise ValueError("--guidance_interval limits guidance, but this run has none: add --guidance_scale "
                         "(or sample with a classifier)")
    return scales


def check_guidance_flags(args, classifier_guided):
    """
    Check a sampling script's guidance flags before any work: the same rules `GuidedFunctions`
    applies to the built model, read off the flags (--class_cond, --class_dropout_prob,
    --guidance_scale, --guidance_interval against --diffusion_steps, --class_labels null).

    :raises ValueError: naming the flags and the fix.
    """
    bounds = parse_guidance_interval(args.guidance_interval, args.diffusion_steps)
    guidance_plan(args.guidance_scale, class_cond=args.class_cond, dropout_model=args.class_dropout_prob > 0,
                  classifier_guided=classifier_guided, has_interval=bounds is not None,
                  null_labels=str(args.class_labels).strip().lower() == "null")


class GuidedFunctions:
    """
    `model_fn(x, t, y=..., **kw)` and `cond_fn` (or None) for the diffusion's sampling loops.

    :param model: the diffusion network; class-conditional when it has `num_classes`, with a
                  null class when its `null_label` is set (`UNetModel(null_class=True)`).
    :param diffusion: the (Spaced)GaussianDiffusion it samples with (for the interval).
    :param classifier: an optional noise-aware classifier (`make_cond_fn`).
    :param classifier_scale: its guidance scale s (0: the classifier is never evaluated).
    :param guidance_scale: the classifier-free scale w, or NOT_GIVEN (`cfg.classifier_free_scales`).
    :param guidance_interval: "" (every step), "lo,hi" training timesteps, or a GuidanceInterval.
    :param null_labels: the labels are all the null label (`--class_labels null`).
    :raises ValueError: for requests the model cannot serve, and an interval with nothing to limit.
    """

    NOTHING = "no guidance beyond the model's labels"

    def __init__(self, model, diffusion, *, classifier=None, classifier_scale=0.0, guidance_scale=NOT_GIVEN,
                 guidance_interval="", null_labels=False):
        class_cond = getattr(model, "num_classes", None) is not None
        null_label = self.null_label = getattr(model, "null_label", None)
        self.interval = guidance_interval
        if not isinstance(guidance_interval, GuidanceInterval):
            self.interval = GuidanceInterval.for_diffusion(guidance_interval or "", diffusion)
        scales = guidance_plan(guidance_scale, class_cond=class_cond, dropout_model=null_label is not None,
                               classifier_guided=classifier is not None, null_labels=null_labels,
                               has_interval=self.interval is not None)
        self.cfg = None
        self.model_fn = make_model_fn(model, class_cond)
        if scales is not None:
            self.cfg = ClassifierFreeModel(model, null_label, *scales, interval=self.interval)
            self.model_fn = self.cfg
        self.cond_fn = self.gate = None
        if classifier is not None and classifier_scale != 0:
            self.cond_fn = make_cond_fn(classifier, classifier_scale)
            if self.interval is not None:
                self.gate = self.cond_fn = IntervalCondFn(self.cond_fn, self.interval)
        self.steps_inside = None if self.interval is None else self.interval.count_steps(diffusion)
        self.num_steps = diffusion.num_timesteps

    def describe(self):
        """One line on what guides the run and, so far, what it cost (for the log)."""
        parts = []
        if self.cfg is not None:
            c = self.cfg.calls
            outside = "" if self.interval is None else f" (outside the interval {self.cfg.base_scale:g})"
            parts.append(f"classifier-free w={self.cfg.scale:g}{outside}: {c['both']} batched 2N passes, "
                         f"{c['conditional']} conditional, {c['null']} null-label")
        if self.gate is not None:
            parts.append(f"classifier gradients computed at {self.gate.computed} steps, skipped at {self.gate.skipped}")
        if self.interval is not None:
            parts.append(f"interval [{self.interval.lo}, {self.interval.hi}] holds {self.steps_inside} of the "
                         f"{self.num_steps} sampling steps")
        return "; ".join(parts) or self.NOTHING


def model_checkpoint_check(args):
    """
    The `check` for loading the diffusion model of a sampling script: does the checkpoint's
    null class agree with --class_dropout_prob and with the guidance asked for?

    :param args: the script's namespace (class_cond, num_classes, class_dropout_prob,
                 guidance_scale, class_labels).
    :return: check(state_dict) raising ValueError with the fix, or None for unconditional models.
    """
    if not args.class_cond:
        return None
    wants_null = args.guidance_scale != NOT_GIVEN or str(args.class_labels).strip().lower() == "null"
    return lambda state: check_null_class(state, args.num_classes, args.class_dropout_prob > 0, wants_null)
