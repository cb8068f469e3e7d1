"""Convolutional multi-group reparameterization (FMViT, Tan et al. 2023), as a general utility.

A target convolution ``CONV(K_h, K_w, G)`` (``G`` groups) is trained with parallel branches ``CONV(K_hi, K_wi, G_i)``,
each optionally followed by BatchNorm, where ``G_i`` is a multiple of ``G``, ``K_hi <= K_h``, ``K_wi <= K_w``, the
stride is shared and every kernel is centred (odd sizes, padding ``K // 2``), so all outputs align. Each branch is a
sparse ``CONV(K_h, K_w, G)``: its ``G_i`` groups nest inside the target's ``G`` groups (``G_i / G`` of them per target
group, on the block diagonal), and its kernel sits in the centre of the ``K_h x K_w`` window; outside both it is zero.
Summing the embedded kernels gives the one convolution used at inference.

RepVGG's 1x1 branch (``K_i = 1``), ACNet's 3x1 / 1x3 branches and the BatchNorm identity branch (a ``CONV(1, 1, C)``
with unit weights, see :func:`identity_branch`) are all special cases.

Only pure functions live here (:func:`embed_grouped_kernel`, :func:`fuse_multigroup`, ...); the train-time module
built on them is :class:`mmfastvit.models.layers.MultiGroupConv`.
"""
from typing import List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from .fusion import KernelBias, Size2, fuse_conv_bn, to_pair

# A branch of MultiGroupConv: (kernel size, groups), e.g. ((3, 1), 1) or (1, 4).
BranchSpec = Tuple[Size2, int]


class ConvBranch(NamedTuple):
    """One parallel branch: ``bn(conv(x, weight, bias, groups=groups))`` with the BN (eval mode) optional.

    ``weight`` is ``(out, in // groups, kh, kw)``; ``kh`` and ``kw`` are odd (centred, padding ``k // 2``).
    """

    weight: Tensor
    groups: int = 1
    bias: Optional[Tensor] = None
    bn: Optional[nn.BatchNorm2d] = None


def identity_branch(channels: int, bn: Optional[nn.BatchNorm2d] = None, like: Optional[Tensor] = None) -> ConvBranch:
    """The identity map (optionally followed by ``bn``) as a ``CONV(1, 1, channels)`` with unit weights."""
    if like is None:
        like = bn.running_var if bn is not None else torch.empty(0)
    return ConvBranch(like.new_ones(channels, 1, 1, 1), groups=channels, bn=bn)


def embed_grouped_kernel(weight: Tensor, groups: int, target_groups: int, kernel_size: Size2) -> Tensor:
    """Embeds a ``CONV(kh, kw, groups)`` kernel as the sparse kernel of a ``CONV(K_h, K_w, target_groups)``.

    Branch group ``j`` (``out / groups`` outputs reading ``in / groups`` inputs) lies in target group
    ``j // r`` with ``r = groups / target_groups``; within it, it reads the ``(j % r)``-th slice of the target
    group's inputs. Its ``kh x kw`` window is centred in ``K_h x K_w``.

    Args:
        weight (Tensor): ``(out, in // groups, kh, kw)``.
        groups (int): The branch's groups, a multiple of ``target_groups``.
        target_groups (int): The target convolution's groups.
        kernel_size (int | tuple[int, int]): The target's ``(K_h, K_w)``, each at least the branch's and of the
            same parity (odd, for centred padding).

    Returns:
        Tensor: ``(out, in // target_groups, K_h, K_w)``.
    """
    big_h, big_w = to_pair(kernel_size)
    out_channels, in_per_group, kh, kw = weight.shape
    in_channels = in_per_group * groups
    if groups < target_groups or groups % target_groups:
        raise ValueError(f'a branch with groups={groups} does not nest in a target with groups={target_groups}: '
                         f'the branch\'s groups must be a multiple of the target\'s')
    if out_channels % groups:
        raise ValueError(f'out_channels={out_channels} is not a multiple of the branch\'s groups={groups}')
    if kh > big_h or kw > big_w:
        raise ValueError(f'a {kh}x{kw} branch does not fit in a {big_h}x{big_w} target kernel')
    if not (kh % 2 and kw % 2 and big_h % 2 and big_w % 2):
        raise ValueError(f'kernel sizes must be odd to share a centre (padding k // 2): branch {kh}x{kw}, '
                         f'target {big_h}x{big_w}')
    ratio = groups // target_groups
    out_per_group = out_channels // groups
    top, left = (big_h - kh) // 2, (big_w - kw) // 2
    embedded = weight.new_zeros(out_channels, in_channels // target_groups, big_h, big_w)
    # (target group, slot in it, outputs of the slot) x (slot, inputs of the slot): branch weights on the diagonal
    view = embedded.view(target_groups, ratio, out_per_group, ratio, in_per_group, big_h, big_w)
    source = weight.reshape(target_groups, ratio, out_per_group, in_per_group, kh, kw)
    for slot in range(ratio):
        view[:, slot, :, slot, :, top:top + kh, left:left + kw] = source[:, slot]
    return embedded


def fuse_multigroup(branches: Sequence[ConvBranch], groups: int, kernel_size: Size2) -> KernelBias:
    """The ``(weight, bias)`` of the single ``CONV(K_h, K_w, groups)`` equal to the sum of ``branches``.

    Each branch's BatchNorm (if any, eval-mode statistics) is folded into its kernel, the kernel is embedded with
    :func:`embed_grouped_kernel`, and kernels and biases are summed.

    Args:
        branches (Sequence[ConvBranch]): The parallel branches; they must agree on input and output channels.
        groups (int): Groups of the target convolution.
        kernel_size (int | tuple[int, int]): Kernel of the target convolution.

    Returns:
        tuple[Tensor, Tensor]: ``weight`` ``(out, in // groups, K_h, K_w)`` and ``bias`` ``(out,)``.
    """
    if not branches:
        raise ValueError('fuse_multigroup needs at least one branch')
    shapes = {(b.weight.shape[0], b.weight.shape[1] * b.groups) for b in branches}
    if len(shapes) != 1:
        raise ValueError(f'branches disagree on (out_channels, in_channels): {sorted(shapes)}')
    weight, bias = None, None
    for branch in branches:
        w, b = branch.weight, branch.bias
        if branch.bn is not None:
            w, b = fuse_conv_bn(w, b, branch.bn)
        w = embed_grouped_kernel(w, branch.groups, groups, kernel_size)
        weight = w if weight is None else weight + w
        if b is not None:
            bias = b if bias is None else bias + b
    if bias is None:
        bias = weight.new_zeros(weight.shape[0])
    return weight, bias


def multigroup_branches(in_channels: int, out_channels: int, groups: Sequence[int],
                        kernel_size: Size2 = 1) -> List[BranchSpec]:
    """``(kernel_size, g)`` branch specs for each ``g`` in ``groups`` that divides both channel counts (the others
    are skipped, so one setting serves every width)."""
    return [(kernel_size, g) for g in groups if in_channels % g == 0 and out_channels % g == 0]
