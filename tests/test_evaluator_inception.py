"""Our FID Inception network against the TorchScript file it is built from."""

import numpy as np
import pytest
import torch

from evaluations.features import FeatureExtractor, preprocess
from evaluations.inception import load_inception
from evaluations.npz_reader import open_image_batch
from test_evaluator_helpers import load_torchscript, needs_weights, write_full_weights

pytestmark = needs_weights


@pytest.fixture(scope="module")
def outputs():
    """One 299x299 input through our network and the TorchScript file (expensive: run once)."""
    torchscript = load_torchscript()
    net = load_inception()
    x = torch.rand(1, 3, 299, 299, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.inference_mode():
        layers = torchscript.net.layers
        h = x
        for name in ["conv", "conv_1", "conv_2", "pool0", "conv_3", "conv_4", "pool1", "mixed",
                     "mixed_1", "mixed_2", "mixed_3", "mixed_4", "mixed_5"]:
            h = getattr(layers, name)(h)
        mixed_6_conv = layers.mixed_6.conv(h)  # [1, 192, 17, 17], post-ReLU 1x1 branch
        return {"ours": net(x), "pool": torchscript(x), "mixed_6_conv": mixed_6_conv, "net": net, "ts": torchscript}


def test_pool_features_match_torchscript(outputs):
    assert outputs["ours"]["pool"].shape == (1, 2048)
    torch.testing.assert_close(outputs["ours"]["pool"], outputs["pool"], atol=1e-4, rtol=1e-4)


def test_spatial_features_are_first_7_channels_of_mixed_6_conv_in_hwc_order(outputs):
    expected = outputs["mixed_6_conv"][:, :7].permute(0, 2, 3, 1).reshape(1, -1)
    assert outputs["ours"]["spatial"].shape == (1, 17 * 17 * 7)
    torch.testing.assert_close(outputs["ours"]["spatial"], expected, atol=1e-4, rtol=1e-4)


def test_default_weights_have_no_softmax_head(outputs):
    assert not outputs["net"].has_softmax and "softmax" not in outputs["ours"]


def test_softmax_head_uses_output_weight_without_bias(tmp_path, outputs):
    path = str(tmp_path / "full.pt")
    weight = write_full_weights(path, torchscript=outputs["ts"])
    full = load_inception(path)
    x = torch.rand(2, 3, 80, 80, generator=torch.Generator().manual_seed(1)) * 2 - 1  # small: cheap
    with torch.inference_mode():
        out = full(x)
        pool = outputs["net"](x)["pool"]
    torch.testing.assert_close(out["pool"], pool)
    torch.testing.assert_close(out["softmax"], torch.softmax(pool @ weight.T, dim=1), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out["softmax"].sum(1), torch.ones(2))


def test_weights_without_inception_layers_are_rejected(tmp_path):
    path = str(tmp_path / "other.pt")
    torch.save({"conv.weight": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match="not FID Inception weights"):
        load_inception(path)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a weights file")
    with pytest.raises(ValueError, match="cannot read Inception weights"):
        load_inception(str(junk))


def test_preprocess_scales_to_minus_one_one():
    images = np.zeros((1, 299, 299, 3), np.uint8)
    images[0, :, :, 1] = 255
    x = preprocess(images)
    assert x.shape == (1, 3, 299, 299)
    assert x[0, 0].unique().tolist() == [-1.0] and x[0, 1].unique().tolist() == [127 / 128]


def test_streamed_npz_features_equal_in_memory_features(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    path = str(tmp_path / "b.npz")
    np.savez_compressed(path, arr_0=images)
    extractor = FeatureExtractor(batch_size=1, device="cpu")
    streamed = extractor.compute_npz(open_image_batch(path))  # two reads of one image each
    extractor.batch_size = 2
    in_memory = extractor(images)
    assert streamed["pool"].shape == (2, 2048) and streamed["spatial"].shape == (2, 2023)
    for key in ("pool", "spatial"):
        np.testing.assert_allclose(streamed[key], in_memory[key], atol=1e-4, rtol=1e-4)
