"""tools/deploy/export.py: a config + checkpoint in (FastViT or FMViT), verified files out; every bad input is refused
with a message that names it, a non-zero exit and nothing written."""
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

from mmfastvit.convert.reparameterize import build_model_from_config
from mmfastvit.deploy.loading import calibrate_batchnorm_, default_shape, load_from_config
from mmfastvit.deploy.runtimes import probe
from mmfastvit.models.utils.fusion_checks import randomize_fusable_state_

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(REPO, 'tools', 'deploy', 'export.py')
T8 = osp.join(REPO, 'configs', 'fastvit_t8_in1k.py')
SA12 = osp.join(REPO, 'configs', 'fastvit_sa12_in1k.py')


def _tool():
    spec = importlib.util.spec_from_file_location('deploy_export_tool', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def save_checkpoints(folder, seed):
    """Classifier checkpoints of the T8 and SA12 configs with randomized fusable state, as a trainer saves them
    (weights under state_dict); ``{'t8': path, 'sa12': path}``."""
    paths = {}
    for name, config in (('t8', T8), ('sa12', SA12)):
        model = randomize_fusable_state_(build_model_from_config(Config.fromfile(config)), seed=seed)
        paths[name] = folder / f'{name}.pth'
        torch.save({'state_dict': model.state_dict(), 'meta': {'epoch': 300}}, paths[name])
    return paths


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    return save_checkpoints(tmp_path_factory.mktemp('ckpt'), seed=3)


def test_config_and_checkpoint_export_to_onnx(checkpoints, tmp_path):
    out = tmp_path / 'exports'
    done = subprocess.run([sys.executable, TOOL, T8, str(checkpoints['t8']), '--backend', 'onnx', '--shape', '64',
                           '--out', str(out)], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert 'fused "train" -> "full"' in done.stdout and 'onnxruntime: matches PyTorch' in done.stdout
    assert sorted(os.listdir(out)) == ['fastvit_t8_in1k_64x64_b1.onnx', 'fastvit_t8_in1k_64x64_b1.onnx.json']
    report = json.loads((out / 'fastvit_t8_in1k_64x64_b1.onnx.json').read_text())
    assert report['kind'] == 'classifier' and report['source']['checkpoint'] == str(checkpoints['t8'])
    assert not [p for p in os.listdir(tmp_path) if p.startswith('.')], 'no staging folder left'


def test_fused_checkpoint_needs_deploy_config(checkpoints, tmp_path):
    model = build_model_from_config(Config.fromfile(T8))
    model.load_state_dict(torch.load(checkpoints['t8'], weights_only=True)['state_dict'])
    model.backbone.reparameterize()
    fused = tmp_path / 't8_fused.pth'
    torch.save({'state_dict': model.state_dict()}, fused)
    code = _tool().main([T8, str(fused), '--backend', 'torchscript', '--shape', '64', '--out', str(tmp_path / 'o')])
    assert code == 1 and not (tmp_path / 'o').exists()
    deployable = load_from_config(T8, str(fused), {'model.backbone.deploy': True})
    assert deployable.backbone.fused_level == 'full'


def test_mismatched_checkpoint_is_refused(checkpoints, tmp_path, capsys):
    out = tmp_path / 'o'
    code = _tool().main([T8, str(checkpoints['sa12']), '--backend', 'onnx', '--shape', '64', '--out', str(out)])
    err = capsys.readouterr().err
    assert code == 1
    assert f'checkpoint "{checkpoints["sa12"]}" does not fit the model of config "{T8}"' in err
    assert 'nothing was written' in err and not out.exists()


def test_missing_files_are_named(tmp_path, capsys):
    code = _tool().main([T8, str(tmp_path / 'none.pth'), '--backend', 'onnx', '--out', str(tmp_path / 'o')])
    assert code == 1 and f'checkpoint "{tmp_path / "none.pth"}" does not exist' in capsys.readouterr().err
    code = _tool().main([str(tmp_path / 'cfg.py'), str(tmp_path / 'none.pth'), '--backend', 'onnx',
                         '--out', str(tmp_path / 'o')])
    assert code == 1 and 'cfg.py" does not exist' in capsys.readouterr().err
    assert not (tmp_path / 'o').exists()


@pytest.mark.parametrize('args,code,message', [
    (['--backend', 'tflite'], 2, 'backend "tflite" is not one of [\'onnx\', \'openvino\', \'coreml\', '
                                 '\'tensorrt\', \'torchscript\']'),
    (['--backend', 'onnx', '--shape', '100'], 2, '100x100: each side must be a positive multiple of 32'),
    (['--backend', 'onnx', '--shape', '64', '48'], 2, '48 is not'),
    (['--backend', 'onnx', '--batch', '0'], 2, '--batch 0 must be >= 1'),
    (['--backend', 'torchscript', '--fp16'], 2, '--fp16 is for the onnx, coreml and tensorrt backends'),
    (['--backend', 'coreml', '--simplify'], 2, '--simplify applies to ONNX graphs'),
])
def test_bad_arguments_exit_before_loading(args, code, message, tmp_path, capsys):
    out = tmp_path / 'o'
    # the checkpoint does not exist: a tool that loaded anything before checking its arguments would say so instead
    assert _tool().main([T8, str(tmp_path / 'never_read.pth'), '--out', str(out), *args]) == code
    err = capsys.readouterr().err
    assert message in err and 'nothing was written' in err
    assert not out.exists()


@pytest.mark.skipif(probe('tensorrt')[0] and torch.cuda.is_available(), reason='TensorRT and a GPU are present')
def test_tensorrt_missing_exits_3_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / 'deep' / 'o'
    code = _tool().main([T8, str(tmp_path / 'never_read.pth'), '--backend', 'tensorrt', '--out', str(out)])
    stderr = capsys.readouterr().err
    assert code == 3
    assert 'TensorRT' in stderr or 'tensorrt' in stderr
    assert 'nothing was written' in stderr
    assert list(tmp_path.iterdir()) == []


def test_dense_model_exports_its_backbone(tmp_path):
    config = osp.join(REPO, 'configs', 'sem_fpn_fastvit_t8_ade20k_40k.py')
    if not osp.isfile(config):
        pytest.skip('segmentation configs are not in this checkout')
    pytest.importorskip('mmseg')
    deployable = load_from_config(config, None)
    assert deployable.kind == 'backbone' and deployable.output_names == ('stage0', 'stage1', 'stage2', 'stage3')
    assert deployable.source['task_model'] == 'EncoderDecoder'


FMVIT_T = osp.join(REPO, 'configs', 'fmvit_t_in1k.py')


@pytest.fixture(scope='module')
def fmvit_checkpoints(tmp_path_factory):
    """An FMViT-T classifier checkpoint of configs/fmvit_t_in1k.py (seeded statistics) and its fused form."""
    if not osp.isfile(FMVIT_T):
        pytest.skip('configs/fmvit_t_in1k.py is not in this checkout')
    folder = tmp_path_factory.mktemp('fmvit_ckpt')
    model = build_model_from_config(Config.fromfile(FMVIT_T))
    calibrate_batchnorm_(randomize_fusable_state_(model, seed=3), seed=3)
    paths = dict(train=folder / 'fmvit_t.pth', fused=folder / 'fmvit_t_fused.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {'epoch': 300}}, paths['train'])
    model.backbone.reparameterize()
    torch.save({'state_dict': model.state_dict()}, paths['fused'])
    return paths


def test_fmvit_config_exports_at_224_and_matches_pytorch(fmvit_checkpoints, tmp_path, capsys):
    ort = pytest.importorskip('onnxruntime')
    out = tmp_path / 'exports'
    assert _tool().main([FMVIT_T, str(fmvit_checkpoints['train']), '--backend', 'onnx', '--out', str(out)]) == 0
    printed = capsys.readouterr().out
    assert 'export form (attention x1)' in printed and 'onnxruntime: matches PyTorch' in printed
    name = 'fmvit_t_in1k_224x224_b1'  # FMViT's resolution by default, not FastViT's 256
    assert sorted(os.listdir(out)) == [f'{name}.onnx', f'{name}.onnx.json']
    report = json.loads((out / f'{name}.onnx.json').read_text())
    assert report['kind'] == 'classifier' and report['input']['shape'] == [1, 3, 224, 224]
    assert report['checks']['export_form']['applied'] == dict(attention=1, grouped_conv=0)
    model = load_from_config(FMVIT_T, str(fmvit_checkpoints['train'])).model  # unfused: fusion + export together
    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        expected = model(x).numpy()
    session = ort.InferenceSession(str(out / f'{name}.onnx'), providers=['CPUExecutionProvider'])
    (logits,) = session.run(None, {'images': x.numpy()})
    assert logits.shape == (1, 1000) and abs(logits - expected).max() < 1e-4


def test_fmvit_fused_checkpoint_needs_deploy_config(fmvit_checkpoints, tmp_path, capsys):
    out = tmp_path / 'o'
    code = _tool().main([FMVIT_T, str(fmvit_checkpoints['fused']), '--backend', 'onnx', '--shape', '64',
                         '--out', str(out)])
    assert code == 1 and 'it looks fused: add --cfg-options model.backbone.deploy=True' in capsys.readouterr().err
    assert not out.exists()
    code = _tool().main([FMVIT_T, str(fmvit_checkpoints['fused']), '--backend', 'onnx', '--shape', '64',
                         '--cfg-options', 'model.backbone.deploy=True', '--out', str(out)])
    assert code == 0 and 'already fused' in capsys.readouterr().out
    assert sorted(os.listdir(out)) == ['fmvit_t_in1k_64x64_b1.onnx', 'fmvit_t_in1k_64x64_b1.onnx.json']


def test_fmvit_detector_exports_its_backbone():
    config = osp.join(REPO, 'configs', 'mask_rcnn_fmvit_b_1x.py')
    if not osp.isfile(config):
        pytest.skip('configs/mask_rcnn_fmvit_b_1x.py is not in this checkout')
    pytest.importorskip('mmdet')
    deployable = load_from_config(config, None)
    assert deployable.kind == 'backbone' and deployable.family == 'fmvit'
    assert deployable.output_names == ('stage0', 'stage1', 'stage2', 'stage3')
    assert default_shape(deployable) == (512, 512) and deployable.source['task_model'] == 'MaskRCNN'
