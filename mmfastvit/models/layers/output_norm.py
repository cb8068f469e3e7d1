"""Norms on a backbone's returned feature maps (Apple's dense-prediction outputs), and their fused form.

Apple's FastViT in dense-prediction mode (``fork_feat=True``, github.com/apple/ml-fastvit ``models/fastvit.py``), like
PoolFormer's detection and segmentation code, passes each returned feature map through its own ``BatchNorm2d``
(``norm0``, ``norm2``, ``norm4``, ``norm6``) while the next stage reads the map before that norm. Such a norm sits on a
branch that leaves the backbone, so it cannot fold into the stage's own convolutions. In eval mode it is one
per-channel affine map, which is what :class:`OutputNorm` becomes at the ``'full'`` fusion level: a
:class:`ChannelAffine` (``x * weight + bias``, two vectors of ``C`` values, exported as one Mul and one Add). At the
``'reference'`` level it stays a BatchNorm, as Apple's ``reparameterize`` leaves it.
"""
from typing import Optional

import torch
from torch import Tensor, nn

from ..utils.fusion import bn_scale_shift
from ..utils.reparam import FULL, DeployArg, Reparameterizable

# norm_cfg type -> the BatchNorm class it builds. Only BatchNorms: their eval form is the per-channel affine map the
# fused model keeps (a GroupNorm or LayerNorm depends on the input's statistics and would not fuse).
OUTPUT_NORM_TYPES = {'BN': nn.BatchNorm2d, 'BN2d': nn.BatchNorm2d, 'SyncBN': nn.SyncBatchNorm}
_NORM_KWARGS = ('eps', 'momentum', 'affine', 'track_running_stats')


def build_output_norm(norm_cfg: dict, channels: int) -> nn.Module:
    """The BatchNorm that ``norm_cfg`` describes (``type``, optional ``eps``, ``momentum``, ``requires_grad``).

    Raises:
        ValueError: ``type`` is not one of :data:`OUTPUT_NORM_TYPES` or the dict has keys a BatchNorm does not take.
    """
    if not isinstance(norm_cfg, dict) or 'type' not in norm_cfg:
        raise TypeError(f'out_norm_cfg must be None or a dict with a "type" (one of {list(OUTPUT_NORM_TYPES)}), '
                        f'got {norm_cfg!r}')
    cfg = dict(norm_cfg)
    norm_type = cfg.pop('type')
    if norm_type not in OUTPUT_NORM_TYPES:
        raise ValueError(f'out_norm_cfg type "{norm_type}" is not one of {list(OUTPUT_NORM_TYPES)} (a per-output '
                         f'norm must be a BatchNorm so that the fused model keeps it as a per-channel affine map)')
    requires_grad = cfg.pop('requires_grad', True)
    unknown = sorted(set(cfg) - set(_NORM_KWARGS))
    if unknown:
        raise ValueError(f'out_norm_cfg keys {unknown} are not among {["type", "requires_grad", *_NORM_KWARGS]}')
    norm = OUTPUT_NORM_TYPES[norm_type](channels, **cfg)
    for param in norm.parameters():
        param.requires_grad = requires_grad
    return norm


class ChannelAffine(nn.Module):
    """``y = x * weight + bias`` per channel of an NCHW tensor (an eval-mode BatchNorm, folded)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f'{self.weight.numel()}'


class OutputNorm(Reparameterizable):
    """A norm on one returned feature map: ``norm`` (a BatchNorm) in the train form, ``affine`` once fused.

    Args:
        channels (int): Channels of the feature map.
        norm_cfg (dict): See :func:`build_output_norm`. Defaults to ``dict(type='BN')`` (Apple's ``BatchNorm2d``).
        deploy (bool | str): Build the fused form directly at ``True`` / ``'full'``. Defaults to False.

    Example:
        >>> import torch
        >>> norm = OutputNorm(8).eval()
        >>> x = torch.randn(2, 8, 4, 4)
        >>> y = norm(x)
        >>> torch.allclose(norm.reparameterize()(x), y, atol=1e-6), type(norm.affine).__name__
        (True, 'ChannelAffine')
    """

    fuse_level = FULL

    def __init__(self, channels: int, norm_cfg: Optional[dict] = None, deploy: DeployArg = False) -> None:
        super().__init__()
        norm_cfg = dict(type='BN') if norm_cfg is None else norm_cfg
        norm = build_output_norm(norm_cfg, channels)  # validated in both forms, so a bad cfg fails either way
        if self.builds_fused(deploy):
            self.affine = ChannelAffine(channels)
        else:
            self.norm = norm

    def forward(self, x: Tensor) -> Tensor:
        return self.affine(x) if self.deploy else self.norm(x)

    def _fuse(self) -> None:
        scale, shift = bn_scale_shift(self.norm)
        affine = ChannelAffine(scale.numel()).to(scale.device)
        with torch.no_grad():
            affine.weight.copy_(scale)
            affine.bias.copy_(shift)
        self.affine = affine
        del self.norm
