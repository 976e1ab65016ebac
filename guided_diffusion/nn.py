"""Small neural-network helpers shared by the networks and the diffusion process."""


def mean_flat(tensor):
    """
    Take the mean over all non-batch dimensions.

    :param tensor: an [N x ...] tensor.
    :return: an [N] tensor.
    """
    return tensor.mean(dim=list(range(1, tensor.dim())))
