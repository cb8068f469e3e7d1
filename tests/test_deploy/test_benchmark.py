"""The latency tool: the protocol it records, what it measures per candidate, the files it writes, its refusals; FastViT
and FMViT timed together."""
import importlib.util
import json
import os.path as osp

import pytest
import torch

from mmfastvit.deploy.benchmark import run
from mmfastvit.deploy.engines import CUDA_BACKENDS, available_backends
from mmfastvit.deploy.report import markdown_table, write_report
from mmfastvit.deploy.runtimes import probe
from mmfastvit.deploy.settings import PROTOCOLS, BenchmarkSettings, protocol_plan

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(REPO, 'tools', 'deploy', 'benchmark.py')


def _tool():
    spec = importlib.util.spec_from_file_location('deploy_benchmark_tool', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_protocols_follow_the_paper():
    assert protocol_plan('paper', 'classifier') == (8, (256, 256))
    assert protocol_plan('paper', 'backbone') == (2, (512, 512))
    assert protocol_plan('batch1', 'classifier') == (1, (256, 256))
    assert protocol_plan('batch1', 'backbone', shape=(64, 96)) == (1, (64, 96))
    assert protocol_plan('paper', 'classifier', batch=4) == (4, (256, 256))
    with pytest.raises(ValueError, match='protocol "fast" is not one of'):
        protocol_plan('fast', 'classifier')
    args = _tool().parse_args(['--variants', 't8'])
    assert (args.warmup, args.runs, args.protocol, args.batch, args.shape) == (100, 100, 'paper', None, None)


def test_cuda_backends_are_reported_unavailable_without_gpu():
    usable, why = available_backends()
    if not torch.cuda.is_available():
        assert set(CUDA_BACKENDS) <= set(why) and not set(CUDA_BACKENDS) & set(usable)
        assert 'no CUDA GPU' in why['pytorch-cuda']
    with pytest.raises(ValueError, match="unknown backends \\['npu'\\]"):
        available_backends(['npu'])


@pytest.fixture(scope='module')
def report():
    if not (probe('onnxruntime')[0] and probe('timm')[0]):
        pytest.skip('needs onnxruntime and timm')
    settings = BenchmarkSettings(variants=('t8',), backends=('pytorch-cpu', 'onnxruntime-cpu'), shape=(64, 64),
                                 warmup=1, runs=3, compare_timm=True, threads=1, command='pytest')
    return run(settings, log=lambda m: None)


def test_report_records_the_protocol_and_machine(report):
    settings = report['settings']
    assert settings['protocol'] == 'paper' and settings['protocol_description'] == PROTOCOLS['paper']['description']
    assert (settings['warmup'], settings['runs']) == (1, 3)
    assert settings['batch_classifier'] == 8 and settings['shape_classifier'] == [64, 64]
    assert settings['threads'] == 1 and settings['dtype_cpu'] == 'float32'
    assert settings['onnx'] == dict(exporter='torchscript', opset=18, rewrites_ours=['attention', 'grouped_conv'],
                                    rewrites_timm=[])
    session = settings['onnxruntime_session']
    assert session['same_for_every_model'] and session['graph_optimization_level'] == 'all'
    assert session['intra_op_num_threads'] == 1 and session['allow_spinning'] is False
    assert set(settings['load_before']) == {'1min', '5min', '15min'}
    assert report['machine']['cpu_count'] >= 1 and 'load_average' in report['machine']
    assert report['peak']['cpu']['best_gflops'] > 0 and report['peak']['cpu']['threads'] == 1


def test_every_candidate_is_measured_and_checked(report):
    result = report['results']['fastvit_t8']
    assert result['batch'] == 8 and result['macs'] > 0
    assert set(result['latency']) == {'ours/pytorch-cpu', 'timm/pytorch-cpu', 'ours/onnxruntime-cpu',
                                      'timm/onnxruntime-cpu'}
    for summary in result['latency'].values():
        assert len(summary['runs_ms']) == 3
        assert 0 < summary['median_ms'] <= summary['p90_ms'] <= summary['max_ms']
        assert summary['throughput_ips'] == pytest.approx(8e3 / summary['median_ms'])
        assert summary['gflops'] == pytest.approx(2 * result['macs'] / summary['median_ms'] / 1e6)
        assert summary['peak_memory_mib'] is None or summary['peak_memory_mib'] > 0
    assert set(result['ratios_ours_over_timm']) == {'pytorch-cpu', 'onnxruntime-cpu'}
    assert result['ratios_ours_over_timm']['onnxruntime-cpu'] == pytest.approx(
        result['latency']['ours/onnxruntime-cpu']['median_ms'] / result['latency']['timm/onnxruntime-cpu']['median_ms'])
    for backend, interval in result['ratio_intervals_ours_over_timm'].items():
        assert interval['rounds'] == 3
        assert interval['low'] <= result['ratios_ours_over_timm'][backend] <= interval['high']
    checks = result['checks']
    assert checks['timm']['passed'] and checks['ours/onnxruntime-cpu']['passed']
    assert checks['ours/onnxruntime-cpu']['max_abs_diff'] < 1e-4


def test_written_files(report, tmp_path):
    written = write_report(report, str(tmp_path / 'lat'), log=lambda m: None)
    names = sorted(osp.basename(p) for p in written)
    assert names == ['lat.json', 'lat.md'] + (['lat.png'] if probe('matplotlib')[0] else [])
    loaded = json.loads((tmp_path / 'lat.json').read_text())
    assert loaded['settings']['warmup'] == 1 and loaded['settings']['runs'] == 3
    table = (tmp_path / 'lat.md').read_text()
    assert '| fastvit_t8 | 8 | 64x64 | ours |' in table and 'ours / timm onnxruntime-cpu' in table
    interval = loaded['results']['fastvit_t8']['ratio_intervals_ours_over_timm']['onnxruntime-cpu']
    assert f'{interval["ratio"]:.3f} [{interval["low"]:.3f}, {interval["high"]:.3f}]' in table
    assert 'Reproduce: `pytest`' in table and 'Load average (1 / 5 / 15 min) at the start of the run: ' in table
    if probe('matplotlib')[0]:
        assert (tmp_path / 'lat.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert markdown_table(report) in table


def test_tool_refusals(capsys, tmp_path):
    tool = _tool()
    with pytest.raises(SystemExit) as exc:
        tool.main(['--variants', 't8', '--backends', 'npu'])
    assert exc.value.code == 2 and "unknown backends ['npu']" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        tool.main(['--variants', 'xl'])
    assert exc.value.code == 2 and "unknown variants ['xl']" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        tool.main(['--variants', 't8', '--shape', '65'])
    assert exc.value.code == 2 and '65 is not' in capsys.readouterr().err
    if not torch.cuda.is_available():
        out = tmp_path / 'lat'
        assert tool.main(['--variants', 't8', '--backends', 'tensorrt', '--out', str(out), '--no-peak']) == 3
        assert 'none of the requested backends can run here' in capsys.readouterr().err
        assert not list(tmp_path.iterdir())


@pytest.fixture(scope='module')
def mixed_report():
    """FMViT-T and FastViT-T8 at batch 1, each at its paper's resolution, timed together (interleaved)."""
    if not probe('onnxruntime')[0]:
        pytest.skip('needs onnxruntime')
    return run(variants=['fmvit_t', 't8'], backends=['pytorch-cpu', 'onnxruntime-cpu'], protocol='batch1', warmup=1,
               runs=3, threads=1, measure_peak=False, interleave_networks=True, log=lambda m: None, command='pytest')


def test_fmvit_protocols_use_its_resolution():
    assert protocol_plan('batch1', 'classifier', family='fmvit') == (1, (224, 224))
    assert protocol_plan('paper', 'classifier', family='fmvit') == (8, (224, 224))
    assert protocol_plan('paper', 'backbone', family='fmvit') == (2, (512, 512))
    assert protocol_plan('paper', 'classifier', shape=(256, 256), family='fmvit') == (8, (256, 256))
    with pytest.raises(ValueError, match='family "nextvit" is not one of'):
        protocol_plan('paper', 'classifier', family='nextvit')


def test_fmvit_report_records_the_protocol(mixed_report, tmp_path):
    settings = mixed_report['settings']
    assert settings['protocol'] == 'batch1' and settings['protocol_description'] == PROTOCOLS['batch1']['description']
    assert 'FMViT classifiers at 224x224, FastViT at 256x256' in settings['protocol_description']
    assert settings['shape_classifier'] == [256, 256] and settings['shape_classifier_fmvit'] == [224, 224]
    assert settings['batch_classifier'] == 1 and (settings['warmup'], settings['runs']) == (1, 3)
    assert settings['timing'].startswith('round-robin across every network and model of one backend')
    fmvit, fastvit = mixed_report['results']['fmvit_t'], mixed_report['results']['fastvit_t8']
    assert (fmvit['family'], fmvit['shape'], fmvit['batch']) == ('fmvit', [224, 224], 1)
    assert (fastvit['family'], fastvit['shape']) == ('fastvit', [256, 256])
    assert fmvit['source'] == dict(variant='fmvit_t', family='fmvit', arch='t', seed=0)
    assert fmvit['macs'] == pytest.approx(0.315e9, rel=0.02)  # FMViT's docstring: 0.315 G fused at 224x224
    for res in (fmvit, fastvit):
        assert set(res['latency']) == {'ours/pytorch-cpu', 'ours/onnxruntime-cpu'}
        for summary in res['latency'].values():
            assert len(summary['runs_ms']) == 3
            assert summary['gflops'] == pytest.approx(2 * res['macs'] / summary['median_ms'] / 1e6)
        assert res['load_before'] == fastvit['load_before']  # timed together
    assert fmvit['checks']['export_form']['applied'] == dict(attention=1, grouped_conv=0)
    assert fmvit['checks']['ours/onnxruntime-cpu']['max_abs_diff'] < 1e-4
    written = write_report(mixed_report, str(tmp_path / 'mixed'), log=lambda m: None)
    assert json.loads((tmp_path / 'mixed.json').read_text())['results']['fmvit_t']['shape'] == [224, 224]
    table = (tmp_path / 'mixed.md').read_text()
    assert table.startswith('# FastViT and FMViT latency') and '| fmvit_t | 1 | 224x224 | ours |' in table
    assert 'round-robin across every network' in table
    if probe('matplotlib')[0]:
        assert str(tmp_path / 'mixed.png') in written


def test_fmvit_variants_in_the_tool(capsys):
    tool = _tool()
    args = tool.parse_args(['--variants', 'T8', 'fmvit', 'fastvit_sa12', 'fmvit_t'])
    assert args.variants == ['t8', 'fmvit_t', 'fmvit_s', 'fmvit_m', 'fmvit_b', 'fmvit_l', 'sa12']
    assert tool.parse_args(['--variants', 'all']).variants == ['t8', 't12', 's12', 'sa12', 'sa24', 'sa36', 'ma36']
    with pytest.raises(SystemExit) as exc:
        tool.main(['--variants', 'fmvit_xl'])
    assert exc.value.code == 2 and "unknown variants ['fmvit_xl']" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        tool.main(['--variants', 't8', 'fmvit_t', '--compare-timm'])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--compare-timm compares FastViT variants only (timm has no FMViT): drop ['fmvit_t']" in err
    with pytest.raises(ValueError, match='timm has no FMViT'):
        run(variants=['fmvit_s'], compare_timm=True, log=lambda m: None)
