"""FastViT (Vasu et al., ICCV 2023): a hybrid vision transformer built from structurally reparameterized blocks."""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ...registry import MODELS
from ..layers.attention import AttentionBlock
from ..layers.embedding import PatchEmbed, RepCPE, build_stem
from ..layers.mobileone import MobileOneBlock
from ..layers.repmixer import RepMixerBlock
from ..utils.reparam import DeployArg, ReparameterizeMixin
from .base import ReparamBackbone

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
class FastViT(ReparamBackbone):
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
        out_norm_cfg (dict, optional): A norm on each returned output, e.g. ``dict(type='BN')``: Apple's
            dense-prediction (``fork_feat``) outputs, whose detection and segmentation results the paper reports. The
            norm sits on the returned copy only; the next stage reads the un-normed map. ``None`` returns each
            output as it is (docs/backbone.md, "Dense-prediction outputs"). The norms are ``out_norms.<index>``;
            with ``deploy`` at ``'full'`` each is one per-channel affine (:class:`ChannelAffine`). Defaults to None.
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
    display_name = 'FastViT'
    num_stages = 4
    FINAL_CONV_INDEX = 4
    MIN_INPUT_SIZE = 32  # the total stride
    max_out_index = FINAL_CONV_INDEX
    out_indices_help = '0-3: stages, 4: final_conv'
    classifier_out_indices = (FINAL_CONV_INDEX,)  # the output its image classifier pools
    # What mmfastvit.deploy needs to know (read by mmfastvit/deploy/backbones.py, which lists the keys).
    deploy_facts = dict(
        family='fastvit', prefix_optional=True, variant_group='all',  # variants 't8' or 'fastvit_t8'; 'all': the 7
        classifier_input_size=256,  # Apple's training and latency resolution
        output_names={FINAL_CONV_INDEX: 'final_conv'},
        rewrites=('attention', 'grouped_conv'), pooled_block='final_conv',
        timm_model='fastvit_{arch}', timm_converter='mmfastvit.convert.rename.timm_to_mmfastvit',
        model_name='fastvit-{arch}_in1k', top1_source='Apple')  # the model index's top-1: Apple's, at 256x256

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
                 out_norm_cfg: Optional[dict] = None,
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
        self._set_backbone_options(out_indices, frozen_stages, norm_eval, with_cp, deploy)
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
        self._build_out_norms(out_norm_cfg, self.out_channels, deploy)
        self._freeze_stages()

    @classmethod
    def _parse_arch(cls, arch: Union[str, dict]) -> dict:
        settings = cls._lookup_arch(arch, {'layers', 'embed_dims', 'mlp_ratios', 'token_mixers', 'pos_embs'})
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

    def _extra_outputs(self, x: Tensor) -> Tuple[Tensor, ...]:
        if self.FINAL_CONV_INDEX not in self.out_indices:
            return ()
        return (self._output(self.FINAL_CONV_INDEX, self.final_conv(x)),)
