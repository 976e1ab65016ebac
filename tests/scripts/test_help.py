"""`--help` of every script: whole descriptions and a description for every flag."""

import argparse
import glob
import os
import runpy

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = sorted(glob.glob(os.path.join(REPO, "scripts", "*.py"))) + [os.path.join(REPO, "evaluations", "evaluator.py")]
WITH_PARSER = [p for p in SCRIPTS if "def create_argparser" in open(p).read()]


def _parser(path):
    return runpy.run_path(path)["create_argparser"]()


def _prose_paragraphs(text):
    """Paragraphs of a description without its indented example blocks, with what follows each."""
    blocks = [b for b in text.strip().split("\n\n") if b.strip()]
    out = []
    for i, block in enumerate(blocks):
        prose = [line for line in block.splitlines() if line.strip() and not line.startswith("    ")]
        if prose:
            follows_example = i + 1 < len(blocks) and blocks[i + 1].startswith("    ")
            out.append((" ".join(prose), follows_example or len(prose) < len(block.splitlines())))
    return out


def test_every_script_with_flags_is_covered():
    names = {os.path.basename(p) for p in WITH_PARSER}
    assert {"image_train.py", "classifier_train.py", "super_res_train.py", "image_sample.py", "classifier_sample.py",
            "super_res_sample.py", "image_nll.py", "classifier_accuracy.py", "evaluator.py"} <= names


@pytest.mark.parametrize("path", WITH_PARSER, ids=os.path.basename)
def test_description_is_whole_sentences(path):
    parser = _parser(path)
    assert isinstance(parser.formatter_class, type) and issubclass(
        parser.formatter_class, argparse.RawDescriptionHelpFormatter)  # keeps the example blocks' lines
    paragraphs = _prose_paragraphs(parser.description or "")
    assert paragraphs, path
    for text, before_example in paragraphs:
        ends = (".", ")", "?") + ((":",) if before_example else ())
        assert text.rstrip().endswith(ends), f"{os.path.basename(path)}: paragraph cut off: ...{text[-60:]!r}"


@pytest.mark.parametrize("path", WITH_PARSER, ids=os.path.basename)
def test_every_flag_has_a_description(path):
    parser = _parser(path)
    bare = [a.option_strings[0] for a in parser._actions
            if a.option_strings and not isinstance(a, argparse._HelpAction) and len(a.help or "") < 15]
    assert not bare, f"{os.path.basename(path)}: flags without a description: {bare}"
    text = parser.format_help()
    assert "--image_size" not in text or "side of the square images" in text


def test_evaluator_readme_names_only_flags_and_choices_the_cli_accepts():
    import re

    parser = _parser(os.path.join(REPO, "evaluations", "evaluator.py"))
    actions = {a.option_strings[0]: a for a in parser._actions if a.option_strings}
    readme = open(os.path.join(REPO, "evaluations", "README.md")).read()
    mentioned = set(re.findall(r"(--[a-z_]+)(?![a-z_-])", readme))  # not pip's --no-deps
    assert mentioned and mentioned <= set(actions), sorted(mentioned - set(actions))
    for flag, alternatives in re.findall(r"\[(--[a-z_]+) ([a-z0-9]+(?:\|[a-z0-9]+)+)\]", readme):
        choices = actions[flag].choices
        if choices is not None:
            assert set(alternatives.split("|")) == set(choices), (flag, alternatives, choices)
    assert "--fid_method sqrtm|fast" in readme
