"""The configuration enums: reference order and helpers."""

from guided_diffusion.diffusion.types import LossType, ModelMeanType, ModelVarType


def test_enums_follow_reference_order_and_is_vb():
    assert [m.value for m in ModelMeanType] == [1, 2, 3]
    assert [m.name for m in ModelVarType] == ["LEARNED", "FIXED_SMALL", "FIXED_LARGE", "LEARNED_RANGE"]
    assert [lt.is_vb() for lt in LossType] == [False, False, True, True]
