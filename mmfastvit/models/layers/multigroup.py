"""The multi-group reparameterizable convolution of FMViT (Tan et al. 2023), as a general layer.

The fusion math is pure and lives in :mod:`mmfastvit.models.utils.multigroup`; this module holds the train-time
layer built on it, with the conv+BN branches and the fused convolution of :mod:`.common`.
"""
from typing import Sequence

import torch
from torch import Tensor, nn

from ..utils.fusion import KernelBias, Size2, to_pair
from ..utils.multigroup import BranchSpec, ConvBranch, fuse_multigroup, identity_branch
from ..utils.reparam import DeployArg, Reparameterizable
from .common import ConvBN, fused_conv, set_weight_bias


def conv_bn_branch(conv_bn: ConvBN) -> ConvBranch:
    """The :class:`ConvBN` ``conv_bn`` as a :class:`~mmfastvit.models.utils.multigroup.ConvBranch` (its eval-mode
    BatchNorm is folded when fused)."""
    return ConvBranch(conv_bn.conv.weight, conv_bn.conv.groups, None, conv_bn.bn)


class MultiGroupConv(Reparameterizable):
    """A ``CONV(K_h, K_w, G)``-BN trained with parallel ``CONV(K_hi, K_wi, G_i)``-BN branches and an optional
    BatchNorm identity branch, summed (no activation); fuses into one biased ``nn.Conv2d``.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int | tuple[int, int]): The main (target) kernel, odd sizes.
        stride (int | tuple[int, int]): Stride of every branch. Defaults to 1.
        groups (int): Groups of the main branch and of the fused convolution. Defaults to 1.
        branches (Sequence[tuple]): Extra branches as ``(kernel_size, groups)``: kernels no larger than the main one
            (odd sizes), groups multiples of ``groups`` dividing both channel counts. Defaults to ``()``.
        identity (bool): A BatchNorm identity branch (needs ``in_channels == out_channels`` and stride 1).
            Defaults to False.
        deploy (bool | str): Build the fused form directly. Defaults to False.

    Example:
        >>> import torch
        >>> conv = MultiGroupConv(16, 16, 3, branches=[((3, 1), 1), ((1, 3), 1), (1, 4)], identity=True).eval()
        >>> x = torch.randn(1, 16, 8, 8)
        >>> y = conv(x)
        >>> torch.allclose(conv.reparameterize()(x), y, atol=1e-5), type(conv.reparam_conv).__name__
        (True, 'Conv2d')
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Size2, stride: Size2 = 1, groups: int = 1,
                 branches: Sequence[BranchSpec] = (), identity: bool = False, deploy: DeployArg = False) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.groups = to_pair(kernel_size), to_pair(stride), groups
        if not (self.kernel_size[0] % 2 and self.kernel_size[1] % 2):
            raise ValueError(f'kernel_size={kernel_size}: MultiGroupConv needs odd kernel sizes (centred padding)')
        if in_channels % groups or out_channels % groups:
            raise ValueError(f'groups={groups} does not divide in_channels={in_channels} and '
                             f'out_channels={out_channels}')
        specs = [(to_pair(k), g) for k, g in branches]
        for (kh, kw), g in specs:
            if kh > self.kernel_size[0] or kw > self.kernel_size[1] or not (kh % 2 and kw % 2):
                raise ValueError(f'branch kernel {kh}x{kw} is not an odd size within the main '
                                 f'{self.kernel_size[0]}x{self.kernel_size[1]}')
            if g % groups or in_channels % g or out_channels % g:
                raise ValueError(f'branch groups={g} must be a multiple of groups={groups} and divide '
                                 f'in_channels={in_channels} and out_channels={out_channels}')
        if identity and (in_channels != out_channels or self.stride != (1, 1)):
            raise ValueError(f'an identity branch needs in_channels == out_channels and stride 1, got '
                             f'{in_channels} -> {out_channels}, stride {stride}')
        self.branch_specs = tuple(specs)
        if self.builds_fused(deploy):
            self.reparam_conv = self._fused_conv()
        else:
            self.main = ConvBN(in_channels, out_channels, self.kernel_size, self.stride, groups)
            self.branches = nn.ModuleList(ConvBN(in_channels, out_channels, k, self.stride, g) for k, g in specs)
            self.identity = nn.BatchNorm2d(in_channels) if identity else None

    def _fused_conv(self) -> nn.Conv2d:
        return fused_conv(self.in_channels, self.out_channels, self.kernel_size, self.stride, self.groups)

    def forward(self, x: Tensor) -> Tensor:
        if self.deploy:
            return self.reparam_conv(x)
        out = self.main(x)
        for branch in self.branches:
            out = out + branch(x)
        if self.identity is not None:
            out = out + self.identity(x)
        return out

    def kernel_bias(self) -> KernelBias:
        """The ``(weight, bias)`` of the fused convolution, in either form."""
        if self.deploy:
            return self.reparam_conv.weight, self.reparam_conv.bias
        branches = [conv_bn_branch(b) for b in (self.main, *self.branches)]
        if self.identity is not None:
            branches.append(identity_branch(self.in_channels, self.identity))
        return fuse_multigroup(branches, self.groups, self.kernel_size)

    def _fuse(self) -> None:
        with torch.no_grad():
            weight, bias = self.kernel_bias()
        self.reparam_conv = self._fused_conv().to(weight)  # same dtype and device as the train-time form
        set_weight_bias(self.reparam_conv, weight, bias)
        del self.main, self.branches, self.identity

    def extra_repr(self) -> str:
        return (f'{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, '
                f'groups={self.groups}, branches={list(self.branch_specs)}')
