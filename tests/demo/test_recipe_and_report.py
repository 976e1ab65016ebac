"""demo/recipe.py and demo/report.py: row selection, model-evaluation counts, standard errors, trade-off."""

import math

import pytest

from guided_diffusion.demo import report
from guided_diffusion.demo.recipe import QUICK_CHANGES, ROWS, Recipe, Row, model_evaluations, sampling_flags
from guided_diffusion.demo.recipe import EXTRA_ROWS, TRADE_OFF_ROWS, UNGUIDED_ROWS, select_rows
from guided_diffusion.diffusion.respacing import space_timesteps


def test_select_rows_keeps_order_given_and_names_unknown_rows():
    assert [r.name for r in select_rows("scale_4,null_scale_0")] == ["scale_4", "null_scale_0"]
    assert select_rows("") == ROWS
    with pytest.raises(ValueError, match="unknown row"):
        select_rows("null_scale_0,nope")


def test_trade_off_rows_are_classifier_scales_0_1_4_on_one_branch_and_the_unguided_rows_are_unguided():
    by_name = {row.name: row for row in ROWS + EXTRA_ROWS}
    assert len(by_name) == len(ROWS) + len(EXTRA_ROWS)  # no name twice
    flags = [sampling_flags(by_name[name], Recipe())[1] for name in TRADE_OFF_ROWS]
    # every trade-off row samples the conditional branch (w = 1) at classifier scales 0, 1, 4
    assert [f.get("classifier_scale", 0.0) for f in flags] == [0.0, 1.0, 4.0]
    assert all(f["guidance_scale"] == 1.0 and f["sampler"] == "ancestral" for f in flags)
    conditional, null = (sampling_flags(by_name[name], Recipe())[1] for name in UNGUIDED_ROWS)
    assert conditional["guidance_scale"] == 1.0 and "classifier_scale" not in conditional
    assert null["classifier_scale"] == 0.0 and "guidance_scale" not in null  # the null label, unguided


def test_recipe_replace_refuses_unknown_fields_and_quick_changes_are_fields():
    assert Recipe().replace(**QUICK_CHANGES).train_steps == QUICK_CHANGES["train_steps"]
    with pytest.raises(ValueError, match="unknown recipe field"):
        Recipe().replace(bogus=1)


def test_model_evaluations_count_the_null_pass_only_where_free_guidance_mixes():
    recipe = Recipe(ancestral_steps=100, guidance_interval="0,600")
    assert model_evaluations(Row("a", "ancestral", classifier_scale=4.0), recipe) == 100
    assert model_evaluations(Row("b", "ancestral", guidance_scale=1.0), recipe) == 100  # w = 1: one pass
    assert model_evaluations(Row("c", "ancestral", guidance_scale=3.0), recipe) == 200
    inside = sum(t <= 600 for t in space_timesteps(1000, "100"))
    assert model_evaluations(Row("d", "ancestral", guidance_scale=3.0, interval=True), recipe) == 100 + inside
    assert 100 < 100 + inside < 200


def test_rows_go_to_the_script_of_their_guidance_kind():
    recipe = Recipe()
    script, flags = sampling_flags(Row("x", "dpm++2m", fast=True, classifier_scale=4.0), recipe)
    assert script == "classifier_sample.py" and flags["classifier_scale"] == 4.0
    assert flags["timestep_respacing"] == f"logsnr{recipe.fast_steps}" and "guidance_scale" not in flags
    script, flags = sampling_flags(Row("z", "ancestral", classifier_scale=4.0, conditional=True), recipe)
    assert script == "classifier_sample.py" and flags["guidance_scale"] == 1.0  # the requested label's branch
    script, flags = sampling_flags(Row("y", "ancestral", guidance_scale=3.0, interval=True), recipe)
    assert script == "image_sample.py" and flags["guidance_interval"] == recipe.guidance_interval


def test_stderrs_and_trade_off_in_standard_errors():
    rows = {}
    for name, judge, precision, recall in (("scale_0", 0.1, 0.8, 0.9), ("scale_1", 0.5, 0.85, 0.85),
                                           ("scale_4", 0.9, 0.9, 0.8)):
        row = report.add_stderrs(dict(Precision=precision, Recall=recall), 400, 100)
        row.update(judge=judge, judge_se=math.sqrt(judge * (1 - judge) / 400))
        rows[name] = row
    assert rows["scale_0"]["precision_se"] == pytest.approx(math.sqrt(0.8 * 0.2 / 400))
    assert rows["scale_0"]["recall_se"] == pytest.approx(math.sqrt(0.9 * 0.1 / 100))
    z = report.trade_off(rows, ("scale_0", "scale_1", "scale_4"))
    assert z["judge"] == pytest.approx(0.8 / math.hypot(0.015, 0.015))
    assert z["Precision"] > 0 > z["Recall"]
    assert report.trade_off({"scale_0": rows["scale_0"]}, ("scale_0", "scale_4")) == {}


def test_table_has_one_line_per_row_plus_header_and_floor():
    row = dict(run="scale_4", guidance="classifier 4", sampler="ancestral", steps=100, nfe=100,
               seconds_per_sample=0.01, FID=21.0, Precision=0.9, precision_se=0.01, Recall=0.8, recall_se=0.02,
               judge=0.97, judge_se=0.01)
    floor = dict(FID=20.3, Precision=0.87, precision_se=0.02, Recall=0.86, recall_se=0.02, judge=0.98,
                 judge_se=0.008)
    lines = report.format_table([row, row], floor).splitlines()
    assert len(lines) == 2 + 2 + 1 and "floor 20.30" in lines[0] and "0.970 ± 0.010" in lines[2]
    assert all(line.count("|") == lines[0].count("|") for line in lines)
