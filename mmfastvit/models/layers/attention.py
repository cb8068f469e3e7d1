"""Multi-head self-attention and the attention block of FastViT's SA / MA fourth stage."""
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..utils.fusion import bn_scale_shift, fold_input_affine_into_linear
from ..utils.reparam import FULL, DeployArg, Reparameterizable
from .common import DropPath, fold_layer_scale_into, layer_scale, set_weight_bias
from .convffn import ConvFFN


class Attention(nn.Module):
    """Multi-head self-attention over the spatial positions of an NCHW map (qkv without bias, proj with bias).

    Args:
        dim (int): Channels; a multiple of ``head_dim``.
        head_dim (int): Channels per head. Defaults to 32.
        qkv_bias (bool): Bias on the qkv projection (the ``'full'`` fused form needs one). Defaults to False.
        attn_drop (float): Attention dropout. Defaults to 0.
        proj_drop (float): Output dropout. Defaults to 0.
    """

    def __init__(self, dim: int, head_dim: int = 32, qkv_bias: bool = False, attn_drop: float = 0.0,
                 proj_drop: float = 0.0) -> None:
        super().__init__()
        if dim % head_dim:
            raise ValueError(f'dim={dim} is not a multiple of head_dim={head_dim}')
        self.head_dim, self.num_heads = head_dim, dim // head_dim
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # B, N, C
        qkv = self.qkv(tokens).reshape(b, h * w, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        out = self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, h * w, c)))
        return out.transpose(1, 2).reshape(b, c, h, w)


class AttentionBlock(Reparameterizable):
    """``x = x + drop_path(ls1 * attn(bn(x))); x = x + drop_path(ls2 * convffn(x))``.

    The ``'full'`` fused form folds the pre-norm BN into ``qkv`` (which gains a bias) and the layer scales into
    ``proj`` and the ConvFFN's ``fc2``.

    Args:
        dim (int): Channels.
        mlp_ratio (float): ConvFFN hidden width over ``dim``. Defaults to 4.
        drop (float): Dropout. Defaults to 0.
        drop_path (float): Stochastic depth rate. Defaults to 0.
        layer_scale_init_value (float | None): Initial layer scales; None for none. Defaults to 1e-5.
        deploy (bool | str): Build the fused form directly. Defaults to False.
    """

    fuse_level = FULL

    def __init__(self, dim: int, mlp_ratio: float = 4.0, drop: float = 0.0, drop_path: float = 0.0,
                 layer_scale_init_value: float = 1e-5, deploy: DeployArg = False) -> None:
        super().__init__()
        fused = self.builds_fused(deploy)
        self.norm = nn.Identity() if fused else nn.BatchNorm2d(dim)
        self.token_mixer = Attention(dim, qkv_bias=fused, proj_drop=drop)
        self.layer_scale_1 = nn.Identity() if fused else layer_scale(dim, layer_scale_init_value)
        self.mlp = ConvFFN(dim, int(dim * mlp_ratio), drop=drop, deploy=deploy)
        self.layer_scale_2 = nn.Identity() if fused else layer_scale(dim, layer_scale_init_value)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.layer_scale_1(self.token_mixer(self.norm(x))))
        return x + self.drop_path(self.layer_scale_2(self.mlp(x)))

    def _fuse(self) -> None:
        qkv = self.token_mixer.qkv
        scale, shift = bn_scale_shift(self.norm)
        with torch.no_grad():
            weight, bias = fold_input_affine_into_linear(qkv.weight, qkv.bias, scale, shift)
        fused_qkv = nn.Linear(qkv.in_features, qkv.out_features, bias=True)
        set_weight_bias(fused_qkv, weight, bias)
        self.token_mixer.qkv = fused_qkv
        self.norm = nn.Identity()
        fold_layer_scale_into(self.token_mixer.proj, self.layer_scale_1)
        fold_layer_scale_into(self.mlp.fc2, self.layer_scale_2)
        self.layer_scale_1 = nn.Identity()
        self.layer_scale_2 = nn.Identity()
