"""The OpenVINO engine through tools/deploy/export.py: fp32 / bf16 / int8 IRs of the T8 and SA12 configs, int8
calibrated on images of the dataset config, verified against PyTorch and checked on val images; clean refusals (exit
3, nothing written) when openvino or the CPU feature a precision needs is missing."""
import json
import os
import sys

import pytest
import torch

from mmfastvit.deploy.runtimes import probe

from test_export_tool import SA12, T8, _tool, save_checkpoints

pytestmark = pytest.mark.skipif(not probe('openvino')[0], reason='openvino is not installed')


def _precision_missing(precision):
    from mmfastvit.deploy.engines.openvino import precision_unavailable
    return precision_unavailable(precision)


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    return save_checkpoints(tmp_path_factory.mktemp('ov_ckpt'), seed=5)


def _data_options(root):
    """--cfg-options pointing the config's train and val datasets at the generated tiny ImageNet."""
    return ['--cfg-options'] + [f'{split}_dataloader.dataset.data_root={root}' for split in ('train', 'val', 'test')]


def _export(config, checkpoint, out, *args):
    return _tool().main([config, str(checkpoint), '--backend', 'openvino', '--shape', '64', '--out', str(out), *args])


@pytest.mark.skipif(bool(_precision_missing('int8')), reason='no int8 on this CPU (or no nncf)')
@pytest.mark.parametrize('name,config', [('t8', T8), ('sa12', SA12)])
def test_int8_export_is_calibrated_on_the_dataset_and_verified(checkpoints, tiny_imagenet, tmp_path, name, config):
    out = tmp_path / 'exports'
    code = _export(config, checkpoints[name], out, '--precision', 'int8', '--calib-images', '8', '--check-images', '4',
                   '--min-agreement', '0', *_data_options(tiny_imagenet['root']))
    assert code == 0
    stem = f'fastvit_{name}_in1k_64x64_b1_int8'
    assert sorted(os.listdir(out)) == [f'{stem}.bin', f'{stem}.openvino.json', f'{stem}.xml']
    report = json.loads((out / f'{stem}.openvino.json').read_text())
    info, check = report['export']['openvino'], report['verification']['openvino']
    assert report['precision'] == 'int8' and info['quantized_inputs'] > 0
    assert info['calibration']['split'] == 'train' and info['calibration']['count'] == 8
    assert info['kept_float'], 'the stem convolution and the classifier stay in higher precision'
    assert info['model_type'] == ('transformer' if name == 'sa12' else 'default')  # SA12 has attention
    assert check['verified'] and check['passed'] and check['rel_error'] <= check['tolerance']
    accuracy = check['accuracy']
    assert accuracy['images'] == 4 and accuracy['source']['split'] == 'val'
    assert 0 <= accuracy['top1_agreement'] <= 1 and 0 <= accuracy['accuracy'] <= 1
    # the IR carries its execution precision: OpenVINO compiles and runs it as saved, with no options
    import openvino as ov
    compiled = ov.Core().compile_model(str(out / f'{stem}.xml'), 'CPU')
    logits = compiled(torch.zeros(1, 3, 64, 64).numpy())[0]
    assert logits.shape == (1, 1000)
    assert not [p for p in os.listdir(tmp_path) if p.startswith('.')], 'no staging folder left'


@pytest.mark.skipif(bool(_precision_missing('bf16')), reason='no bf16 on this CPU')
def test_bf16_is_the_default_where_the_cpu_has_it(checkpoints, tmp_path):
    out = tmp_path / 'exports'
    assert _export(T8, checkpoints['t8'], out) == 0
    report = json.loads((out / 'fastvit_t8_in1k_64x64_b1_bf16.openvino.json').read_text())
    check = report['verification']['openvino']
    assert report['precision'] == 'bf16' and report['export']['openvino']['execution_hint'] == 'bf16'
    assert check['passed'] and 0 < check['rel_error'] < 0.05  # bf16 is not bit-exact, and not far off


def test_fp32_matches_pytorch_as_onnx_runtime_does(checkpoints, tmp_path):
    out = tmp_path / 'exports'
    assert _export(T8, checkpoints['t8'], out, '--precision', 'fp32') == 0
    check = json.loads((out / 'fastvit_t8_in1k_64x64_b1_fp32.openvino.json').read_text())['verification']['openvino']
    assert check['passed'] and check['rel_error'] < 1e-4


@pytest.mark.skipif(bool(_precision_missing('int8')), reason='no int8 on this CPU (or no nncf)')
def test_leave_one_out_names_what_each_quantizer_costs(checkpoints, tiny_imagenet, tmp_path):
    from mmfastvit.deploy.calibration import dataset_batches
    from mmfastvit.deploy.engines.openvino import quantizer_sensitivity
    out = tmp_path / 'exports'
    assert _export(T8, checkpoints['t8'], out, '--precision', 'int8', '--calib-images', '4', '--check-images', '0',
                   *_data_options(tiny_imagenet['root'])) == 0
    assert _export(T8, checkpoints['t8'], out, '--precision', 'fp32', '--check-images', '0') == 0
    images = dataset_batches(T8, 'val', 2, (64, 64), {'val_dataloader.dataset.data_root': tiny_imagenet['root']},
                             log=lambda m: None).batches(1)
    result = quantizer_sensitivity(str(out / 'fastvit_t8_in1k_64x64_b1_int8.xml'),
                                   str(out / 'fastvit_t8_in1k_64x64_b1_fp32.xml'), images, threads=1, limit=3)
    assert result['images'] == 2 and 0 < result['all']['mean_rel_error'] < 1
    rows = result['quantizers']
    assert len(rows) == 3 and [r['gain'] for r in rows] == sorted((r['gain'] for r in rows), reverse=True)
    assert all(r['quantizer'] and r['gain'] < 1 for r in rows)


def test_missing_openvino_exits_3_and_writes_nothing(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, 'openvino', None)  # `import openvino` raises ImportError
    out = tmp_path / 'o'
    assert _export(T8, tmp_path / 'never_read.pth', out) == 3
    err = capsys.readouterr().err
    assert 'openvino' in err and 'pip install' in err and 'nothing was written' in err
    assert not out.exists()


@pytest.mark.parametrize('precision,feature,message', [
    ('bf16', 'avx512_bf16', 'has no bfloat16 arithmetic'),
    ('int8', 'avx512_vnni', 'has no int8 dot-product instructions'),
])
def test_a_cpu_without_the_feature_is_refused_before_anything_is_loaded(monkeypatch, tmp_path, capsys, precision,
                                                                         feature, message):
    from mmfastvit.deploy.engines import openvino as engine
    facts = engine.cpu_facts()
    without = dict(facts, features=[f for f in facts['features'] if f not in engine.BF16 + engine.VNNI])
    monkeypatch.setattr(engine, 'cpu_facts', lambda: without)
    out = tmp_path / 'o'
    assert _export(T8, tmp_path / 'never_read.pth', out, '--precision', precision) == 3
    err = capsys.readouterr().err
    assert message in err and 'nothing was written' in err and not out.exists()
    assert engine.default_precision() == 'fp32'  # without bf16 the default falls back to fp32
    assert feature not in without['features']


@pytest.mark.parametrize('args,message', [
    (['--backend', 'onnx', '--precision', 'int8'], '--precision int8 is for the openvino backend(s)'),
    (['--backend', 'openvino', '--precision', 'fp32', '--keep-float', 'x'], 'apply to --precision int8 only'),
    (['--backend', 'openvino', '--min-agreement', '2'], '--min-agreement 2.0 must be between 0 and 1'),
])
def test_bad_precision_arguments_exit_2(tmp_path, capsys, args, message):
    out = tmp_path / 'o'
    assert _tool().main([T8, str(tmp_path / 'never_read.pth'), '--out', str(out), *args]) == 2
    assert message in capsys.readouterr().err and not out.exists()


@pytest.mark.skipif(bool(_precision_missing('int8')), reason='no int8 on this CPU (or no nncf)')
def test_int8_without_calibration_images_or_below_the_agreement_writes_nothing(checkpoints, tiny_imagenet, tmp_path,
                                                                               monkeypatch):
    from mmfastvit.deploy import calibration
    from mmfastvit.deploy.export import export
    from mmfastvit.deploy.loading import CLASSIFIER, from_variant
    out = tmp_path / 'o'
    with pytest.raises(ValueError, match='needs calibration images: give --calib-config'):
        export(from_variant('t8', CLASSIFIER), 'openvino', str(out), shape=(64, 64), precision='int8')
    assert not out.exists()
    real = calibration.agreement
    monkeypatch.setattr(calibration, 'agreement', lambda *a: dict(real(*a), top1_agreement=0.5))
    code = _export(T8, checkpoints['t8'], out, '--precision', 'int8', '--calib-images', '4', '--check-images', '2',
                   *_data_options(tiny_imagenet['root']))
    assert code == 1 and not out.exists()
