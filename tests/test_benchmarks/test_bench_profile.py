"""bench.py profile: every node of both exported graphs is attributed to a part of FastViT by its name, and the
bounds it derives follow from the per-part times."""
import os.path as osp
import sys

import pytest
import torch

pytest.importorskip('onnxruntime')
pytest.importorskip('timm')
sys.path.insert(0, osp.join(osp.dirname(__file__), '..', '..', 'benchmarks'))
from suites import profile as ort_profile  # noqa: E402


@pytest.fixture(scope='module')
def profiled(tmp_path_factory):
    work = str(tmp_path_factory.mktemp('ort_profile'))
    paths, macs = ort_profile.export_pair('sa12', 1, 64, work, threads=1, log=lambda m: None)
    x = (torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1).numpy()
    return ort_profile.profile(paths, x, threads=1, runs=2, work_dir=work), 2 * macs / 1e9


def test_every_node_is_attributed(profiled):
    prof, _ = profiled
    for who in ('ours', 'timm'):
        parts = prof[who]['parts_ms']
        # SA12 has every part: patch embeddings, final_conv, attention in stage 4, the positional encoding before it
        assert set(ort_profile.REWRITTEN + ort_profile.SHARED) <= set(parts), (who, parts)
        assert all(parts[p] > 0 for p in ort_profile.REWRITTEN + ort_profile.SHARED)
        assert parts.get('other', 0.0) == 0.0, f'{who}: nodes with no known part'
        assert sum(parts.values()) == pytest.approx(prof[who]['total_ms'])
        assert sum(prof[who]['ops_ms'].values()) == pytest.approx(prof[who]['total_ms'])
        assert prof[who]['pointwise_macs'] > 0 and prof[who]['ops_ms']['Gelu'] == pytest.approx(parts['GELU'])
    # timm's grouped convolutions and token attention leave the blocked layout and come back; ours stays in it
    assert prof['timm']['nodes']['layout'] > prof['ours']['nodes'].get('layout', 0)
    assert prof['ours']['nodes']['attention'] < prof['timm']['nodes']['attention']


def test_bounds_follow_from_the_parts(profiled):
    prof, gflop = profiled
    b = ort_profile.bounds(prof, gflop, peak=100.0)
    timm = prof['timm']
    shared = sum(timm['parts_ms'][p] for p in ort_profile.SHARED)
    assert b['ratio_floor'] == pytest.approx(shared / timm['total_ms']) and 0 < b['ratio_floor'] < 1
    assert b['profile_ratio'] == pytest.approx(prof['ours']['total_ms'] / timm['total_ms'])
    # at the peak, the matrix work takes gflop / peak; the rest of ours' time stays
    at_peak_s = gflop / 100.0 + prof['ours']['other_ms'] / 1e3
    assert b['peak_ceiling'] == pytest.approx(gflop / at_peak_s / 100.0)
    assert b['attained_gflops'] == pytest.approx(gflop / prof['ours']['total_ms'] * 1e3)


@pytest.mark.parametrize('name, op, part', [
    ('/backbone/stages.1/downsample/proj/proj.1/reparam_conv/Conv', 'Conv', 'patch embeddings'),
    ('/stages.3/blocks/blocks.0/token_mixer/qkv/MatMul', 'MatMul', 'attention'),
    ('/backbone/stages.3/blocks.1/token_mixer/qkv/Conv', 'Conv', 'attention'),
    ('/stages.3/blocks/blocks.0/norm/BatchNormalization', 'BatchNormalization', 'attention'),
    ('/stages.2/blocks/blocks.4/token_mixer/reparam_conv/Conv', 'Conv', 'blocks'),
    ('/backbone/stages.0/blocks.0/mlp/fc2/Conv', 'Conv', 'blocks'),
    ('/backbone/final_conv/se/reduce/Conv', 'Conv', 'final_conv + head'),
    ('/head/fc/Gemm', 'Gemm', 'final_conv + head'),
    ('Gelu_token_12', 'Gelu', 'GELU'),
    ('ReorderOutput_token_3', 'ReorderOutput', 'layout'),
])
def test_part_names(name, op, part):
    assert ort_profile.part_of(name, op) == part


def test_gelu_throughput_and_its_reading():
    timed = ort_profile.gelu_throughput([0.25, 1], threads=1, runs=2)
    assert [g['size_mb'] for g in timed] == [0.25, 1] and all(g['ns_per_element'] > 0 for g in timed)
    report = dict(batch=1, iters=1, threads=1, variants={}, peak=dict(runs=1, size=8), peak_bests=[1.0],
                  peak_gflops=1.0, machine=dict(cpu='cpu', cpu_count=2, torch='t'), onnxruntime='o', load_before=None,
                  load_after=None, date='d', command='c')
    slow_small = [dict(size_mb=0.5, ns_per_element=0.8), dict(size_mb=128, ns_per_element=0.55)]
    assert 'no faster on the smallest tensor' in ort_profile.markdown(dict(report, gelu=slow_small))
    fast_small = [dict(size_mb=0.5, ns_per_element=0.3), dict(size_mb=128, ns_per_element=0.55)]
    assert 'tiling the ConvFFN for the cache could shorten it' in ort_profile.markdown(dict(report, gelu=fast_small))
