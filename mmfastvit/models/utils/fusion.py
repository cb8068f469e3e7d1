"""The fusion math of structural reparameterization, as small pure functions.

Every function here maps tensors to tensors and touches no module state, so each is tested on its own. A kernel and
bias pair ``(W, b)`` describes the affine map ``y = conv(x, W) + b``; all the branches of a train-time block are brought
to that form, padded to one kernel size and summed.

Conventions: convolution kernels are ``(out, in // groups, kh, kw)``; a BatchNorm in eval mode is the per-channel affine
map ``y = x * scale + shift`` with ``scale = gamma / sqrt(var + eps)`` and ``shift = beta - mean * scale``.
"""
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

KernelBias = Tuple[Tensor, Tensor]
# A kernel size or stride: one int for both sides, or ``(height, width)``.
Size2 = Union[int, Tuple[int, int]]


def to_pair(value: Size2) -> Tuple[int, int]:
    """``(value, value)`` for an int, else ``value`` checked to be a pair of ints."""
    if isinstance(value, int):
        return value, value
    pair = tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) for v in pair):
        raise ValueError(f'expected an int or a pair of ints, got {value!r}')
    return pair


def bn_scale_shift(bn: nn.BatchNorm2d) -> KernelBias:
    """The per-channel ``(scale, shift)`` that an eval-mode BatchNorm applies."""
    std = (bn.running_var + bn.eps).sqrt()
    gamma = bn.weight if bn.weight is not None else torch.ones_like(std)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(std)
    scale = gamma / std
    return scale, beta - bn.running_mean * scale


def fuse_conv_bn(weight: Tensor, bias: Optional[Tensor], bn: nn.BatchNorm2d) -> KernelBias:
    """Folds a BatchNorm that follows a convolution into the convolution: ``bn(conv(x, W) + b)``."""
    scale, shift = bn_scale_shift(bn)
    fused_w = weight * scale.reshape(-1, 1, 1, 1)
    fused_b = shift if bias is None else bias * scale + shift
    return fused_w, fused_b


def identity_kernel(channels: int, groups: int, kernel_size: int, like: Tensor) -> Tensor:
    """The ``k x k`` kernel of the identity map for a grouped convolution with ``in == out == channels``.

    Output channel ``i`` reads input channel ``i``, which is ``i % (channels // groups)`` within its group.
    """
    in_per_group = channels // groups
    kernel = like.new_zeros(channels, in_per_group, kernel_size, kernel_size)
    idx = torch.arange(channels, device=like.device)
    kernel[idx, idx % in_per_group, kernel_size // 2, kernel_size // 2] = 1
    return kernel


def fuse_bn_identity(bn: nn.BatchNorm2d, groups: int, kernel_size: int) -> KernelBias:
    """The kernel and bias of a BatchNorm-only (identity) branch, as a ``k x k`` grouped convolution."""
    scale, shift = bn_scale_shift(bn)
    kernel = identity_kernel(bn.num_features, groups, kernel_size, like=bn.running_var)
    return kernel * scale.reshape(-1, 1, 1, 1), shift


def pad_kernel(kernel: Tensor, kernel_size: int) -> Tensor:
    """Zero-pads a smaller, centred square kernel to ``kernel_size`` (both odd, so the centres coincide)."""
    pad = (kernel_size - kernel.shape[-1]) // 2
    if pad < 0:
        raise ValueError(f'cannot pad a {kernel.shape[-1]}x{kernel.shape[-1]} kernel down to {kernel_size}')
    return F.pad(kernel, [pad] * 4) if pad else kernel


def sum_branches(branches: Sequence[KernelBias], kernel_size: int) -> KernelBias:
    """Sums parallel ``(kernel, bias)`` branches into one, padding each kernel to ``kernel_size``."""
    if not branches:
        raise ValueError('sum_branches needs at least one branch')
    weight = sum(pad_kernel(w, kernel_size) for w, _ in branches)
    bias = sum(b for _, b in branches)
    return weight, bias


def fold_input_affine_into_linear(weight: Tensor, bias: Optional[Tensor], scale: Tensor,
                                  shift: Tensor) -> KernelBias:
    """Folds a per-channel affine map on the *input* of a linear layer (or 1x1 conv) into it.

    ``W (x * scale + shift) + b = (W * scale) x + (W shift + b)``; ``weight`` is ``(out, in)`` or ``(out, in, 1, 1)``.
    """
    w2d = weight.reshape(weight.shape[0], weight.shape[1])
    new_bias = w2d @ shift
    if bias is not None:
        new_bias = new_bias + bias
    return (w2d * scale.reshape(1, -1)).reshape(weight.shape), new_bias


def fold_output_scale(weight: Tensor, bias: Optional[Tensor], scale: Tensor) -> KernelBias:
    """Folds a per-channel scale on the *output* of a linear layer or conv into it: ``scale * (W x + b)``."""
    scale = scale.reshape(-1)
    new_w = weight * scale.reshape([-1] + [1] * (weight.dim() - 1))
    new_b = scale * bias if bias is not None else torch.zeros_like(scale)
    return new_w, new_b
