"""Small layers shared by the FastViT blocks: conv+BN, layer scale, stochastic depth."""
from typing import Optional

import torch
from torch import Tensor, nn

from ..utils.fusion import KernelBias, Size2, fold_output_scale, fuse_conv_bn, to_pair


class ConvBN(nn.Module):
    """A bias-free convolution followed by BatchNorm (one branch of a reparameterizable block).

    The kernel is centred ("same" padding ``k // 2`` on each side), so ``kernel_size`` is odd; it and ``stride`` are
    an int or an ``(h, w)`` pair.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Size2, stride: Size2 = 1,
                 groups: int = 1) -> None:
        super().__init__()
        kh, kw = to_pair(kernel_size)
        self.conv = nn.Conv2d(in_channels, out_channels, (kh, kw), stride, (kh // 2, kw // 2), groups=groups,
                              bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(x))

    def kernel_bias(self) -> KernelBias:
        """The ``(kernel, bias)`` of the equivalent single convolution (eval-mode BN)."""
        return fuse_conv_bn(self.conv.weight, None, self.bn)

    def to_fused_conv(self) -> nn.Conv2d:
        """A new convolution with bias equal to this branch in eval mode."""
        conv = self.conv
        fused = fused_conv(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.groups)
        set_weight_bias(fused, *self.kernel_bias())
        return fused


def _exporting() -> bool:
    """Whether the forward pass is being traced or exported rather than run eagerly."""
    return torch.jit.is_tracing() or torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export()


class PointwiseConv(nn.Conv2d):
    """A 1x1, stride-1, ungrouped convolution computed as one batched matrix product over the NCHW buffer.

    Same parameters and state-dict keys as ``nn.Conv2d(in, out, 1)``; only the kernel differs. On CPU, oneDNN's 1x1
    convolution on NCHW activations reorders them on every call and runs 1.1-6x slower than the GEMM (measured here
    for FastViT's shapes at batch 1 and 8: ``benchmarks/results/backbone_latency_cpu.md``). Inputs that are not
    contiguous NCHW (e.g. ``channels_last``, where the convolution is already fast) take the convolution path, and so
    does every export (``torch.jit.trace``, ``torch.export``, ``torch.onnx.export``): an exported graph gets a plain
    1x1 ``Conv``, which ONNX Runtime, TensorRT and Core ML run faster than the batched matrix product.
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        if not x.is_contiguous() or _exporting():
            return super().forward(x)
        b, c, h, w = x.shape
        weight = self.weight.view(1, self.out_channels, c).expand(b, -1, -1)
        x = x.view(b, c, h * w)
        if self.bias is None:
            out = torch.bmm(weight, x)
        else:
            out = torch.baddbmm(self.bias.view(1, -1, 1), weight, x)
        return out.view(b, self.out_channels, h, w)


def fused_conv(in_channels: int, out_channels: int, kernel_size: Size2, stride: Size2 = 1,
               groups: int = 1) -> nn.Conv2d:
    """The single biased convolution a fused block becomes ("same" padding ``k // 2``, ``kernel_size`` and ``stride``
    an int or an ``(h, w)`` pair); 1x1, stride-1, ungrouped ones are :class:`PointwiseConv`."""
    (kh, kw), stride = to_pair(kernel_size), to_pair(stride)
    if (kh, kw) == (1, 1) and stride == (1, 1) and groups == 1:
        return PointwiseConv(in_channels, out_channels)
    return nn.Conv2d(in_channels, out_channels, (kh, kw), stride, (kh // 2, kw // 2), groups=groups, bias=True)


def set_weight_bias(module: nn.Module, weight: Tensor, bias: Tensor) -> None:
    """Copies fused values into a freshly built layer (kept out of autograd history)."""
    with torch.no_grad():
        module.weight.copy_(weight)
        module.bias.copy_(bias)


class LayerScale2d(nn.Module):
    """Per-channel learnable scale of an NCHW tensor, ``gamma`` shaped ``(C, 1, 1)``."""

    def __init__(self, dim: int, init_value: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim, 1, 1), float(init_value)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


def layer_scale(dim: int, init_value: Optional[float]) -> nn.Module:
    """A :class:`LayerScale2d`, or identity when ``init_value`` is None (no layer scale)."""
    return nn.Identity() if init_value is None else LayerScale2d(dim, init_value)


def fold_layer_scale_into(conv: nn.Conv2d, scale: nn.Module) -> None:
    """Folds a layer scale that follows ``conv`` (or a linear layer) into its weight and bias, in place."""
    if not isinstance(scale, LayerScale2d):
        return
    with torch.no_grad():
        weight, bias = fold_output_scale(conv.weight, conv.bias, scale.gamma)
        conv.weight.copy_(weight)
        if conv.bias is None:
            conv.bias = nn.Parameter(bias)
        else:
            conv.bias.copy_(bias)


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch of a sample with probability ``drop_prob`` in training."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: Tensor) -> Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f'drop_prob={self.drop_prob}'
