"""tools/analysis_tools/get_flops.py: FASTVIT.md's parameter counts and the paper's FLOPs from a config."""
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

# FASTVIT.md: the T8 classifier has 4,026,232 parameters unfused and 3,996,040 fused as Apple / timm fuse it;
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
