"""Each reparameterizable block: train form vs fused form, what exists before and after, idempotency, and that a
module built fused loads the fused state dict."""
import pytest
import torch
from torch import nn

from helpers import randomize_, relative_error
from mmfastvit.models.layers import (AttentionBlock, ConvFFN, MobileOneBlock, PatchEmbed, RepCPE, RepMixer,
                                     RepMixerBlock, ReparamLargeKernelConv)
from mmfastvit.models.utils import Reparameterizable, reparameterize_model

CASES = {
    'mobileone_3x3_s1_identity': (lambda d=False: MobileOneBlock(16, 16, 3, deploy=d), 16),
    'mobileone_3x3_s2_dw': (lambda d=False: MobileOneBlock(16, 16, 3, stride=2, groups=16, deploy=d), 16),
    'mobileone_stem_3to16': (lambda d=False: MobileOneBlock(3, 16, 3, stride=2, deploy=d), 3),
    'mobileone_1x1': (lambda d=False: MobileOneBlock(16, 16, 1, deploy=d), 16),
    'mobileone_se_expand': (lambda d=False: MobileOneBlock(16, 32, 3, groups=16, use_se=True, deploy=d), 16),
    'mobileone_3_branches': (lambda d=False: MobileOneBlock(16, 16, 3, num_conv_branches=3, deploy=d), 16),
    'large_kernel': (lambda d=False: ReparamLargeKernelConv(16, 32, 7, 2, deploy=d), 16),
    'patch_embed': (lambda d=False: PatchEmbed(16, 32, deploy=d), 16),
    'repmixer': (lambda d=False: RepMixer(16, deploy=d), 16),
    'repmixer_no_layer_scale': (lambda d=False: RepMixer(16, layer_scale_init_value=None, deploy=d), 16),
    'repcpe': (lambda d=False: RepCPE(16, deploy=d), 16),
    'convffn': (lambda d=False: ConvFFN(16, 64, deploy=d), 16),
    'repmixer_block': (lambda d=False: RepMixerBlock(16, mlp_ratio=3, deploy=d), 16),
    'attention_block': (lambda d=False: AttentionBlock(64, deploy=d), 64),
    'attention_block_no_layer_scale': (lambda d=False: AttentionBlock(64, layer_scale_init_value=None, deploy=d),
                                       64),
}


def _has(module, cls):
    return any(isinstance(m, cls) for m in module.modules())


@pytest.mark.parametrize('name', list(CASES))
def test_fused_equals_train_form(name):
    build, in_ch = CASES[name]
    module = randomize_(build(), seed=1).eval()
    x = torch.randn(2, in_ch, 14, 14)
    with torch.no_grad():
        expected = module(x)
        fused = module.switch_to_deploy()
        actual = fused(x)
    assert fused is module
    assert relative_error(actual, expected) < 1e-5
    assert not _has(module, nn.BatchNorm2d), 'the full fused form keeps no BatchNorm'
    assert not any('gamma' in n for n, _ in module.named_parameters()), 'layer scales are folded'


@pytest.mark.parametrize('name', list(CASES))
def test_module_built_fused_loads_fused_state_dict(name):
    build, in_ch = CASES[name]
    source = randomize_(build(), seed=2).eval().switch_to_deploy()
    target = build(True).eval()
    assert all(m.deploy for m in target.modules() if isinstance(m, Reparameterizable))
    assert not _has(target, nn.BatchNorm2d)
    target.load_state_dict(source.state_dict(), strict=True)
    x = torch.randn(1, in_ch, 14, 14)
    with torch.no_grad():
        torch.testing.assert_close(target(x), source(x))


def test_switch_to_deploy_twice_is_a_no_op():
    block = randomize_(RepMixerBlock(16)).eval()
    x = torch.randn(1, 16, 8, 8)
    with torch.no_grad():
        once = block.switch_to_deploy()(x)
        state = {k: v.clone() for k, v in block.state_dict().items()}
        twice = block.switch_to_deploy()(x)
    assert torch.equal(once, twice)
    assert state.keys() == block.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in block.state_dict().items())


def test_reparameterize_alias_and_levels():
    block = randomize_(AttentionBlock(64)).eval()
    x = torch.randn(1, 64, 7, 7)
    with torch.no_grad():
        expected = block(x)
        block.reparameterize('reference')  # timm's name; nothing in an attention block fuses at this level
        assert isinstance(block.norm, nn.BatchNorm2d) and not block.deploy
        assert isinstance(block.mlp.conv.bn, nn.BatchNorm2d)
        reparameterize_model(block, 'full')
        assert block.deploy and isinstance(block.norm, nn.Identity) and block.token_mixer.qkv.bias is not None
        assert relative_error(block(x), expected) < 1e-5


def test_reference_level_keeps_what_the_references_keep():
    block = randomize_(RepMixerBlock(16)).eval()
    block.switch_to_deploy('reference')
    names = dict(block.named_parameters())
    assert 'token_mixer.reparam_conv.weight' in names
    assert 'mlp.conv.bn.weight' in names and 'layer_scale.gamma' in names
    assert not any(n.startswith('token_mixer.mixer') for n in names)


def test_branches_exist_before_and_vanish_after():
    block = MobileOneBlock(8, 8, 3, num_conv_branches=2)
    assert len(block.conv_kxk) == 2 and block.conv_scale is not None and block.identity is not None
    block.switch_to_deploy()
    for attr in ('conv_kxk', 'conv_scale', 'identity'):
        assert not hasattr(block, attr)
    assert block.reparam_conv.kernel_size == (3, 3) and block.reparam_conv.bias is not None


def test_invalid_arguments_are_named():
    with pytest.raises(ValueError, match='kernel_size=4'):
        MobileOneBlock(8, 8, 4)
    with pytest.raises(ValueError, match='deploy=.yes. is not one of'):
        MobileOneBlock(8, 8, 3, deploy='yes')
    with pytest.raises(ValueError, match='dim=48 is not a multiple of head_dim=32'):
        AttentionBlock(48)
    with pytest.raises(ValueError, match='needs a fused level'):
        reparameterize_model(RepCPE(8), False)


def test_train_mode_forward_and_backward_in_train_form():
    block = AttentionBlock(64, drop_path=0.5).train()
    x = torch.randn(2, 64, 7, 7, requires_grad=True)
    block(x).sum().backward()
    assert x.grad is not None and block.layer_scale_1.gamma.grad is not None
