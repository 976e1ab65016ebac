"""
Timestep samplers for training: which t each batch element is trained at, and the importance
weight that keeps the loss estimate unbiased (Nichol & Dhariwal 2021, Sec. 3.3).
"""

from abc import ABC, abstractmethod

import numpy as np
import torch as th

from .types import UnknownNameError

SCHEDULE_SAMPLERS = ("uniform", "loss-second-moment")


def create_named_schedule_sampler(name, diffusion):
    """
    Create a ScheduleSampler from a library of pre-defined samplers.

    :param name: the name of the sampler, one of SCHEDULE_SAMPLERS.
    :param diffusion: the diffusion object to sample for.
    :raises ValueError: for an unknown name (UnknownNameError, also a NotImplementedError as
                        in the reference).
    """
    if name == "uniform":
        return UniformSampler(diffusion)
    if name == "loss-second-moment":
        return LossSecondMomentResampler(diffusion)
    raise UnknownNameError(
        f"unknown schedule sampler: {name!r}; allowed: {', '.join(SCHEDULE_SAMPLERS)}"
    )


class ScheduleSampler(ABC):
    """
    A distribution over timesteps in the diffusion process, intended to reduce the variance of
    the objective. Subclasses override weights() (non-negative, unnormalized); sample() draws
    from them with numpy's global RNG and returns importance weights.
    """

    @abstractmethod
    def weights(self):
        """
        Get a numpy array of weights, one per diffusion step.

        The weights needn't be normalized, but must be positive.
        """

    def sample(self, batch_size, device):
        """
        Importance-sample timesteps for a batch.

        :param batch_size: the number of timesteps.
        :param device: the torch device to put the results on.
        :return: a tuple (timesteps, weights): timesteps is an int64 tensor [batch_size] of
                 indices; weights is a float32 tensor [batch_size], 1 / (T * p_t), to scale the
                 resulting losses by.
        """
        w = self.weights()
        p = w / np.sum(w)
        indices_np = np.random.choice(len(p), size=(batch_size,), p=p)
        indices = th.from_numpy(indices_np).long().to(device)
        weights_np = 1 / (len(p) * p[indices_np])
        weights = th.from_numpy(weights_np).float().to(device)
        return indices, weights


class UniformSampler(ScheduleSampler):
    """Every timestep with the same probability (all importance weights are 1)."""

    def __init__(self, diffusion):
        self.diffusion = diffusion
        self._weights = np.ones([diffusion.num_timesteps])

    def weights(self):
        return self._weights


class LossAwareSampler(ScheduleSampler):
    """A sampler whose weights follow the losses observed during training."""

    def update_with_local_losses(self, local_ts, local_losses):
        """
        Update the reweighting using losses from this process.

        Call this from each rank with a batch of timesteps and the corresponding losses. With
        torch.distributed initialized, the batches of all ranks are gathered (padded to the
        largest batch) so every rank keeps identical weights; otherwise the local batch is used.

        :param local_ts: an integer tensor of timesteps, shape [N].
        :param local_losses: a 1-D tensor of losses, shape [N].
        """
        dist = th.distributed
        if not (dist.is_available() and dist.is_initialized()):
            self.update_with_all_losses(local_ts.tolist(), local_losses.tolist())
            return
        world_size = dist.get_world_size()
        device = local_ts.device
        batch_sizes = [th.zeros(1, dtype=th.int32, device=device) for _ in range(world_size)]
        dist.all_gather(batch_sizes, th.tensor([len(local_ts)], dtype=th.int32, device=device))
        batch_sizes = [int(x.item()) for x in batch_sizes]
        max_bs = max(batch_sizes)

        # all_gather needs equal sizes: pad every rank's batch to the largest one.
        def padded(tensor):
            out = th.zeros(max_bs, dtype=tensor.dtype, device=tensor.device)
            out[: len(tensor)] = tensor
            return out

        timestep_batches = [th.zeros(max_bs).to(local_ts) for _ in batch_sizes]
        loss_batches = [th.zeros(max_bs).to(local_losses) for _ in batch_sizes]
        dist.all_gather(timestep_batches, padded(local_ts))
        dist.all_gather(loss_batches, padded(local_losses))
        timesteps = [
            x.item() for y, bs in zip(timestep_batches, batch_sizes) for x in y[:bs]
        ]
        losses = [x.item() for y, bs in zip(loss_batches, batch_sizes) for x in y[:bs]]
        self.update_with_all_losses(timesteps, losses)

    @abstractmethod
    def update_with_all_losses(self, ts, losses):
        """
        Update the reweighting using losses from the whole (possibly distributed) batch.

        Sub-classes should override this method to update the reweighting using losses from
        the model. It is called identically on every rank so the weights stay in sync.

        :param ts: a list of int timesteps.
        :param losses: a list of float losses, one per timestep.
        """


class LossSecondMomentResampler(LossAwareSampler):
    """
    Sample t with probability proportional to sqrt(E[L_t^2]) over the last `history_per_term`
    losses of each t, mixed with `uniform_prob` of uniform sampling; uniform until every
    timestep has a full history.
    """

    def __init__(self, diffusion, history_per_term=10, uniform_prob=0.001):
        self.diffusion = diffusion
        self.history_per_term = history_per_term
        self.uniform_prob = uniform_prob
        self._loss_history = np.zeros(
            [diffusion.num_timesteps, history_per_term], dtype=np.float64
        )
        self._loss_counts = np.zeros([diffusion.num_timesteps], dtype=np.int64)

    def weights(self):
        if not self._warmed_up():
            return np.ones([self.diffusion.num_timesteps], dtype=np.float64)
        weights = np.sqrt(np.mean(self._loss_history**2, axis=-1))
        weights /= np.sum(weights)
        weights *= 1 - self.uniform_prob
        weights += self.uniform_prob / len(weights)
        return weights

    def update_with_all_losses(self, ts, losses):
        for t, loss in zip(ts, losses):
            if self._loss_counts[t] == self.history_per_term:
                # Shift out the oldest loss term.
                self._loss_history[t, :-1] = self._loss_history[t, 1:]
                self._loss_history[t, -1] = loss
            else:
                self._loss_history[t, self._loss_counts[t]] = loss
                self._loss_counts[t] += 1

    def _warmed_up(self):
        return (self._loss_counts == self.history_per_term).all()
