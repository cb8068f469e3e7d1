"""Where ONNX Runtime spends its time in our export and in timm's, and how far the deploy targets can go there.

Both graphs of each variant (ours: fused to the deepest level with the export rewrites; timm's reparameterized model
with the same weights; the same exporter, opset and session options as ``bench.py deploy``) are run with
ONNX Runtime's profiler, iterations interleaved, and every node's kernel time is attributed to a part of the network
by the node's name:

* the parts the export rewrites: ``patch embeddings`` (7x7 stride-2 convolution with ``groups = C`` and ``2C``
  outputs, then a 1x1), ``final_conv + head`` (the same kind of convolution, SE, pooling, classifier) and
  ``attention`` (stage 4 of SA / MA);
* the parts both graphs compute the same way after ONNX Runtime's own fusions: ``stem``, ``blocks`` (RepMixer
  token mixer, ConvFFN convolutions, residuals), ``GELU`` (ONNX Runtime's fused erf GELU nodes carry no path; they
  are the same in both graphs) and ``positional encoding``; ``layout`` is the blocked-layout conversions and the
  transposes ONNX Runtime adds around timm's token attention.

From that it derives two bounds that hold for any exact rewrite of the rewritten parts:

* ``ratio floor``: ours / timm if everything but the shared parts cost nothing at all (timm's shared time / timm's
  total): a rewrite of the other parts cannot go below it while the shared parts run as they do;
* ``... their convolutions at the peak``: the same, with the rewritten parts taking at least the time of their
  convolutions' multiply-adds at the peak (the 1x1 convolutions of the patch embeddings are dense channel mixing that
  any exact form computes);
* ``% peak ceiling``: the share of the fp32 matrix-multiply peak (measured in the same run) the model could reach
  if every convolution and matrix product of ours ran at that peak and everything else (the erf GELU above all) took
  the time it takes here. ``1x1 rate`` is what the 1x1 convolutions attain, from their multiply-adds and times.

Per-node times come from the profiler and add up to less than the wall time (the executor's own work is not in
them), and with a few runs per model they move by several percent between runs: the ratio of two models is
measured by ``bench.py deploy`` (round-robin, with an interval); this subcommand says where the time goes and
derives the bounds from the proportions within timm's own profile.

Writes ``benchmarks/results/ort_profile_cpu_<cpu>.{json,md}`` by default (<cpu>: the CPU model, e.g. ``intel-xeon``).

Example:
    .venv/bin/python benchmarks/bench.py profile --variants s12 ma36 --batch 8 --runs 6
"""
import argparse
import collections
import datetime
import json
import os
import os.path as osp
import re
import tempfile
import time
from typing import Dict, List, Tuple

import numpy as np
import torch
from mmengine.logging import MMLogger

from mmfastvit.deploy.latency import load_average, machine_info, matmul_peak
from mmfastvit.models import FastViT

from . import common

NAME = 'profile'
SIZE = 256
REWRITTEN = ('patch embeddings', 'final_conv + head', 'attention')
SHARED = ('stem', 'blocks', 'GELU', 'positional encoding')  # the same nodes in both graphs
UNATTRIBUTED = ('layout', 'other')  # layout conversions (timm's grouped convolutions need some), unnamed nodes
MATRIX_OPS = ('Conv', 'FusedConv', 'MatMul', 'FusedMatMul', 'Gemm')


# node-name patterns, first match wins: a RepMixer's token mixer is ``token_mixer/reparam_conv`` (fused) or
# ``token_mixer/mixer`` (not); any other token mixer, and the BatchNorm before it in timm's graph, is attention
NAME_PARTS = ((r'/downsample/', 'patch embeddings'),
              (r'/final_conv/|/head/|/fc/|GlobalAveragePool|/Flatten', 'final_conv + head'),
              (r'/pos_emb/', 'positional encoding'),
              (r'/stem/', 'stem'),
              (r'/token_mixer/(?!reparam_conv|mixer)|/blocks?\.\d+/norm/', 'attention'),
              (r'/blocks', 'blocks'))


def part_of(node: str, op: str) -> str:
    """The part of FastViT an ONNX Runtime node belongs to, from its name (ours: ``/backbone/stages.N/...``;
    timm's: ``/stages.N/blocks/...``). The nodes ONNX Runtime creates have no path: its fused erf GELUs (the same
    ones in both graphs: stem, one per ConvFFN, ``final_conv``) and its blocked-layout conversions."""
    if op == 'Gelu':
        return 'GELU'
    if op.startswith('Reorder') or (op in ('Transpose', 'Reshape') and '/' not in node):
        return 'layout'  # the blocked layout's conversions; the transposes it adds around timm's token attention
    for pattern, part in NAME_PARTS:
        if re.search(pattern, node):
            return part
    return 'other'


def _conv_work(args: dict) -> Tuple[int, bool]:
    """Multiply-adds of a Conv node from the profiler's shapes (weight ``[O, I/g, kh, kw]``, output), and whether it
    is a 1x1 convolution; ``(0, False)`` for any other node."""
    shapes = [list(d.values())[0] for d in args.get('input_type_shape', [])]
    outputs = [list(d.values())[0] for d in args.get('output_type_shape', [])]
    if args.get('op_name') not in ('Conv', 'FusedConv') or len(shapes) < 2 or not outputs:
        return 0, False
    weight = shapes[1]
    return int(np.prod(outputs[0])) * int(np.prod(weight[1:])), weight[2:] == [1, 1]


# ---------------------------------------------------------------------------------------------------------------------
# mmfastvit.deploy: every call this subcommand makes into it (but for mmfastvit.deploy.latency) is in this section,
# so that a change of that API is met here alone.

def export_pair(variant: str, batch: int, size: int, work_dir: str, threads: int, log,
                seed: int = 0) -> Tuple[Dict[str, str], int]:
    """Ours (fused to the deepest level, export rewrites) and timm's fused FastViT-``variant`` with the same
    weights (seeded), exported and checked against PyTorch exactly as ``bench.py deploy`` does: the ONNX paths
    (``{'ours': ..., 'timm': ...}``) and our network's multiply-adds at ``batch``."""
    from mmfastvit.deploy.benchmark import prepare_network
    from mmfastvit.deploy.settings import BenchmarkSettings
    from mmfastvit.deploy.timm_pair import timm_fused_pair
    deployable, timm_model = timm_fused_pair(variant, seed)
    settings = BenchmarkSettings(variants=(variant,), backends=('onnxruntime-cpu',), batch=batch, shape=(size, size),
                                 threads=threads, seed=seed)
    net = prepare_network(deployable, settings, work_dir, timm_model=timm_model, log=log)
    return {who: info['path'] for who, info in net.onnx_files.items()}, net.macs


def session(path: str, threads: int, profile_prefix: str):
    """An ONNX Runtime CPU session with the benchmarks' options (no spinning), profiling to ``profile_prefix``."""
    from mmfastvit.deploy.engines.onnxruntime import ort_session
    return ort_session(path, threads=threads, spinning=False, profile_prefix=profile_prefix)


def session_options(threads: int):
    """The benchmarks' ONNX Runtime session options (no spinning)."""
    from mmfastvit.deploy.engines.onnxruntime import ort_session_options
    return ort_session_options(threads, spinning=False)


# ---------------------------------------------------------------------------------------------------------------------
# the profile and its reading

def profile(paths: Dict[str, str], x: np.ndarray, threads: int, runs: int, work_dir: str,
            warmup: int = 2) -> Dict[str, dict]:
    """Per-part kernel times (ms per run) of each model, ``runs`` profiled runs (after ``warmup`` unprofiled ones)
    interleaved across the models."""
    def sessions():
        return {who: session(p, threads, profile_prefix=osp.join(work_dir, who)) for who, p in paths.items()}

    warm = sessions()
    for _ in range(warmup):
        for s in warm.values():
            s.run(None, {s.get_inputs()[0].name: x})
    for s in warm.values():
        os.remove(s.end_profiling())
    timed = sessions()
    for _ in range(runs):
        for s in timed.values():
            s.run(None, {s.get_inputs()[0].name: x})
    out = {}
    for who, s in timed.items():
        trace = s.end_profiling()
        with open(trace) as f:
            events = json.load(f)
        os.remove(trace)
        parts, ops, part_macs, nodes = (collections.Counter() for _ in range(4))
        pointwise_ms, pointwise_macs = 0.0, 0
        for e in events:
            if e.get('cat') != 'Node' or not e['name'].endswith('_kernel_time'):
                continue
            ms = e['dur'] / 1e3 / runs
            op = e['args'].get('op_name', '?')
            part = part_of(e['name'], op)
            parts[part] += ms
            ops[op] += ms
            nodes[part] += 1 / runs
            macs, pointwise = _conv_work(e['args'])
            part_macs[part] += macs / runs
            if pointwise:
                pointwise_ms += ms
                pointwise_macs += macs / runs
        total = sum(parts.values())
        matrix = sum(ops[o] for o in MATRIX_OPS)
        out[who] = dict(total_ms=total, parts_ms=dict(parts), ops_ms=dict(ops), conv_macs=dict(part_macs),
                        nodes={p: round(n) for p, n in nodes.items()},
                        matrix_ms=matrix,
                        other_ms=total - matrix, pointwise_ms=pointwise_ms, pointwise_macs=pointwise_macs)
    return out


def gelu_throughput(sizes_mb: List[float], threads: int, runs: int = 20) -> List[dict]:
    """ONNX Runtime's fused erf GELU (``com.microsoft.Gelu``, what it makes of the exported erf pattern) alone on
    float32 tensors of ``sizes_mb``: ns per element. If it were bound by memory traffic, tensors that stay in the
    cache would run faster, and a graph could tile the ConvFFN to keep them there."""
    import onnxruntime as ort
    from onnx import TensorProto, helper
    out = []
    for size_mb in sizes_mb:
        shape = [max(1, int(size_mb * 2**20 / 4 / 1024)), 1024]
        graph = helper.make_graph([helper.make_node('Gelu', ['x'], ['y'], domain='com.microsoft')], 'gelu',
                                  [helper.make_tensor_value_info('x', TensorProto.FLOAT, shape)],
                                  [helper.make_tensor_value_info('y', TensorProto.FLOAT, shape)])
        model = helper.make_model(graph, ir_version=9, opset_imports=[helper.make_opsetid('', 18),
                                                                      helper.make_opsetid('com.microsoft', 1)])
        session = ort.InferenceSession(model.SerializeToString(), session_options(threads),
                                       providers=['CPUExecutionProvider'])
        x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
        for _ in range(3):
            session.run(None, {'x': x})
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            session.run(None, {'x': x})
            times.append(time.perf_counter() - start)
        out.append(dict(size_mb=size_mb, ns_per_element=float(np.median(times)) / x.size * 1e9))
    return out


def bounds(result: dict, gflop: float, peak: float) -> dict:
    """The ratio floor and % peak ceiling of the module docstring, and the attained rates."""
    ours, timm = result['ours'], result['timm']
    timm_rewritten = sum(timm['parts_ms'].get(p, 0.0) for p in REWRITTEN)
    ours_rewritten = sum(ours['parts_ms'].get(p, 0.0) for p in REWRITTEN)
    timm_shared = sum(timm['parts_ms'].get(p, 0.0) for p in SHARED)
    rewritten_conv_ms = sum(2 * ours['conv_macs'].get(p, 0) for p in REWRITTEN) / peak / 1e6
    at_peak_ms = gflop / peak * 1e3 + ours['other_ms']
    return dict(profile_ratio=ours['total_ms'] / timm['total_ms'],
                timm_rewritten_share=timm_rewritten / timm['total_ms'],
                ours_rewritten_ms=ours_rewritten, timm_rewritten_ms=timm_rewritten,
                ratio_floor=timm_shared / timm['total_ms'],
                ratio_floor_at_peak=(timm_shared + rewritten_conv_ms) / timm['total_ms'],
                attained_gflops=gflop / ours['total_ms'] * 1e3,
                pointwise_gflops=(2 * ours['pointwise_macs'] / ours['pointwise_ms'] / 1e6
                                  if ours['pointwise_ms'] else None),
                non_matrix_share=ours['other_ms'] / ours['total_ms'],
                peak_ceiling=gflop / at_peak_ms * 1e3 / peak)


def markdown(report: dict) -> str:
    peak = report['peak_gflops']
    lines = ['# Where ONNX Runtime spends its time: ours and timm\'s fused FastViT', '',
             f"Batch {report['batch']}, 256x256, float32, {report['threads']} thread(s), ONNX Runtime profiler, "
             f"{report['iters']} runs per model interleaved; times are per-node kernel times (ms per run).", '',
             '| variant | model | total | ' + ' | '.join(REWRITTEN + SHARED + UNATTRIBUTED) + ' |',
             '|---|---|---|' + '---|' * len(REWRITTEN + SHARED + UNATTRIBUTED)]
    for variant, res in report['variants'].items():
        for who in ('ours', 'timm'):
            prof = res['profile'][who]
            cells = [f"{prof['parts_ms'].get(p, 0.0):.1f}" for p in REWRITTEN + SHARED + UNATTRIBUTED]
            lines.append(f'| {variant.upper()} | {who} | {prof["total_ms"]:.1f} | ' + ' | '.join(cells) + ' |')
    lines += ['', '| variant | timm\'s time in the rewritten parts | ours there | '
              'ratio floor: all but the shared parts free | ... their convolutions at the peak | '
              'ours GFLOP/s (% peak) | 1x1 convs GFLOP/s (% peak) | time outside matrix ops | % peak ceiling |',
              '|---|---|---|---|---|---|---|---|---|']
    for variant, res in report['variants'].items():
        b = res['bounds']
        pw = b['pointwise_gflops']
        lines.append(
            f"| {variant.upper()} | {b['timm_rewritten_ms']:.1f} ms "
            f"({100 * b['timm_rewritten_share']:.1f}%) | {b['ours_rewritten_ms']:.1f} ms | {b['ratio_floor']:.3f} | "
            f"{b['ratio_floor_at_peak']:.3f} | "
            f"{b['attained_gflops']:.0f} ({100 * b['attained_gflops'] / peak:.0f}%) | "
            + (f'{pw:.0f} ({100 * pw / peak:.0f}%)' if pw else '-')
            + f" | {100 * b['non_matrix_share']:.1f}% | {100 * b['peak_ceiling']:.0f}% |")
    machine = report['machine']
    if report.get('gelu'):
        gelu = report['gelu']
        cached_faster = gelu[0]['ns_per_element'] < 0.9 * gelu[-1]['ns_per_element']
        lines += ['', 'ONNX Runtime\'s fused erf GELU alone, ns per element: ' + ', '.join(
            f"{g['ns_per_element']:.2f} at {g['size_mb']:g} MB" for g in gelu)
            + (' (faster on the smallest tensor: memory traffic matters, and tiling the ConvFFN for the cache '
               'could shorten it).' if cached_faster else ' (no faster on the smallest tensor, which fits in the '
               'cache: it is bound by arithmetic, not memory traffic).')]
    lines += ['', f"fp32 matrix-multiply peak measured in the same run: {peak:.0f} GFLOP/s (the best of "
              f"{report['peak']['runs']} torch.matmul {report['peak']['size']}^3, measured before each variant and at "
              f"the end; the bests ranged {min(report['peak_bests']):.0f}-{max(report['peak_bests']):.0f}). "
              f"Machine: {common.cpu_text(machine)}, torch {machine['torch']}, onnxruntime {report['onnxruntime']}; "
              f"load average before / after: {report['load_before']} / {report['load_after']}; {report['date']}.",
              '', 'Ratio floor: ours / timm if everything but the parts both graphs share (stem, blocks, GELU, '
              'positional encoding) took no time at all: timm\'s shared time over its total; the second floor gives '
              'the rewritten parts the time of their convolutions\' multiply-adds (as the profiler reports their '
              'shapes) at the peak. % peak ceiling: the share of the peak ours would reach with every convolution '
              'and matrix product at the peak and the other nodes (GELU, softmax, layout) as measured.', '',
              common.reproduce(report['command'])]
    return '\n'.join(lines) + '\n'


def add_parser(subparsers) -> None:
    parser = common.add_subcommand(subparsers, NAME, __doc__, main, validate)
    parser.add_argument('--variants', nargs='+', default=['t8', 's12', 'sa12', 'ma36'], choices=list(FastViT.arch_zoo))
    parser.add_argument('--batch', type=int, default=8)
    common.add_timing_options(parser, warmup=2, runs=6, unit='runs per model (profiled: --runs)')
    parser.add_argument('--gelu-sizes', nargs='*', type=float, default=[0.5, 2, 8, 32, 128],
                        help='tensor sizes (MB) to time the GELU alone at')
    common.add_shared_options(parser, common.cpu_results('ort_profile'),
                              threads_what='ONNX Runtime intra-op threads and torch.set_num_threads',
                              load_when='before each variant')


def validate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    common.check_at_least(parser, args, batch=1, runs=1, warmup=0, threads=1)


def main(args: argparse.Namespace) -> int:
    logger = MMLogger.get_instance('bench_profile', logger_name='bench_profile')
    import onnxruntime
    torch.set_num_threads(args.threads)
    x = torch.rand(args.batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(args.seed)) * 2 - 1
    report = dict(batch=args.batch, iters=args.runs, warmup=args.warmup, threads=args.threads, seed=args.seed,
                  machine=machine_info(),
                  onnxruntime=onnxruntime.__version__, date=datetime.date.today().isoformat(), command=args._command,
                  variants={})
    variants: Dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        load_before: List[float] = []
        peaks: List[dict] = []
        for variant in args.variants:
            paths, macs = export_pair(variant, args.batch, SIZE, tmp, args.threads, logger.info, args.seed)
            waited = common.wait_if_asked(args, logger.info)
            load = waited['load_average'] if waited else load_average()
            load_before.append((load or {}).get('1min'))
            peaks.append(matmul_peak())
            logger.info(f'{variant}: profiling ours and timm, {args.runs} runs each')
            prof = profile(paths, x.numpy(), args.threads, args.runs, tmp, warmup=args.warmup)
            variants[variant] = dict(gflop=2 * macs / 1e9, profile=prof)
        peaks.append(matmul_peak())
        report['gelu'] = gelu_throughput(args.gelu_sizes, args.threads)
    peak = max(peaks, key=lambda p: p['best_gflops'])
    known_loads = [v for v in load_before if v is not None]
    report.update(peak=peak, peak_gflops=peak['best_gflops'], peak_bests=[p['best_gflops'] for p in peaks],
                  load_before=max(known_loads) if known_loads else None,
                  load_after=(load_average() or {}).get('1min'))
    for variant, res in variants.items():
        res['bounds'] = bounds(res['profile'], res['gflop'], report['peak_gflops'])
    report['variants'] = variants
    text = markdown(report)
    common.write_results(args.out, report, text)
    logger.info('\n' + text)
    return 0
