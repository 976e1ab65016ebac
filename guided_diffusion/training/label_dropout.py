"""
Label dropout for classifier-free guidance (Ho & Salimans 2022, Algorithm 1).

While training a class-conditional model with `--class_dropout_prob p`, each label is replaced,
independently with probability p, by the null label `num_classes`, so one network learns both the
conditional and the unconditional prediction (its label embedding has num_classes + 1 rows).

The draws come from torch's global CPU generator, which the training script seeds and each
training checkpoint captures (`training.state`), so a resumed run draws the same dropouts as an
uninterrupted one, on any device. With p = 0 nothing is drawn: the random stream, and so the whole
run, is the same as without the feature.
"""

import torch as th

from ..config.factory import check_class_dropout_prob
from ..data.batch_map import MappedBatches


def drop_labels(y, prob, null_label, generator=None):
    """
    Replace each label by the null label with probability `prob`.

    :param y: [N] int64 labels in [0, null_label), on any device.
    :param prob: the dropout probability p in [0, 1).
    :param null_label: the null class index (the number of real classes).
    :param generator: a CPU torch.Generator; None uses the global one (seeded by training).
    :return: a new [N] tensor like y (y itself when p = 0; nothing is drawn then).
    :raises ValueError: for p outside [0, 1).
    """
    check_class_dropout_prob(prob)
    if prob == 0:
        return y
    draws = th.rand(y.shape, generator=generator)  # on the CPU: the same labels on every device
    dropped = (draws < prob).to(y.device)
    return th.where(dropped, th.full_like(y, null_label), y)


class LabelDropoutData(MappedBatches):
    """
    Wrap a training batch iterator of (batch, cond): each `cond["y"]` goes through `drop_labels`
    as the loop takes the batch, so the draws happen in the training process in step order.
    The data position passes through (`state_dict` / `load_state_dict`) for resume.

    :param data: iterator of (float [N, C, H, W], dict with "y" int64 [N]).
    :param prob: the dropout probability p in (0, 1).
    :param null_label: the null class index (the number of real classes).
    """

    def __init__(self, data, prob, null_label):
        super().__init__(data)
        self.prob = float(prob)
        self.null_label = int(null_label)

    def map(self, batch, cond):
        cond["y"] = drop_labels(cond["y"], self.prob, self.null_label)
        return batch, cond


def label_dropout_wrapper(prob, null_label):
    """:return: the `wrap_data` callable of `training.setup.train_diffusion`, or None for p = 0."""
    if not prob:
        return None
    return lambda data: LabelDropoutData(data, prob, null_label)
