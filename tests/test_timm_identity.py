"""Numerical identity with the reference implementation: with the same weights, mmpretrain's ImageClassifier built
on mmfastvit's FastViT gives timm's fastvit_* logits, unfused and fused, for all seven variants."""
import pytest
import torch

from helpers import randomize_
from mmfastvit.convert import timm_to_mmfastvit
from mmfastvit.models import FastViT

timm = pytest.importorskip('timm')
mmpretrain = pytest.importorskip('mmpretrain')


def build_classifier(arch, deploy=False):
    from mmpretrain.registry import MODELS
    cfg = dict(
        type='mmpretrain.ImageClassifier',
        backbone=dict(type='mmfastvit.FastViT', arch=arch, out_indices=(4,), deploy=deploy),
        neck=dict(type='mmpretrain.GlobalAveragePooling'),
        head=dict(type='mmpretrain.LinearClsHead', num_classes=1000,
                  in_channels=2 * FastViT.arch_zoo[arch]['embed_dims'][-1]),
    )
    return MODELS.build(cfg).eval()


@pytest.mark.parametrize('arch', list(FastViT.arch_zoo))
def test_logits_equal_timm_unfused_and_fused(arch):
    from timm.utils import reparameterize_model as timm_reparameterize
    torch.manual_seed(0)
    reference = randomize_(timm.create_model(f'fastvit_{arch}'), seed=5).eval()
    ours = build_classifier(arch)
    missing, unexpected = ours.load_state_dict(timm_to_mmfastvit(reference.state_dict()), strict=False)
    # the data preprocessor has no parameters; everything else must be covered
    assert not missing and not unexpected, (missing, unexpected)
    x = torch.randn(2, 3, 256, 256)
    with torch.no_grad():
        expected = reference(x)
        unfused = ours(x, mode='tensor')
        assert (unfused - expected).abs().max().item() < 1e-4

        timm_fused = timm_reparameterize(reference)(x)
        ours.backbone.switch_to_deploy('reference')
        ref_fused = ours(x, mode='tensor')
        ours.backbone.switch_to_deploy('full')
        full_fused = ours(x, mode='tensor')
    assert (ref_fused - timm_fused).abs().max().item() < 1e-4
    assert (full_fused - timm_fused).abs().max().item() < 1e-4
    assert (full_fused - expected).abs().max().item() < 1e-4


@pytest.mark.parametrize('arch', ['t8', 'sa12'])
def test_timm_fused_checkpoint_loads_into_a_reference_deploy_model(arch):
    """A state dict of timm's reparameterized model maps onto ``deploy='reference'`` with the same logits."""
    from timm.utils import reparameterize_model as timm_reparameterize
    reference = timm_reparameterize(randomize_(timm.create_model(f'fastvit_{arch}'), seed=6).eval())
    ours = build_classifier(arch, deploy='reference')
    missing, unexpected = ours.load_state_dict(timm_to_mmfastvit(reference.state_dict()), strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        assert (ours(x, mode='tensor') - reference(x)).abs().max().item() < 1e-4


def test_unknown_keys_are_refused_with_their_names():
    state = timm.create_model('fastvit_t8').state_dict()
    state['dist_head.weight'] = torch.zeros(1)
    with pytest.raises(KeyError, match=r'timm state dict: 1 key\(s\) are not FastViT weights this table knows: '
                                       r'dist_head.weight'):
        timm_to_mmfastvit(state)
