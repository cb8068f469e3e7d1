"""FMViT (Tan, Geng, Xie, 2023): a multiple-frequency mixing vision transformer built from multi-group
reparameterized convolutions, BatchNorm and ReLU.

The authors never released code; everything here follows the paper's text, and every choice the paper leaves open is
listed in :class:`FMViT`'s docstring.
"""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ...registry import MODELS
from ..layers.common import DropPath
from ..layers.multigroup import MultiGroupConv
from ..utils.multigroup import multigroup_branches
from ..utils.reparam import DeployArg, ReparameterizeMixin
from .base import ReparamBackbone

MultiGroups = Tuple[int, ...]


def pointwise(in_channels: int, out_channels: int, mg_groups: MultiGroups, deploy: DeployArg) -> MultiGroupConv:
    """A 1x1 conv trained with parallel grouped 1x1 branches (the paper's ``CONV'X``)."""
    branches = multigroup_branches(in_channels, out_channels, mg_groups)
    return MultiGroupConv(in_channels, out_channels, 1, branches=branches, deploy=deploy)


def depthwise(channels: int, stride: int = 1, identity: bool = True, deploy: DeployArg = False) -> MultiGroupConv:
    """A depthwise 3x3 conv trained RepVGG / MobileOne style: 3x3, 1x1 and (at stride 1) BN identity branches."""
    return MultiGroupConv(channels, channels, 3, stride, groups=channels, branches=[(1, channels)],
                          identity=identity and stride == 1, deploy=deploy)


def build_fmvit_stem(in_channels: int, channels: int, mg_groups: MultiGroups = (2, 4),
                     deploy: DeployArg = False) -> nn.Sequential:
    """Conv3x3 s2 (with 3x1 and 1x3 branches) -> depthwise 3x3 s2 -> 1x1, each followed by ReLU: output stride 4."""
    return nn.Sequential(
        MultiGroupConv(in_channels, channels, 3, 2, branches=[((3, 1), 1), ((1, 3), 1)], deploy=deploy),
        nn.ReLU(inplace=True),
        depthwise(channels, stride=2, deploy=deploy),
        nn.ReLU(inplace=True),
        pointwise(channels, channels, mg_groups, deploy),
        nn.ReLU(inplace=True),
    )


class FMPatchEmbed(ReparameterizeMixin, nn.Module):
    """FMViT's patch embedding: AvgPool 2x2 s2 (when the resolution halves) then a multi-group 1x1 conv (no
    activation). Build it through :meth:`build`, which returns ``nn.Identity`` when nothing changes.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        stride (int): 1 or 2. Defaults to 1.
        mg_groups (tuple[int]): Groups of the 1x1 conv's parallel branches. Defaults to (2, 4).
        deploy (bool | str): Build the fused form directly. Defaults to False.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, mg_groups: MultiGroups = (2, 4),
                 deploy: DeployArg = False) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f'stride={stride} is not 1 or 2')
        # ceil_mode + count_include_pad=False: an odd side gives ceil(H / 2), as a padded 3x3 stride-2 conv does
        self.pool = (nn.AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False) if stride == 2 else nn.Identity())
        self.proj = pointwise(in_channels, out_channels, mg_groups, deploy)

    @classmethod
    def build(cls, in_channels: int, out_channels: int, stride: int = 1, mg_groups: MultiGroups = (2, 4),
              deploy: DeployArg = False) -> nn.Module:
        if in_channels == out_channels and stride == 1:
            return nn.Identity()
        return cls(in_channels, out_channels, stride, mg_groups, deploy)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.pool(x))


class GMLP(ReparameterizeMixin, nn.Module):
    """The reparameterized MLP: multi-group 1x1 ``fc1`` -> depthwise 3x3 with shortcut -> ReLU -> multi-group 1x1
    ``fc2``. At inference: 1x1 conv -> depthwise 3x3 conv (the shortcut folded in) -> ReLU -> 1x1 conv.

    Args:
        dim (int): Input and output channels.
        hidden_dim (int): Hidden channels.
        mg_groups (tuple[int]): Groups of the 1x1 convs' parallel branches. Defaults to (2, 4).
        deploy (bool | str): Build the fused form directly. Defaults to False.
    """

    def __init__(self, dim: int, hidden_dim: int, mg_groups: MultiGroups = (2, 4), deploy: DeployArg = False) -> None:
        super().__init__()
        self.fc1 = pointwise(dim, hidden_dim, mg_groups, deploy)
        self.dwconv = depthwise(hidden_dim, deploy=deploy)  # its BN identity branch is the shortcut
        self.act = nn.ReLU(inplace=True)
        self.fc2 = pointwise(hidden_dim, dim, mg_groups, deploy)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.dwconv(self.fc1(x))))


class CFB(ReparameterizeMixin, nn.Module):
    """Convolutional Fusion Block, MetaFormer style: ``x = mixer(x); x = x + drop_path(gmlp(x))``.

    The token mixer is a reparameterized depthwise 3x3 conv whose BN identity branch is the MetaFormer residual
    (like FastViT's RepMixer), so mixer and residual fuse into one depthwise conv.

    Args:
        dim (int): Channels.
        mlp_ratio (float): gMLP hidden width over ``dim``. Defaults to 2.
        drop_path (float): Stochastic depth rate. Defaults to 0.
        mg_groups (tuple[int]): Groups of the gMLP's parallel 1x1 branches. Defaults to (2, 4).
        deploy (bool | str): Build the fused form directly. Defaults to False.
    """

    def __init__(self, dim: int, mlp_ratio: float = 2.0, drop_path: float = 0.0, mg_groups: MultiGroups = (2, 4),
                 deploy: DeployArg = False) -> None:
        super().__init__()
        self.token_mixer = depthwise(dim, deploy=deploy)
        self.mlp = GMLP(dim, int(dim * mlp_ratio), mg_groups, deploy)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = self.token_mixer(x)
        return x + self.drop_path(self.mlp(x))


class RLMHSA(ReparameterizeMixin, nn.Module):
    """Lightweight multi-head self-attention with ``Q = X`` and one shared projection for keys and values:
    ``softmax(X (X W)^T / sqrt(d)) X W`` per head of ``d = head_dim`` channels, no output projection.

    ``W`` is a multi-group 1x1 conv (BN in every branch at training time, one biased 1x1 conv at inference).

    Args:
        dim (int): Channels, a multiple of ``head_dim``.
        head_dim (int): Channels per head. Defaults to 32.
        mg_groups (tuple[int]): Groups of the projection's parallel branches. Defaults to (2, 4).
        deploy (bool | str): Build the fused form directly. Defaults to False.
    """

    def __init__(self, dim: int, head_dim: int = 32, mg_groups: MultiGroups = (2, 4),
                 deploy: DeployArg = False) -> None:
        super().__init__()
        if dim % head_dim:
            raise ValueError(f'dim={dim} is not a multiple of head_dim={head_dim}')
        self.head_dim, self.num_heads = head_dim, dim // head_dim
        self.kv = pointwise(dim, dim, mg_groups, deploy)

    def _heads(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        return x.reshape(b, self.num_heads, self.head_dim, h * w).transpose(-2, -1)  # B, heads, N, d

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        kv = self._heads(self.kv(x))
        out = F.scaled_dot_product_attention(self._heads(x), kv, kv)
        return out.transpose(-2, -1).reshape(b, c, h, w)


class FMB(ReparameterizeMixin, nn.Module):
    """Multi-frequency fusion block: ``z1 = f1(x), z2 = f2(z1), z3 = f3(z2)`` (CFBs, high frequency),
    ``z4 = z3 + attn(z3)`` (RLMHSA, low frequency), ``z = concat(x, z1, z2, z3, z4)``, out ``z + mlp(z)``.

    Args:
        dim (int): Input channels (the paper's FM-channels); the output has ``(num_cfbs + 2) * dim``.
        mlp_ratio (float): Hidden width over the input of each gMLP. Defaults to 2.
        head_dim (int): Channels per attention head. Defaults to 32.
        drop_paths (Sequence[float]): Stochastic depth of the CFBs, then of the attention and MLP residuals
            (``num_cfbs + 1`` values). Defaults to zeros.
        num_cfbs (int): High-frequency CFBs. Defaults to 3.
        mg_groups (tuple[int]): Groups of the multi-group 1x1 branches. Defaults to (2, 4).
        deploy (bool | str): Build the fused form directly. Defaults to False.
    """

    def __init__(self, dim: int, mlp_ratio: float = 2.0, head_dim: int = 32, drop_paths: Sequence[float] = (),
                 num_cfbs: int = 3, mg_groups: MultiGroups = (2, 4), deploy: DeployArg = False) -> None:
        super().__init__()
        drop_paths = list(drop_paths) or [0.0] * (num_cfbs + 1)
        if len(drop_paths) != num_cfbs + 1:
            raise ValueError(f'FMB needs {num_cfbs + 1} drop_paths, got {len(drop_paths)}')
        self.out_channels = (num_cfbs + 2) * dim
        self.cfbs = nn.ModuleList(CFB(dim, mlp_ratio, dp, mg_groups, deploy) for dp in drop_paths[:num_cfbs])
        self.attn = RLMHSA(dim, head_dim, mg_groups, deploy)
        self.mlp = GMLP(self.out_channels, int(self.out_channels * mlp_ratio), mg_groups, deploy)
        self.drop_path = DropPath(drop_paths[-1]) if drop_paths[-1] > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        feats = [x]
        for cfb in self.cfbs:
            feats.append(cfb(feats[-1]))
        feats.append(feats[-1] + self.drop_path(self.attn(feats[-1])))
        z = torch.cat(feats, dim=1)
        return z + self.drop_path(self.mlp(z))


class FMViTStage(ReparameterizeMixin, nn.Module):
    """One stage: a sequence of patch embeddings, CFBs and (in the last stage) the FMB."""

    def __init__(self, layers: Sequence[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor, with_cp: bool = False) -> Tensor:
        for layer in self.layers:
            if with_cp and x.requires_grad and isinstance(layer, (CFB, FMB)):
                x = checkpoint(layer, x, use_reentrant=False)
            else:
                x = layer(x)
        return x


@MODELS.register_module()
class FMViT(ReparamBackbone):
    """FMViT backbone.

    A stem (output stride 4), then four stages at strides 4, 8, 16 and 32. Each stage is a run of CFBs whose width
    steps through the stage's channel list, a multi-group 1x1 patch embedding at each step (stages 2-4 start with
    AvgPool 2x2 s2 + 1x1); the last stage ends with the FMB, whose output concatenates five FM-channel-wide
    features. BatchNorm and ReLU throughout; every convolution is trained with multi-group reparameterization
    branches and fuses into one convolution with bias (``deploy=True`` / :meth:`switch_to_deploy`), leaving no
    BatchNorm.

    The paper's Table 1 is only partly legible and its code was never released. The choices made here are listed
    below; the variants are sized so that the 1000-class classifier (:class:`mmfastvit.models.FMViTClassifier`)
    lands within 15% of Table 2's parameters and FLOPs at 224x224 for all five (fused form, fvcore multiply-adds
    counted by :mod:`mmfastvit.analysis`, ``tools/analysis_tools/get_flops.py``'s convention):

    - **Channel lists.** Each stage's triplet in Table 1 is read as the widths of successive groups of CFBs, a
      1x1 patch embedding between groups of different width; every stage starts at the previous stage's last width,
      which the table's patch-embedding column confirms for all variants (e.g. T: 32 | 32-64-80 | 80-128-160 |
      160-192-320). B and L share the widths of the table's last column (they differ in depth), M has its own.
    - **FMB split.** Stage 4's last width is the FMB output: ``concat(x, z1, z2, z3, z4)`` of five tensors of
      FM-channels each (T 5 x 64 = 320, S 5 x 128 = 640, M 5 x 192 = 960, B / L 5 x 256 = 1280, exactly the table's
      last entries). A 1x1 patch embedding takes stage 4's second width down to FM-channels before the FMB; the FMB's
      MLP runs on the concatenation.
    - **Block counts.** Table 1 gives no legible counts for stages 2-3. Its stage-1 counts "3, 3, 3, 6" (one column
      missing) are read as T, S, M, L with B's missing; B gets 3. Stage 4 has one CFB per width before the FMB in
      every variant. The counts of stages 2-3 (``depths`` in :attr:`arch_zoo`: CFBs per channel entry, the same for
      each entry of a stage) minimize the larger of the parameter and FLOP deviations from Table 2, with stage 3 at
      least as deep as stage 2, as in Next-ViT (whose layout FMViT follows). CFBs per stage, then the FMB:

      ======= ============ ============ ============ ============ =========== =============================
      variant stem         stage 1      stage 2      stage 3      stage 4     FMB (FM-channels -> output)
      ======= ============ ============ ============ ============ =========== =============================
      T       32           32 x 3       32-64-80     80-128-160   160-192     64 -> 320
                                        x 2 each     x 3 each     x 1 each
      S       48           48 x 3       48-96-160    160-192-320  320-384     128 -> 640
                                        x 1 each     x 3 each     x 1 each
      M       64           64-96-96     96-128-160   160-320-480  480-512     192 -> 960
                           x 1 each     x 2 each     x 3 each     x 1 each
      B       64           64-96-96     96-256-320   320-384-480  480-640     256 -> 1280
                           x 1 each     x 2 each     x 5 each     x 1 each
      L       64           64-96-96     96-256-320   320-384-480  480-640     256 -> 1280
                           x 2 each     x 3 each     x 10 each    x 1 each
      ======= ============ ============ ============ ============ =========== =============================

      The classifier at 224x224, fused (Table 2 in brackets): T 1.91M (2.0) / 0.315G (0.3), S 6.20M (6.4) / 0.842G
      (0.8), M 12.96M (12.8) / 1.967G (2.0), B 23.94M (24.3) / 4.113G (4.2), L 34.57M (35.3) / 6.901G (7.1): all
      within 5.2%. The train-time form (every branch and BatchNorm) has 1.6-1.8x the parameters and FLOPs.
    - **Stage-1 patch embedding.** Table 1's Conv1x1 at stage 1 maps the stem's width to itself; by the paper's own
      rule ("nothing if channels and resolution are unchanged") it is the identity here, the stem already ending in
      a 1x1 conv.
    - **Token mixer.** A reparameterized depthwise 3x3 conv (3x3, 1x1 and BN identity branches); its identity branch
      is the MetaFormer residual, so the mixer and its shortcut fuse into one depthwise conv. No separate pre-norm:
      every branch ends in BatchNorm, which fuses away (a pre-norm BN cannot fold into a padded depthwise conv
      exactly, nor into RLMHSA's ``Q = X``).
    - **gMLP.** ``fc1`` (1x1 to ``2 x dim``) -> depthwise 3x3 whose BN identity branch is the paper's shortcut ->
      ReLU -> ``fc2`` (1x1 back); the activation sits after the spatial conv as in PVTv2 / SegFormer's Mix-FFN.
    - **Multi-group branches.** Every 1x1 conv (stem, patch embeddings, gMLP, RLMHSA's ``W``) trains with parallel
      1x1 branches of groups ``multigroup_groups`` = (2, 4) (those dividing both widths); depthwise convs with a 1x1
      depthwise branch; the first stem conv with 3x1 and 1x3 branches, as the paper says.
    - **RLMHSA.** ``Q = X`` without a norm, ``K = V = X W``, the usual ``1 / sqrt(32)`` logit scale, no output
      projection (the FMB's MLP mixes channels next), and a residual: ``z4 = z3 + attn(z3)``.
    - **Classifier features.** The head pools the FMB output (stage 4's last width, already 320-1280 wide) directly,
      with no extra conv before the linear layer (Next-ViT has one): the 1000-way head alone is 17% of T's
      parameters, and a widening conv would push T and S well past Table 2.
    - **Patch-embedding pooling.** ``AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False)`` as in Next-ViT, so
      odd sides round up like a strided conv's; no activation after a patch embedding.

    Args:
        arch (str | dict): One of ``FMViT.arch_zoo`` (``'t'``, ``'s'``, ``'m'``, ``'b'``, ``'l'``) or a dict with
            the keys of its entries: ``stem_channels`` (int), ``channels`` (per stage, the widths of its CFB groups;
            stage 4's last entry is the FMB output and must equal ``5 * fm_channels``), ``depths`` (per stage, CFBs
            per width; stage 4 has one fewer entry) and ``fm_channels``.
        in_channels (int): Input channels. Defaults to 3.
        out_indices (int | Sequence[int]): Stages whose outputs to return, as a tuple (``0``-``3``, strides 4, 8,
            16, 32; negative values count back from the last). Defaults to ``(3,)``.
        frozen_stages (int): ``-1`` freezes nothing, ``0`` the stem, ``k`` the stem and the first ``k`` stages.
            Defaults to -1.
        norm_eval (bool): Keep every BatchNorm in eval mode during training. Defaults to False.
        with_cp (bool): Gradient checkpointing per block. Defaults to False.
        drop_path_rate (float): Stochastic depth, rising linearly over all residual blocks (CFBs, then the FMB's
            CFBs and its attention / MLP residuals) from 0 to this. Defaults to 0.
        mlp_ratio (float): gMLP expansion. Defaults to 2.
        head_dim (int): RLMHSA channels per head. Defaults to 32.
        multigroup_groups (Sequence[int]): Groups of the parallel 1x1 branches. Defaults to (2, 4).
        deploy (bool | str): Build the fused form directly (``True``; ``'reference'`` gives the same form, FMViT
            having a single fused form). Defaults to False.
        init_cfg (dict | list[dict], optional): mmengine initialization config, e.g.
            ``dict(type='Pretrained', checkpoint='cls.pth', prefix='backbone.')``. Defaults to None.

    Example:
        >>> import torch
        >>> model = FMViT('t', out_indices=(0, 1, 2, 3)).eval()
        >>> for out in model(torch.rand(1, 3, 224, 224)):
        ...     print(tuple(out.shape))
        (1, 32, 56, 56)
        (1, 80, 28, 28)
        (1, 160, 14, 14)
        (1, 320, 7, 7)
    """

    arch_zoo: Dict[str, dict] = {
        't': dict(stem_channels=32, fm_channels=64,
                  channels=((32, 32, 32), (32, 64, 80), (80, 128, 160), (160, 192, 320)),
                  depths=((1, 1, 1), (2, 2, 2), (3, 3, 3), (1, 1))),
        's': dict(stem_channels=48, fm_channels=128,
                  channels=((48, 48, 48), (48, 96, 160), (160, 192, 320), (320, 384, 640)),
                  depths=((1, 1, 1), (1, 1, 1), (3, 3, 3), (1, 1))),
        'm': dict(stem_channels=64, fm_channels=192,
                  channels=((64, 96, 96), (96, 128, 160), (160, 320, 480), (480, 512, 960)),
                  depths=((1, 1, 1), (2, 2, 2), (3, 3, 3), (1, 1))),
        'b': dict(stem_channels=64, fm_channels=256,
                  channels=((64, 96, 96), (96, 256, 320), (320, 384, 480), (480, 640, 1280)),
                  depths=((1, 1, 1), (2, 2, 2), (5, 5, 5), (1, 1))),
        'l': dict(stem_channels=64, fm_channels=256,
                  channels=((64, 96, 96), (96, 256, 320), (320, 384, 480), (480, 640, 1280)),
                  depths=((2, 2, 2), (3, 3, 3), (10, 10, 10), (1, 1))),
    }
    display_name = 'FMViT'
    num_stages = 4
    MIN_INPUT_SIZE = 32  # the total stride
    max_out_index = num_stages - 1
    out_indices_help = 'the four stages'
    FM_PARTS = 5  # x, z1, z2, z3, z4
    classifier_out_indices = (num_stages - 1,)  # the output its image classifier pools: the FMB's
    # What mmfastvit.deploy needs to know (read by mmfastvit/deploy/backbones.py, which lists the keys).
    deploy_facts = dict(
        family='fmvit', variant_group='fmvit',  # variants 'fmvit_t' ...; 'fmvit': the five
        classifier_input_size=224,  # the resolution FMViT is trained and timed at (its Table 2)
        rewrites=('attention',),  # only dense and depthwise convolutions: no grouped conv to split
        calibrate_batchnorm=True,  # ReLU, no layer scales: random statistics would blow activations up
        model_name='fmvit-{arch}_in1k', top1_source='its Table 2')  # the model index's top-1: Table 2, 224x224

    def __init__(self,
                 arch: Union[str, dict] = 't',
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = (3,),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 drop_path_rate: float = 0.0,
                 mlp_ratio: float = 2.0,
                 head_dim: int = 32,
                 multigroup_groups: Sequence[int] = (2, 4),
                 deploy: DeployArg = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.arch_settings = self._parse_arch(arch)
        channels, depths = self.arch_settings['channels'], self.arch_settings['depths']
        fm_channels = self.arch_settings['fm_channels']
        if fm_channels % head_dim:
            raise ValueError(f'fm_channels={fm_channels} is not a multiple of head_dim={head_dim}')
        self._set_backbone_options(out_indices, frozen_stages, norm_eval, with_cp, deploy)
        mg = tuple(multigroup_groups)
        self.in_channels = in_channels
        self.stage_channels = tuple(stage[-1] for stage in channels)

        stem_channels = self.arch_settings['stem_channels']
        self.stem = build_fmvit_stem(in_channels, stem_channels, mg, deploy)
        num_fmb_parts = self.FM_PARTS - 1  # three CFBs, then the attention and MLP residuals share one rate
        num_blocks = sum(sum(d) for d in depths) + num_fmb_parts
        rates = iter(torch.linspace(0, drop_path_rate, num_blocks).tolist())
        stages, width = [], stem_channels
        for i in range(self.num_stages):
            layers: List[nn.Module] = []
            last = i == self.num_stages - 1
            for j, (dim, depth) in enumerate(zip(channels[i], depths[i])):
                stride = 2 if i > 0 and j == 0 else 1
                layers.append(FMPatchEmbed.build(width, dim, stride, mg, deploy))
                layers += [CFB(dim, mlp_ratio, next(rates), mg, deploy) for _ in range(depth)]
                width = dim
            if last:
                layers.append(FMPatchEmbed.build(width, fm_channels, 1, mg, deploy))
                layers.append(FMB(fm_channels, mlp_ratio, head_dim, [next(rates) for _ in range(num_fmb_parts)],
                                  self.FM_PARTS - 2, mg, deploy))
                width = self.FM_PARTS * fm_channels
            stages.append(FMViTStage([m for m in layers if not isinstance(m, nn.Identity)]))
        self.stages = nn.ModuleList(stages)
        self._freeze_stages()

    @classmethod
    def _parse_arch(cls, arch: Union[str, dict]) -> dict:
        settings = cls._lookup_arch(arch, {'stem_channels', 'channels', 'depths', 'fm_channels'})
        channels = tuple(tuple(c) for c in settings['channels'])
        depths = tuple(tuple(d) for d in settings['depths'])
        for key, value in (('channels', channels), ('depths', depths)):
            if len(value) != cls.num_stages:
                raise ValueError(f'arch["{key}"] needs {cls.num_stages} stages, got {value!r}')
        for i, (chans, deps) in enumerate(zip(channels, depths)):
            expected = len(chans) - (1 if i == cls.num_stages - 1 else 0)
            if not chans or len(deps) != expected:
                raise ValueError(f'arch stage {i + 1}: depths {deps!r} needs one entry per width of {chans!r}'
                                 + (' but the last (the FMB output)' if i == cls.num_stages - 1 else ''))
            if any(d < 0 for d in deps):
                raise ValueError(f'arch stage {i + 1}: depths {deps!r} has a negative count')
        fm_out = cls.FM_PARTS * settings['fm_channels']
        if channels[-1][-1] != fm_out:
            raise ValueError(f'arch stage 4 ends at {channels[-1][-1]} channels, but the FMB outputs '
                             f'{cls.FM_PARTS} x fm_channels = {fm_out}')
        settings.update(channels=channels, depths=depths)
        return settings

    @property
    def out_channels(self) -> Tuple[int, ...]:
        """Channels of each requested output, in order (e.g. an FPN's ``in_channels``)."""
        return tuple(self.stage_channels[i] for i in self.out_indices)
