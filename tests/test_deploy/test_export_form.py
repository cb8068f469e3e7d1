"""The export rewrites are exact: each part equals what it replaces, and the export form of every variant equals the
fully fused model; they refuse what they were not written for."""
import re

import pytest
import torch
from torch import nn

from helpers import randomize_, relative_error
from mmfastvit.deploy.export_form import (REWRITES, ChannelFirstAttention, ExportClassifier, SplitGroupedConv,
                                          to_export_form)
from mmfastvit.models import FastViT, FastViTClassifier
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
