"""Declarative rename tables from other FastViT implementations' state dicts to mmfastvit's.

mmfastvit's classifier is mmpretrain's ``ImageClassifier``: ``backbone`` (``FastViT`` with ``out_indices=(4,)``, so
it owns the paper's ``final_conv``), a global-average-pooling neck without parameters, and ``head.fc``. Its block
names follow timm's, so the timm table is short; Apple's formats are tables of the same kind.

A table is an ordered list of ``(pattern, replacement)`` regular expressions. Every key must match an *anchored*
rule (those starting with ``^``; the first that matches places it in the target model); unanchored rules then rename
inner parts, all of them in order.
"""
import re
from collections import OrderedDict
from typing import Dict, Mapping, Sequence, Tuple

from torch import Tensor

RenameTable = Sequence[Tuple[str, str]]

TIMM_TO_MMFASTVIT: RenameTable = (
    (r'^stem\.', 'backbone.stem.'),
    (r'^stages\.', 'backbone.stages.'),
    (r'^final_conv\.', 'backbone.final_conv.'),
    (r'^head\.fc\.', 'head.fc.'),
    # timm's squeeze-excitation names its 1x1 convs fc1 / fc2; Apple's and ours reduce / expand.
    (r'\.se\.fc1\.', '.se.reduce.'),
    (r'\.se\.fc2\.', '.se.expand.'),
)

# Apple's ml-fastvit, unfused (``*.pth.tar``) and fused (``*_reparam.pth.tar``). Apple keeps the stages in one flat
# ``network`` list: RepMixer/attention stages at 0, 2, 4 and 6 (T/S) or 7 (SA/MA), patch embeddings at 1, 3, 5 and,
# for SA/MA, the RepCPE at 6. The keys name what they are (``network.6.pe`` vs ``network.6.<block>.``), so one table
# serves every variant; a file holding both ``network.6.<block>`` and ``network.7.<block>`` is refused as a collision.
APPLE_TO_MMFASTVIT: RenameTable = (
    (r'^patch_embed\.', 'backbone.stem.'),
    (r'^network\.0\.(\d+)\.', r'backbone.stages.0.blocks.\1.'),
    (r'^network\.1\.proj\.', 'backbone.stages.1.downsample.proj.'),
    (r'^network\.2\.(\d+)\.', r'backbone.stages.1.blocks.\1.'),
    (r'^network\.3\.proj\.', 'backbone.stages.2.downsample.proj.'),
    (r'^network\.4\.(\d+)\.', r'backbone.stages.2.blocks.\1.'),
    (r'^network\.5\.proj\.', 'backbone.stages.3.downsample.proj.'),
    (r'^network\.6\.pe\.', 'backbone.stages.3.pos_emb.pos_enc.'),
    (r'^network\.6\.reparam_conv\.', 'backbone.stages.3.pos_emb.reparam_conv.'),
    (r'^network\.[67]\.(\d+)\.', r'backbone.stages.3.blocks.\1.'),
    (r'^conv_exp\.', 'backbone.final_conv.'),
    (r'^head\.', 'head.fc.'),
    # Dense-prediction (fork_feat) models: a BatchNorm on each returned map, named by Apple's flat list index of the
    # stage whose output it takes (0, 2, 4, 6), -> the backbone's per-output norms (out_norm_cfg=dict(type='BN')).
    # For SA / MA Apple's norm6 sits on the RepCPE output rather than the attention stage's (docs/backbone.md).
    (r'^norm0\.', 'backbone.out_norms.0.norm.'),
    (r'^norm2\.', 'backbone.out_norms.1.norm.'),
    (r'^norm4\.', 'backbone.out_norms.2.norm.'),
    (r'^norm6\.', 'backbone.out_norms.3.norm.'),
    # MobileOne branches, large-kernel branches, ConvFFN and layer scales (timm's and ours are LayerScale2d modules).
    (r'\.rbr_conv\.', '.conv_kxk.'),
    (r'\.rbr_scale\.', '.conv_scale.'),
    (r'\.rbr_skip\.', '.identity.'),
    (r'\.lkb_origin\.', '.large_conv.'),
    (r'\.lkb_reparam\.', '.reparam_conv.'),
    (r'\.convffn\.', '.mlp.'),
    (r'\.(layer_scale(?:_[12])?)$', r'.\1.gamma'),
)


# The reverse, to write Apple's layout (e.g. for Apple's own export scripts). The last stage's place in Apple's list
# depends on the variant (6 without RepCPE, 7 after it), so the table is made per variant.
def mmfastvit_to_apple_table(has_pos_emb: bool) -> RenameTable:
    last = 7 if has_pos_emb else 6
    return (
        (r'^backbone\.stem\.', 'patch_embed.'),
        (r'^backbone\.stages\.0\.blocks\.', 'network.0.'),
        (r'^backbone\.stages\.1\.downsample\.proj\.', 'network.1.proj.'),
        (r'^backbone\.stages\.1\.blocks\.', 'network.2.'),
        (r'^backbone\.stages\.2\.downsample\.proj\.', 'network.3.proj.'),
        (r'^backbone\.stages\.2\.blocks\.', 'network.4.'),
        (r'^backbone\.stages\.3\.downsample\.proj\.', 'network.5.proj.'),
        (r'^backbone\.stages\.3\.pos_emb\.pos_enc\.', 'network.6.pe.'),
        (r'^backbone\.stages\.3\.pos_emb\.reparam_conv\.', 'network.6.reparam_conv.'),
        (r'^backbone\.stages\.3\.blocks\.', f'network.{last}.'),
        (r'^backbone\.final_conv\.', 'conv_exp.'),
        (r'^backbone\.out_norms\.0\.norm\.', 'norm0.'),
        (r'^backbone\.out_norms\.1\.norm\.', 'norm2.'),
        (r'^backbone\.out_norms\.2\.norm\.', 'norm4.'),
        (r'^backbone\.out_norms\.3\.norm\.', 'norm6.'),
        (r'^head\.fc\.', 'head.'),
        (r'\.conv_kxk\.', '.rbr_conv.'),
        (r'\.conv_scale\.', '.rbr_scale.'),
        (r'\.identity\.', '.rbr_skip.'),
        (r'\.large_conv\.', '.lkb_origin.'),
        (r'(\.proj\.0)\.reparam_conv\.', r'\1.lkb_reparam.'),
        (r'\.mlp\.', '.convffn.'),
        (r'\.(layer_scale(?:_[12])?)\.gamma$', r'.\1'),
    )


def convert_state_dict(state_dict: Mapping[str, Tensor], table: RenameTable,
                       source: str = 'checkpoint') -> Dict[str, Tensor]:
    """Renames every key of ``state_dict`` by ``table``.

    Raises:
        KeyError: naming the keys no anchored rule places, so nothing partial is ever returned.
    """
    anchored = [(re.compile(p), r) for p, r in table if p.startswith('^')]
    inner = [(re.compile(p), r) for p, r in table if not p.startswith('^')]
    out: Dict[str, Tensor] = OrderedDict()
    origin: Dict[str, str] = {}
    unknown, collisions = [], []
    for key, value in state_dict.items():
        new_key = None
        for pattern, repl in anchored:
            new_key, n = pattern.subn(repl, key)
            if n:
                break
        else:
            unknown.append(key)
            continue
        for pattern, repl in inner:
            new_key = pattern.sub(repl, new_key)
        if new_key in out:
            collisions.append(f'{origin[new_key]} and {key} -> {new_key}')
            continue
        out[new_key] = value
        origin[new_key] = key
    if unknown:
        raise KeyError(f'{source}: {len(unknown)} key(s) are not FastViT weights this table knows: {_shorten(unknown)}')
    if collisions:
        raise KeyError(f'{source}: keys of two different layers map to the same weight: {_shorten(collisions)}')
    return out


def _shorten(items: Sequence[str], limit: int = 5) -> str:
    return ', '.join(items[:limit]) + (f' (+{len(items) - limit} more)' if len(items) > limit else '')


def apple_to_mmfastvit(state_dict: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """Apple ``ml-fastvit`` state dict (unfused or ``_reparam``) -> mmfastvit classifier state dict."""
    return convert_state_dict(state_dict, APPLE_TO_MMFASTVIT, source='Apple state dict')


def mmfastvit_to_apple(state_dict: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """mmfastvit classifier state dict (unfused or ``'reference'``-fused) -> Apple ``ml-fastvit`` names."""
    has_pos_emb = any(k.startswith('backbone.stages.3.pos_emb.') for k in state_dict)
    return convert_state_dict(state_dict, mmfastvit_to_apple_table(has_pos_emb), source='mmfastvit state dict')


def timm_to_mmfastvit(state_dict: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """timm ``fastvit_*`` state dict (unfused or timm-reparameterized) -> mmfastvit classifier state dict."""
    return convert_state_dict(state_dict, TIMM_TO_MMFASTVIT, source='timm state dict')
