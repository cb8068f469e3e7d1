"""FLOP counting for mmfastvit models, in fvcore's convention (the paper's: one multiply-add is one FLOP).

mmengine's ``FlopAnalyzer`` has no rule for ``aten::baddbmm``, the kernel :class:`PointwiseConv` runs its 1x1
convolutions with, so it would silently leave those out; :func:`flop_analyzer` adds that rule.
"""
from typing import Any, List, Tuple

from mmengine.analysis import FlopAnalyzer
from mmengine.analysis.jit_handles import get_shape
from torch import nn


def baddbmm_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """``out = input + batch1 @ batch2`` with ``batch1`` ``(b, n, m)`` and ``batch2`` ``(b, m, p)``: ``b*n*m*p``."""
    b, n, m = get_shape(inputs[1])
    p = get_shape(inputs[2])[-1]
    return b * n * m * p


def flop_analyzer(model: nn.Module, inputs: Tuple) -> FlopAnalyzer:
    """A quiet ``FlopAnalyzer`` over ``model(*inputs)`` that also counts ``baddbmm``."""
    analyzer = FlopAnalyzer(model, inputs)
    analyzer.set_op_handle('aten::baddbmm', baddbmm_flop_jit)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    return analyzer
