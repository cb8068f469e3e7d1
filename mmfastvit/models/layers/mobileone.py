"""MobileOne-style train-time overparameterized convolutions: the multi-branch block and the large-kernel conv."""
from typing import List, Optional

from torch import Tensor, nn

from ..utils.fusion import KernelBias, fuse_bn_identity, sum_branches
from ..utils.reparam import DeployArg, Reparameterizable
from .common import ConvBN, fused_conv, set_weight_bias


class SEBlock(nn.Module):
    """Squeeze-and-excitation as in FastViT's ``conv_exp``: global mean -> 1x1 reduce -> ReLU -> 1x1 expand -> sigmoid.

    Args:
        channels (int): Input and output channels.
        rd_ratio (float): Reduction ratio of the hidden width. Defaults to 1/16.
    """

    def __init__(self, channels: int, rd_ratio: float = 0.0625) -> None:
        super().__init__()
        hidden = int(channels * rd_ratio)
        self.reduce = nn.Conv2d(channels, hidden, 1, bias=True)
        self.expand = nn.Conv2d(hidden, channels, 1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        gate = self.expand(self.reduce(x.mean((2, 3), keepdim=True)).relu()).sigmoid()
        return x * gate


class MobileOneBlock(Reparameterizable):
    """The MobileOne block: parallel ``k x k`` conv-BN branches, a 1x1 conv-BN scale branch and a BN identity branch,
    summed, then SE and activation. Fuses into one ``k x k`` convolution with bias.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int): Kernel size of the main branches (odd).
        stride (int): Stride. Defaults to 1.
        groups (int): Convolution groups. Defaults to 1.
        use_se (bool): Squeeze-and-excitation after the sum. Defaults to False.
        use_act (bool): GELU at the end. Defaults to True.
        use_scale_branch (bool): The 1x1 scale branch (only when ``kernel_size > 1``). Defaults to True.
        num_conv_branches (int): Number of ``k x k`` conv-BN branches. Defaults to 1.
        deploy (bool | str): Build the fused form directly. Defaults to False.

    Example:
        >>> import torch
        >>> block = MobileOneBlock(16, 16, 3).eval()
        >>> x = torch.randn(1, 16, 8, 8)
        >>> y = block(x)
        >>> torch.allclose(block.switch_to_deploy()(x), y, atol=1e-5)
        True
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1,
                 use_se: bool = False, use_act: bool = True, use_scale_branch: bool = True,
                 num_conv_branches: int = 1, deploy: DeployArg = False) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f'kernel_size={kernel_size}: MobileOneBlock needs an odd kernel size')
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.groups = kernel_size, stride, groups
        if self.builds_fused(deploy):
            self.reparam_conv = fused_conv(in_channels, out_channels, kernel_size, stride, groups)
        else:
            self.identity = (nn.BatchNorm2d(in_channels)
                             if in_channels == out_channels and stride == 1 else None)
            self.conv_kxk = nn.ModuleList(
                ConvBN(in_channels, out_channels, kernel_size, stride, groups) for _ in range(num_conv_branches))
            self.conv_scale = (ConvBN(in_channels, out_channels, 1, stride, groups)
                               if kernel_size > 1 and use_scale_branch else None)
        self.se = SEBlock(out_channels) if use_se else nn.Identity()
        self.act = nn.GELU() if use_act else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        if self.deploy:
            return self.act(self.se(self.reparam_conv(x)))
        out = self.identity(x) if self.identity is not None else 0
        if self.conv_scale is not None:
            out = out + self.conv_scale(x)
        for branch in self.conv_kxk:
            out = out + branch(x)
        return self.act(self.se(out))

    def kernel_bias(self) -> KernelBias:
        """The ``(kernel, bias)`` of the branch sum, in either form."""
        if self.deploy:
            return self.reparam_conv.weight, self.reparam_conv.bias
        branches: List[KernelBias] = [b.kernel_bias() for b in self.conv_kxk]
        if self.conv_scale is not None:
            branches.append(self.conv_scale.kernel_bias())
        if self.identity is not None:
            branches.append(fuse_bn_identity(self.identity, self.groups, self.kernel_size))
        return sum_branches(branches, self.kernel_size)

    def _fuse(self) -> None:
        weight, bias = self.kernel_bias()
        self.reparam_conv = fused_conv(self.in_channels, self.out_channels, self.kernel_size, self.stride,
                                        self.groups)
        set_weight_bias(self.reparam_conv, weight, bias)
        del self.identity, self.conv_kxk, self.conv_scale


class ReparamLargeKernelConv(Reparameterizable):
    """A large-kernel grouped conv-BN plus a small-kernel conv-BN in parallel, fused into the large kernel.

    FastViT's patch embedding uses it with no activation after it (the reference computes one and discards it;
    the released weights rely on that, so none is applied here).

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int): The large kernel size. Defaults to 7.
        stride (int): Stride. Defaults to 2.
        groups (int): Groups of both convolutions. Defaults to ``in_channels``.
        small_kernel (int): The small kernel size. Defaults to 3.
        deploy (bool | str): Build the fused form directly. Defaults to False.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 7, stride: int = 2,
                 groups: Optional[int] = None, small_kernel: int = 3, deploy: DeployArg = False) -> None:
        super().__init__()
        groups = in_channels if groups is None else groups
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.groups = kernel_size, stride, groups
        if self.builds_fused(deploy):
            self.reparam_conv = fused_conv(in_channels, out_channels, kernel_size, stride, groups)
        else:
            self.large_conv = ConvBN(in_channels, out_channels, kernel_size, stride, groups)
            self.small_conv = ConvBN(in_channels, out_channels, small_kernel, stride, groups)

    def forward(self, x: Tensor) -> Tensor:
        if self.deploy:
            return self.reparam_conv(x)
        return self.large_conv(x) + self.small_conv(x)

    def _fuse(self) -> None:
        weight, bias = sum_branches([self.large_conv.kernel_bias(), self.small_conv.kernel_bias()], self.kernel_size)
        self.reparam_conv = fused_conv(self.in_channels, self.out_channels, self.kernel_size, self.stride,
                                        self.groups)
        set_weight_bias(self.reparam_conv, weight, bias)
        del self.large_conv, self.small_conv
