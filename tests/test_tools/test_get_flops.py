"""tools/analysis_tools/get_flops.py: the parameter counts of Apple's checkpoints and the paper's FLOPs from a config,
and FMViT's (fused against the FMViT paper's Table 2)."""
import importlib.util
import json
import os.path as osp
import subprocess
import sys

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(ROOT, 'tools', 'analysis_tools', 'get_flops.py')
T8_CONFIG = osp.join(ROOT, 'configs', 'fastvit_t8_in1k.py')

# Apple's checkpoints: the T8 classifier has 4,026,232 parameters unfused and 3,996,040 fused as Apple / timm fuse it;
# mmfastvit's full fusion also folds the ConvFFN BN and the layer scales (README: 3,992,392).
T8_UNFUSED, T8_REFERENCE_FUSED, T8_FULL_FUSED = 4_026_232, 3_996_040, 3_992_392
T8_PAPER_FLOPS = 0.70e9  # measured 0.705 G; the paper prints 0.7

MINIMAL_T8 = """
default_scope = 'mmpretrain'
model = dict(
    type='ImageClassifier',
    backbone=dict(type='mmfastvit.FastViT', arch='t8', out_indices=(4,)),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=1000, in_channels=768))
"""


@pytest.fixture(scope='module')
def get_flops():
    spec = importlib.util.spec_from_file_location('get_flops', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def minimal_t8(tmp_path_factory):
    path = tmp_path_factory.mktemp('configs') / 'minimal_t8.py'
    path.write_text(MINIMAL_T8)
    return str(path)


def run(get_flops, tmp_path, *args):
    out = tmp_path / 'flops.json'
    assert get_flops.main([*map(str, args), '--json', str(out)]) == 0
    return json.loads(out.read_text())


@pytest.mark.parametrize('which', ['configs/fastvit_t8_in1k.py', 'minimal'])
def test_t8_classifier_params_and_flops(get_flops, minimal_t8, tmp_path, capsys, which):
    config = minimal_t8 if which == 'minimal' else T8_CONFIG
    result = run(get_flops, tmp_path, config)
    assert result['params']['total'] == T8_UNFUSED
    assert result['params']['head'] == 768 * 1000 + 1000
    assert result['input_shape'] == [1, 3, 256, 256]
    assert result['form'] == 'train'
    assert result['counted'] == "model.forward(mode='tensor'): backbone, neck, head"
    assert abs(result['flops']['total'] / T8_PAPER_FLOPS - 1) < 0.01, result['flops']['total']
    printed = capsys.readouterr().out
    assert '4,026,232' in printed and '0.705 G' in printed


def test_deploy_reports_the_fused_counts(get_flops, minimal_t8, tmp_path):
    # at a small input: the counts of parameters do not depend on it, the order of the FLOPs does not either
    small = ('--shape', '128', '96', '--scope', 'backbone')
    unfused = run(get_flops, tmp_path, minimal_t8, *small)
    full = run(get_flops, tmp_path, minimal_t8, '--deploy', *small)
    reference = run(get_flops, tmp_path, minimal_t8, '--deploy', '--deploy-level', 'reference', *small)
    assert (full['form'], full['params']['total']) == ('full', T8_FULL_FUSED)
    assert (reference['form'], reference['params']['total']) == ('reference', T8_REFERENCE_FUSED)
    assert unfused['input_shape'] == [1, 3, 128, 96] and unfused['shape_source'] == '--shape'
    # fusion removes the parallel branches and BatchNorms, so the fused forms cost less, the full one least
    assert full['flops']['total'] < reference['flops']['total'] < unfused['flops']['total']
    assert 'batch_norm' not in full['flops_by_operator']


# FMViT (docs/fmvit.md): the 1000-class classifier fused, as the paper counts it (Table 2, FMViT-T: 2.0 M, 0.3 G at
# 224x224), and unfused; configs/fmvit_b_in1k.py gives 23,941,992 / 4.113 G fused and 41,043,240 / 7.266 G unfused
# (the backbone's own test pins the fused counts of every variant; tracing B's train form takes ~13 s, so not here)
FMVIT_T_CONFIG = osp.join(ROOT, 'configs', 'fmvit_t_in1k.py')
FMVIT_T_FUSED, FMVIT_T_UNFUSED = 1_912_504, 3_130_984


def test_fmvit_classifier_at_its_test_crop_fused_and_unfused(get_flops, tmp_path):
    fused = run(get_flops, tmp_path, FMVIT_T_CONFIG, '--deploy')
    assert fused['input_shape'] == [1, 3, 224, 224] and fused['shape_source'] == 'the test pipeline\'s CenterCrop'
    assert (fused['form'], fused['params']['total']) == ('full', FMVIT_T_FUSED)
    assert fused['params']['head'] == 320 * 1000 + 1000  # the head pools the FMB output (5 x 64 channels)
    assert abs(fused['flops']['total'] / 0.3e9 - 1) < 0.06, fused['flops']['total']  # measured 0.315 G
    assert fused['sdpa_flops'] > 0 and 'batch_norm' not in fused['flops_by_operator']
    assert fused['counted'] == "model.forward(mode='tensor'): backbone, neck, head"
    # at a small input (parameter counts do not depend on it): FMViT has one fused form, so 'reference' is the same;
    # the train form carries every multi-group branch and BatchNorm
    small = ('--shape', '64')
    reference = run(get_flops, tmp_path, FMVIT_T_CONFIG, '--deploy', '--deploy-level', 'reference', *small)
    assert (reference['form'], reference['params']['total']) == ('full', FMVIT_T_FUSED)
    unfused = run(get_flops, tmp_path, FMVIT_T_CONFIG, *small)
    assert (unfused['form'], unfused['params']['total']) == ('train', FMVIT_T_UNFUSED)
    assert unfused['flops']['total'] > reference['flops']['total'] and 'batch_norm' in unfused['flops_by_operator']


def test_bad_config_path_is_a_clear_error(get_flops, tmp_path, capsys):
    missing = str(tmp_path / 'no_such_config.py')
    with pytest.raises(SystemExit) as exc:
        get_flops.main([missing])
    assert exc.value.code != 0
    assert f'config file "{missing}" does not exist' in capsys.readouterr().err
    # and from the command line: non-zero exit status, the message on stderr
    proc = subprocess.run([sys.executable, TOOL, missing], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode != 0
    assert 'does not exist' in proc.stderr


def test_deploy_of_a_model_with_nothing_to_fuse_fails(get_flops, tmp_path, capsys):
    config = tmp_path / 'resnet.py'
    config.write_text(MINIMAL_T8.replace("type='mmfastvit.FastViT', arch='t8', out_indices=(4,)",
                                         "type='ResNet', depth=18").replace('768', '512'))
    assert get_flops.main([str(config), '--deploy']) == 1
    assert 'no reparameterizable' in capsys.readouterr().err


def test_sdpa_matmuls_are_counted(get_flops):
    from mmfastvit.analysis import flop_analyzer
    from mmfastvit.models.layers.attention import Attention

    attention, x = Attention(64).eval(), torch.randn(2, 64, 4, 4)  # 2 heads of 32 over 16 tokens, batch 2
    by_op = flop_analyzer(attention, (x,)).by_operator()
    # q @ k^T and attn @ v: batch 2 x 2 heads x 16 x 16 x (32 + 32)
    assert by_op['scaled_dot_product_attention'] == 2 * 2 * 16 * 16 * 64
    assert by_op['linear'] == 2 * 16 * 64 * (3 * 64 + 64)  # qkv and proj
    # without the rule (mmengine's own handles) the op is left out
    plain = flop_analyzer(attention, (x,), count_attention=False)
    plain.total()
    assert get_flops.SDPA_OP in plain.unsupported_ops()
