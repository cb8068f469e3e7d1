"""Shared test helpers: make a model's fusable state non-trivial, and compare outputs by relative error."""
import torch
from torch import nn

from mmfastvit.models.layers.common import LayerScale2d


@torch.no_grad()
def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Gives every BatchNorm random statistics and affine parameters and every layer scale a random value, so that
    fusion is tested on values unlike the initial ones (BN at init is the identity; layer scales start at 1e-5)."""
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=gen) * 0.2)
            module.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
            module.weight.copy_(torch.rand(n, generator=gen) + 0.5)
            module.bias.copy_(torch.randn(n, generator=gen) * 0.2)
        elif isinstance(module, LayerScale2d) or type(module).__name__ in ('LayerScale2d', 'LayerScale'):
            module.gamma.copy_(torch.rand(module.gamma.shape, generator=gen) * 0.5 + 0.1)
    return model


def relative_error(actual, expected) -> float:
    """Max abs difference over the max abs of the expected output (tuples compared element-wise, worst kept)."""
    if isinstance(expected, (tuple, list)):
        return max(relative_error(a, e) for a, e in zip(actual, expected))
    return ((actual - expected).abs().max() / expected.abs().max().clamp_min(1e-12)).item()


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
