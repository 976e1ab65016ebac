"""MappedBatches: each batch goes through map() on a copy of cond; the data position passes through."""

import pytest
import torch as th

from guided_diffusion.data.batch_map import MappedBatches


class _Counter:
    """(batch [1, 1, 1, 1] = step, {"y": step}) forever, with a resumable position."""

    def __init__(self):
        self.step = 0

    def __next__(self):
        self.step += 1
        return th.full((1, 1, 1, 1), float(self.step)), {"y": self.step}

    def state_dict(self):
        return {"step": self.step}

    def load_state_dict(self, state):
        self.step = state["step"]


class _Doubled(MappedBatches):
    def map(self, batch, cond):
        cond["y"] = 2 * cond["y"]
        return 2 * batch, cond


def test_map_sees_every_batch_and_cond_is_a_copy():
    source = {"y": 3}

    class _Once:
        def __next__(self):
            return th.ones(1), source

    batch, cond = next(_Doubled(_Once()))
    assert cond == {"y": 6} and source == {"y": 3}  # the source's dict is never changed
    assert th.equal(batch, th.full((1,), 2.0))


def test_position_round_trips_through_the_wrapper():
    a = _Doubled(_Counter())
    for _ in range(3):
        next(a)
    saved = a.state_dict()
    assert saved == {"step": 3}
    b = _Doubled(_Counter())
    b.load_state_dict(saved)
    assert next(b)[1]["y"] == next(a)[1]["y"] == 8


def test_data_without_a_position_gives_none_and_ignores_loads():
    wrapped = _Doubled(iter([(th.zeros(1), {"y": 1})]))
    assert wrapped.state_dict() is None
    wrapped.load_state_dict({"step": 5})  # nothing to restore into: no error
    wrapped.load_state_dict(None)
    assert next(wrapped)[1] == {"y": 2}
    with pytest.raises(StopIteration):
        next(wrapped)


def test_map_must_be_defined():
    with pytest.raises(NotImplementedError):
        next(MappedBatches(_Counter()))
