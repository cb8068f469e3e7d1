"""FastViT (Vasu et al., ICCV 2023): a hybrid vision transformer built from structurally reparameterized blocks."""
import copy
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmengine.model import BaseModule
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint

from ...registry import MODELS
from ..layers.attention import AttentionBlock
from ..layers.embedding import PatchEmbed, RepCPE, build_stem
from ..layers.mobileone import MobileOneBlock
from ..layers.repmixer import RepMixerBlock
from ..utils.reparam import DeployArg, ReparameterizeMixin, deploy_level, fused_level

_SMALL = dict(layers=(2, 2, 6, 2), embed_dims=(64, 128, 256, 512))
_CONV = ('repmixer',) * 4
_HYBRID = ('repmixer', 'repmixer', 'repmixer', 'attention')
_NO_CPE = (False,) * 4
_CPE_LAST = (False, False, False, True)


class FastViTStage(ReparameterizeMixin, nn.Module):
    """One stage: optional patch-embedding downsample, optional RepCPE, then the blocks."""

    def __init__(self, downsample: nn.Module, pos_emb: nn.Module, blocks: nn.Sequential) -> None:
        super().__init__()
        self.downsample = downsample
        self.pos_emb = pos_emb
        self.blocks = blocks

    def forward(self, x: Tensor, with_cp: bool = False) -> Tensor:
        x = self.pos_emb(self.downsample(x))
        for block in self.blocks:
            x = checkpoint(block, x, use_reentrant=False) if with_cp and x.requires_grad else block(x)
        return x


@MODELS.register_module()
class FastViT(ReparameterizeMixin, BaseModule):
    """FastViT backbone.

    A MobileOne stem (output stride 4), then four stages; stages 2-4 start with a large-kernel patch embedding
    (stride 2). Convolutional stages mix tokens with RepMixer; the fourth stage of the SA / MA variants uses
    self-attention after a RepCPE positional encoding. Every stage ends with a ConvFFN per block.

    Args:
        arch (str | dict): One of ``FastViT.arch_zoo`` (``'t8'``, ``'t12'``, ``'s12'``, ``'sa12'``, ``'sa24'``,
            ``'sa36'``, ``'ma36'``) or a dict with the keys of its entries: ``layers``, ``embed_dims``,
            ``mlp_ratios``, ``token_mixers`` (``'repmixer'`` / ``'attention'`` per stage), ``pos_embs`` (RepCPE
            before the stage, per stage) and ``layer_scale_init_value``.
        in_channels (int): Input channels. Defaults to 3.
        out_indices (int | Sequence[int]): Outputs to return, as a tuple: ``0``-``3`` are the four stages' own
            outputs (strides 4, 8, 16, 32; negative values count back from the last stage); ``4`` is the output of
            the classification head's ``final_conv`` (the paper's ``conv_exp``: a 3x3 depthwise MobileOne block with
            SE widening the last stage by ``cls_ratio``), built only when requested. Defaults to ``(3,)``.
        frozen_stages (int): ``-1`` freezes nothing, ``0`` the stem, ``k`` the stem and the first ``k`` stages
            (their parameters stop training and their norms stay in eval mode). Defaults to -1.
        norm_eval (bool): Keep every BatchNorm in eval mode during training. Defaults to False.
        with_cp (bool): Gradient checkpointing per block, trading compute for memory. Defaults to False.
        drop_rate (float): Dropout in the ConvFFNs and attention output. Defaults to 0.
        drop_path_rate (float): Stochastic depth, rising linearly over all blocks from 0 to this. Defaults to 0.
        layer_scale_init_value (float, optional): Overrides the arch's initial layer scale (1e-5; 1e-6 for SA36 and
            MA36, as in Apple's code). Defaults to None.
        cls_ratio (float): Width of ``final_conv`` over the last stage's. Defaults to 2.
        down_patch_size (int): Kernel of the patch embeddings. Defaults to 7.
        down_stride (int): Stride of the patch embeddings. Defaults to 2.
        repmixer_kernel_size (int): Kernel of RepMixer. Defaults to 3.
        deploy (bool | str): Build the fused form directly: ``True`` / ``'full'`` (no BatchNorm, no layer-scale
            multiply) or ``'reference'`` (the form Apple's and timm's ``reparameterize()`` produce). Defaults to False.
        init_cfg (dict | list[dict], optional): mmengine initialization config, e.g.
            ``dict(type='Pretrained', checkpoint='cls.pth', prefix='backbone.')``. Defaults to None.

    Example:
        >>> import torch
        >>> model = FastViT('t8', out_indices=(0, 1, 2, 3)).eval()
        >>> for out in model(torch.rand(1, 3, 256, 256)):
        ...     print(tuple(out.shape))
        (1, 48, 64, 64)
        (1, 96, 32, 32)
        (1, 192, 16, 16)
        (1, 384, 8, 8)
    """

    arch_zoo: Dict[str, dict] = {
        't8': dict(layers=(2, 2, 4, 2), embed_dims=(48, 96, 192, 384), mlp_ratios=3, token_mixers=_CONV,
                   pos_embs=_NO_CPE, layer_scale_init_value=1e-5),
        't12': dict(**_SMALL, mlp_ratios=3, token_mixers=_CONV, pos_embs=_NO_CPE, layer_scale_init_value=1e-5),
        's12': dict(**_SMALL, mlp_ratios=4, token_mixers=_CONV, pos_embs=_NO_CPE, layer_scale_init_value=1e-5),
        'sa12': dict(**_SMALL, mlp_ratios=4, token_mixers=_HYBRID, pos_embs=_CPE_LAST, layer_scale_init_value=1e-5),
        'sa24': dict(layers=(4, 4, 12, 4), embed_dims=(64, 128, 256, 512), mlp_ratios=4, token_mixers=_HYBRID,
                     pos_embs=_CPE_LAST, layer_scale_init_value=1e-5),
        'sa36': dict(layers=(6, 6, 18, 6), embed_dims=(64, 128, 256, 512), mlp_ratios=4, token_mixers=_HYBRID,
                     pos_embs=_CPE_LAST, layer_scale_init_value=1e-6),
        'ma36': dict(layers=(6, 6, 18, 6), embed_dims=(76, 152, 304, 608), mlp_ratios=4, token_mixers=_HYBRID,
                     pos_embs=_CPE_LAST, layer_scale_init_value=1e-6),
    }
    num_stages = 4
    FINAL_CONV_INDEX = 4
    MIN_INPUT_SIZE = 32  # the total stride

    def __init__(self,
                 arch: Union[str, dict] = 't8',
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = (3,),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0,
                 layer_scale_init_value: Optional[float] = None,
                 cls_ratio: float = 2.0,
                 down_patch_size: int = 7,
                 down_stride: int = 2,
                 repmixer_kernel_size: int = 3,
                 deploy: DeployArg = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.arch_settings = self._parse_arch(arch)
        layers = self.arch_settings['layers']
        dims = self.arch_settings['embed_dims']
        mlp_ratios = self.arch_settings['mlp_ratios']
        if layer_scale_init_value is None:
            layer_scale_init_value = self.arch_settings['layer_scale_init_value']
        self.embed_dims = tuple(dims)
        self.out_indices = self._parse_out_indices(out_indices)
        if not -1 <= frozen_stages <= self.num_stages:
            raise ValueError(f'frozen_stages={frozen_stages} is not in [-1, {self.num_stages}]')
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        deploy_level(deploy)  # refuse a bad value before building anything
        self.final_channels = int(dims[-1] * cls_ratio)

        self.in_channels = in_channels
        self.stem = build_stem(in_channels, dims[0], deploy=deploy)
        block_dpr = torch.linspace(0, drop_path_rate, sum(layers)).split(list(layers))
        stages = []
        for i in range(self.num_stages):
            downsample = (nn.Identity() if i == 0 else
                          PatchEmbed(dims[i - 1], dims[i], down_patch_size, down_stride, deploy=deploy))
            pos_emb = RepCPE(dims[i], deploy=deploy) if self.arch_settings['pos_embs'][i] else nn.Identity()
            blocks = nn.Sequential(*[
                self._make_block(self.arch_settings['token_mixers'][i], dims[i], mlp_ratios[i], drop_rate,
                                 float(dpr), layer_scale_init_value, repmixer_kernel_size, deploy)
                for dpr in block_dpr[i]
            ])
            stages.append(FastViTStage(downsample, pos_emb, blocks))
        self.stages = nn.ModuleList(stages)
        if self.FINAL_CONV_INDEX in self.out_indices:
            self.final_conv = MobileOneBlock(dims[-1], self.final_channels, 3, groups=dims[-1], use_se=True,
                                             deploy=deploy)
        self._freeze_stages()

    @classmethod
    def _parse_arch(cls, arch: Union[str, dict]) -> dict:
        if isinstance(arch, str):
            if arch.lower() not in cls.arch_zoo:
                raise ValueError(f'arch "{arch}" is not one of {list(cls.arch_zoo)}')
            arch = cls.arch_zoo[arch.lower()]
        if not isinstance(arch, dict):
            raise TypeError(f'arch must be a str or a dict, not {type(arch).__name__}')
        required = {'layers', 'embed_dims', 'mlp_ratios', 'token_mixers', 'pos_embs'}
        missing = required - set(arch)
        if missing:
            raise ValueError(f'arch dict lacks {sorted(missing)}; it needs {sorted(required)}')
        settings = copy.deepcopy(arch)
        settings.setdefault('layer_scale_init_value', 1e-5)
        if not isinstance(settings['mlp_ratios'], (list, tuple)):
            settings['mlp_ratios'] = (settings['mlp_ratios'],) * cls.num_stages
        for key in ('layers', 'embed_dims', 'mlp_ratios', 'token_mixers', 'pos_embs'):
            if len(settings[key]) != cls.num_stages:
                raise ValueError(f'arch["{key}"] needs {cls.num_stages} entries, got {settings[key]!r}')
        dims = settings['embed_dims']
        for prev, dim in zip(dims[:-1], dims[1:]):
            if dim % prev:
                raise ValueError(f'arch["embed_dims"] {tuple(dims)!r}: each stage\'s width must be a multiple of '
                                 f'the previous one (the patch embedding is a grouped conv), {dim} is not of {prev}')
        for mixer in settings['token_mixers']:
            if mixer not in ('repmixer', 'attention'):
                raise ValueError(f'token mixer "{mixer}" is not one of [\'repmixer\', \'attention\']')
        return settings

    @classmethod
    def _parse_out_indices(cls, out_indices: Union[int, Sequence[int]]) -> Tuple[int, ...]:
        if isinstance(out_indices, int):
            out_indices = (out_indices,)
        if not isinstance(out_indices, (list, tuple)) or not out_indices:
            raise TypeError(f'out_indices must be an int or a non-empty sequence of ints, got {out_indices!r}')
        parsed = []
        for index in out_indices:
            if not isinstance(index, int) or not -cls.num_stages <= index <= cls.FINAL_CONV_INDEX:
                raise ValueError(f'out_indices entry {index!r} is not in [-{cls.num_stages}, '
                                 f'{cls.FINAL_CONV_INDEX}] (0-3: stages, 4: final_conv)')
            parsed.append(index % cls.num_stages if index < 0 else index)
        if len(set(parsed)) != len(parsed):
            raise ValueError(f'out_indices {tuple(out_indices)!r} repeats a stage')
        return tuple(sorted(parsed))

    @staticmethod
    def _make_block(mixer: str, dim: int, mlp_ratio: float, drop: float, drop_path: float,
                    layer_scale_init_value: float, kernel_size: int, deploy: DeployArg) -> nn.Module:
        if mixer == 'attention':
            return AttentionBlock(dim, mlp_ratio, drop, drop_path, layer_scale_init_value, deploy=deploy)
        return RepMixerBlock(dim, kernel_size, mlp_ratio, drop, drop_path, layer_scale_init_value, deploy=deploy)

    @property
    def out_channels(self) -> Tuple[int, ...]:
        """Channels of each requested output, in order (e.g. an FPN's ``in_channels``)."""
        return tuple(self.final_channels if i == self.FINAL_CONV_INDEX else self.embed_dims[i]
                     for i in self.out_indices)

    def init_weights(self) -> None:
        if self.init_cfg is not None:
            super().init_weights()
            return
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        self._is_init = True

    def check_input(self, x: Tensor) -> None:
        """Raises a ValueError for anything but a batch of ``in_channels``-channel images of at least 32x32 (the
        network's total stride: smaller inputs would be reduced to a padded 1x1 map well before the last stage)."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'FastViT expects images of shape (N, {self.in_channels}, H, W), got a tensor of shape '
                             f'{tuple(x.shape)}')
        if min(x.shape[-2:]) < self.MIN_INPUT_SIZE:
            raise ValueError(f'FastViT input {x.shape[-2]}x{x.shape[-1]} is smaller than {self.MIN_INPUT_SIZE}x'
                             f'{self.MIN_INPUT_SIZE}: the backbone downsamples by {self.MIN_INPUT_SIZE} (stem 4, then '
                             f'three patch embeddings of stride 2)')

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        if not (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()):
            self.check_input(x)  # traced / exported / compiled graphs carry no Python checks
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x, with_cp=self.with_cp and self.training)
            if i in self.out_indices:
                outs.append(x)
        if self.FINAL_CONV_INDEX in self.out_indices:
            outs.append(self.final_conv(x))
        return tuple(outs)

    def _frozen_modules(self) -> List[nn.Module]:
        if self.frozen_stages < 0:
            return []
        return [self.stem] + list(self.stages[:self.frozen_stages])

    def _freeze_stages(self) -> None:
        for module in self._frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    @property
    def deploy(self) -> bool:
        """Whether the backbone is in a fused form (see :attr:`fused_level` for which)."""
        return self.fused_level != 'train'

    @property
    def fused_level(self) -> str:
        """``'train'``, ``'reference'`` or ``'full'``: the fused form the backbone is in."""
        return fused_level(self)

    def train(self, mode: bool = True) -> 'FastViT':
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    def reparameterize(self, level: DeployArg = 'full') -> 'FastViT':
        """Fuses every block into its inference form (``'full'`` by default, or ``'reference'``). Idempotent."""
        super().reparameterize(level)
        self._freeze_stages()  # fusion builds new parameters; frozen stages stay frozen
        return self
