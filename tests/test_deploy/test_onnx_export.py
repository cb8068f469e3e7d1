"""ONNX export of every variant (FastViT's seven, FMViT's five): the graph runs in ONNX Runtime and matches PyTorch; the
report records how it was made; a failed export leaves nothing behind. Small inputs (64x64): the point is correctness,
not speed."""
import json
import os

import numpy as np
import pytest
import torch

from mmfastvit.deploy.backbones import variant_names
from mmfastvit.deploy.engines.onnxruntime import OnnxRuntimeEngine
from mmfastvit.deploy.export import ExportError, export
from mmfastvit.deploy.loading import BACKBONE, from_variant

onnx = pytest.importorskip('onnx')
ort = pytest.importorskip('onnxruntime')

VARIANTS = variant_names()  # t8 ... ma36, fmvit_t ... fmvit_l
QUIET = dict(log=lambda message: None)


def _pytorch_outputs(deployable, x):
    model = deployable.model.eval()
    with torch.no_grad():
        out = model(x)
    return [o.numpy() for o in (out if isinstance(out, (tuple, list)) else (out,))]


def _run(path, x):
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    assert [i.name for i in session.get_inputs()] == ['images']
    return session, session.run(None, {'images': x.numpy()})


@pytest.mark.parametrize('variant', VARIANTS)
def test_every_variant_runs_in_onnxruntime_and_matches_pytorch(variant, tmp_path):
    deployable = from_variant(variant)
    report = export(deployable, 'onnx', str(tmp_path), shape=(64, 64), **QUIET)
    path = tmp_path / report['files']['onnx']
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(5)) * 2 - 1
    session, (logits,) = _run(path, x)
    expected = _pytorch_outputs(deployable, x)[0]  # the unfused model: fusion + export together
    assert logits.shape == (1, 1000)
    assert np.abs(logits - expected).max() < 1e-4
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert 'BatchNormalization' not in ops, 'the deepest fused graph has no BatchNorm'
    assert report['verification']['onnxruntime']['verified'] is True
    assert report['verification']['onnxruntime']['max_abs_diff'] < 1e-4
    assert report['checks']['fusion']['from_level'] == 'train' and report['checks']['fusion']['passed']
    applied = report['checks']['export_form']['applied']
    if variant.startswith('fmvit'):  # only dense and depthwise convs; one RLMHSA, in the FMB
        assert applied == dict(attention=1, grouped_conv=0)
        assert report['source'] == dict(variant=variant, family='fmvit', arch=variant[6:], seed=0)
    else:
        assert applied['grouped_conv'] == 4, 'three patch embeddings and final_conv'


def test_report_records_exporter_opset_and_checks(tmp_path):
    report = export(from_variant('sa12'), 'onnx', str(tmp_path), shape=(64, 96), opset=17, **QUIET)
    on_disk = json.loads((tmp_path / f'{report["name"]}.onnx.json').read_text())
    assert on_disk['name'] == 'fastvit_sa12_64x96_b1'
    assert on_disk['export']['onnx']['exporter'] == 'torchscript' and on_disk['export']['onnx']['opset'] == 17
    assert on_disk['input'] == dict(name='images', shape=[1, 3, 64, 96], dtype='float32', normalized_by_caller=True)
    assert on_disk['checks']['fusion']['from_level'] == 'train' and on_disk['checks']['fusion']['passed']
    assert on_disk['checks']['export_form']['rewrites'] == ['attention', 'grouped_conv']
    model = onnx.load(str(tmp_path / on_disk['files']['onnx']))
    assert model.opset_import[0].version == 17
    assert sorted(os.listdir(tmp_path)) == sorted([on_disk['files']['onnx'], f'{report["name"]}.onnx.json'])


@pytest.mark.parametrize('variant,channels', [('sa12', (64, 128, 256, 512)), ('fmvit_t', (32, 80, 160, 320))])
def test_dense_backbone_exports_four_named_outputs(variant, channels, tmp_path):
    deployable = from_variant(variant, kind=BACKBONE)
    report = export(deployable, 'onnx', str(tmp_path), shape=(64, 64), **QUIET)
    assert report['name'] == f'{deployable.name}_64x64_b1' and deployable.name.endswith('_backbone')
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    session, outputs = _run(tmp_path / report['files']['onnx'], x)
    assert [o.name for o in session.get_outputs()] == ['stage0', 'stage1', 'stage2', 'stage3']
    assert [o.shape for o in outputs] == [(1, c, 64 // s, 64 // s) for c, s in zip(channels, (4, 8, 16, 32))]
    for actual, expected in zip(outputs, _pytorch_outputs(deployable, x)):
        assert np.abs(actual - expected).max() < 1e-4


def test_dynamic_batch_runs_other_batches(tmp_path):
    deployable = from_variant('t8')
    report = export(deployable, 'onnx', str(tmp_path), shape=(64, 64), dynamic_batch=True, **QUIET)
    assert report['name'].endswith('_bdyn') and report['export']['onnx']['dynamic_batch']
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    _, (logits,) = _run(tmp_path / report['files']['onnx'], x)
    assert logits.shape == (3, 1000)
    assert np.abs(logits - _pytorch_outputs(deployable, x)[0]).max() < 1e-4


def test_fp16_graph_has_half_precision_inputs(tmp_path):
    report = export(from_variant('t8'), 'onnx', str(tmp_path), shape=(64, 64), fp16=True, **QUIET)
    model = onnx.load(str(tmp_path / report['files']['onnx']))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert report['name'].endswith('_fp16') and report['input']['dtype'] == 'float16'


def test_failed_verification_leaves_nothing(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise ExportError('ONNX Runtime vs PyTorch: relative error 1.0e+00 > 1e-04; nothing was written')

    monkeypatch.setattr(OnnxRuntimeEngine, 'verify', broken)
    out = tmp_path / 'deep' / 'out'
    with pytest.raises(ExportError, match='nothing was written'):
        export(from_variant('t8'), 'onnx', str(out), shape=(64, 64), **QUIET)
    assert list(tmp_path.iterdir()) == [], 'no output folder, no staging folder, no created parent'


def test_existing_files_are_replaced_whole(tmp_path):
    first = export(from_variant('t8'), 'onnx', str(tmp_path), shape=(64, 64), **QUIET)
    path = tmp_path / first['files']['onnx']
    before = path.stat().st_mtime_ns
    export(from_variant('t8', seed=1), 'onnx', str(tmp_path), shape=(64, 64), **QUIET)
    assert path.stat().st_mtime_ns != before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith('.')], 'staging folders are gone'


@pytest.mark.parametrize('shape,message', [((100, 64), '100 is not'), ((0,), 'positive multiple of 32'),
                                           ((64, 64, 3), 'give H or H W')])
def test_bad_shapes_are_refused(shape, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        export(from_variant('t8'), 'onnx', str(tmp_path / 'out'), shape=shape, **QUIET)
    assert not (tmp_path / 'out').exists()


def test_unknown_backend_and_bad_batch(tmp_path):
    with pytest.raises(ValueError, match='backend "tflite" is not one of'):
        export(from_variant('t8'), 'tflite', str(tmp_path / 'out'), **QUIET)
    with pytest.raises(ValueError, match='batch 0 must be a positive integer'):
        export(from_variant('t8'), 'onnx', str(tmp_path / 'out'), shape=(64, 64), batch=0, **QUIET)
    assert not (tmp_path / 'out').exists()
