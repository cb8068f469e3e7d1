"""The fusion-verification helpers: which modules the randomizer touches, its determinism, and the relative error."""
import pytest
import torch
from torch import nn

from mmfastvit.models.layers import LayerScale2d
from mmfastvit.models.utils.fusion_checks import randomize_fusable_state_, relative_error


class LayerScale(nn.Module):
    """Shaped like timm's ``LayerScale`` (a ``gamma`` parameter), unrelated to ours."""

    def __init__(self, dim):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), 1e-5))


class ScaledSubclass(LayerScale2d):
    pass


def _model():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), LayerScale2d(4, 1e-5), ScaledSubclass(4, 1e-5),
                         LayerScale(4), nn.BatchNorm2d(4, affine=False))


def test_randomize_touches_batchnorms_and_layer_scales_only():
    model = _model()
    conv_before = model[0].weight.clone()
    randomize_fusable_state_(model, seed=3)
    assert torch.equal(model[0].weight, conv_before)
    for bn in (model[1], model[5]):
        assert not torch.equal(bn.running_mean, torch.zeros(4))
        assert ((bn.running_var >= 0.5) & (bn.running_var <= 2.0)).all()
    assert not torch.equal(model[1].weight, torch.ones(4)) and not torch.equal(model[1].bias, torch.zeros(4))
    for scale in model[2:5]:
        assert ((scale.gamma >= 0.1) & (scale.gamma <= 0.6)).all(), type(scale).__name__


def test_randomize_is_seeded():
    a, b, c = randomize_fusable_state_(_model(), 0), randomize_fusable_state_(_model(), 0), \
        randomize_fusable_state_(_model(), 1)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    fusable = [k for k in sa if not k.startswith('0.') and not k.endswith('num_batches_tracked')]
    assert all(torch.equal(sa[k], sb[k]) for k in fusable)
    assert all(not torch.equal(sa[k], sc[k]) for k in fusable)


def test_relative_error():
    expected = torch.tensor([2.0, -4.0, 1.0])
    assert relative_error(expected + torch.tensor([0.0, 0.5, -1.0]), expected) == 0.25
    assert relative_error(expected, expected) == 0.0
    pairs = (expected + 0.4, expected), (expected * 1.5, expected)  # 0.4 / 4, then 2 / 4: the worst is kept
    assert abs(relative_error(tuple(a for a, _ in pairs), tuple(e for _, e in pairs)) - 0.5) < 1e-7
    # a zero reference does not divide by zero: the denominator is clamped to 1e-12
    assert relative_error(torch.ones(2), torch.zeros(2)) == pytest.approx(1e12, rel=1e-6)
