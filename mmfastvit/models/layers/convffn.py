"""FastViT's convolutional feed-forward network."""
from torch import Tensor, nn

from ..utils.reparam import FULL, DeployArg, Reparameterizable
from .common import ConvBN, PointwiseConv, fused_conv


class ConvFFN(Reparameterizable):
    """Depthwise 7x7 conv-BN -> 1x1 fc1 -> GELU -> 1x1 fc2 (dropout after each fc).

    The references keep the BatchNorm at inference; the ``'full'`` fused form folds it into the depthwise conv.

    Args:
        in_channels (int): Input and output channels.
        hidden_channels (int): Width of the hidden layer.
        kernel_size (int): Kernel of the depthwise conv. Defaults to 7.
        drop (float): Dropout rate. Defaults to 0.
        deploy (bool | str): Build the fused form directly. Defaults to False.
    """

    fuse_level = FULL

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int = 7, drop: float = 0.0,
                 deploy: DeployArg = False) -> None:
        super().__init__()
        if self.builds_fused(deploy):
            self.conv = fused_conv(in_channels, in_channels, kernel_size, groups=in_channels)
        else:
            self.conv = ConvBN(in_channels, in_channels, kernel_size, groups=in_channels)
        self.fc1 = PointwiseConv(in_channels, hidden_channels)
        self.act = nn.GELU()
        self.fc2 = PointwiseConv(hidden_channels, in_channels)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        x = self.drop(self.act(self.fc1(self.conv(x))))
        return self.drop(self.fc2(x))

    def _fuse(self) -> None:
        self.conv = self.conv.to_fused_conv()
