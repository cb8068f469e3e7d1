"""The FastViT backbone: shapes, fusion for every variant, deploy checkpoints, the OpenMMLab backbone API, errors,
and parameter counts against the reference."""
import pytest
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from helpers import num_params, randomize_, relative_error
from mmfastvit.models import FastViT
from mmfastvit.models.layers import DropPath, LayerScale2d

VARIANTS = list(FastViT.arch_zoo)
STAGE_CHANNELS = {'t8': (48, 96, 192, 384), 'ma36': (76, 152, 304, 608)}
# Parameters of Apple's released classifiers (1000 classes), unfused and as Apple / timm fuse them.
REFERENCE_PARAMS = {
    't8': (4_026_232, 3_996_040), 't12': (7_553_704, 7_508_840), 's12': (9_473_576, 9_428_712),
    'sa12': (11_580_968, 11_545_320), 'sa24': (21_554_216, 21_501_288), 'sa36': (31_527_464, 31_457_256),
    'ma36': (44_068_004, 43_984_632),
}


def _classifier_params(backbone: FastViT) -> int:
    """Backbone (with final_conv) plus the 1000-class linear head of the paper's classifier."""
    return num_params(backbone) + backbone.final_channels * 1000 + 1000


@pytest.mark.parametrize('arch', VARIANTS)
@pytest.mark.parametrize('size', [(224, 224), (256, 256), (320, 448)])
def test_output_shapes(arch, size):
    model = FastViT(arch, out_indices=(0, 1, 2, 3, 4)).eval()
    dims = STAGE_CHANNELS.get(arch, (64, 128, 256, 512))
    with torch.no_grad():
        outs = model(torch.rand(1, 3, *size))
    assert isinstance(outs, tuple) and len(outs) == 5
    for i, (out, stride) in enumerate(zip(outs[:4], (4, 8, 16, 32))):
        assert out.shape == (1, dims[i], size[0] // stride, size[1] // stride)
    assert outs[4].shape == (1, 2 * dims[3], size[0] // 32, size[1] // 32)
    assert model.out_channels == (*dims, 2 * dims[3])


@pytest.mark.parametrize('arch', VARIANTS)
def test_fused_forms_equal_train_form(arch):
    model = randomize_(FastViT(arch, out_indices=(0, 1, 2, 3, 4)), seed=3).eval()
    x = torch.randn(2, 3, 256, 256)
    with torch.no_grad():
        expected = model(x)
        assert model.fused_level == 'train'
        reference = model.switch_to_deploy('reference')(x)
        assert model.fused_level == 'reference'
        assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules()), 'reference form keeps ConvFFN BN'
        full = model.switch_to_deploy()(x)
        assert model.fused_level == 'full'
    assert relative_error(reference, expected) < 1e-5
    assert relative_error(full, expected) < 1e-5
    assert not any(isinstance(m, (nn.BatchNorm2d, LayerScale2d)) for m in model.modules())


@pytest.mark.parametrize('arch', VARIANTS)
def test_parameter_counts_match_reference(arch):
    unfused, reference_fused = REFERENCE_PARAMS[arch]
    model = FastViT(arch, out_indices=(4,))
    assert _classifier_params(model) == unfused
    model.switch_to_deploy('reference')
    assert _classifier_params(model) == reference_fused
    model.switch_to_deploy('full')
    assert _classifier_params(model) < reference_fused
    assert _classifier_params(FastViT(arch, out_indices=(4,), deploy=True)) == _classifier_params(model)
    assert _classifier_params(FastViT(arch, out_indices=(4,), deploy='reference')) == reference_fused


def test_switch_to_deploy_twice_and_on_a_model_built_fused(monkeypatch):
    # bit-equal outputs need one kernel: under 'auto' the first passes try each CPU kernel in turn
    monkeypatch.setenv('MMFASTVIT_POINTWISE_KERNEL', 'conv')
    model = randomize_(FastViT('sa12', out_indices=(0, 3))).eval()
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        first = model.switch_to_deploy()(x)
        keys = list(model.state_dict())
        second = model.switch_to_deploy()(x)
        model.reparameterize()  # timm's name
        third = model(x)
    assert list(model.state_dict()) == keys
    for a, b, c in zip(first, second, third):
        assert torch.equal(a, b) and torch.equal(a, c)
    stage = randomize_(FastViT('sa12').stages[3]).eval()  # a single stage fuses on its own too
    y = torch.randn(1, 256, 16, 16)
    with torch.no_grad():
        expected = stage(y)
        assert relative_error(stage.switch_to_deploy()(y), expected) < 1e-5
        assert relative_error(stage.reparameterize()(y), expected) < 1e-5
    built = FastViT('sa12', deploy=True).eval()
    built.switch_to_deploy()
    assert built.deploy and built.fused_level == 'full'
    assert not FastViT('t8').deploy
    assert FastViT('t8', deploy='reference').fused_level == 'reference'


@pytest.mark.parametrize('level', ['full', 'reference'])
def test_fused_checkpoint_round_trip(tmp_path, level):
    model = randomize_(FastViT('sa12', out_indices=(1, 3, 4))).eval()
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        expected = model(x)
    model.switch_to_deploy(level)
    path = tmp_path / 'fused.pth'
    torch.save(model.state_dict(), path)
    deployed = FastViT('sa12', out_indices=(1, 3, 4), deploy=True if level == 'full' else level).eval()
    deployed.load_state_dict(torch.load(path, weights_only=True), strict=True)
    with torch.no_grad():
        assert relative_error(deployed(x), expected) < 1e-5


def test_frozen_stages_and_norm_eval():
    model = FastViT('t8', frozen_stages=2, norm_eval=False).train()
    frozen = [model.stem, model.stages[0], model.stages[1]]
    for module in frozen:
        assert not module.training
        assert all(not p.requires_grad for p in module.parameters())
    for module in model.stages[2:]:
        assert module.training and all(p.requires_grad for p in module.parameters())
    model.switch_to_deploy()  # new fused parameters of frozen stages stay frozen
    assert all(not p.requires_grad for p in model.stages[1].parameters())
    assert all(p.requires_grad for p in model.stages[3].parameters())

    model = FastViT('t8', frozen_stages=0).train()
    assert not model.stem.training and model.stages[0].training
    assert FastViT('t8', frozen_stages=-1).train().stem.training

    model = FastViT('sa12', norm_eval=True).train()
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert norms and all(not m.training for m in norms)
    assert model.stages[3].blocks[0].token_mixer.training
    model.eval().train()  # re-entering train mode keeps the norms in eval
    assert all(not m.training for m in norms)


def test_frozen_stem_statistics_do_not_move_in_training():
    model = FastViT('t8', frozen_stages=1).train()
    before = model.stem[0].conv_kxk[0].bn.running_mean.clone()
    model(torch.randn(2, 3, 64, 64))
    assert torch.equal(model.stem[0].conv_kxk[0].bn.running_mean, before)


def test_with_cp_gives_same_gradients():
    torch.manual_seed(0)
    plain = FastViT('sa12', out_indices=(2, 3), drop_path_rate=0.0).train()
    ckpt = FastViT('sa12', out_indices=(2, 3), with_cp=True).train()
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 64)
    for model in (plain, ckpt):
        sum(o.sum() for o in model(x)).backward()
    for (name, p1), (_, p2) in zip(plain.named_parameters(), ckpt.named_parameters()):
        torch.testing.assert_close(p1.grad, p2.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_drop_path_rises_linearly_over_all_blocks():
    model = FastViT('sa12', drop_path_rate=0.1)
    rates = [m.drop_prob if isinstance(m, DropPath) else 0.0
             for stage in model.stages for m in (b.drop_path for b in stage.blocks)]
    assert len(rates) == 12
    torch.testing.assert_close(torch.tensor(rates), torch.linspace(0, 0.1, 12))


def test_layer_scale_defaults_per_arch_and_override():
    def first_gamma(model):
        return model.stages[0].blocks[0].layer_scale.gamma.flatten()[0].item()
    assert first_gamma(FastViT('sa24')) == pytest.approx(1e-5)
    assert first_gamma(FastViT('sa36')) == pytest.approx(1e-6)
    assert first_gamma(FastViT('ma36')) == pytest.approx(1e-6)
    assert first_gamma(FastViT('t8', layer_scale_init_value=1e-3)) == pytest.approx(1e-3)


def test_arch_as_dict():
    arch = dict(layers=(1, 1, 1, 1), embed_dims=(32, 64, 128, 256), mlp_ratios=2,
                token_mixers=('repmixer', 'repmixer', 'attention', 'attention'), pos_embs=(False, True, True, False))
    model = FastViT(arch, out_indices=(0, 1, 2, 3)).eval()
    outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [32, 64, 128, 256]
    assert isinstance(model.stages[1].pos_emb, nn.Module) and model.stages[1].pos_emb.__class__.__name__ == 'RepCPE'
    with pytest.raises(ValueError, match='must be a multiple of the previous one.*96 is not of 64'):
        FastViT(dict(arch, embed_dims=(32, 64, 96, 192)))


def test_pretrained_init_cfg_with_prefix(tmp_path):
    source = randomize_(FastViT('t8', out_indices=(4,)))
    path = tmp_path / 'classifier.pth'
    state = {f'backbone.{k}': v for k, v in source.state_dict().items()}
    state.update({'head.fc.weight': torch.zeros(1000, 768), 'head.fc.bias': torch.zeros(1000)})
    torch.save({'state_dict': state, 'meta': {}}, path)
    model = FastViT('t8', out_indices=(0, 1, 2, 3, 4),
                    init_cfg=dict(type='Pretrained', checkpoint=str(path), prefix='backbone.'))
    model.init_weights()
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_default_init_is_truncated_normal_on_linear_layers():
    model = FastViT('sa12')
    model.init_weights()
    attention = model.stages[3].blocks[0].token_mixer
    # 786k samples: std 0.02 to well within 5% (PyTorch's default init would give 0.0255), biases zeroed
    assert 0.019 < attention.qkv.weight.std().item() < 0.021
    assert attention.proj.bias.abs().max() == 0


def test_unknown_arch_names_the_valid_ones():
    valid = r"\['t8', 't12', 's12', 'sa12', 'sa24', 'sa36', 'ma36'\]"
    with pytest.raises(ValueError, match=r'arch "t10" is not one of ' + valid):
        FastViT('t10')


@pytest.mark.parametrize('bad,match', [
    ((5,), r'out_indices entry 5 is not in \[-4, 4\]'),
    ((-5,), r'out_indices entry -5 is not in \[-4, 4\]'),
    ((1, -3), r'repeats a stage'),
    ((), r'non-empty sequence'),
    (('1',), r"out_indices entry '1'"),
])
def test_bad_out_indices(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        FastViT('t8', out_indices=bad)


def test_other_bad_arguments():
    with pytest.raises(ValueError, match=r"deploy='yes' is not one of False, True, \['full', 'reference', 'train'\]"):
        FastViT('t8', deploy='yes')
    with pytest.raises(ValueError, match=r'frozen_stages=5 is not in \[-1, 4\]'):
        FastViT('t8', frozen_stages=5)
    with pytest.raises(ValueError, match=r"arch dict lacks \['pos_embs'"):
        FastViT(dict(layers=(1,) * 4, embed_dims=(32,) * 4, mlp_ratios=2, token_mixers=('repmixer',) * 4))
    with pytest.raises(ValueError, match=r'token mixer "conv" is not one of'):
        FastViT(dict(layers=(1,) * 4, embed_dims=(32,) * 4, mlp_ratios=2, token_mixers=('conv',) * 4,
                     pos_embs=(False,) * 4))


def test_negative_out_indices_count_from_the_last_stage():
    model = FastViT('t8', out_indices=(-1, -4))
    assert model.out_indices == (0, 3)
    assert not hasattr(model, 'final_conv')


@pytest.mark.parametrize('shape, match', [
    ((1, 3, 31, 64), 'input 31x64 is smaller than 32x32'),
    ((2, 3, 64, 16), 'input 64x16 is smaller than 32x32'),
    ((1, 1, 64, 64), r'expects images of shape \(N, 3, H, W\), got a tensor of shape \(1, 1, 64, 64\)'),
    ((3, 64, 64), r'got a tensor of shape \(3, 64, 64\)'),
])
def test_bad_input_is_named(shape, match):
    model = FastViT('t8').eval()
    with pytest.raises(ValueError, match=match):
        model(torch.rand(*shape))


def test_smallest_input_and_other_channel_counts():
    assert FastViT('t8').eval()(torch.rand(1, 3, 32, 32))[0].shape == (1, 384, 1, 1)
    assert FastViT('t8', in_channels=1).eval()(torch.rand(1, 1, 32, 48))[0].shape == (1, 384, 1, 2)
