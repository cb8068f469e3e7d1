"""Per-output norms (Apple's dense-prediction outputs, ``out_norm_cfg``): placement, training, fusion, freezing and
checkpoints."""
import pytest
import torch
from torch import nn

from helpers import randomize_, relative_error
from mmfastvit.convert.rename import apple_to_mmfastvit, mmfastvit_to_apple
from mmfastvit.models import FastViT
from mmfastvit.models.layers.output_norm import ChannelAffine, OutputNorm

BN = dict(type='BN')
ALL_OUTS = (0, 1, 2, 3)
SIZE = 64


def _pair(arch='t8', out_indices=ALL_OUTS, **kwargs):
    """The same random weights with and without per-output norms; the norms get random statistics."""
    torch.manual_seed(0)
    plain = FastViT(arch, out_indices=out_indices, **kwargs)
    randomize_(plain)
    normed = FastViT(arch, out_indices=out_indices, out_norm_cfg=BN, **kwargs)
    missing, unexpected = normed.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(key.startswith('out_norms.') for key in missing)
    randomize_(normed.out_norms, seed=1)
    return plain.eval(), normed.eval()


def test_each_output_has_a_norm_and_the_default_has_none():
    model = FastViT('t8', out_indices=(0, 2, 3, 4), out_norm_cfg=BN)
    assert sorted(model.out_norms) == ['0', '2', '3', '4']
    for index, channels in zip((0, 2, 3, 4), model.out_channels):
        norm = model.out_norms[str(index)]
        assert isinstance(norm, OutputNorm) and isinstance(norm.norm, nn.BatchNorm2d)
        assert norm.norm.num_features == channels
    plain = FastViT('t8', out_indices=(0, 2, 3, 4))
    assert plain.out_norms is None
    assert not any('out_norms' in key for key in plain.state_dict())


@pytest.mark.parametrize('arch', ['t8', 'sa12'])
def test_outputs_are_normed_copies_and_the_next_stage_reads_the_raw_map(arch):
    plain, normed = _pair(arch)
    x = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        raw, outs = plain(x), normed(x)
        for i, (r, o) in enumerate(zip(raw, outs)):
            bn = normed.out_norms[str(i)].norm
            expected = (r - bn.running_mean.view(1, -1, 1, 1)) / torch.sqrt(bn.running_var.view(1, -1, 1, 1) + bn.eps)
            expected = expected * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1)
            assert relative_error(o, expected) < 1e-5, f'output {i}'
            # The norms change the returned maps (random statistics), so equality above is not vacuous.
            assert relative_error(o, r) > 1e-2


def test_one_training_step_reaches_the_norms():
    _, model = _pair()
    model.train()
    before = {k: v.clone() for k, v in model.out_norms.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    outs = model(torch.rand(2, 3, SIZE, SIZE))
    # not linear in the outputs: a train-mode BatchNorm's normalized map has zero mean, so a linear loss has no
    # gradient on its scale
    loss = sum(((out - 0.5) ** 2).mean() for out in outs)
    loss.backward()
    for index, norm in model.out_norms.items():
        assert norm.norm.weight.grad is not None and norm.norm.weight.grad.abs().sum() > 0, index
        assert norm.norm.bias.grad is not None and norm.norm.bias.grad.abs().sum() > 0, index
    optimizer.step()
    after = model.out_norms.state_dict()
    for key in ('0.norm.weight', '3.norm.bias', '1.norm.running_mean'):
        assert not torch.equal(before[key], after[key]), key


@pytest.mark.parametrize('arch', ['t8', 'sa12'])
def test_deploy_form_gives_the_same_outputs(arch):
    _, model = _pair(arch, out_indices=(0, 1, 2, 3, 4))
    x = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        expected = model(x)
        reference = FastViT(arch, out_indices=(0, 1, 2, 3, 4), out_norm_cfg=BN)
        reference.load_state_dict(model.state_dict())
        reference.eval().reparameterize('reference')
        # Apple's reparameterize keeps the norms as BatchNorms
        assert all(isinstance(n.norm, nn.BatchNorm2d) for n in reference.out_norms.values())
        assert relative_error(reference(x), expected) < 1e-5
        fused = model.reparameterize('full')
        assert fused.fused_level == 'full'
        assert all(isinstance(n.affine, ChannelAffine) and not hasattr(n, 'norm') for n in fused.out_norms.values())
        assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in fused.modules())
        assert relative_error(fused(x), expected) < 1e-5
        # a model built fused loads the fused checkpoint and gives the same outputs
        built = FastViT(arch, out_indices=(0, 1, 2, 3, 4), out_norm_cfg=BN, deploy=True).eval()
        built.load_state_dict(fused.state_dict())
        assert relative_error(built(x), expected) < 1e-5


def test_frozen_stages_freeze_the_norms_of_their_outputs_and_norm_eval_covers_them():
    model = FastViT('t8', out_indices=ALL_OUTS, frozen_stages=2, out_norm_cfg=BN).train()
    for index in ('0', '1'):
        norm = model.out_norms[index]
        assert not norm.training and not any(p.requires_grad for p in norm.parameters()), index
    for index in ('2', '3'):
        norm = model.out_norms[index]
        assert norm.training and all(p.requires_grad for p in norm.parameters()), index
    model = FastViT('t8', out_indices=ALL_OUTS, norm_eval=True, out_norm_cfg=BN).train()
    assert all(not n.norm.training for n in model.out_norms.values())
    assert all(p.requires_grad for n in model.out_norms.values() for p in n.parameters())


def test_a_checkpoint_with_norms_loads_and_one_without_reports_them_missing(tmp_path):
    _, model = _pair()
    path = tmp_path / 'dense.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in model.state_dict().items()}}, path)
    state = torch.load(path, weights_only=True)['state_dict']
    loaded = FastViT('t8', out_indices=ALL_OUTS, out_norm_cfg=BN)
    loaded.load_state_dict({k[len('backbone.'):]: v for k, v in state.items()}, strict=True)
    x = torch.rand(1, 3, SIZE, SIZE)
    with torch.no_grad():
        assert relative_error(loaded.eval()(x), model(x)) < 1e-6

    from mmfastvit.engine.runner import check_backbone_fits
    from mmfastvit.fileio import CheckpointError
    without = {k: v for k, v in state.items() if '.out_norms.' not in k}
    model_state = {f'backbone.{k}': v for k, v in loaded.state_dict().items()}
    with pytest.raises(CheckpointError, match=r'missing: backbone\.out_norms\.0\.norm.*out_norm_cfg'):
        check_backbone_fits(model_state, without, '"plain.pth"')
    # and the other way round: a checkpoint with norms into a model without them names them as not the model's
    plain_state = {f'backbone.{k}': v for k, v in FastViT('t8', out_indices=ALL_OUTS).state_dict().items()}
    with pytest.raises(CheckpointError, match=r'not the model\'s: backbone\.out_norms'):
        check_backbone_fits(plain_state, state, '"dense.pth"')


def test_apple_norm_names_map_to_the_output_norms():
    model = FastViT('t8', out_indices=ALL_OUTS, out_norm_cfg=BN)
    ours = {f'backbone.{k}': v for k, v in model.state_dict().items()}
    apple = mmfastvit_to_apple(ours)
    assert {'norm0.weight', 'norm2.running_mean', 'norm4.bias', 'norm6.running_var'} <= set(apple)
    assert apple['norm2.weight'].shape == (96,)  # Apple's norm2 is on the second stage
    back = apple_to_mmfastvit(apple)
    assert back.keys() == ours.keys()


def test_bad_out_norm_cfg_is_refused_with_the_choices():
    with pytest.raises(ValueError, match=r'"GN" is not one of \[\'BN\', \'BN2d\', \'SyncBN\'\]'):
        FastViT('t8', out_norm_cfg=dict(type='GN', num_groups=8))
    with pytest.raises(ValueError, match=r"keys \['groups'\]"):
        FastViT('t8', out_norm_cfg=dict(type='BN', groups=2))
    model = FastViT('t8', out_indices=ALL_OUTS, out_norm_cfg=dict(type='BN', requires_grad=False, eps=1e-3))
    assert model.out_norms['0'].norm.eps == 1e-3
    assert not any(p.requires_grad for p in model.out_norms.parameters())


@pytest.mark.parametrize('config', ['mask_rcnn_fastvit_t8_1x.py', 'sem_fpn_fastvit_t8_ade20k_40k.py'])
def test_dense_configs_default_off_and_take_the_option(config):
    import os.path as osp

    from mmengine.config import Config
    path = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs', config)
    if not osp.isfile(path):
        pytest.skip(f'{path} not in the tree')
    cfg = Config.fromfile(path)

    def backbone(cfg):
        kwargs = {k: v for k, v in cfg.model.backbone.items() if k not in ('type', 'init_cfg')}
        return FastViT(**kwargs)

    assert backbone(cfg).out_norms is None
    # what --cfg-options model.backbone.out_norm_cfg="dict(type='BN')" does
    cfg.merge_from_dict({'model.backbone.out_norm_cfg': dict(type='BN')})
    assert sorted(backbone(cfg).out_norms) == ['0', '1', '2', '3']
