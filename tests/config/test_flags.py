"""The one flag mechanism: typed flags from defaults dicts, and range checks naming the flag."""

import argparse

import pytest

from guided_diffusion.config.defaults import model_and_diffusion_defaults
from guided_diffusion.config.flags import (
    FLAG_RULES,
    RULES,
    add_dict_to_argparser,
    args_to_dict,
    flag_parser,
    parse_and_validate,
    parse_list_flag,
    str2bool,
)


def _parser(**defaults):
    p = argparse.ArgumentParser()
    add_dict_to_argparser(p, defaults)
    return p


def test_flags_are_typed_by_their_default():
    args = _parser(batch_size=4, lr=1e-4, flag=True, name="", other=None).parse_args(
        ["--batch_size", "8", "--lr", "0.5", "--flag", "no", "--name", "x", "--other", "y"])
    assert (args.batch_size, args.lr, args.flag, args.name, args.other) == (8, 0.5, False, "x", "y")


@pytest.mark.parametrize("flag,value", [("batch_size", "0"), ("batch_size", "-1"), ("num_samples", "0"),
                                        ("microbatch", "0"), ("microbatch", "-2"), ("dropout", "1.0"),
                                        ("lr", "-0.1"), ("seed", "-2"), ("save_interval", "0"),
                                        ("num_lambdas", "1"), ("interp_t", "-2"), ("save_trajectory", "-1")])
def test_bad_count_names_the_flag(flag, value):
    default = {"microbatch": -1, "seed": -1, "dropout": 0.0, "lr": 1e-4}.get(flag, 1)
    p = _parser(**{flag: default})
    with pytest.raises(ValueError, match=f"--{flag} must be"):
        parse_and_validate(p, [f"--{flag}", value])


@pytest.mark.parametrize("flag", ["microbatch", "num_heads_upsample", "num_head_channels", "seed", "interp_t"])
def test_minus_one_sentinels_are_accepted(flag):
    args = parse_and_validate(_parser(**{flag: 4}), [f"--{flag}", "-1"])
    assert getattr(args, flag) == -1


def test_a_script_may_override_the_shared_help():
    p = argparse.ArgumentParser()
    add_dict_to_argparser(p, {"data_dir": "", "batch_size": 1}, {"data_dir": "two source images"})
    text = p.format_help()
    assert "two source images" in text and "images per step" in text


def test_every_rule_name_exists():
    assert set(FLAG_RULES.values()) <= set(RULES)


def test_list_flag_and_bool_parsing():
    assert parse_list_flag("0.5,1,1") == (0.5, 1, 1)
    with pytest.raises(ValueError, match="--channel_mult"):
        parse_list_flag("1,x", "channel_mult")
    assert str2bool("Yes") is True and str2bool("0") is False
    with pytest.raises(argparse.ArgumentTypeError):
        str2bool("maybe")


def test_parse_list_flag():
    assert parse_list_flag("16,8") == (16, 8)
    assert parse_list_flag("0.5,1, 2") == (0.5, 1, 2)
    assert parse_list_flag((1, 2)) == (1, 2)
    with pytest.raises(ValueError, match=r"channel_mult.*'1,x'"):
        parse_list_flag("1,x", "channel_mult")


@pytest.mark.parametrize("text,value", [("True", True), ("false", False), ("1", True), ("n", False), (True, True)])
def test_str2bool_accepts(text, value):
    assert str2bool(text) is value


def test_str2bool_rejects_with_value():
    with pytest.raises(argparse.ArgumentTypeError, match="'maybe'"):
        str2bool("maybe")


def test_argparser_round_trip():
    defaults = model_and_diffusion_defaults()
    parser = argparse.ArgumentParser()
    add_dict_to_argparser(parser, defaults)
    args = parser.parse_args(["--class_cond", "True", "--num_channels", "96", "--dropout", "0.1",
                              "--attention_resolutions", "32,16"])  # fmt: skip
    got = args_to_dict(args, defaults.keys())
    assert got == {**defaults, "class_cond": True, "num_channels": 96, "dropout": 0.1,
                   "attention_resolutions": "32,16"}  # fmt: skip
    assert args_to_dict(parser.parse_args([]), defaults.keys()) == defaults


def test_flag_parser_merges_dicts_in_order_and_keeps_the_description():
    doc = "First line.\n\n    example --a 1\n"
    parser = flag_parser(doc, dict(a=1, b="x"), dict(b="y", c=True))
    assert [a.dest for a in parser._actions[1:]] == ["a", "b", "c"]  # first position kept
    args = parser.parse_args([])
    assert (args.a, args.b, args.c) == (1, "y", True)  # the later dict's value wins
    assert "    example --a 1" in parser.format_help()  # line breaks kept
