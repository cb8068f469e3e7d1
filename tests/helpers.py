"""Shared test helpers."""
from torch import nn

from mmfastvit.testing import randomize_fusable_state_ as randomize_  # noqa: F401
from mmfastvit.testing import relative_error  # noqa: F401


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
