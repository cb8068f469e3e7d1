"""Multi-group reparameterization: the fused kernel against a brute-force sum of the branches' convolutions, the
embedding's sparsity, the train-time module, and the errors."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import randomize_, relative_error
from mmfastvit.models.layers import MultiGroupConv
from mmfastvit.models.layers.common import PointwiseConv
from mmfastvit.models.utils import (ConvBranch, Reparameterizable, embed_grouped_kernel, fuse_multigroup,
                                    identity_branch, multigroup_branches)


def _bn(channels, seed, dtype):
    return randomize_(nn.BatchNorm2d(channels), seed).eval().to(dtype)


def _reference(x, branches, stride):
    """Each branch run as its own grouped convolution (centred padding) and eval-mode BatchNorm, then summed."""
    out = 0
    for b in branches:
        kh, kw = b.weight.shape[-2:]
        y = F.conv2d(x, b.weight, b.bias, stride, (kh // 2, kw // 2), groups=b.groups)
        if b.bn is not None:
            y = F.batch_norm(y, b.bn.running_mean, b.bn.running_var, b.bn.weight, b.bn.bias, False, 0.0, b.bn.eps)
        out = out + y
    return out


# (in, out, target kernel, target groups, stride, branches as (kh, kw, groups, with bias, with BN))
CASES = {
    '3x3_g1_repvgg': (8, 8, (3, 3), 1, 1, [(3, 3, 1, False, True), (1, 1, 1, False, True)]),
    '3x3_g1_acnet_3x1_1x3': (6, 10, (3, 3), 1, 1, [(3, 3, 1, False, True), (3, 1, 1, False, True),
                                                    (1, 3, 1, True, False)]),
    '1x1_multigroup': (16, 32, (1, 1), 1, 1, [(1, 1, 1, False, True), (1, 1, 2, False, True),
                                              (1, 1, 4, True, True), (1, 1, 16, False, False)]),
    '3x3_g2_nested_g4_g8': (16, 8, (3, 3), 2, 1, [(3, 3, 2, False, True), (3, 3, 4, False, True),
                                                  (1, 3, 8, True, True), (1, 1, 8, False, False)]),
    '5x5_g4_stride2': (8, 12, (5, 5), 4, 2, [(5, 5, 4, True, True), (3, 3, 4, False, True), (1, 5, 4, False, True),
                                             (3, 1, 4, False, False)]),
    '5x3_nonsquare_g1_stride2': (6, 6, (5, 3), 1, 2, [(5, 3, 1, False, True), (3, 1, 3, False, True),
                                                      (1, 3, 2, False, True), (5, 1, 6, True, False)]),
    '3x1_target': (4, 8, (3, 1), 2, 1, [(3, 1, 2, False, True), (1, 1, 4, False, True)]),
    'depthwise_7x7': (12, 12, (7, 7), 12, 1, [(7, 7, 12, False, True), (3, 3, 12, False, True),
                                              (1, 7, 12, False, True), (1, 1, 12, False, True)]),
    'stride_2x1': (4, 4, (3, 3), 1, (2, 1), [(3, 3, 1, False, True), (1, 3, 2, False, True)]),
}


def _branches(in_ch, out_ch, specs, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i, (kh, kw, g, with_bias, with_bn) in enumerate(specs):
        weight = torch.randn(out_ch, in_ch // g, kh, kw, generator=gen, dtype=torch.float64).to(dtype)
        bias = torch.randn(out_ch, generator=gen, dtype=torch.float64).to(dtype) if with_bias else None
        out.append(ConvBranch(weight, g, bias, _bn(out_ch, seed + i, dtype) if with_bn else None))
    return out


@pytest.mark.parametrize('dtype,tol', [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize('name', list(CASES))
def test_fused_kernel_equals_sum_of_branch_convolutions(name, dtype, tol):
    in_ch, out_ch, kernel, groups, stride, specs = CASES[name]
    branches = _branches(in_ch, out_ch, specs, dtype)
    x = torch.randn(2, in_ch, 11, 9, dtype=torch.float64).to(dtype)
    weight, bias = fuse_multigroup(branches, groups, kernel)
    assert weight.shape == (out_ch, in_ch // groups, *kernel) and bias.shape == (out_ch,)
    assert weight.dtype == dtype
    with torch.no_grad():
        fused = F.conv2d(x, weight, bias, stride, (kernel[0] // 2, kernel[1] // 2), groups=groups)
        expected = _reference(x, branches, stride)
    assert fused.shape == expected.shape
    assert relative_error(fused, expected) < tol


@pytest.mark.parametrize('channels,groups', [(6, 1), (6, 2), (6, 3), (6, 6)])
def test_identity_branch_into_any_grouped_target(channels, groups):
    bn = _bn(channels, 4, torch.float64)
    x = torch.randn(1, channels, 5, 5, dtype=torch.float64)
    weight, bias = fuse_multigroup([identity_branch(channels, bn)], groups, 3)
    assert weight.shape == (channels, channels // groups, 3, 3)
    expected = F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
    assert relative_error(F.conv2d(x, weight, bias, padding=1, groups=groups), expected) < 1e-12
    plain = identity_branch(channels, like=x)
    assert plain.bn is None
    w, b = fuse_multigroup([plain], groups, 1)
    assert torch.equal(F.conv2d(x, w, b, groups=groups), x)


def test_embedding_is_zero_outside_the_branch_groups_and_window():
    # target CONV(5, 3, G=2), 8 in / 4 out: groups of 2 outputs reading 4 inputs; branch CONV(3, 1, G_i=4):
    # groups of 1 output reading 2 inputs, two of them in each target group
    weight = torch.rand(4, 2, 3, 1) + 1.0
    embedded = embed_grouped_kernel(weight, groups=4, target_groups=2, kernel_size=(5, 3))
    assert embedded.shape == (4, 4, 5, 3)
    mask = torch.zeros(4, 4, 5, 3, dtype=torch.bool)
    for out in range(4):
        slot = out % 2  # position of the branch group inside its target group
        mask[out, 2 * slot:2 * slot + 2, 1:4, 1] = True
    assert torch.all(embedded[mask] > 0) and torch.all(embedded[~mask] == 0)
    torch.testing.assert_close(embedded[0, 0:2, 1:4, 1:2], weight[0])
    torch.testing.assert_close(embedded[3, 2:4, 1:4, 1:2], weight[3])
    # same groups and size: embedding is the identity map on the kernel
    w = torch.randn(4, 2, 3, 3)
    assert torch.equal(embed_grouped_kernel(w, 2, 2, 3), w)


@pytest.mark.parametrize('kwargs,match', [
    (dict(weight=torch.zeros(4, 4, 1, 1), groups=1, target_groups=2, kernel_size=1),
     r'groups=1 does not nest in a target with groups=2'),
    (dict(weight=torch.zeros(6, 1, 1, 1), groups=4, target_groups=2, kernel_size=1),
     r'does not nest|not a multiple'),
    (dict(weight=torch.zeros(4, 1, 5, 1), groups=4, target_groups=2, kernel_size=3),
     r'a 5x1 branch does not fit in a 3x3 target kernel'),
    (dict(weight=torch.zeros(4, 4, 2, 2), groups=1, target_groups=1, kernel_size=3),
     r'kernel sizes must be odd'),
])
def test_embedding_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        embed_grouped_kernel(**kwargs)


def test_fuse_multigroup_errors():
    with pytest.raises(ValueError, match='at least one branch'):
        fuse_multigroup([], 1, 3)
    with pytest.raises(ValueError, match=r'disagree on \(out_channels, in_channels\)'):
        fuse_multigroup([ConvBranch(torch.zeros(4, 4, 3, 3)), ConvBranch(torch.zeros(4, 2, 1, 1), groups=1)], 1, 3)


MODULES = {
    'repvgg_3x3': lambda d=False: MultiGroupConv(8, 8, 3, branches=[(1, 1)], identity=True, deploy=d),
    'acnet_stem_s2': lambda d=False: MultiGroupConv(3, 8, 3, 2, branches=[((3, 1), 1), ((1, 3), 1)], deploy=d),
    'pointwise_multigroup': lambda d=False: MultiGroupConv(8, 16, 1, branches=[(1, 2), (1, 4)], deploy=d),
    'pointwise_identity': lambda d=False: MultiGroupConv(8, 8, 1, branches=[(1, 8)], identity=True, deploy=d),
    'depthwise_s2': lambda d=False: MultiGroupConv(8, 8, 3, 2, groups=8, branches=[(1, 8)], deploy=d),
    'grouped_5x3': lambda d=False: MultiGroupConv(8, 8, (5, 3), groups=2,
                                                  branches=[((3, 1), 4), ((1, 3), 2), ((5, 1), 8)], identity=True,
                                                  deploy=d),
}


@pytest.mark.parametrize('name', list(MODULES))
def test_module_fuses_into_one_convolution(name):
    module = randomize_(MODULES[name](), seed=5).eval().double()
    x = torch.randn(2, module.in_channels, 9, 10, dtype=torch.float64)
    with torch.no_grad():
        expected = module(x)
        fused = module.reparameterize()
        actual = fused(x)
    assert fused is module and module.deploy
    assert relative_error(actual, expected) < 1e-10
    assert [name for name, _ in module.named_children()] == ['reparam_conv']
    assert not any(isinstance(m, nn.BatchNorm2d) for m in module.modules())
    assert module.reparam_conv.weight.dtype == torch.float64
    is_plain_1x1 = module.kernel_size == (1, 1) and module.groups == 1 and module.stride == (1, 1)
    assert isinstance(module.reparam_conv, PointwiseConv) == is_plain_1x1


@pytest.mark.parametrize('name', list(MODULES))
def test_module_built_fused_loads_the_fused_state_dict(name):
    source = randomize_(MODULES[name](), seed=6).eval().switch_to_deploy()
    target = MODULES[name](True).eval()
    assert target.deploy and not any(isinstance(m, nn.BatchNorm2d) for m in target.modules())
    target.load_state_dict(source.state_dict(), strict=True)
    x = torch.randn(1, source.in_channels, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(target(x), source(x))


def test_switch_to_deploy_twice_is_a_no_op_and_training_works():
    module = MultiGroupConv(8, 8, 3, branches=[((3, 1), 1), (1, 2)], identity=True).train()
    x = torch.randn(4, 8, 6, 6, requires_grad=True)
    module(x).square().mean().backward()  # train mode: batch statistics in every branch
    assert all(p.grad is not None for p in module.parameters())
    randomize_(module).eval()
    with torch.no_grad():
        once = module.switch_to_deploy()(x)
        state = {k: v.clone() for k, v in module.state_dict().items()}
        twice = module.switch_to_deploy()(x)
    assert torch.equal(once, twice)
    assert all(torch.equal(state[k], v) for k, v in module.state_dict().items())
    assert isinstance(module, Reparameterizable)


def test_multigroup_branches_skips_groups_that_do_not_divide():
    assert multigroup_branches(8, 16, (2, 4)) == [(1, 2), (1, 4)]
    assert multigroup_branches(3, 32, (2, 4)) == []
    assert multigroup_branches(12, 6, (2, 4, 3)) == [(1, 2), (1, 3)]


@pytest.mark.parametrize('kwargs,match', [
    (dict(in_channels=8, out_channels=8, kernel_size=2), r'kernel_size=2: MultiGroupConv needs odd kernel sizes'),
    (dict(in_channels=8, out_channels=6, kernel_size=3, groups=4), r'groups=4 does not divide'),
    (dict(in_channels=8, out_channels=8, kernel_size=3, branches=[(5, 1)]),
     r'branch kernel 5x5 is not an odd size within the main 3x3'),
    (dict(in_channels=8, out_channels=8, kernel_size=3, groups=2, branches=[(1, 1)]),
     r'branch groups=1 must be a multiple of groups=2'),
    (dict(in_channels=8, out_channels=8, kernel_size=3, branches=[(1, 3)]), r'branch groups=3 must be'),
    (dict(in_channels=8, out_channels=16, kernel_size=3, identity=True), r'identity branch needs in_channels == '),
    (dict(in_channels=8, out_channels=8, kernel_size=3, stride=2, identity=True), r'identity branch needs'),
])
def test_module_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MultiGroupConv(**kwargs)
