"""The export rewrites are exact: each part equals what it replaces, and the export form of every variant equals the
fully fused model (FastViT and FMViT); they refuse what they were not written for."""
import re

import pytest
import torch
from torch import nn

from helpers import randomize_, relative_error
from mmfastvit.deploy.export_form import (REWRITES, ChannelFirstAttention, ChannelFirstRLMHSA, ExportClassifier,
                                          SplitGroupedConv, applied_rewrites, to_export_form)
from mmfastvit.deploy.loading import from_variant
from mmfastvit.models import FastViT, FastViTClassifier, FMViT
from mmfastvit.models.backbones.fmvit import RLMHSA
from mmfastvit.models.layers.attention import Attention
from mmfastvit.models.layers.embedding import PatchEmbed


@pytest.mark.parametrize('multiplier,kernel,stride', [(2, 7, 2), (2, 3, 1), (3, 5, 1)])
def test_split_grouped_conv_is_a_permutation_of_the_conv(multiplier, kernel, stride):
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 8 * multiplier, kernel, stride, kernel // 2, groups=8).eval()
    split = SplitGroupedConv(conv).eval()
    x = torch.randn(2, 8, 12, 12)
    with torch.no_grad():
        expected, actual = conv(x), split(x)
    assert len(split.convs) == multiplier and all(c.groups == 8 == c.out_channels for c in split.convs)
    assert sorted(split.perm.tolist()) == list(range(8 * multiplier))
    torch.testing.assert_close(actual, expected[:, split.perm], rtol=0, atol=1e-6)
    # output channel j * C + g is channel g * m + j of the original
    assert split.perm[1 * 8 + 3].item() == 3 * multiplier + 1


def test_split_grouped_conv_refuses_other_convs():
    with pytest.raises(ValueError, match='groups == in_channels'):
        SplitGroupedConv(nn.Conv2d(8, 16, 3, groups=2))


@pytest.mark.parametrize('qkv_bias', [False, True])
def test_channel_first_attention_equals_attention(qkv_bias):
    torch.manual_seed(0)
    attn = Attention(64, qkv_bias=qkv_bias).eval()
    x = torch.randn(2, 64, 5, 6)
    with torch.no_grad():
        expected = attn(x)
        actual = ChannelFirstAttention(attn).eval()(x)
    assert relative_error(actual, expected) < 1e-5


def test_patch_embed_split_keeps_outputs():
    torch.manual_seed(0)
    embed = randomize_(PatchEmbed(16, 32)).eval()
    x = torch.randn(1, 16, 16, 16)
    with torch.no_grad():
        expected = embed(x)
    embed.reparameterize()
    form = to_export_form(nn.Sequential(embed), ('grouped_conv',))
    assert isinstance(form[0].proj[0], SplitGroupedConv)
    with torch.no_grad():
        assert relative_error(form(x), expected) < 1e-5


@pytest.mark.parametrize('variant', ['t8', 'sa12', 'ma36'])  # every variant: test_onnx_export (export() checks it)
def test_export_form_equals_full_fusion(variant):
    model = randomize_(FastViTClassifier(variant), seed=2).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
    model.reparameterize('full')
    form = to_export_form(ExportClassifier(model.backbone, model.head.fc))
    with torch.no_grad():
        actual = form(x)
    assert relative_error(actual, expected) < 1e-5
    modules = list(form.modules())
    assert not any(isinstance(m, Attention) for m in modules)
    splits = [m for m in modules if isinstance(m, SplitGroupedConv)]
    assert len(splits) == 4  # three patch embeddings and final_conv
    grouped = [m for m in modules if isinstance(m, nn.Conv2d) and 1 < m.groups < m.out_channels]
    assert not grouped, 'a grouped conv with channel multiplier > 1 is left'
    # the copy: the fused model itself is untouched
    assert any(isinstance(m, Attention) for m in model.modules()) == (variant.startswith(('sa', 'ma')))


def test_dense_backbone_export_form_keeps_every_output():
    backbone = randomize_(FastViT('sa12', out_indices=(0, 1, 2, 3))).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = backbone(x)
    backbone.reparameterize()
    with torch.no_grad():
        actual = to_export_form(backbone)(x)
    assert len(actual) == 4
    assert relative_error(actual, expected) < 1e-5


def test_refuses_a_model_that_is_not_fully_fused():
    model = FastViTClassifier('t8').eval()
    with pytest.raises(ValueError, match='deepest fused model.*"train"'):
        to_export_form(ExportClassifier(model.backbone, model.head.fc))
    model.reparameterize('reference')
    with pytest.raises(ValueError, match='"reference"'):
        to_export_form(model.backbone)


def test_refuses_unknown_rewrites():
    model = FastViT('t8', deploy=True).eval()
    with pytest.raises(ValueError, match=re.escape(f"unknown rewrites ['fp8']; choose from {list(REWRITES)}")):
        to_export_form(model, ('fp8',))


def test_export_classifier_needs_final_conv_output():
    with pytest.raises(ValueError, match='out_indices=\\(4,\\)'):
        ExportClassifier(FastViT('t8', out_indices=(3,)), nn.Linear(384, 10))


@pytest.mark.parametrize('shape', [(2, 3), (7, 7), (4, 6)])
def test_channel_first_rlmhsa_equals_rlmhsa(shape):
    torch.manual_seed(0)
    attn = randomize_(RLMHSA(64)).eval().reparameterize()
    x = torch.randn(2, 64, *shape)
    with torch.no_grad():
        expected = attn(x)
        actual = ChannelFirstRLMHSA(attn).eval()(x)
    assert relative_error(actual, expected) < 1e-5


@pytest.mark.parametrize('variant', ['fmvit_t', 'fmvit_l'])  # every variant: test_onnx_export (export() checks it)
def test_fmvit_export_form_equals_full_fusion(variant):
    model = from_variant(variant).model  # seeded statistics, calibrated so that activations stay O(1)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
    model.backbone.reparameterize()
    form = to_export_form(model)
    assert applied_rewrites(form) == dict(attention=1, grouped_conv=0)  # the FMB's RLMHSA; no grouped conv to split
    with torch.no_grad():
        assert relative_error(form(x), expected) < 1e-5
    assert not any(isinstance(m, (nn.BatchNorm2d, RLMHSA)) for m in form.modules())
    assert any(isinstance(m, RLMHSA) for m in model.modules()), 'the fused model itself is untouched'


def test_applied_rewrites_counts_fastvit_rewrites():
    model = FastViTClassifier('sa12', deploy=True).eval()
    form = to_export_form(ExportClassifier(model.backbone, model.head.fc))
    assert applied_rewrites(form) == dict(attention=2, grouped_conv=4)  # SA12: two attention blocks in stage 4
    assert applied_rewrites(to_export_form(ExportClassifier(model.backbone, model.head.fc), ())) == dict(
        attention=0, grouped_conv=0)


def test_export_classifier_takes_fmvit_last_stage_only():
    message = 'needs out_indices=(3,) for FMViT (the output its classifier pools), got (2,)'
    with pytest.raises(ValueError, match=re.escape(message)):
        ExportClassifier(FMViT('t', out_indices=(2,)), nn.Linear(160, 10))
    with pytest.raises(TypeError, match='takes a FastViT or an FMViT backbone, not Identity'):
        ExportClassifier(nn.Identity(), nn.Linear(4, 2))
    ExportClassifier(FMViT('t'), nn.Linear(320, 10))  # out_indices=(3,) is FMViT's default


def test_refuses_an_unfused_fmvit():
    with pytest.raises(ValueError, match='this FMViT is at level "train"'):
        to_export_form(FMViT('t').eval())
