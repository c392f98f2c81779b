"""3×3 convolutions by Winograd's minimal filtering, F(4×4, 3×3) (Lavin and Gray, 2015), in plain
PyTorch operations, for the CPU.

Each 6×6 input tile becomes a 4×4 output tile with 36 multiplications per channel pair instead of
144; the rest is two small transforms. oneDNN, which runs torch's convolutions on this kind of CPU,
has no Winograd kernel for AVX2, so for VGG19's deep layers (256 and 512 channels) this does the
same convolution in fewer flops, and is faster than torch's there, forward and backward
(MIN_OUT_CHANNELS); on the wide, shallow layers the transforms cost more than they save, and
torch's own kernels stay. The timings per layer: docs/performance.md, "Against the targets".
In float32 the results differ from direct convolution by rounding: tests/test_winograd.py holds
them within 1e-5 of their largest value.

The gradient with respect to the input of a stride-1, padding-1 3×3 convolution is itself such a
convolution, with the kernel transposed and flipped, so the backward pass uses the same routine.
"""
from __future__ import annotations

from functools import cache
from typing import Any, TypeGuard

import torch
import torch.nn.functional as F
from torch import nn

from engine.params import WINOGRAD_MIN_OUT_CHANNELS

# Where it pays, timed layer by layer against torch's, forward and backward (docs/performance.md):
# with 256 or 512 output channels over 24×32 positions or more. With 128 outputs, or at 12×16
# positions, it was slower: there the fixed costs of the transforms and of small matrix products
# dominate.
MIN_OUT_CHANNELS = WINOGRAD_MIN_OUT_CHANNELS
MIN_POSITIONS = 24 * 32

_BT = ((4, 0, -5, 0, 1, 0), (0, -4, -4, 1, 1, 0), (0, 4, -4, -1, 1, 0),
       (0, -2, -1, 2, 1, 0), (0, 2, -1, -2, 1, 0), (0, 4, 0, -5, 0, 1))
_G = ((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6),
      (1 / 24, 1 / 12, 1 / 6), (1 / 24, -1 / 12, 1 / 6), (0, 0, 1))
_AT = ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1))


@cache
def _tile_transforms(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Input (36×36) and output (16×36) transforms of a row-major flattened tile, as Kronecker
    products: vec(Bᵀ d B) = (Bᵀ ⊗ Bᵀ) vec(d), vec(Aᵀ m A) = (Aᵀ ⊗ Aᵀ) vec(m)."""
    bt, at = torch.tensor(_BT, dtype=torch.float64), torch.tensor(_AT, dtype=torch.float64)
    return (torch.kron(bt, bt).to(device, dtype), torch.kron(at, at).to(device, dtype))


def transform_kernel(weight: torch.Tensor) -> torch.Tensor:
    """(K, C, 3, 3) kernels → (36, K, C): G g Gᵀ for every channel pair."""
    g = torch.tensor(_G, dtype=torch.float64)
    # vec(G g Gᵀ) = (G ⊗ G) vec(g): one matrix product for all the kernels.
    gg = torch.kron(g, g).to(weight.device, weight.dtype)
    k, c = weight.shape[:2]
    return (gg @ weight.reshape(k * c, 9).t()).view(36, k, c)


def conv3x3(x: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.conv2d(x, weight, bias, padding=1) for kernel = transform_kernel(weight)."""
    n, c, h, w = x.shape
    k = kernel.shape[1]
    th, tw = -(-h // 4), -(-w // 4)
    tiles = n * th * tw
    into, out_of = _tile_transforms(x.dtype, x.device)
    # 6×6 tiles overlapping by 2, over the input padded by 1 and then up to whole tiles. The input
    # transform is a stride-4 convolution of each channel with 36 fixed 6×6 filters: it reads the
    # tiles in place, where unfolding them first costs a copy 2.25 times the input's size.
    padded = F.pad(x, (1, 4 * tw + 1 - w, 1, 4 * th + 1 - h))
    v = F.conv2d(padded.view(n * c, 1, 4 * th + 2, 4 * tw + 2), into.view(36, 1, 6, 6), stride=4)
    v = v.view(n, c, 36, th * tw).permute(2, 1, 0, 3).reshape(36, c, tiles)  # a view when n == 1
    m = torch.bmm(kernel, v)  # (36, K, tiles): one K×C by C×tiles product per tile position
    y = (out_of @ m.view(36, k * tiles)).view(4, 4, k, n, th, tw)
    y = y.permute(3, 2, 4, 0, 5, 1).reshape(n, k, 4 * th, 4 * tw)
    if bias is not None:
        y += bias.view(1, k, 1, 1)
    # Not a view of y when nothing is cropped: the ReLU after it works in place.
    return y if (4 * th, 4 * tw) == (h, w) else y[:, :, :h, :w].contiguous()


class _Conv3x3(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, kernel: torch.Tensor, adjoint: torch.Tensor,
                bias: torch.Tensor) -> torch.Tensor:
        ctx.adjoint = adjoint  # a constant, not an input that needs saving for its version
        return conv3x3(x, kernel, bias)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        return conv3x3(grad.contiguous(), ctx.adjoint), None, None, None


class WinogradConv2d(nn.Module):
    """A fixed 3×3, stride-1, padding-1 convolution (weights without gradients) evaluated by
    Winograd F(4×4, 3×3) on inputs of MIN_POSITIONS or more, by torch on smaller ones; gradients
    flow to its input only."""

    kernel: torch.Tensor  # buffers: they follow the module's .to()
    adjoint: torch.Tensor
    bias: torch.Tensor

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        if conv.bias is None:
            raise ValueError("WinogradConv2d takes a convolution with a bias, as VGG19's are")
        self.conv = conv
        weight = conv.weight.detach()
        self.register_buffer("kernel", transform_kernel(weight), persistent=False)
        # The input gradient's convolution: in and out channels swapped, each kernel flipped.
        self.register_buffer("adjoint", transform_kernel(weight.transpose(0, 1).flip(2, 3)), persistent=False)
        self.register_buffer("bias", conv.bias.detach(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[2] * x.shape[3] < MIN_POSITIONS:
            return self.conv(x)
        return _Conv3x3.apply(x.contiguous(), self.kernel, self.adjoint, self.bias)


def _fits(conv: nn.Module) -> TypeGuard[nn.Conv2d]:
    return (isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.padding == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
            and conv.bias is not None and conv.out_channels >= MIN_OUT_CHANNELS)


def adopt(net: nn.Module) -> nn.Module:
    """Replaces, in place, each of net's 3×3 convolutions with MIN_OUT_CHANNELS outputs or more."""
    for name, child in net.named_children():
        if _fits(child):
            setattr(net, name, WinogradConv2d(child))
        else:
            adopt(child)
    return net
