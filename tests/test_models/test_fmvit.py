"""The FMViT backbone: shapes, fusion for every variant, deploy checkpoints, the OpenMMLab backbone API, errors, the
attention's formula, and parameters / FLOPs against the paper's Table 2."""
import pytest
import torch
from mmengine.registry import MODELS
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from helpers import num_params, randomize_, relative_error
from mmfastvit.analysis import flop_analyzer
from mmfastvit.models import FMViT, FMViTClassifier
from mmfastvit.models.backbones.fmvit import CFB, FMB, RLMHSA
from mmfastvit.models.layers import DropPath, MultiGroupConv

VARIANTS = list(FMViT.arch_zoo)
STAGE_CHANNELS = {'t': (32, 80, 160, 320), 's': (48, 160, 320, 640), 'm': (96, 160, 480, 960),
                  'b': (96, 320, 480, 1280), 'l': (96, 320, 480, 1280)}
# FMViT paper's Table 2 (docs/fmvit.md): (params M, GFLOPs) of the 1000-class classifier at 224x224
PAPER = {'t': (2.0, 0.3), 's': (6.4, 0.8), 'm': (12.8, 2.0), 'b': (24.3, 4.2), 'l': (35.3, 7.1)}
# Ours, fused (the form the paper deploys and counts); pinned so the docstring's figures stay true
FUSED_PARAMS = {'t': 1_912_504, 's': 6_198_824, 'm': 12_962_376, 'b': 23_941_992, 'l': 34_571_816}


def _is_train_time_part(module):
    return isinstance(module, _BatchNorm) or (isinstance(module, MultiGroupConv) and not module.deploy)


@pytest.mark.parametrize('arch', VARIANTS)
def test_output_shapes_and_strides(arch):
    model = FMViT(arch, out_indices=(0, 1, 2, 3)).eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 64, 96))
    assert isinstance(outs, tuple) and len(outs) == 4
    for out, channels, stride in zip(outs, STAGE_CHANNELS[arch], (4, 8, 16, 32)):
        assert out.shape == (1, channels, 64 // stride, 96 // stride)
    assert model.out_channels == STAGE_CHANNELS[arch]


def test_odd_input_sizes_round_up_and_out_indices_select():
    model = FMViT('t', out_indices=(-1, 1)).eval()
    assert model.out_indices == (1, 3) and model.out_channels == (80, 320)
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 65, 33))
    assert [tuple(o.shape[-2:]) for o in outs] == [(9, 5), (3, 2)]  # ceil(65 / 8), ceil(33 / 8); / 32
    assert FMViT('t', out_indices=2).out_channels == (160,)


@pytest.mark.parametrize('arch', VARIANTS)
def test_fused_equals_train_form_and_loads_into_a_model_built_fused(arch):
    model = randomize_(FMViT(arch, out_indices=(0, 1, 2, 3)), seed=3).eval()
    assert model.fused_level == 'train' and not model.deploy
    assert any(isinstance(m, MultiGroupConv) and len(m.branches) for m in model.modules())
    x = torch.randn(1, 3, 64, 64)  # stage 4 sees 2x2 = 4 tokens
    with torch.no_grad():
        expected = model(x)
        fused = model.switch_to_deploy()
        actual = fused(x)
    assert fused is model and model.fused_level == 'full' and model.deploy
    assert relative_error(actual, expected) < 1e-5
    assert not any(_is_train_time_part(m) for m in model.modules()), 'no BatchNorm and no branch survives fusion'
    assert all(list(dict(m.named_children())) == ['reparam_conv']
               for m in model.modules() if isinstance(m, MultiGroupConv))

    built = FMViT(arch, out_indices=(0, 1, 2, 3), deploy=True).eval()
    assert built.fused_level == 'full' and not any(_is_train_time_part(m) for m in built.modules())
    built.load_state_dict(model.state_dict(), strict=True)
    with torch.no_grad():
        assert relative_error(built(x), expected) < 1e-5


def test_switch_to_deploy_twice_is_a_no_op(tmp_path, monkeypatch):
    # bit-equal outputs need one kernel: under 'auto' the first passes try each CPU kernel in turn
    monkeypatch.setenv('MMFASTVIT_POINTWISE_KERNEL', 'conv')
    model = randomize_(FMViT('s', out_indices=(0, 3))).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        first = model.switch_to_deploy()(x)
        state = {k: v.clone() for k, v in model.state_dict().items()}
        second = model.switch_to_deploy()(x)
        model.reparameterize()  # timm's name
        third = model(x)
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    for a, b, c in zip(first, second, third):
        assert torch.equal(a, b) and torch.equal(a, c)
    path = tmp_path / 'fused.pth'
    torch.save(model.state_dict(), path)
    built = FMViT('s', out_indices=(0, 3), deploy=True).eval()
    built.load_state_dict(torch.load(path, weights_only=True), strict=True)
    built.switch_to_deploy()  # a no-op on a model built fused
    with torch.no_grad():
        for a, b in zip(built(x), first):
            torch.testing.assert_close(a, b)


def test_classifier_fuses_and_counts_like_the_backbone():
    model = randomize_(FMViTClassifier('t', num_classes=10), seed=1).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        assert expected.shape == (2, 10)
        assert relative_error(model.reparameterize()(x), expected) < 1e-5
    assert num_params(model) == num_params(model.backbone) + 320 * 10 + 10


@pytest.mark.parametrize('arch', VARIANTS)
def test_params_and_flops_at_224_within_15_percent_of_table_2(arch):
    model = FMViTClassifier(arch, deploy=True).eval()
    params = num_params(model)
    gflops = flop_analyzer(model, (torch.randn(1, 3, 224, 224),)).total() / 1e9
    paper_params, paper_gflops = PAPER[arch]
    assert params == FUSED_PARAMS[arch]
    assert abs(params / 1e6 / paper_params - 1) < 0.15, f'{params / 1e6:.2f}M vs {paper_params}M'
    assert abs(gflops / paper_gflops - 1) < 0.15, f'{gflops:.3f}G vs {paper_gflops}G'
    assert num_params(FMViTClassifier(arch)) > params  # the train form carries the branches and BatchNorms


def test_rlmhsa_is_softmax_of_x_times_xw_times_xw_per_head():
    attn = randomize_(RLMHSA(64, head_dim=32), seed=2).eval().double().reparameterize()
    x = torch.randn(2, 64, 3, 5, dtype=torch.float64)
    with torch.no_grad():
        out = attn(x)
        xw = attn.kv.reparam_conv(x)
    for head in range(2):
        q = x[:, 32 * head:32 * (head + 1)].flatten(2).transpose(1, 2)  # B, N, d
        kv = xw[:, 32 * head:32 * (head + 1)].flatten(2).transpose(1, 2)
        expected = torch.softmax(q @ kv.transpose(1, 2) / 32 ** 0.5, dim=-1) @ kv
        got = out[:, 32 * head:32 * (head + 1)].flatten(2).transpose(1, 2)
        torch.testing.assert_close(got, expected)
    with pytest.raises(ValueError, match='dim=48 is not a multiple of head_dim=32'):
        RLMHSA(48)


def test_fmb_concatenates_five_parts_and_stem_has_the_papers_branches():
    fmb = FMB(32).eval()
    x = torch.randn(1, 32, 4, 4)
    with torch.no_grad():
        out = fmb(x)
    assert out.shape == (1, 160, 4, 4) and fmb.out_channels == 160
    assert len(fmb.cfbs) == 3 and isinstance(fmb.attn, RLMHSA)
    model = FMViT('t')
    stem_conv = model.stem[0]
    assert stem_conv.stride == (2, 2) and stem_conv.branch_specs == (((3, 1), 1), ((1, 3), 1))
    assert model.stem[2].groups == 32 and model.stem[2].stride == (2, 2)
    assert isinstance(model.stages[3].layers[-1], FMB)
    cfb = next(m for m in model.modules() if isinstance(m, CFB))
    assert cfb.mlp.fc1.out_channels == 2 * cfb.mlp.fc1.in_channels  # gMLP ratio 2
    assert cfb.mlp.fc1.branch_specs == (((1, 1), 2), ((1, 1), 4))
    assert not any(isinstance(m, (nn.GELU, nn.LayerNorm)) for m in model.modules())


def test_frozen_stages_and_norm_eval():
    model = FMViT('t', frozen_stages=2).train()
    for module in (model.stem, model.stages[0], model.stages[1]):
        assert not module.training and all(not p.requires_grad for p in module.parameters())
    for module in model.stages[2:]:
        assert module.training and all(p.requires_grad for p in module.parameters())
    model.switch_to_deploy()  # the fused parameters of frozen stages stay frozen
    assert all(not p.requires_grad for p in model.stages[1].parameters())
    assert all(p.requires_grad for p in model.stages[3].parameters())
    model = FMViT('t', norm_eval=True).train()
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert norms and all(not m.training for m in norms)
    model.eval().train()
    assert all(not m.training for m in norms)
    before = FMViT('t', frozen_stages=0).train()
    mean = before.stem[0].main.bn.running_mean.clone()
    before(torch.randn(2, 3, 32, 32))
    assert torch.equal(before.stem[0].main.bn.running_mean, mean)


def test_drop_path_rises_linearly_and_with_cp_gives_same_gradients():
    model = FMViT('t', drop_path_rate=0.1)
    rates = {m: m.drop_path.drop_prob if isinstance(m.drop_path, DropPath) else 0.0
             for m in model.modules() if isinstance(m, (CFB, FMB))}
    n = sum(sum(d) for d in model.arch_settings['depths']) + 4  # CFBs, then the FMB's 3 CFBs and itself
    torch.testing.assert_close(torch.tensor(sorted(rates.values())), torch.linspace(0, 0.1, n))
    fmb = model.stages[3].layers[-1]
    assert rates[fmb] == pytest.approx(0.1) and rates[fmb.cfbs[2]] < rates[fmb]
    torch.manual_seed(0)
    plain = FMViT('t', out_indices=(2, 3)).train()
    ckpt = FMViT('t', out_indices=(2, 3), with_cp=True).train()
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 32, 32)
    for model in (plain, ckpt):
        sum(o.sum() for o in model(x)).backward()
    for (name, p1), (_, p2) in zip(plain.named_parameters(), ckpt.named_parameters()):
        torch.testing.assert_close(p1.grad, p2.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_registry_and_pretrained_init_cfg(tmp_path):
    model = MODELS.build(dict(type='mmfastvit.FMViT', arch='t', out_indices=(1, 3)))
    assert isinstance(model, FMViT) and model.out_channels == (80, 320)
    source = randomize_(FMViT('t'))
    path = tmp_path / 'classifier.pth'
    state = {f'backbone.{k}': v for k, v in source.state_dict().items()}
    state.update({'head.fc.weight': torch.zeros(1000, 320), 'head.fc.bias': torch.zeros(1000)})
    torch.save({'state_dict': state, 'meta': {}}, path)
    model = FMViT('t', out_indices=(0, 3), init_cfg=dict(type='Pretrained', checkpoint=str(path), prefix='backbone.'))
    model.init_weights()
    loaded = model.state_dict()
    for key, value in source.state_dict().items():
        assert torch.equal(loaded[key], value), key


def test_arch_as_dict():
    arch = dict(stem_channels=16, fm_channels=32, channels=((16,), (16, 32), (32, 64), (64, 160)),
                depths=((1,), (0, 1), (1, 1), (1,)))
    model = FMViT(arch, out_indices=(0, 1, 2, 3)).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [16, 32, 64, 160]


def test_unknown_arch_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"arch \"xl\" is not one of \['t', 's', 'm', 'b', 'l'\]"):
        FMViT('xl')
    with pytest.raises(TypeError, match='arch must be a str or a dict, not int'):
        FMViT(3)


@pytest.mark.parametrize('arch,match', [
    (dict(channels=((16,),) * 4, depths=((1,),) * 4, fm_channels=32), r"arch dict lacks \['stem_channels'\]"),
    (dict(stem_channels=16, channels=((16,),) * 3, depths=((1,),) * 3, fm_channels=32),
     r'arch\["channels"\] needs 4 stages'),
    (dict(stem_channels=16, channels=((16,), (16,), (16,), (16, 160)), depths=((1, 1), (1,), (1,), (1,)),
          fm_channels=32), r'arch stage 1: depths \(1, 1\) needs one entry per width of \(16,\)'),
    (dict(stem_channels=16, channels=((16,), (16,), (16,), (16, 160)), depths=((1,), (1,), (1,), (1, 1)),
          fm_channels=32), r'stage 4: .* but the last \(the FMB output\)'),
    (dict(stem_channels=16, channels=((16,), (16,), (16,), (16, 128)), depths=((1,), (1,), (1,), (1,)),
          fm_channels=32), r'stage 4 ends at 128 channels, but the FMB outputs 5 x fm_channels = 160'),
    (dict(stem_channels=16, channels=((16,), (16,), (16,), (16, 240)), depths=((1,), (1,), (1,), (1,)),
          fm_channels=48), r'fm_channels=48 is not a multiple of head_dim=32'),
    (dict(stem_channels=16, channels=((16,), (16,), (16,), (16, 160)), depths=((-1,), (1,), (1,), (1,)),
          fm_channels=32), r'negative count'),
])
def test_bad_arch_dicts(arch, match):
    with pytest.raises(ValueError, match=match):
        FMViT(arch)


@pytest.mark.parametrize('bad,match', [
    ((4,), r'out_indices entry 4 is not in \[-4, 3\]'),
    ((-5,), r'out_indices entry -5 is not in \[-4, 3\]'),
    ((1, -3), r'repeats a stage'),
    ((), r'non-empty sequence'),
    (('1',), r"out_indices entry '1'"),
])
def test_bad_out_indices(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        FMViT('t', out_indices=bad)


def test_other_bad_arguments():
    with pytest.raises(ValueError, match=r"deploy='yes' is not one of False, True"):
        FMViT('t', deploy='yes')
    with pytest.raises(ValueError, match=r'frozen_stages=5 is not in \[-1, 4\]'):
        FMViT('t', frozen_stages=5)


@pytest.mark.parametrize('shape, match', [
    ((1, 3, 31, 64), 'FMViT input 31x64 is smaller than 32x32'),
    ((2, 3, 64, 16), 'input 64x16 is smaller than 32x32'),
    ((1, 1, 64, 64), r'FMViT expects images of shape \(N, 3, H, W\), got a tensor of shape \(1, 1, 64, 64\)'),
    ((3, 64, 64), r'got a tensor of shape \(3, 64, 64\)'),
])
def test_bad_input_is_named(shape, match):
    with pytest.raises(ValueError, match=match):
        FMViT('t').eval()(torch.rand(*shape))


def test_smallest_input_and_other_channel_counts():
    with torch.no_grad():
        assert FMViT('t').eval()(torch.rand(1, 3, 32, 32))[0].shape == (1, 320, 1, 1)
        assert FMViT('t', in_channels=1).eval()(torch.rand(1, 1, 32, 48))[0].shape == (1, 320, 1, 2)
