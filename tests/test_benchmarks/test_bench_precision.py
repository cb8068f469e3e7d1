"""bench.py precision (our reduced-precision CPU paths against timm's fused model in ONNX Runtime fp32, timed in one
loop) on T8 and FMViT-T, and precision-accuracy's options."""
import json
import os.path as osp
import sys

import pytest

from mmfastvit.deploy.runtimes import probe

sys.path.insert(0, osp.join(osp.dirname(__file__), '..', '..', 'benchmarks'))
import bench  # noqa: E402
from suites import precision, precision_accuracy  # noqa: E402


@pytest.mark.skipif(not (probe('openvino')[0] and probe('timm')[0]), reason='needs openvino and timm')
def test_a_short_run_times_every_candidate_against_timm_in_one_loop(tmp_path, capsys):
    out = tmp_path / 'precision'
    assert bench.main(['precision', '--variants', 't8', 'fmvit_t', '--batches', '1', '--warmup', '0', '--runs', '3',
                       '--threads', '1', '--out', str(out)]) == 0
    doc = json.loads(out.with_suffix('.json').read_text())
    assert doc['settings']['cpu_facts']['model'] and doc['settings']['variants'] == ['t8', 'fmvit_t']
    t8, fmvit = doc['results']
    assert t8['baseline'] == 'timm/onnxruntime-cpu'
    assert fmvit['baseline'] == 'ours/onnxruntime-cpu'  # timm has no FMViT: our fp32 export is the baseline
    for result in (t8, fmvit):
        timed = set(result['latency'])
        ran = {f'ours/{b}' for b in precision.OURS if b not in result['skipped']}
        assert ran <= timed and result['baseline'] in timed
        assert all(len(lat['runs_ms']) == 3 for lat in result['latency'].values())  # one loop: same rounds each
        assert result['fastest'] in result['ratios']
        for ratio in result['ratios'].values():
            assert ratio['low'] <= ratio['ratio'] <= ratio['high'] and ratio['rounds'] == 3
    markdown = out.with_suffix('.md').read_text()
    assert 'fastest / baseline' in markdown and 'Reproduce: `' in markdown and 'of 2 networks' in markdown


@pytest.mark.parametrize('argv, message', [
    (['precision', '--variants', 'x9'], 'variant "x9" is not one of'),
    (['precision', '--batches', '0'], '--batches must be >= 1'),
    (['precision-accuracy', '--checkpoint', 'a.pth'], '--checkpoint, --config and --size go together'),
    (['precision-accuracy', '--calib-images', '0'], '--calib-images must be >= 1'),
])
def test_bad_options_are_named(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_precision_accuracy_reads_the_export_reports(tmp_path):
    """The table is built from the export tool's reports: a precision that could not run says why."""
    results = {'fp32': dict(ran=True, accuracy=dict(accuracy=1.0, fp32_accuracy=1.0, top1_agreement=1.0,
                                                    max_rel_error=1e-6, mean_rel_error=1e-7, images=200),
                            export=dict(kept_float=[])),
               'int8': dict(ran=True, accuracy=dict(accuracy=0.97, fp32_accuracy=1.0, top1_agreement=0.97,
                                                    max_rel_error=0.2, mean_rel_error=0.01, images=200),
                            export=dict(kept_float=['/stem/conv'])),
               'bf16': dict(ran=False, reason='this CPU has no bfloat16 arithmetic')}
    trained = dict(val_top1=100.0, num_classes=8, input_size=64)
    settings = dict(calib_images=300, cpu='AMD EPYC', cpu_count=2, date='today', command='bench.py precision-accuracy')
    text = precision_accuracy.markdown(results, trained, settings)
    assert '| int8 | 97.00% | 100.00% | 97.00% |' in text and '`/stem/conv`' in text
    assert 'FAILS for int8' in text and 'not run: this CPU has no bfloat16 arithmetic' in text
