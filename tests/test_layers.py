"""engine/layers.py: VGG19's convolution table, and how far a layer's features see."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from engine import layers


def test_the_table_is_vgg19s_sixteen_convolutions_in_five_blocks():
    assert len(layers.VGG19) == 16 and layers.LAYERS[0] == "conv1_1" and layers.LAYERS[-1] == "conv5_4"
    assert [c.name for c in layers.VGG19 if c.name.endswith("_1")] == [f"conv{b}_1" for b in range(1, 6)]
    for before, after in zip(layers.VGG19, layers.VGG19[1:]):
        assert after.in_channels == before.out_channels  # one chain
    assert layers.BY_NAME["conv4_2"].out_channels == 512 and layers.BY_NAME["conv4_2"].downscale == 8
    assert layers.up_to("conv2_1") == layers.VGG19[:3]


@pytest.mark.parametrize("deepest", ["conv1_1", "conv2_1", "conv3_1", "conv4_2", "conv5_1"])
def test_reach_is_what_a_real_pass_of_3x3_convolutions_and_poolings_sees(deepest: str):
    """Position P of `deepest` changes when input pixel s·P − left or s·P + right changes, not one
    pixel further: checked by the gradient of one feature through a network of VGG19's shape."""
    left, right = layers.reach(deepest)
    size, scale = 256, layers.BY_NAME[deepest].downscale
    x = torch.zeros(1, 1, size, size, requires_grad=True)
    y = x
    for conv in layers.up_to(deepest):
        if conv.downscale != (y.shape[-1] and size // y.shape[-1]):
            y = F.avg_pool2d(y, 2)  # (max pooling sends a tie's gradient to one pixel of four)
        y = F.conv2d(y, torch.ones(1, 1, 3, 3), padding=1) + 1.0
    p = y.shape[-1] // 2
    y[0, 0, p, p].backward()
    columns = x.grad[0, 0].abs().sum(0).nonzero().flatten()
    assert (scale * p - int(columns.min()), int(columns.max()) - scale * p) == (left, right)
