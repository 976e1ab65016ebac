"""
Classifier-free guidance (Ho & Salimans 2022, "Classifier-Free Diffusion Guidance", Eq. 6).

A class-conditional model trained with label dropout (`--class_dropout_prob p`) also learned the
unconditional prediction, under the null label `num_classes` (the extra label embedding row).
Sampling mixes the two predictions with the guidance scale w:

    eps_hat(x_t, y) = eps(x_t, null) + w * (eps(x_t, y) - eps(x_t, null))

on the first C output channels (C = the channels of x_t). Learned-sigma models have C more
channels, the variance interpolation v; those come from the conditional pass. w = 1 is plain
conditional sampling, w = 0 the null label (the whole null-label output, variance included, so
that w = 0 is exactly null-label sampling); w > 1 pushes away from the unconditional prediction.
(Ho & Salimans write (1 + w') eps_c - w' eps_u, so their w' is our w - 1.)

The same mix works for x0- and x_{t-1}-predicting models: at a fixed x_t, eps, x0 and the
posterior mean are affine functions of one another, and an affine map commutes with a
combination whose weights (1 - w, w) sum to one.

Both halves run as ONE forward pass of 2N rows ([x; x], [t; t], [y; null]). Where every row of a
batch uses w = 1 (or w = 0) the wrapper runs only the conditional (or only the null-label) pass,
so those endpoints equal plain conditional (null-label) sampling exactly, and cost N rows.
"""

import torch as th


def guided_prediction(cond, uncond, scale, channels):
    """
    Mix a conditional and an unconditional model output.

    :param cond: [N x C_out x ...] output of the conditional pass.
    :param uncond: [N x C_out x ...] output of the null-label pass.
    :param scale: the guidance scale w, a float or a float tensor [N] (one per row).
    :param channels: C, how many leading channels to mix (the eps channels); the other
                     C_out - C channels (learned variance) are taken from `cond`.
    :return: a tensor like `cond`.
    """
    if cond.shape != uncond.shape:
        raise ValueError(f"conditional output {tuple(cond.shape)} and unconditional output "
                         f"{tuple(uncond.shape)} differ in shape")
    if th.is_tensor(scale):
        scale = scale.to(device=cond.device, dtype=cond.dtype).view(-1, *([1] * (cond.dim() - 1)))
    eps_c, eps_u = cond[:, :channels], uncond[:, :channels]
    mixed = eps_u + scale * (eps_c - eps_u)
    return th.cat([mixed, cond[:, channels:]], dim=1)


def _twice(value):
    """Stack a per-row tensor on itself ([v; v]); other values pass unchanged."""
    return th.cat([value, value], dim=0) if th.is_tensor(value) and value.dim() > 0 else value


class ClassifierFreeModel:
    """
    The model as the diffusion calls it, `model_fn(x, t, y=..., **kwargs)`, returning the
    classifier-free guided output.

    :param model: the class-conditional network, called as model(x, t, y, **kwargs); its
                  label embedding has a row for `null_label`.
    :param null_label: the null class index (the number of real classes).
    :param scale: the guidance scale w at timesteps inside `interval` (everywhere without one).
    :param base_scale: the scale outside the interval: 1 (plain conditional) when guidance is
                       switched off there, 0 when the null-label branch is the base model.
    :param interval: optional object with `contains(t) -> bool tensor [N]` for the timesteps the
                     model receives (see `interval.GuidanceInterval`).

    Counters (forward passes by kind): `calls["conditional"]`, `calls["null"]` (N rows each) and
    `calls["both"]` (one batched pass of 2N rows).
    """

    def __init__(self, model, null_label, scale, base_scale=1.0, interval=None):
        self.model = model
        self.null_label = int(null_label)
        self.scale = float(scale)
        self.base_scale = float(base_scale)
        self.interval = interval
        self.calls = {"conditional": 0, "null": 0, "both": 0}

    def row_scales(self, t):
        """:return: the float64 [N] guidance scale of each row at model timesteps t [N]."""
        scales = th.full(t.shape, self.scale, dtype=th.float64, device=t.device)
        if self.interval is None:
            return scales
        return th.where(self.interval.contains(t), scales, th.full_like(scales, self.base_scale))

    def __call__(self, x, t, y=None, **kwargs):
        """
        :param x: [N x C x ...] noisy inputs x_t.
        :param t: [N] timesteps as the network receives them.
        :param y: [N] long labels in [0, null_label).
        :return: [N x C_out x ...] guided output.
        """
        if y is None:
            raise ValueError("classifier-free guidance needs class labels: pass model_kwargs={'y': labels}")
        null = th.full_like(y, self.null_label)
        w = self.row_scales(t)
        if bool((w == 1).all()):
            self.calls["conditional"] += 1
            return self.model(x, t, y, **kwargs)
        if bool((w == 0).all()):
            self.calls["null"] += 1
            return self.model(x, t, null, **kwargs)
        self.calls["both"] += 1
        both = self.model(_twice(x), _twice(t), th.cat([y, null]), **{k: _twice(v) for k, v in kwargs.items()})
        cond, uncond = both[: len(x)], both[len(x):]
        out = guided_prediction(cond, uncond, w, x.shape[1])
        # Rows at an endpoint scale take that pass's output whole (variance included).
        shape = (-1,) + (1,) * (out.dim() - 1)
        out = th.where((w == 1).view(shape), cond, out)
        return th.where((w == 0).view(shape), uncond, out)


# ------------------------------------------------------------------------------------------
# What a sampling run asks for


NOT_GIVEN = -1.0  # the --guidance_scale default
RETRAIN = "this checkpoint has no null class; train with --class_dropout_prob (e.g. 0.1)"


def classifier_free_scales(guidance_scale, *, class_cond, classifier_guided=False, dropout_model=False,
                           null_labels=False):
    """
    The classifier-free scales of a sampling run, from its flags.

    Without --guidance_scale, image_sample.py samples the plain conditional model. With a
    classifier (classifier_sample.py), a model trained with label dropout is guided on its
    null-label branch, as the original guides an unconditional model: its class comes from the
    classifier alone, so the scale s of the two kinds of guidance is not confounded. Giving
    --guidance_scale w there makes the classifier shift the classifier-free guided eps instead.

    :param guidance_scale: the --guidance_scale value (NOT_GIVEN, or w >= 0).
    :param class_cond: the model takes labels (--class_cond).
    :param classifier_guided: a classifier guides the run.
    :param dropout_model: the model was trained with label dropout (--class_dropout_prob > 0).
    :param null_labels: --class_labels null (sample the null-label branch).
    :return: (scale inside the guidance interval, scale outside), or None when the labels go to
             the model unchanged (or the model takes none).
    :raises ValueError: for a negative scale, a model without a null class, or conflicting flags.
    """
    given = guidance_scale != NOT_GIVEN
    if given and guidance_scale < 0:
        raise ValueError(f"--guidance_scale must be >= 0 (1: plain conditional, 0: the null label, "
                         f"3: strong guidance), got {guidance_scale}")
    if null_labels and (given or classifier_guided):
        raise ValueError("--class_labels null samples the unconditional branch, which has no class to guide "
                         "towards: give class labels, or drop --guidance_scale / the classifier")
    what = "--guidance_scale" if given else "--class_labels null"
    if (given or null_labels) and not class_cond:
        raise ValueError(f"{what} needs a class-conditional model trained with label dropout, but this model "
                         f"is unconditional (--class_cond False); train one with --class_cond True "
                         f"--class_dropout_prob 0.1" + ("" if classifier_guided else
                                                        ", or steer this one with classifier_sample.py"))
    if (given or null_labels) and not dropout_model:
        raise ValueError(f"{what}: {RETRAIN}. If it was trained with label dropout, pass the same "
                         f"--class_dropout_prob when sampling")
    if given:
        return float(guidance_scale), 1.0
    if classifier_guided and dropout_model:
        return 0.0, 0.0
    return None


def check_null_class(state_dict, num_classes, dropout_model, wants_null):
    """
    Compare the checkpoint's label embedding with the flags before the strict load, so that a
    missing or unexpected null class gets its own message.

    :param state_dict: the checkpoint (name -> tensor).
    :param num_classes: the number of real classes K.
    :param dropout_model: the flags build a null class (--class_dropout_prob > 0).
    :param wants_null: the run uses the null label (--guidance_scale, --class_labels null, or
                       classifier guidance on a dropout model).
    :raises ValueError: naming the fix.
    """
    emb = state_dict.get("label_emb.weight")
    if emb is None:
        return
    rows = int(emb.shape[0])
    if rows == num_classes and (wants_null or dropout_model):
        raise ValueError(f"{RETRAIN} (its label embedding has {rows} rows for {num_classes} classes)"
                         + ("" if wants_null else "; or sample it without --class_dropout_prob"))
    if rows == num_classes + 1 and not dropout_model:
        raise ValueError(f"this checkpoint has a null class ({rows} label rows for {num_classes} classes): it "
                         f"was trained with --class_dropout_prob; pass that flag (its args.json has the value) "
                         f"so the model is built to fit")
