"""Export forms of a fused deployable backbone (FastViT, FMViT): the same function as a graph that inference engines
run faster (torch only).

The deepest fused model (``reparameterize_model(model, 'full')``) is what PyTorch runs fastest. An exported graph is
executed by another engine, and three parts of FastViT's graph are slow there for reasons of layout, not arithmetic
(measured with ONNX Runtime's profiler on the CPU execution provider; ``docs/deploy.md`` has the figures):

* A convolution with ``groups = C`` and ``m * C`` outputs (the patch embeddings, 7x7 stride 2, and the classifier's
  ``final_conv``, 3x3, both with m = 2) is neither depthwise nor dense. ONNX Runtime's blocked (NCHWc) kernels do not
  take it, so it runs as a generic grouped convolution between two layout conversions, 2-2.5x slower than the same
  arithmetic as depthwise convolutions. :class:`SplitGroupedConv` computes it as ``m`` depthwise convolutions whose
  outputs are concatenated: output channel ``g * m + j`` of the original becomes channel ``j * C + g``. The consumer
  absorbs that permutation in its weights (the 1x1 conv after a patch embedding; the SE block and the classifier's
  linear layer after ``final_conv``), so no reordering is computed.
* Attention transposes the NCHW map into tokens and back, and its projections leave the blocked layout.
  :class:`ChannelFirstAttention` keeps the NCHW map: ``qkv`` and ``proj`` are 1x1 convolutions, the heads are a
  reshape of the channel axis, and the two attention products contract over channels or tokens without transposing
  the data (the engine folds the transposes into its matrix-product kernel). The ``1/sqrt(head_dim)`` scale is folded
  into the query rows of ``qkv``.
* Global average pooling is written as ``adaptive_avg_pool2d`` (ONNX ``GlobalAveragePool``) rather than a mean over
  two axes (``ReduceMean``).

FMViT's fused graph has only dense and depthwise convolutions, so ``grouped_conv`` finds nothing to split there, and
ONNX Runtime spends 98.7% of its time in blocked convolutions (FMViT-B, batch 8, 224x224, one thread; ReLU and the
residual additions fused into them). Its attention (RLMHSA, stride 32) takes 0.6% of that, and the ``attention``
rewrite, :class:`ChannelFirstRLMHSA`, changes no latency beyond the noise (with / without it: 64.0 / 65.3 ms at batch
1, 461 / 459 ms at batch 8). It is there for Core ML: RLMHSA's token reshapes compute sizes from ``x.shape``, which
coremltools 9 cannot convert (with numpy 2); the rewrite has none. :func:`applied_rewrites` counts what a form holds,
so a report says which rewrites acted.

Every rewrite is exact in real arithmetic (a permutation, a re-association of sums, a folded constant), so the export
form equals the fused model up to float32 rounding; :func:`to_export_form` works on a copy and the export tool checks
the result against the fused model before writing anything.
"""
import copy
from typing import Callable, Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.backbones.base import ReparamBackbone
from ..models.backbones.fmvit import RLMHSA
from ..models.layers.attention import Attention
from ..models.layers.embedding import PatchEmbed
from ..models.layers.mobileone import MobileOneBlock, SEBlock
from .backbones import facts_of, is_deployable_backbone, names


def _conv_like(weight: Tensor, bias: Optional[Tensor], stride: int = 1, padding: int = 0, groups: int = 1) -> nn.Conv2d:
    """A plain ``nn.Conv2d`` holding copies of ``weight`` / ``bias``."""
    out_channels, in_per_group, kh, _ = weight.shape
    conv = nn.Conv2d(in_per_group * groups, out_channels, kh, stride, padding, groups=groups, bias=bias is not None)
    with torch.no_grad():
        conv.weight.copy_(weight)
        if bias is not None:
            conv.bias.copy_(bias)
    return conv


class SplitGroupedConv(nn.Module):
    """A grouped convolution with ``groups == in_channels`` and ``m * in_channels`` outputs, computed as ``m``
    depthwise convolutions whose outputs are concatenated.

    The output channels come out permuted: channel ``j * C + g`` here is channel ``g * m + j`` of ``conv``;
    :attr:`perm` maps new positions to old ones (``y_new = y_old[:, perm]``).

    Args:
        conv (nn.Conv2d): The grouped convolution to split.
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        channels, out_channels = conv.in_channels, conv.out_channels
        if conv.groups != channels or out_channels % channels:
            raise ValueError(f'SplitGroupedConv needs groups == in_channels and a multiple of them as outputs; '
                             f'got in={channels}, out={out_channels}, groups={conv.groups}')
        multiplier = out_channels // channels
        bias = conv.bias.detach() if conv.bias is not None else None
        self.convs = nn.ModuleList(
            _conv_like(conv.weight.detach()[j::multiplier], None if bias is None else bias[j::multiplier],
                       conv.stride[0], conv.padding[0], groups=channels) for j in range(multiplier))
        self.register_buffer('perm', torch.cat([torch.arange(j, out_channels, multiplier)
                                                for j in range(multiplier)]), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([conv(x) for conv in self.convs], dim=1)


class ChannelFirstAttention(nn.Module):
    """:class:`~mmfastvit.models.layers.attention.Attention` on the NCHW map, without token transposes.

    ``q, k, v`` are ``(B, heads, head_dim, N)`` slices of a 1x1 convolution; ``softmax(q^T k)`` is ``(B, heads, N, N)``
    and the output ``v softmax(.)^T`` is already ``(B, C, H, W)`` after a reshape.

    Args:
        attn (Attention): The module to convert (eval mode, dropout unused).
    """

    def __init__(self, attn: Attention) -> None:
        super().__init__()
        self.num_heads, self.head_dim = attn.num_heads, attn.head_dim
        dim = attn.qkv.in_features
        weight = attn.qkv.weight.detach().clone()
        bias = attn.qkv.bias.detach().clone() if attn.qkv.bias is not None else None
        scale = self.head_dim ** -0.5  # scaled_dot_product_attention's default scale, moved onto q
        weight[:dim] *= scale
        if bias is not None:
            bias[:dim] *= scale
        self.qkv = _conv_like(weight[:, :, None, None], bias)
        self.proj = _conv_like(attn.proj.weight.detach()[:, :, None, None], attn.proj.bias.detach())

    def forward(self, x: Tensor) -> Tensor:
        # Shapes come from flatten / unflatten with constant sizes and reshape_as, not from arithmetic on x.shape:
        # a traced graph then has no size computations (coremltools 9 fails on them with numpy 2).
        q, k, v = self.qkv(x).flatten(2).unflatten(1, (3, self.num_heads, self.head_dim)).unbind(1)
        attn = torch.matmul(q.transpose(-2, -1), k).softmax(dim=-1)  # (B, heads, N, N)
        out = torch.matmul(v, attn.transpose(-2, -1))  # (B, heads, head_dim, N)
        return self.proj(out.flatten(1, 2).reshape_as(x))


class ChannelFirstRLMHSA(nn.Module):
    """FMViT's :class:`~mmfastvit.models.backbones.fmvit.RLMHSA` on the NCHW map, without token transposes and with no
    size computed from the input's shape.

    ``q = x`` and ``kv = W x`` are ``(B, heads, head_dim, N)`` views; ``softmax(q^T kv / sqrt(d))`` is
    ``(B, heads, N, N)`` and ``kv softmax(.)^T`` is ``(B, C, H, W)`` after a reshape. The scale multiplies ``q``
    (``C x N`` values, fewer than the ``heads x N x N`` logits); it cannot fold into ``W``, which also gives the values.

    Args:
        attn (RLMHSA): The fused module to convert.
    """

    def __init__(self, attn: RLMHSA) -> None:
        super().__init__()
        self.num_heads, self.head_dim = attn.num_heads, attn.head_dim
        self.scale = self.head_dim ** -0.5
        weight, bias = attn.kv.kernel_bias()
        self.kv = _conv_like(weight.detach(), bias.detach())

    def forward(self, x: Tensor) -> Tensor:
        q = (x * self.scale).flatten(2).unflatten(1, (self.num_heads, self.head_dim))
        kv = self.kv(x).flatten(2).unflatten(1, (self.num_heads, self.head_dim))
        attn = torch.matmul(q.transpose(-2, -1), kv).softmax(dim=-1)  # (B, heads, N, N)
        return torch.matmul(kv, attn.transpose(-2, -1)).flatten(1, 2).reshape_as(x)


def _permute_in_channels(conv: nn.Conv2d, perm: Tensor) -> None:
    """Reorders the input channels of a dense convolution (its weight columns) in place: it then reads ``x[:, perm]``
    as it read ``x`` before."""
    with torch.no_grad():
        conv.weight.copy_(conv.weight[:, perm])


def _split_patch_embed(embed: PatchEmbed) -> None:
    """Fused ``PatchEmbed.proj = [grouped 7x7 conv, MobileOne 1x1 + GELU]`` -> split conv + permuted 1x1, in place."""
    large, pointwise = embed.proj[0], embed.proj[1]
    conv = large.reparam_conv
    if conv.groups != conv.in_channels or conv.out_channels == conv.in_channels:
        return  # depthwise or dense already: nothing to split
    split = SplitGroupedConv(conv)
    embed.proj[0] = split
    _permute_in_channels(pointwise.reparam_conv, split.perm)


def _split_final_conv(block: MobileOneBlock) -> Tensor:
    """Fused ``final_conv`` (grouped 3x3 conv -> SE -> GELU) with its conv split, in place.

    Returns the permutation of its output channels, which the consumer must absorb.
    """
    split = SplitGroupedConv(block.reparam_conv)
    perm = split.perm
    block.reparam_conv = split
    if isinstance(block.se, SEBlock):
        _permute_in_channels(block.se.reduce, perm)
        with torch.no_grad():  # the expand conv's outputs gate the permuted channels
            block.se.expand.weight.copy_(block.se.expand.weight[perm])
            block.se.expand.bias.copy_(block.se.expand.bias[perm])
    return perm


def _check_fused(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, ReparamBackbone) and module.fused_level != 'full':
            raise ValueError(f'to_export_form needs the deepest fused model (reparameterize_model(model, "full")); '
                             f'this {type(module).__name__} is at level "{module.fused_level}"')


class ExportClassifier(nn.Module):
    """The image classifier as one tensor-in, logits-out module: the backbone's pooled output, global average
    pooling, linear layer (FastViTClassifier / FMViTClassifier, or mmpretrain's ImageClassifier with
    GlobalAveragePooling and LinearClsHead).

    Args:
        backbone (nn.Module): A deployable backbone (:mod:`mmfastvit.deploy.backbones`) with the output its
            classifier pools (``classifier_out_indices``): FastViT with ``out_indices=(4,)`` (up to ``final_conv``),
            FMViT with ``out_indices=(3,)`` (up to the FMB).
        fc (nn.Linear): The classifier's linear layer.
    """

    def __init__(self, backbone: nn.Module, fc: nn.Linear) -> None:
        super().__init__()
        if not is_deployable_backbone(backbone):
            raise TypeError(f'ExportClassifier takes {names("or", article=True)} backbone, not '
                            f'{type(backbone).__name__}')
        expected = tuple(backbone.classifier_out_indices)
        if backbone.out_indices != expected:
            raise ValueError(f'ExportClassifier needs out_indices={expected} for {type(backbone).__name__} (the output '
                             f'its classifier pools), got {backbone.out_indices}')
        self.backbone = backbone
        self.fc = fc

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(F.adaptive_avg_pool2d(self.backbone(x)[0], 1).flatten(1))


def _attention(model: nn.Module) -> None:
    """Each attention module -> its channel-first form (:data:`CHANNEL_FIRST`), in place."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            form = next((make for cls, make in CHANNEL_FIRST.items() if isinstance(child, cls)), None)
            if form is not None:
                setattr(parent, name, form(child))


def _grouped_conv(model: nn.Module) -> None:
    """Patch embeddings' grouped convs split, and in a classifier the pooled block's (its backbone's
    ``pooled_block``) with the linear layer absorbing the channel order, in place."""
    for module in list(model.modules()):
        if isinstance(module, PatchEmbed):
            _split_patch_embed(module)
    if isinstance(model, ExportClassifier):
        block_name = facts_of(model.backbone).pooled_block
        block = getattr(model.backbone, block_name) if block_name else None
        if isinstance(block, MobileOneBlock):
            perm = _split_final_conv(block)
            with torch.no_grad():
                model.fc.weight.copy_(model.fc.weight[:, perm])


# attention module -> its channel-first export form
CHANNEL_FIRST: Dict[type, Callable[[nn.Module], nn.Module]] = {Attention: ChannelFirstAttention,
                                                                RLMHSA: ChannelFirstRLMHSA}
# name -> (rewrite in place, the module types it produces: applied_rewrites counts them)
_REWRITES: Dict[str, Tuple[Callable[[nn.Module], None], Tuple[type, ...]]] = {
    'attention': (_attention, (ChannelFirstAttention, ChannelFirstRLMHSA)),
    'grouped_conv': (_grouped_conv, (SplitGroupedConv,)),
}
REWRITES = tuple(_REWRITES)


def check_rewrites(rewrites: Sequence[str]) -> Tuple[str, ...]:
    """``rewrites`` as a tuple.

    Raises:
        ValueError: naming the unknown ones and the valid choices.
    """
    unknown = set(rewrites) - set(REWRITES)
    if unknown:
        raise ValueError(f'unknown rewrites {sorted(unknown)}; choose from {list(REWRITES)}')
    return tuple(rewrites)


def _declared_rewrites(model: nn.Module) -> Optional[set]:
    """The rewrites the deployable backbones inside ``model`` declare (their facts' ``rewrites``); None when it has
    none (a bare layer: every rewrite may act)."""
    declared = [set(facts_of(m).rewrites) for m in model.modules() if is_deployable_backbone(m)]
    return set.union(*declared) if declared else None


def to_export_form(model: nn.Module, rewrites: Sequence[str] = REWRITES) -> nn.Module:
    """A copy of a fully fused model with the export rewrites applied (see the module docstring).

    Args:
        model (nn.Module): A deployable backbone or an :class:`ExportClassifier`, fused at level ``'full'``.
        rewrites (Sequence[str]): Which rewrites: ``'attention'`` (FastViT's attention as
            :class:`ChannelFirstAttention`, FMViT's RLMHSA as :class:`ChannelFirstRLMHSA`) and ``'grouped_conv'``
            (:class:`SplitGroupedConv` in the patch embeddings, and in the pooled block, FastViT's ``final_conv``,
            when the model is an :class:`ExportClassifier`). Only those its backbone declares act (FMViT has no
            grouped conv). Defaults to both.

    Returns:
        nn.Module: The rewritten copy, in eval mode.
    """
    rewrites = check_rewrites(rewrites)
    _check_fused(model)
    model = copy.deepcopy(model).eval()
    declared = _declared_rewrites(model)
    for name, (rewrite, _) in _REWRITES.items():
        if name in rewrites and (declared is None or name in declared):
            rewrite(model)
    return model


def applied_rewrites(form: nn.Module) -> dict:
    """How many modules of an export form each rewrite replaced, e.g. ``{'attention': 0, 'grouped_conv': 4}``."""
    modules = list(form.modules())
    return {name: sum(isinstance(m, produced) for m in modules) for name, (_, produced) in _REWRITES.items()}
