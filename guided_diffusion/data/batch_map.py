"""
A wrapper over a training batch iterator that changes each batch as the loop takes it, and passes
the data position through for exact resume.
"""


class MappedBatches:
    """
    Iterate over `data` (an iterator of (batch, cond)), yielding `self.map(batch, cond)`.
    `state_dict` / `load_state_dict` forward to `data` when it has them (a `ResumableLoader`), so
    a wrapped loader resumes where it stopped. Subclasses define `map`.

    :param data: iterator of (float [N, C, H, W], dict of model kwargs).
    """

    def __init__(self, data):
        self.data = data

    def __iter__(self):
        return self

    def __next__(self):
        batch, cond = next(self.data)
        return self.map(batch, dict(cond))

    def map(self, batch, cond):
        """:return: the (batch, cond) the loop sees; `cond` is a copy the subclass may change."""
        raise NotImplementedError

    def state_dict(self):
        return self.data.state_dict() if hasattr(self.data, "state_dict") else None

    def load_state_dict(self, state):
        if state is not None and hasattr(self.data, "load_state_dict"):
            self.data.load_state_dict(state)
