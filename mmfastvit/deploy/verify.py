"""Checking each form of a network against the previous one: fused vs unfused, export form vs fused, an engine's
outputs vs PyTorch's (torch only)."""
import copy
from typing import Callable, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..models.utils.fusion_checks import relative_error
from ..models.utils.reparam import reparameterize_model
from .export_form import REWRITES, applied_rewrites, to_export_form
from .loading import Deployable

# Relative error (max |a - b| / max |b|) allowed between forms. Fusion and the export rewrites change float32 rounding
# only (observed ~1e-7); a wrong rewrite is off by O(1).
FP32_TOLERANCE = 1e-4
FP16_TOLERANCE = 2e-2


class ExportError(RuntimeError):
    """An export that failed a check; nothing was written."""


def outputs(model: nn.Module, x: Tensor) -> Tuple[Tensor, ...]:
    """``model(x)`` without gradients, as a tuple."""
    with torch.no_grad():
        out = model(x)
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def compare(what: str, actual: Sequence[Tensor], expected: Sequence[Tensor], tolerance: float) -> dict:
    """``max_abs_diff``, ``rel_error``, ``tolerance`` and ``passed`` of ``actual`` against ``expected``.

    Raises:
        ExportError: a different number or shape of outputs, or a relative error above ``tolerance``.
    """
    if len(actual) != len(expected):
        raise ExportError(f'{what}: {len(actual)} outputs, expected {len(expected)}; nothing was written')
    for a, e in zip(actual, expected):
        if tuple(a.shape) != tuple(e.shape):
            raise ExportError(f'{what}: output shape {tuple(a.shape)} differs from PyTorch\'s {tuple(e.shape)}; '
                              f'nothing was written')
    rel = relative_error([a.float() for a in actual], [e.float() for e in expected])
    max_abs = max((a.float() - e.float()).abs().max().item() for a, e in zip(actual, expected))
    result = dict(max_abs_diff=max_abs, rel_error=rel, tolerance=tolerance, passed=rel <= tolerance)
    if not rel <= tolerance:
        raise ExportError(f'{what}: relative error {rel:.2e} > {tolerance:.0e} '
                          f'(max |diff| {max_abs:.2e}); nothing was written')
    return result


def fuse_and_verify(deployable: Deployable, x: Tensor, rewrites: Sequence[str] = REWRITES,
                    log: Callable[[str], None] = print) -> Tuple[nn.Module, nn.Module, Tuple[Tensor, ...], dict]:
    """The fused model, its export form and the fused model's outputs on ``x``, each checked against the previous.

    Returns:
        tuple: ``(fused, export_form, fused_outputs, checks)``.
    """
    checks = {}
    level = deployable.backbone.fused_level
    model = copy.deepcopy(deployable.model).eval()
    if level == 'full':
        log('the model is already fused (level "full"): no unfused form to check it against')
        checks['fusion'] = dict(skipped=f'loaded already fused (level "{level}")')
    else:
        before = outputs(model, x)
        reparameterize_model(model, 'full')
        checks['fusion'] = dict(from_level=level, **compare('fused vs unfused', outputs(model, x), before,
                                                            FP32_TOLERANCE))
        log(f'fused "{level}" -> "full": relative error {checks["fusion"]["rel_error"]:.1e} vs the unfused outputs')
    fused_out = outputs(model, x)
    form = to_export_form(model, rewrites)
    checks['export_form'] = dict(rewrites=list(rewrites), applied=applied_rewrites(form),
                                 **compare('export form vs fused', outputs(form, x), fused_out, FP32_TOLERANCE))
    acted = [f'{name} x{count}' for name, count in checks['export_form']['applied'].items() if count]
    log(f'export form ({", ".join(acted) or "no rewrite applies"}): relative error '
        f'{checks["export_form"]["rel_error"]:.1e} vs the fused model')
    return model, form, fused_out, checks
