"""FLOP counting for mmfastvit models, in fvcore's convention (the paper's: one multiply-add is one FLOP).

mmengine's ``FlopAnalyzer`` has no rule for ``aten::baddbmm``, the kernel :class:`PointwiseConv` runs its 1x1
convolutions with, nor for ``aten::scaled_dot_product_attention``, which the attention blocks run their two matmuls
with; it would silently leave both out. :func:`flop_analyzer` adds both rules. fvcore on Apple's code (the paper's
count) sees those matmuls as explicit ``q @ k^T`` and ``attn @ v``, so they are counted by default.
"""
import math
from typing import Any, List, Tuple

from mmengine.analysis import FlopAnalyzer
from mmengine.analysis.jit_handles import get_shape
from torch import nn


def baddbmm_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """``out = input + batch1 @ batch2`` with ``batch1`` ``(b, n, m)`` and ``batch2`` ``(b, m, p)``: ``b*n*m*p``."""
    b, n, m = get_shape(inputs[1])
    p = get_shape(inputs[2])[-1]
    return b * n * m * p


def sdpa_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """``softmax(q @ k^T) @ v`` with ``q`` ``(..., L, E)``, ``k`` ``(..., S, E)``, ``v`` ``(..., S, Ev)``:
    ``batch * L * S * (E + Ev)`` multiply-adds (the two matmuls; the softmax is element-wise, uncounted)."""
    q, k, v = (get_shape(t) for t in inputs[:3])
    return math.prod(q[:-2]) * q[-2] * k[-2] * (q[-1] + v[-1])


def flop_analyzer(model: nn.Module, inputs: Tuple, count_attention: bool = True) -> FlopAnalyzer:
    """A quiet ``FlopAnalyzer`` over ``model(*inputs)`` that also counts ``baddbmm`` and, with
    ``count_attention``, the matmuls inside ``scaled_dot_product_attention``."""
    analyzer = FlopAnalyzer(model, inputs)
    analyzer.set_op_handle('aten::baddbmm', baddbmm_flop_jit)
    if count_attention:
        analyzer.set_op_handle('aten::scaled_dot_product_attention', sdpa_flop_jit)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    return analyzer
