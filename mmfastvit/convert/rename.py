"""Declarative rename tables from other FastViT implementations' state dicts to mmfastvit's.

mmfastvit's classifier is mmpretrain's ``ImageClassifier``: ``backbone`` (``FastViT`` with ``out_indices=(4,)``, so
it owns the paper's ``final_conv``), a global-average-pooling neck without parameters, and ``head.fc``. Its block
names follow timm's, so the timm table is short; Apple's formats are tables of the same kind.

A table is an ordered list of ``(pattern, replacement)`` regular expressions. Every key must match at least one
*anchored* rule (those starting with ``^``), which places it in the target model; unanchored rules rename inner parts.
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


def convert_state_dict(state_dict: Mapping[str, Tensor], table: RenameTable,
                       source: str = 'checkpoint') -> Dict[str, Tensor]:
    """Renames every key of ``state_dict`` by ``table``.

    Raises:
        KeyError: naming the keys no anchored rule places, so nothing partial is ever returned.
    """
    anchored = [(re.compile(p), r) for p, r in table if p.startswith('^')]
    inner = [(re.compile(p), r) for p, r in table if not p.startswith('^')]
    out: Dict[str, Tensor] = OrderedDict()
    unknown = []
    for key, value in state_dict.items():
        new_key = key
        placed = False
        for pattern, repl in anchored:
            new_key, n = pattern.subn(repl, new_key)
            placed = placed or n > 0
        if not placed:
            unknown.append(key)
            continue
        for pattern, repl in inner:
            new_key = pattern.sub(repl, new_key)
        out[new_key] = value
    if unknown:
        shown = ', '.join(unknown[:5]) + (f' (+{len(unknown) - 5} more)' if len(unknown) > 5 else '')
        raise KeyError(f'{source}: {len(unknown)} key(s) are not FastViT weights this table knows: {shown}')
    return out


def timm_to_mmfastvit(state_dict: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """timm ``fastvit_*`` state dict (unfused or timm-reparameterized) -> mmfastvit classifier state dict."""
    return convert_state_dict(state_dict, TIMM_TO_MMFASTVIT, source='timm state dict')
