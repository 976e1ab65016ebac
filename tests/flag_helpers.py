"""Values each flag rule refuses, and the (flag, bad value) cases of a script's parser."""

import os
import runpy

from guided_diffusion.config.flags import FLAG_RULES

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# rule -> values it refuses: 0 where a positive count is needed, negatives other than the -1
# sentinels, probabilities outside [0, 1), too few interpolation points
BAD_VALUES = {
    "positive": ["0", "-3"],
    "positive_or_-1": ["0", "-2"],
    "non_negative": ["-1"],
    "probability": ["1.5", "-0.1"],
    "seed": ["-2"],
    "step_or_-1": ["-2"],
    "scale_or_-1": ["-2"],
    "at_least_2": ["1"],
}


def parser_of(path):
    """The argparse parser of a script (its `create_argparser()`); `path` relative to the repo."""
    return runpy.run_path(os.path.join(REPO, path))["create_argparser"]()


def bad_flag_cases(path):
    """:return: sorted (flag, bad value) for every flag of the script that has a rule."""
    dests = {a.dest for a in parser_of(path)._actions}
    return sorted((flag, bad) for flag, rule in FLAG_RULES.items() if flag in dests for bad in BAD_VALUES[rule])
