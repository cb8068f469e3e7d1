"""Where ONNX Runtime spends its time in our export and in timm's, and how far the deploy targets can go there.

Both graphs of each variant (ours: fused to the deepest level with the export rewrites; timm's reparameterized model
with the same weights; the same exporter, opset and session options as ``benchmarks/deploy_latency.py``) are run with
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
measured by ``benchmarks/deploy_latency.py`` (round-robin, with an interval); this script says where the time goes
and derives the bounds from the proportions within timm's own profile.

Writes ``benchmarks/results/ort_profile_cpu.{json,md}``.

Example:
    .venv/bin/python benchmarks/ort_profile.py --variants s12 ma36 --batch 8 --iters 6
"""
import argparse
import collections
import datetime
import json
import os
import os.path as osp
import re
import shlex
import sys
import tempfile
import time
from typing import Dict, List, Tuple

import numpy as np
import torch
from mmengine.logging import MMLogger

from mmfastvit.deploy.benchmark import prepare_network, timm_fused_pair
from mmfastvit.deploy.latency import load_average, machine_info, matmul_peak, wait_for_load, write_text_atomic
from mmfastvit.deploy.runtimes import ort_session
from mmfastvit.models import FastViT

RESULTS = osp.join(osp.dirname(osp.abspath(__file__)), 'results')
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


def profile(paths: Dict[str, str], x: np.ndarray, threads: int, iters: int, work_dir: str) -> Dict[str, dict]:
    """Per-part kernel times (ms per run) of each model, iterations interleaved across the models."""
    def sessions():
        return {who: ort_session(p, threads=threads, spinning=False, profile_prefix=osp.join(work_dir, who))
                for who, p in paths.items()}

    warm = sessions()
    for _ in range(2):
        for s in warm.values():
            s.run(None, {s.get_inputs()[0].name: x})
    for s in warm.values():
        os.remove(s.end_profiling())
    timed = sessions()
    for _ in range(iters):
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
            ms = e['dur'] / 1e3 / iters
            op = e['args'].get('op_name', '?')
            part = part_of(e['name'], op)
            parts[part] += ms
            ops[op] += ms
            nodes[part] += 1 / iters
            macs, pointwise = _conv_work(e['args'])
            part_macs[part] += macs / iters
            if pointwise:
                pointwise_ms += ms
                pointwise_macs += macs / iters
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

    from mmfastvit.deploy.runtimes import ort_session_options
    out = []
    for size_mb in sizes_mb:
        shape = [max(1, int(size_mb * 2**20 / 4 / 1024)), 1024]
        graph = helper.make_graph([helper.make_node('Gelu', ['x'], ['y'], domain='com.microsoft')], 'gelu',
                                  [helper.make_tensor_value_info('x', TensorProto.FLOAT, shape)],
                                  [helper.make_tensor_value_info('y', TensorProto.FLOAT, shape)])
        model = helper.make_model(graph, ir_version=9, opset_imports=[helper.make_opsetid('', 18),
                                                                      helper.make_opsetid('com.microsoft', 1)])
        session = ort.InferenceSession(model.SerializeToString(), ort_session_options(threads, spinning=False),
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
              f"Machine: {machine['cpu']} "
              f"({machine['cpu_count']} cores), torch {machine['torch']}, onnxruntime {report['onnxruntime']}; load "
              f"average before / after: {report['load_before']} / {report['load_after']}; {report['date']}.",
              '', 'Ratio floor: ours / timm if everything but the parts both graphs share (stem, blocks, GELU, '
              'positional encoding) took no time at all: timm\'s shared time over its total; the second floor gives '
              'the rewritten parts the time of their convolutions\' multiply-adds (as the profiler reports their '
              'shapes) at the peak. % peak ceiling: the share of the peak ours would reach with every convolution '
              'and matrix product at the peak and the other nodes (GELU, softmax, layout) as measured.', '',
              f"Reproduce: `{report['command']}`"]
    return '\n'.join(lines) + '\n'


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--variants', nargs='+', default=['t8', 's12', 'sa12', 'ma36'], choices=list(FastViT.arch_zoo))
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--iters', type=int, default=6, help='profiled runs per model (after 2 warm-up runs)')
    parser.add_argument('--threads', type=int, default=2, help='ONNX Runtime intra-op threads')
    parser.add_argument('--max-load', type=float, default=1.5, help='wait for the 1-min load average to drop below')
    parser.add_argument('--wait-timeout', type=float, default=900)
    parser.add_argument('--gelu-sizes', nargs='*', type=float, default=[0.5, 2, 8, 32, 128],
                        help='tensor sizes (MB) to time the GELU alone at')
    parser.add_argument('--out', default=osp.join(RESULTS, 'ort_profile_cpu'), help='writes OUT.json and OUT.md')
    args = parser.parse_args(argv)
    if args.batch < 1 or args.iters < 1 or args.threads < 1:
        parser.error(f'--batch, --iters and --threads must be >= 1; got {args.batch}, {args.iters}, {args.threads}')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    logger = MMLogger.get_instance('ort_profile', logger_name='ort_profile')
    import onnxruntime
    torch.set_num_threads(args.threads)
    x = torch.rand(args.batch, 3, 256, 256, generator=torch.Generator().manual_seed(0)) * 2 - 1
    report = dict(batch=args.batch, iters=args.iters, threads=args.threads, machine=machine_info(),
                  onnxruntime=onnxruntime.__version__, date=datetime.date.today().isoformat(),
                  command='.venv/bin/python benchmarks/ort_profile.py ' + shlex.join(sys.argv[1:] if argv is None
                                                                                       else argv),
                  variants={})
    variants: Dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        load_before: List[float] = []
        peaks: List[dict] = []
        for variant in args.variants:
            deployable, timm_model = timm_fused_pair(variant)
            # exported and checked against PyTorch exactly as benchmarks/deploy_latency.py does
            net = prepare_network(deployable, ['onnxruntime-cpu'], args.batch, (256, 256), tmp, timm_model=timm_model,
                                  threads=args.threads, log=logger.info)
            paths = {who: info['path'] for who, info in net.onnx_files.items()}
            waited = wait_for_load(args.max_load, args.wait_timeout, log=logger.info)
            load_before.append((waited['load_average'] or {}).get('1min'))
            peaks.append(matmul_peak())
            logger.info(f'{variant}: profiling ours and timm, {args.iters} runs each')
            prof = profile(paths, x.numpy(), args.threads, args.iters, tmp)
            variants[variant] = dict(gflop=2 * net.macs / 1e9, profile=prof)
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
    write_text_atomic(args.out + '.json', json.dumps(report, indent=2) + '\n')
    text = markdown(report)
    write_text_atomic(args.out + '.md', text)
    logger.info('\n' + text)
    return 0


if __name__ == '__main__':
    sys.exit(main())
