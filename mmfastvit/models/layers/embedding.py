"""FastViT's stem, the patch embedding between stages, and the conditional positional encoding (RepCPE)."""
import torch
from torch import Tensor, nn

from ..utils.fusion import identity_kernel
from ..utils.reparam import DeployArg, Reparameterizable, ReparameterizeMixin
from .common import fused_conv, set_weight_bias
from .mobileone import MobileOneBlock, ReparamLargeKernelConv


def build_stem(in_channels: int, out_channels: int, deploy: DeployArg = False) -> nn.Sequential:
    """MobileOne 3x3 s2 -> depthwise 3x3 s2 -> 1x1: output stride 4."""
    return nn.Sequential(
        MobileOneBlock(in_channels, out_channels, 3, stride=2, deploy=deploy),
        MobileOneBlock(out_channels, out_channels, 3, stride=2, groups=out_channels, deploy=deploy),
        MobileOneBlock(out_channels, out_channels, 1, deploy=deploy),
    )


class PatchEmbed(ReparameterizeMixin, nn.Module):
    """Downsampling between stages: a reparameterizable large-kernel grouped conv (no activation after it), then a
    1x1 MobileOne block with GELU.

    Args:
        in_channels (int): Input channels.
        embed_dim (int): Output channels (a multiple of ``in_channels``).
        patch_size (int): Large kernel size. Defaults to 7.
        stride (int): Stride. Defaults to 2.
        deploy (bool | str): Build the fused form directly. Defaults to False.
    """

    def __init__(self, in_channels: int, embed_dim: int, patch_size: int = 7, stride: int = 2,
                 deploy: DeployArg = False) -> None:
        super().__init__()
        self.proj = nn.Sequential(
            ReparamLargeKernelConv(in_channels, embed_dim, patch_size, stride, groups=in_channels, deploy=deploy),
            MobileOneBlock(embed_dim, embed_dim, 1, deploy=deploy),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class RepCPE(Reparameterizable):
    """Conditional positional encoding ``x + dwconv(x)``, fused into one depthwise conv ``I + W``.

    Args:
        dim (int): Channels.
        kernel_size (int): Kernel of the depthwise conv. Defaults to 7.
        deploy (bool | str): Build the fused form directly. Defaults to False.
    """

    def __init__(self, dim: int, kernel_size: int = 7, deploy: DeployArg = False) -> None:
        super().__init__()
        self.dim, self.kernel_size = dim, kernel_size
        conv = fused_conv(dim, dim, kernel_size, groups=dim)  # the train form is a biased depthwise conv too
        if self.builds_fused(deploy):
            self.reparam_conv = conv
        else:
            self.pos_enc = conv

    def forward(self, x: Tensor) -> Tensor:
        if self.deploy:
            return self.reparam_conv(x)
        return x + self.pos_enc(x)

    def _fuse(self) -> None:
        with torch.no_grad():
            weight = self.pos_enc.weight + identity_kernel(self.dim, self.dim, self.kernel_size, self.pos_enc.weight)
        self.reparam_conv = fused_conv(self.dim, self.dim, self.kernel_size, groups=self.dim)
        set_weight_bias(self.reparam_conv, weight, self.pos_enc.bias)
        del self.pos_enc
