"""The sampling flag group keeps the original's five sampling flags and their defaults."""

from guided_diffusion.config.flags import FLAG_RULES
from guided_diffusion.sampling.defaults import class_label_defaults, sampling_defaults


def test_original_flags_keep_their_defaults():
    d = sampling_defaults()
    assert {k: d[k] for k in ("clip_denoised", "num_samples", "batch_size", "use_ddim", "model_path")} == dict(
        clip_denoised=True, num_samples=10000, batch_size=16, use_ddim=False, model_path="")


def test_every_numeric_flag_of_the_group_has_a_range_rule():
    groups = dict(sampling_defaults(), **class_label_defaults())
    numeric = [k for k, v in groups.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    assert sorted(numeric) == sorted(k for k in numeric if k in FLAG_RULES)
    assert {"num_samples", "batch_size", "seed", "eta"} <= set(numeric)
