"""Helpers for verifying a fusion numerically (torch only), used by the conversion and deploy code, the demo, the
benchmarks and the tests."""
import torch
from torch import nn

# Layer-scale classes by name: ours (mmfastvit.models.layers.LayerScale2d) and timm's (LayerScale2d, LayerScale);
# both keep the scale in a ``gamma`` parameter. Matched by name so that this module needs no layer import.
LAYER_SCALE_NAMES = ('LayerScale2d', 'LayerScale')


def _is_layer_scale(module: nn.Module) -> bool:
    return any(cls.__name__ in LAYER_SCALE_NAMES for cls in type(module).__mro__)


@torch.no_grad()
def randomize_fusable_state_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Gives every BatchNorm random statistics and affine values and every layer scale a random value, in place.

    At initialization a BatchNorm is the identity and layer scales are 1e-5, so fusion checked on a fresh model
    proves little. Works on mmfastvit's models and on timm's (its layer scales are also ``gamma`` parameters).
    """
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=gen) * 0.2)
            module.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
            if module.affine:
                module.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                module.bias.copy_(torch.randn(n, generator=gen) * 0.2)
        elif _is_layer_scale(module):
            module.gamma.copy_(torch.rand(module.gamma.shape, generator=gen) * 0.5 + 0.1)
    return model


def relative_error(actual, expected) -> float:
    """Max abs difference over the max abs of ``expected``; tuples are compared element-wise, the worst kept."""
    if isinstance(expected, (tuple, list)):
        return max(relative_error(a, e) for a, e in zip(actual, expected))
    return ((actual - expected).abs().max() / expected.abs().max().clamp_min(1e-12)).item()
