"""
The one flag mechanism: defaults dicts -> argparse flags -> validated namespace.

Every script builds its parser with `add_dict_to_argparser(parser, defaults)` from dicts (the
model/diffusion dicts of `config.defaults`, plus group and per-script dicts), then calls
`parse_and_validate(parser)`, which checks every numeric flag it knows (see `FLAG_RULES`) before
any work starts and raises a ValueError naming the flag. `FLAG_HELP` gives `--help` its text
(the network, diffusion and training flags' texts live in `config.flag_help`).
"""

import argparse

from .flag_help import CLASSIFIER_FLAG_HELP, DIFFUSION_FLAG_HELP, MODEL_FLAG_HELP, TRAINING_FLAG_HELP

# ------------------------------------------------------------------------------------------
# Parsing


_TRUE = ("yes", "true", "t", "y", "1")
_FALSE = ("no", "false", "f", "n", "0")


def str2bool(v):
    """
    Parse a boolean flag value: yes/true/t/y/1 or no/false/f/n/0 (any case); bools pass.
    """
    if isinstance(v, bool):
        return v
    if str(v).lower() in _TRUE:
        return True
    if str(v).lower() in _FALSE:
        return False
    raise argparse.ArgumentTypeError(
        f"boolean value expected, got {v!r} (use one of {', '.join(_TRUE + _FALSE)})"
    )


def add_dict_to_argparser(parser, default_dict, help_text=None):
    """
    Add a --key flag per entry, typed by the default (bools parse with str2bool).

    :param help_text: optional flag -> help, for a script whose flag means something other
                      than its `FLAG_HELP` entry (e.g. --data_dir of image_interpolate.py).
    """
    help_text = {**FLAG_HELP, **(help_text or {})}
    for k, v in default_dict.items():
        v_type = type(v)
        if v is None:
            v_type = str
        elif isinstance(v, bool):
            v_type = str2bool
        parser.add_argument(f"--{k}", default=v, type=v_type, help=help_text.get(k))


def flag_parser(description, *defaults, help_text=None):
    """
    A script's parser: `description` (its docstring, line breaks kept in --help) and one flag per
    key of the `defaults` dicts, merged in order (a later dict's value wins, the first position
    stays).

    :param help_text: as for `add_dict_to_argparser`.
    """
    merged = {}
    for d in defaults:
        merged.update(d)
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dict_to_argparser(parser, merged, help_text)
    return parser


def args_to_dict(args, keys):
    """Pick `keys` from an argparse namespace into a dict."""
    return {k: getattr(args, k) for k in keys}


def parse_list_flag(value, flag="value"):
    """
    Parse a comma-separated list flag ("16,8") into a tuple of numbers; ints where integral
    (so "0.5,1,1" gives (0.5, 1, 1)). Tuples/lists pass through.

    :raises ValueError: naming the flag and the bad value.
    """
    if isinstance(value, (tuple, list)):
        return tuple(value)
    if isinstance(value, (int, float)):
        return (value,)
    out = []
    for part in str(value).split(","):
        part = part.strip()
        try:
            num = float(part)
        except ValueError:
            raise ValueError(
                f"--{flag} must be a comma-separated list of numbers like '16,8', got {value!r}"
            ) from None
        out.append(int(num) if num.is_integer() else num)
    return tuple(out)


# ------------------------------------------------------------------------------------------
# Validation


def _positive(v):
    return v > 0


def _positive_or_sentinel(v):
    return v > 0 or v == -1


def _non_negative(v):
    return v >= 0


def _probability(v):
    return 0 <= v < 1


def _sentinel_or_non_negative(v):
    return v >= 0 or v == -1


def _at_least_two(v):
    return v >= 2


# rule name -> (predicate, phrase for the error)
RULES = {
    "positive": (_positive, "must be a positive integer"),  # every flag with this rule counts something
    "positive_or_-1": (_positive_or_sentinel, "must be > 0, or -1 (the default: off / derived)"),
    "non_negative": (_non_negative, "must be >= 0"),
    "probability": (_probability, "must be in [0, 1)"),
    "seed": (_sentinel_or_non_negative, "must be >= 0, or -1 to draw a fresh seed"),
    "step_or_-1": (_sentinel_or_non_negative, "must be a step of the process (>= 0), or -1 for half the steps"),
    "scale_or_-1": (_sentinel_or_non_negative, "must be >= 0 (1: plain conditional, 0: the null label), "
                    "or -1 (the default: not given)"),
    "at_least_2": (_at_least_two, "must be >= 2 (lambda runs from 0 to 1, both ends included)"),
}

# Every numeric flag of every script, with the values it can take. Flags not listed here
# (e.g. --classifier_scale, which may be negative) are not range-checked.
FLAG_RULES = {
    # model and diffusion
    "image_size": "positive",
    "large_size": "positive",
    "small_size": "positive",
    "num_channels": "positive",
    "num_res_blocks": "positive",
    "num_heads": "positive",
    "num_heads_upsample": "positive_or_-1",
    "num_head_channels": "positive_or_-1",
    "dropout": "probability",
    "diffusion_steps": "positive",
    "classifier_width": "positive",
    "classifier_depth": "positive",
    "num_classes": "positive",
    "class_dropout_prob": "probability",
    # training
    "batch_size": "positive",
    "microbatch": "positive_or_-1",
    "lr": "non_negative",
    "weight_decay": "non_negative",
    "lr_anneal_steps": "non_negative",
    "log_interval": "positive",
    "save_interval": "positive",
    "eval_interval": "positive",
    "iterations": "positive",
    "fp16_scale_growth": "non_negative",
    # sampling and evaluation
    "num_samples": "positive",
    "eta": "non_negative",
    "seed": "seed",
    "guidance_scale": "scale_or_-1",
    "save_trajectory": "non_negative",
    # interpolation
    "num_lambdas": "at_least_2",
    "interp_t": "step_or_-1",
}

FLAG_HELP = {
    **MODEL_FLAG_HELP,
    **DIFFUSION_FLAG_HELP,
    **CLASSIFIER_FLAG_HELP,
    **TRAINING_FLAG_HELP,
    "noise_schedule": "beta schedule: linear (DDPM), cosine (Nichol & Dhariwal) or sigmoid "
                      "(Jabri et al. 2022; start -3, end 3, tau 1)",
    "loss": "norm of the mean term: l2 (the original's MSE) or l1; with learn_sigma the vb term "
            "is added unchanged",
    "data_dir": "folder of training images (default: the embedded handwritten digits)",
    "batch_size": "images per step (training) or per batch (sampling), on each process",
    "microbatch": "split each batch into chunks of this size for the forward pass (-1: no split)",
    "num_samples": "how many samples to write",
    "model_path": "the diffusion model checkpoint (.pt) to load",
    "classifier_path": "the noisy classifier checkpoint (.pt) that guides sampling",
    "classifier_scale": "guidance scale s: the classifier gradient is multiplied by s (0: unguided)",
    "use_ddim": "sample with DDIM instead of ancestral steps",
    "clip_denoised": "clip each predicted x_0 to [-1, 1]",
    "timestep_respacing": "sample on a subset of the steps, e.g. 250 or ddim25 (empty: all steps)",
    "resume_checkpoint": "a modelNNNNNN.pt to resume from, or auto (the newest in the output folder)",
    "lr_anneal_steps": "anneal the lr linearly to 0 over this many steps, then stop (0: never stop)",
    "ema_rate": "comma-separated EMA decay rates, one ema_<rate>_NNNNNN.pt per rate",
    "seed": "run seed; -1 draws a fresh one (recorded with the run)",
    "output_dir": "where to write results (default: $OPENAI_LOGDIR, else a temp folder)",
    "eta": "DDIM eta: 0 is deterministic, 1 as noisy as ancestral sampling (--sampler ddim only)",
    "sampler": "ancestral, ddim, dpm++2m, dpm++3m or dpm++2m-sde; auto: ddim with --use_ddim True, else ancestral",
    "progress": "show a tqdm progress bar on rank 0",
    "class_labels": "labels to sample: '' random per sample, 'balanced', 'null', or a comma list (cycled) of "
                    "labels or of class names (cat,dog) from the args.json beside the checkpoint",
    "num_classes": "classes of a class_cond model (label embedding rows) and of a classifier "
                   "(logits); sampled labels come from [0, num_classes)",
    "class_dropout_prob": "training: the chance that a label becomes the null class num_classes (label "
                          "dropout for classifier-free guidance; 0: off, the released layouts); sampling: "
                          "pass the training value so the model has the null class",
    "guidance_scale": "classifier-free guidance scale w (needs a --class_dropout_prob model): eps_null + "
                      "w (eps_label - eps_null); 1 plain conditional, 0 the null label; -1: not given",
    "guidance_interval": "'lo,hi': guide (either kind) only at training timesteps lo <= t <= hi "
                         "(Kynkaanniemi et al. 2024); '' every step",
    "base_samples": "npz of low-resolution samples (arr_0, and arr_1 labels for class-conditional models)",
    "samples": "npz of labelled samples to judge (arr_0 uint8 images, arr_1 labels)",
    "judge": "classifier (a clean EncoderUNetModel from --classifier_path) or pixel_knn (k-NN on grey pixels "
             "fitted on --judge_data: independent of the guide's model family)",
    "judge_data": "training images of the pixel_knn judge: digits (the embedded digits' training split) or an "
                  "npz with arr_0 uint8 images and arr_1 labels",
    "random_flip": "horizontal flips: True/False, or auto (True for --data_dir, False for the digits)",
    "precision": "fp32 (default: the original's arithmetic), bf16, fp16 (CUDA or CPUs with float16 "
                 "instructions), or auto: bf16 on CPUs with AVX512_BF16/AMX and on CUDA >= sm_80, fp16 on "
                 "older tensor-core GPUs, else fp32 (logged with the reason); parameters, optimizer and EMA "
                 "stay float32; not with --use_fp16 True",
    "compile": "run the networks through torch.compile (first-call cost logged; one warning and eager "
               "calls where it is unavailable)",
    "save_trajectory": "also save PNG strips of x_t and predicted x_0 at this many timesteps for the "
                       "first grid of samples (0: off)",
}


def validate_flags(args, rules=None):
    """
    Check every numeric flag of `args` that has a rule.

    :param args: an argparse namespace.
    :param rules: flag -> rule name (default `FLAG_RULES`).
    :raises ValueError: "--<flag> must be ..., got <value>" for the first bad value.
    """
    rules = FLAG_RULES if rules is None else rules
    for name, value in sorted(vars(args).items()):
        rule = rules.get(name)
        if rule is None or value is None or isinstance(value, bool):
            continue
        if not isinstance(value, (int, float)):
            continue
        check, phrase = RULES[rule]
        if not check(value):
            raise ValueError(f"--{name} {phrase}, got {value}")
    return args


def parse_and_validate(parser, argv=None):
    """`parser.parse_args(argv)` followed by `validate_flags`."""
    return validate_flags(parser.parse_args(argv))
