"""benchmarks/bench.py fusion-precision: FastViT's fused levels in float16 and bfloat16 against float32."""
import json
import math
import os.path as osp
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

BENCHMARKS = Path(osp.dirname(__file__)).parent.parent / 'benchmarks'
sys.path.insert(0, str(BENCHMARKS))
import bench  # noqa: E402
from suites import fusion_precision  # noqa: E402


def test_weight_underflow_counts_subnormal_zero_and_overflow():
    conv = nn.Conv2d(1, 6, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, 1e-5, 1e-8, 0.0, 1e5, -3e-5]).reshape(6, 1, 1, 1))
    model = nn.Sequential(conv)
    counts = fusion_precision.weight_underflow(model, torch.float16)
    # 1e-5 and -3e-5 are below float16's smallest normal (6.1e-5), 1e-8 below its smallest subnormal (6e-8)
    assert (counts['nonzero'], counts['subnormal'], counts['zero'], counts['overflow']) == (5, 2, 1, 1)
    assert counts['fraction'] == pytest.approx(3 / 5)
    assert counts['per_layer_type'] == {'Sequential.0.weight': dict(nonzero=5, subnormal=2, zero=1, overflow=1,
                                                                    fraction=pytest.approx(3 / 5))}
    bf16 = fusion_precision.weight_underflow(model, torch.bfloat16)
    assert (bf16['subnormal'], bf16['zero'], bf16['overflow'], bf16['fraction']) == (0, 0, 0, 0.0)


def test_regimes_set_the_layer_scales():
    def scales(regime):
        model = fusion_precision.build_model('t8', regime, seed=0)
        return torch.cat([p.flatten() for n, p in model.named_parameters() if n.endswith('gamma')])

    assert torch.all(scales('init') == 1e-5)
    assert 0.1 <= scales('randomized').min() and scales('randomized').max() <= 0.6
    spread = scales('spread')
    assert 1e-6 <= spread.min() < 1e-4 and 0.1 < spread.max() <= 1.0
    with pytest.raises(ValueError, match=r"regime 'trained' is not one of \['init', 'randomized', 'spread'\]"):
        fusion_precision.build_model('t8', 'trained', seed=0)


@pytest.mark.parametrize('argv, message', [
    (['--levels', 'full'], '--levels must include reference and full'),
    (['--size', '16'], '--size must be >= 32, got 16'),
    (['--agreement-batch', '-1'], '--agreement-batch must be >= 0, got -1'),
])
def test_bad_options_are_named(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(['fusion-precision', '--out', str(tmp_path / 'fp'), *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_t8_in_reduced_precision(tmp_path):
    out = tmp_path / 'fp'
    argv = ['fusion-precision', '--variants', 't8', '--regimes', 'init', 'randomized', '--size', '64', '--batch', '2',
            '--agreement-batch', '4', '--agreement-size', '32', '--threads', '1', '--out', str(out)]
    assert bench.main(argv) == 0
    doc = json.loads((tmp_path / 'fp.json').read_text())
    markdown = (tmp_path / 'fp.md').read_text()
    settings = doc['settings']
    assert f"Reproduce: `{settings['command']}`" in markdown and '| t8 | randomized |' in markdown
    assert (settings['batch'], settings['size'], settings['regimes']) == (2, 64, ['init', 'randomized'])
    assert settings['fp32_fusion_exact'] is True

    result = doc['results']['t8']
    assert set(result['regimes']) == {'init', 'randomized'}
    for regime, r in result['regimes'].items():
        expected = {f'{lvl}/{d}' for lvl in ('unfused', 'reference', 'full') for d in fusion_precision.DTYPES}
        assert set(r['runs']) == expected - {'unfused/float32'}, regime
        for key, run in r['runs'].items():
            assert 'error' not in run, (regime, key, run.get('error'))
            assert run['finite'] and math.isfinite(run['max_rel']) and math.isfinite(run['mean_rel']), (regime, key)
            assert 0 <= run['top1_agreement'] <= 1 and 0 <= run['top1_agreement_large'] <= 1, (regime, key)
        for level in ('reference', 'full'):
            fp32, fp16, bf16 = (r['runs'][f'{level}/{d}']['max_rel'] for d in ('float32', 'float16', 'bfloat16'))
            assert fp32 < fusion_precision.FP32_TOL, (regime, level, fp32)  # the fusion itself is exact
            # really run in reduced precision: float16's rounding (2**-11) shows, bfloat16's (2**-8) more
            assert 1e-5 < fp16 < 1e-2 and fp16 < bf16 < 5e-2, (regime, level, fp16, bf16)

    # at init the layer scale (1e-5) folded into fc2 puts its weights below float16's smallest normal
    init = result['regimes']['init']['levels']
    fc2 = {lvl: init[lvl]['weights']['float16']['per_layer_type']['ConvFFN.fc2.weight']['fraction']
           for lvl in ('reference', 'full')}
    assert fc2['full'] > 0.9 and fc2['reference'] < 0.05, fc2
    assert init['full']['weights']['bfloat16']['fraction'] == 0.0
    verdict = result['verdict']
    assert isinstance(verdict['full_loses_precision'], bool) and verdict['worst_ratio']['ratio'] > 0
