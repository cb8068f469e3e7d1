"""The deploy registries: an engine is one registered class (the export tool, the benchmark and its tool then take it
with no other edit), and a backbone that declares its deploy facts is deployable with no edit under deploy/."""
import importlib.util
import json
import os.path as osp

import numpy as np
import pytest
import torch

from mmfastvit.deploy import backbones
from mmfastvit.deploy.benchmark import run
from mmfastvit.deploy.engines import (ENGINES, CUDA_BACKENDS, Candidate, Engine, ExportJob, RunTarget, all_backends,
                                      available_backends, export_backends, register_engine)
from mmfastvit.deploy.export import ExportRequest, export
from mmfastvit.deploy.export_form import ExportClassifier, applied_rewrites, to_export_form
from mmfastvit.deploy.loading import BACKBONE, default_shape, from_variant
from mmfastvit.deploy.settings import BenchmarkSettings, protocol_plan
from mmfastvit.deploy.verify import FP32_TOLERANCE, compare, outputs
from mmfastvit.models import FastViT
from mmfastvit.models.classifier import PooledLinearClassifier
from mmfastvit.registry import MODELS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _tool(name):
    spec = importlib.util.spec_from_file_location(f'deploy_{name}_tool', osp.join(REPO, 'tools', 'deploy',
                                                                                  f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class NumpyEngine(Engine):
    """A test engine with a format of its own: its export writes the export form's outputs on the check batch as a
    ``.npy`` (float16 with ``fp16``); its timed backend ``numpy-cpu`` runs the traced export form."""

    name = 'numpy-test'
    title = 'NumPy'
    export_backend = 'npy'
    export_options = ('fp16',)
    backends = {'numpy-cpu': 'cpu'}

    def export(self, job: ExportJob) -> None:
        job.files['npy'] = f'{job.name}.npy'
        np.save(job.path('npy'), outputs(job.form, job.x)[0].numpy().astype(np.float16 if job.request.fp16
                                                                             else np.float32))
        job.info['npy'] = dict(dtype='float16' if job.request.fp16 else 'float32')

    def verify(self, job: ExportJob) -> None:
        saved = torch.from_numpy(np.load(job.path('npy'))).float()
        job.verification['numpy'] = dict(verified=True, engine='numpy.load',
                                         **compare('npy vs PyTorch', [saved], job.expected, 2e-2))

    def runner(self, backend: str, target: RunTarget):
        traced = torch.jit.trace(target.graph, (target.x,), check_trace=False)
        check = compare(f'{target.who}: traced vs PyTorch', list(outputs(traced, target.x)), target.expected,
                        FP32_TOLERANCE)
        return Candidate(target.who, backend, lambda: traced(target.x), 'cpu'), check


@pytest.fixture
def numpy_engine():
    register_engine(NumpyEngine)
    yield ENGINES['numpy-test']
    ENGINES.pop('numpy-test')


def test_a_registered_engine_is_offered_everywhere(numpy_engine, tmp_path, capsys):
    assert export_backends()[-1] == 'npy' and 'numpy-cpu' in all_backends('cpu')
    assert 'numpy-cpu' not in CUDA_BACKENDS and available_backends(['numpy-cpu']) == (['numpy-cpu'], {})
    # the export: its own format, its own precision; the generic refusals name it among the takers
    report = export(from_variant('t8'), 'npy', str(tmp_path), shape=(64, 64), fp16=True, log=lambda m: None)
    assert report['files'] == dict(npy='fastvit_t8_64x64_b1_fp16.npy')
    assert report['verification']['numpy']['verified'] and report['export']['npy']['dtype'] == 'float16'
    assert json.loads((tmp_path / 'fastvit_t8_64x64_b1_fp16.npy.json').read_text())['backend'] == 'npy'
    with pytest.raises(ValueError, match='--fp16 is for the onnx, coreml, tensorrt and npy backends'):
        ExportRequest(backend='torchscript', fp16=True)
    with pytest.raises(ValueError, match='--simplify applies to ONNX graphs, not to backend "npy"'):
        ExportRequest(backend='npy', simplify=True)
    with pytest.raises(ValueError, match='a dynamic batch is for the onnx and tensorrt backends, not "npy"'):
        ExportRequest(backend='npy', dynamic_batch=True)
    # the tools take it through their usual flags
    assert _tool('export').parse_args(['c.py', 'k.pth', '--backend', 'npy', '--out', 'o']).backend == 'npy'
    args = _tool('benchmark').parse_args(['--variants', 't8', '--backends', 'numpy-cpu'])
    assert args.settings.backends == ('numpy-cpu',)
    # the benchmark times it like the built-in backends
    result = run(BenchmarkSettings(variants=('t8',), backends=('numpy-cpu',), shape=(64, 64), warmup=0, runs=2,
                                   threads=1, measure_peak=False, command='pytest'), log=lambda m: None)
    net = result['results']['fastvit_t8']
    assert list(net['latency']) == ['ours/numpy-cpu'] and len(net['latency']['ours/numpy-cpu']['runs_ms']) == 2
    assert net['checks']['ours/numpy-cpu']['passed'] and net['onnx'] == {}  # it reads no ONNX: none exported
    assert result['settings']['backends'] == ['numpy-cpu']


def test_engine_names_are_unique(numpy_engine):
    class Clash(NumpyEngine):
        name = 'numpy-other'

    with pytest.raises(KeyError, match="'npy', 'numpy-cpu'"):
        register_engine(Clash)
    assert 'numpy-other' not in ENGINES


class TinyNet(FastViT):
    """A backbone added outside deploy/: FastViT's blocks, declared with its own facts."""

    display_name = 'TinyNet'
    deploy_facts = dict(family='tiny', classifier_input_size=96, variant_group='tinies', rewrites=('attention',),
                        model_name='tinynet-{arch}_in1k', top1_source='nowhere')


class TinyNetClassifier(PooledLinearClassifier):
    backbone_class = TinyNet


@pytest.fixture
def tiny_backbone():
    MODELS.register_module(module=TinyNet)
    yield TinyNet
    MODELS.module_dict.pop('TinyNet')


def test_a_backbone_that_declares_its_facts_is_deployable(tiny_backbone, tmp_path):
    assert 'tiny' in backbones.families() and backbones.variant_names('tiny')[:2] == ['tiny_t8', 'tiny_t12']
    assert backbones.variant_groups()['tinies'] == 'tiny' and backbones.canonical_variant('TINY_sa12') == 'tiny_sa12'
    assert backbones.names('or', article=True) == 'a FastViT, an FMViT or a TinyNet'
    deployable = from_variant('tiny_sa12')
    assert deployable.family == 'tiny' and deployable.name == 'tiny_sa12'
    assert isinstance(deployable.model, ExportClassifier) and default_shape(deployable) == (96, 96)
    assert protocol_plan('paper', 'classifier', family='tiny') == (8, (96, 96))
    dense = from_variant('tiny_t8', kind=BACKBONE)
    assert dense.output_names == ('stage0', 'stage1', 'stage2', 'stage3')
    # only the rewrites it declares act: its patch embeddings keep their grouped convs
    fused = deployable.model
    fused.backbone.reparameterize()
    assert applied_rewrites(to_export_form(fused)) == dict(attention=2, grouped_conv=0)
    report = export(deployable, 'torchscript', str(tmp_path), log=lambda m: None)
    assert report['name'] == 'tiny_sa12_96x96_b1' and report['verification']['torchscript']['verified']
    settings = BenchmarkSettings(variants=('tinies',), backends=('pytorch-cpu',))
    assert settings.variants[0] == 'tiny_t8' and len(settings.variants) == len(TinyNet.arch_zoo)
    record = settings.replace(threads=1).record({}, {}, None, None)
    assert record['shape_classifier_tiny'] == [96, 96] and record['shape_classifier_fmvit'] == [224, 224]
    with pytest.raises(ValueError, match=r'timm has no FMViT / TinyNet\): drop \[.tiny_t8.\]'):
        BenchmarkSettings(variants=('tiny_t8', 't8'), compare_timm=True)


def test_facts_with_an_unknown_key_are_refused(tiny_backbone, monkeypatch):
    monkeypatch.setattr(TinyNet, 'deploy_facts', dict(TinyNet.deploy_facts, input_size=96))
    with pytest.raises(TypeError, match=r"TinyNet.deploy_facts has unknown keys \['input_size'\]"):
        backbones.registered()
