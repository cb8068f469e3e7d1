"""The fusion math, function by function, against the modules it replaces."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import randomize_
from mmfastvit.models.utils import fusion


def _bn(n, seed=0):
    return randomize_(nn.BatchNorm2d(n), seed).eval()


def test_fuse_conv_bn_matches_conv_then_bn():
    conv = nn.Conv2d(8, 6, 3, padding=1, groups=2, bias=True)
    bn = _bn(6)
    x = torch.randn(2, 8, 9, 9)
    w, b = fusion.fuse_conv_bn(conv.weight, conv.bias, bn)
    torch.testing.assert_close(F.conv2d(x, w, b, padding=1, groups=2), bn(conv(x)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('channels,groups', [(6, 1), (6, 3), (6, 6)])
@pytest.mark.parametrize('k', [1, 3, 7])
def test_identity_kernel_is_identity(channels, groups, k):
    x = torch.randn(1, channels, 5, 5)
    kernel = fusion.identity_kernel(channels, groups, k, like=x)
    assert kernel.shape == (channels, channels // groups, k, k)
    torch.testing.assert_close(F.conv2d(x, kernel, padding=k // 2, groups=groups), x)


def test_bn_identity_branch_matches_bn():
    bn = _bn(4)
    x = torch.randn(2, 4, 6, 6)
    w, b = fusion.fuse_bn_identity(bn, groups=4, kernel_size=3)
    torch.testing.assert_close(F.conv2d(x, w, b, padding=1, groups=4), bn(x), rtol=1e-5, atol=1e-6)


def test_pad_kernel_centres_and_refuses_shrinking():
    k = torch.arange(9.).reshape(1, 1, 3, 3)
    padded = fusion.pad_kernel(k, 7)
    assert padded.shape == (1, 1, 7, 7)
    torch.testing.assert_close(padded[..., 2:5, 2:5], k)
    assert padded.sum() == k.sum()
    with pytest.raises(ValueError, match='cannot pad a 3x3 kernel down to 1'):
        fusion.pad_kernel(k, 1)


def test_sum_branches_equals_sum_of_convolutions():
    x = torch.randn(1, 4, 8, 8)
    w7, b7 = torch.randn(4, 1, 7, 7), torch.randn(4)
    w3, b3 = torch.randn(4, 1, 3, 3), torch.randn(4)
    w, b = fusion.sum_branches([(w7, b7), (w3, b3)], 7)
    expected = F.conv2d(x, w7, b7, padding=3, groups=4) + F.conv2d(x, w3, b3, padding=1, groups=4)
    torch.testing.assert_close(F.conv2d(x, w, b, padding=3, groups=4), expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match='at least one branch'):
        fusion.sum_branches([], 3)


@pytest.mark.parametrize('conv_shaped', [False, True])
def test_fold_input_affine_into_linear(conv_shaped):
    scale, shift = torch.rand(5) + 0.5, torch.randn(5)
    weight, bias = torch.randn(3, 5), torch.randn(3)
    x = torch.randn(4, 5)
    expected = F.linear(x * scale + shift, weight, bias)
    if conv_shaped:
        weight = weight.reshape(3, 5, 1, 1)
    w, b = fusion.fold_input_affine_into_linear(weight, bias, scale, shift)
    assert w.shape == weight.shape
    torch.testing.assert_close(F.linear(x, w.reshape(3, 5), b), expected, rtol=1e-5, atol=1e-5)


def test_fold_output_scale_with_and_without_bias():
    scale = torch.rand(3, 1, 1) + 0.1
    conv_w = torch.randn(3, 4, 1, 1)
    x = torch.randn(1, 4, 2, 2)
    for bias in (torch.randn(3), None):
        w, b = fusion.fold_output_scale(conv_w, bias, scale)
        torch.testing.assert_close(F.conv2d(x, w, b), F.conv2d(x, conv_w, bias) * scale, rtol=1e-5, atol=1e-6)
