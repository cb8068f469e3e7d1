"""Core ML export for the iPhone (FastViT and FMViT): an ML program package, iOS 16, FP16 compute, Apple's input name,
the expected shapes.

Conversion runs on Linux; prediction needs macOS, so on Linux the report must say the model was not verified.
"""
import json
import platform

import pytest

from mmfastvit.deploy.engines.coreml import coreml_spec_summary
from mmfastvit.deploy.export import export
from mmfastvit.deploy.loading import BACKBONE, from_variant

ct = pytest.importorskip('coremltools')


@pytest.mark.parametrize('variant', ['t8', 'sa12', 'fmvit_t'])
def test_mlpackage_spec_has_shapes_and_fp16(variant, tmp_path):
    deployable = from_variant(variant)
    report = export(deployable, 'coreml', str(tmp_path), shape=(64, 64), log=lambda m: None)
    package = tmp_path / report['files']['coreml']
    assert package.name == f'{deployable.name}_64x64_b1_fp16.mlpackage' and package.is_dir()
    assert (package / 'Manifest.json').is_file()
    spec = ct.utils.load_spec(str(package))
    summary = coreml_spec_summary(spec)
    assert summary['is_mlprogram']
    assert summary['specification_version'] >= 7  # iOS 16
    assert summary['inputs'] == {'images': dict(shape=[1, 3, 64, 64], dtype='float32')}
    assert summary['outputs'] == {'logits': dict(shape=[1, 1000], dtype='float32')}
    # every weight is stored and computed in FP16 (FP32 would keep the model off the Neural Engine)
    assert summary['float_constants'].get('float16', 0) > 50
    assert 'float32' not in summary['float_constants']
    assert summary['ops'].get('batch_norm', 0) == 0 and summary['ops']['conv'] > 40
    on_disk = json.loads((tmp_path / f'{report["name"]}.coreml.json').read_text())
    assert on_disk['export']['coreml']['minimum_deployment_target'] == 'iOS16'
    verification = on_disk['verification']['coreml']
    if platform.system() != 'Darwin':
        assert verification['verified'] is False and 'macOS' in verification['reason']
    else:
        assert verification['verified'] is True


def test_fp32_package_and_backbone_outputs(tmp_path):
    report = export(from_variant('t8', kind=BACKBONE), 'coreml', str(tmp_path), shape=(64, 64), fp16=False,
                    log=lambda m: None)
    summary = coreml_spec_summary(ct.utils.load_spec(str(tmp_path / report['files']['coreml'])))
    assert list(summary['outputs']) == ['stage0', 'stage1', 'stage2', 'stage3']
    assert summary['outputs']['stage3']['shape'] == [1, 384, 2, 2]
    assert 'float16' not in summary['float_constants'] and summary['float_constants']['float32'] > 50
