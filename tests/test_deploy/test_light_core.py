"""The deploy core needs torch and mmengine only (the GPU machine has no mmpretrain / mmdet): with every engine and
task package blocked, it imports, fuses, exports TorchScript and times PyTorch; asking for an engine names it."""
import os.path as osp
import subprocess
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

CHECK = r"""
import importlib.abc, json, sys, tempfile
FORBIDDEN = ('mmdet', 'mmseg', 'mmpretrain', 'mmcv', 'timm', 'onnx', 'onnxruntime', 'onnxscript', 'onnxsim',
             'coremltools', 'tensorrt', 'matplotlib', 'openvino', 'nncf')

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in FORBIDDEN:
            raise ImportError(f'blocked {name}')
        return None

sys.meta_path.insert(0, Block())
import torch
from mmfastvit.deploy import (backbones, benchmark, cli, engines, export, export_form, latency, loading, memory, plot,
                              report, runtimes, settings, timm_pair, verify)
from mmfastvit.deploy.runtimes import BackendUnavailable

out = tempfile.mkdtemp()
report = export.export(loading.from_variant('sa12'), 'torchscript', out, shape=(64, 64), log=lambda m: None)
assert report['verification']['torchscript']['verified'], report
for backend, missing in (('onnx', 'onnx'), ('openvino', 'onnx'), ('coreml', 'coremltools'),
                         ('tensorrt', 'tensorrt')):
    try:
        export.ExportRequest(backend=backend)
    except BackendUnavailable as err:
        assert f'`{missing}`' in str(err), err
    else:
        raise AssertionError(f'{backend} should be unavailable')
result = benchmark.run(variants=['t8'], backends=['pytorch-cpu'], shape=(64, 64), warmup=0, runs=2, threads=1,
                       measure_peak=False, log=lambda m: None, command='check')
assert 'ours/pytorch-cpu' in result['results']['fastvit_t8']['latency']
usable, why = engines.available_backends()
assert usable == ['pytorch-cpu'] and 'onnxruntime-cpu' in why, (usable, why)
print('LIGHT_CORE_OK')
"""


def test_deploy_core_runs_with_torch_and_mmengine_only():
    done = subprocess.run([sys.executable, '-c', CHECK], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    assert 'LIGHT_CORE_OK' in done.stdout
