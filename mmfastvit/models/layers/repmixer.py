"""RepMixer token mixing and the RepMixer block of FastViT's convolutional stages."""
import torch
from torch import Tensor, nn

from ..utils.fusion import identity_kernel
from ..utils.reparam import FULL, DeployArg, Reparameterizable
from .common import DropPath, LayerScale2d, fold_layer_scale_into, fused_conv, layer_scale, set_weight_bias
from .convffn import ConvFFN
from .mobileone import MobileOneBlock


class RepMixer(Reparameterizable):
    """``x + ls * (mixer(x) - norm(x))`` with ``mixer`` a depthwise MobileOne block (k x k + 1x1 + BN identity) and
    ``norm`` a BN identity. Fuses into one depthwise ``k x k`` conv ``W = I + ls (W_mixer - W_norm)``.

    Args:
        dim (int): Channels.
        kernel_size (int): Kernel of the depthwise mixer. Defaults to 3.
        layer_scale_init_value (float | None): Initial layer scale; None for no scale. Defaults to 1e-5.
        deploy (bool | str): Build the fused form directly. Defaults to False.
    """

    def __init__(self, dim: int, kernel_size: int = 3, layer_scale_init_value: float = 1e-5,
                 deploy: DeployArg = False) -> None:
        super().__init__()
        self.dim, self.kernel_size = dim, kernel_size
        if self.builds_fused(deploy):
            self.reparam_conv = fused_conv(dim, dim, kernel_size, groups=dim)
        else:
            self.norm = MobileOneBlock(dim, dim, kernel_size, groups=dim, use_act=False, use_scale_branch=False,
                                       num_conv_branches=0)
            self.mixer = MobileOneBlock(dim, dim, kernel_size, groups=dim, use_act=False)
            self.layer_scale = layer_scale(dim, layer_scale_init_value)

    def forward(self, x: Tensor) -> Tensor:
        if self.deploy:
            return self.reparam_conv(x)
        return x + self.layer_scale(self.mixer(x) - self.norm(x))

    def _fuse(self) -> None:
        w_mixer, b_mixer = self.mixer.kernel_bias()
        w_norm, b_norm = self.norm.kernel_bias()
        if isinstance(self.layer_scale, LayerScale2d):
            gamma = self.layer_scale.gamma.reshape(-1)
        else:
            gamma = torch.ones_like(b_mixer)
        weight = identity_kernel(self.dim, self.dim, self.kernel_size, like=w_mixer)
        weight = weight + gamma.reshape(-1, 1, 1, 1) * (w_mixer - w_norm)
        bias = gamma * (b_mixer - b_norm)
        self.reparam_conv = fused_conv(self.dim, self.dim, self.kernel_size, groups=self.dim)
        set_weight_bias(self.reparam_conv, weight, bias)
        del self.norm, self.mixer, self.layer_scale


class RepMixerBlock(Reparameterizable):
    """``x = repmixer(x); x = x + drop_path(ls * convffn(x))``.

    The ``'full'`` fused form folds the block's layer scale into the ConvFFN's ``fc2``.

    Args:
        dim (int): Channels.
        kernel_size (int): RepMixer kernel. Defaults to 3.
        mlp_ratio (float): ConvFFN hidden width over ``dim``. Defaults to 4.
        drop (float): Dropout in the ConvFFN. Defaults to 0.
        drop_path (float): Stochastic depth rate. Defaults to 0.
        layer_scale_init_value (float | None): Initial layer scales; None for none. Defaults to 1e-5.
        deploy (bool | str): Build the fused form directly. Defaults to False.
    """

    fuse_level = FULL

    def __init__(self, dim: int, kernel_size: int = 3, mlp_ratio: float = 4.0, drop: float = 0.0,
                 drop_path: float = 0.0, layer_scale_init_value: float = 1e-5, deploy: DeployArg = False) -> None:
        super().__init__()
        fused = self.builds_fused(deploy)
        self.token_mixer = RepMixer(dim, kernel_size, layer_scale_init_value, deploy=deploy)
        self.mlp = ConvFFN(dim, int(dim * mlp_ratio), drop=drop, deploy=deploy)
        self.layer_scale = nn.Identity() if fused else layer_scale(dim, layer_scale_init_value)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = self.token_mixer(x)
        return x + self.drop_path(self.layer_scale(self.mlp(x)))

    def _fuse(self) -> None:
        fold_layer_scale_into(self.mlp.fc2, self.layer_scale)
        self.layer_scale = nn.Identity()
