"""Deployed latency of the seven FastViT classifiers: PyTorch eager vs ONNX Runtime, ours vs timm's fused model.

For every variant, ours (fused to the deepest level, exported with the export rewrites) and timm's reparameterized
model with the same weights (exported by the same exporter, same opset, run with the same ONNX Runtime session
options) are timed in PyTorch eager mode and in ONNX Runtime, at batch 1 (FMViT's tables) and at the paper's batch 8,
256x256, float32, on the CPU (and on the GPU backends when there is one). The machine's fp32 matrix-multiply peak is
measured in the same run; the load average is recorded before and after (the machine may be shared: --max-load
waits for it to drop first).

Writes ``benchmarks/results/deploy_latency_<device>_b<N>.{json,md,png}`` (one run each) and
``benchmarks/results/deploy_latency_<device>.md``, the summary with the targets:

* ours in ONNX Runtime at most 0.90x the latency of timm's fused export in ONNX Runtime, for every variant;
* MA36 at batch 8 in ONNX Runtime at 75 % or more of the measured fp32 peak.

Example:
    .venv/bin/python benchmarks/deploy_latency.py                       # CPU, all variants, both batches
    .venv/bin/python benchmarks/deploy_latency.py --variants t8 ma36 --batches 8 --runs 30
"""
import argparse
import json
import os.path as osp
import shlex
import sys

from mmengine.logging import MMLogger

import torch

from mmfastvit.deploy.benchmark import (CPU_BACKENDS, CUDA_BACKENDS, accuracy_latency_plot, available_backends,
                                        markdown_table, ratio_text, run, write_report)
from mmfastvit.deploy.latency import load_average, matmul_peak, wait_for_load, write_text_atomic
from mmfastvit.models import FastViT

RESULTS = osp.join(osp.dirname(osp.abspath(__file__)), 'results')
RATIO_TARGET = 0.90
PEAK_TARGET = 0.75


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--variants', nargs='+', default=list(FastViT.arch_zoo), choices=list(FastViT.arch_zoo))
    parser.add_argument('--batches', nargs='+', type=int, default=[1, 8])
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--warmup', type=int, default=100, help='the paper\'s 100')
    parser.add_argument('--runs', type=int, default=100, help='the paper\'s 100')
    parser.add_argument('--warmup-b8', type=int, default=None, help='warm-up at batch > 1 (default --warmup)')
    parser.add_argument('--runs-b8', type=int, default=None, help='timed runs at batch > 1 (default --runs)')
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--max-load', type=float, default=1.5,
                        help='before each variant, wait until the 1-min load average is below this')
    parser.add_argument('--max-wait', type=float, default=600, help='longest wait per variant (s)')
    parser.add_argument('--retry-above', type=float, default=None,
                        help='re-measure a variant whose 1-min load average rose above this while it was timed '
                             '(default --max-load + 1); the attempt with the lowest load is kept')
    parser.add_argument('--retries', type=int, default=2)
    parser.add_argument('--render-only', action='store_true',
                        help='re-render the tables, figures and summary from the JSON files in --out-dir')
    parser.add_argument('--out-dir', default=RESULTS)
    return parser.parse_args(argv)


def _load(load) -> str:
    return 'n/a' if not load else f"{load['1min']} / {load['5min']} / {load['15min']}"


def _engine(device: str) -> str:
    return 'onnxruntime-cpu' if device == 'cpu' else 'onnxruntime-cuda'


def _peak(report: dict, device: str) -> float:
    return report['peak']['cpu' if device == 'cpu' else 'cuda_fp16']['best_gflops']


def summary_table(reports: dict, device: str) -> list:
    """One line per variant and batch: both models in both runtimes, the ratios, the share of the peak."""
    eager, engine = ('pytorch-cpu', 'onnxruntime-cpu') if device == 'cpu' else ('pytorch-cuda', 'onnxruntime-cuda')
    header = ['variant', 'batch', f'ours {engine} ms', f'timm {engine} ms', f'ours / timm {engine}',
              f'ours {eager} ms', f'timm {eager} ms', f'ours / timm {eager}', f'timm {engine} / timm {eager}',
              f'ours {engine} GFLOP/s (% peak)', 'load 1 min before / after']
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for batch, report in reports.items():
        peak = _peak(report, device)
        for res in report['results'].values():
            lat = res['latency']

            def ms(key):
                return f'{lat[key]["median_ms"]:.2f}' if key in lat else '-'

            def ratio(a, b):
                return f'{lat[a]["median_ms"] / lat[b]["median_ms"]:.3f}' if a in lat and b in lat else '-'

            ours = lat.get(f'ours/{engine}')
            lines.append('| ' + ' | '.join([
                res['source']['variant'].upper(), str(batch), ms(f'ours/{engine}'), ms(f'timm/{engine}'),
                ratio_text(res, engine), ms(f'ours/{eager}'), ms(f'timm/{eager}'), ratio_text(res, eager),
                ratio(f'timm/{engine}', f'timm/{eager}'),
                f'{ours["gflops"]:.0f} ({100 * ours["gflops"] / peak:.0f}%)' if ours else '-',
                f'{res["load_before"]["1min"]} / {res["load_after"]["1min"]}']) + ' |')
    return lines


def verdicts(reports: dict, device: str = 'cpu') -> list:
    """The target lines of the summary."""
    lines = []
    engine = _engine(device)
    for batch, report in reports.items():
        results = {res['source']['variant']: res for res in report['results'].values()}
        ratios = {v: res['ratios_ours_over_timm'].get(engine) for v, res in results.items()}
        failing = [v for v, r in ratios.items() if r is None or r > RATIO_TARGET]
        lines.append(f'- batch {batch}: ours / timm in ONNX Runtime <= {RATIO_TARGET:.2f} for every variant: '
                     + ('HOLDS' if not failing else f'FAILS on {", ".join(v.upper() for v in failing)}')
                     + ' (' + ', '.join(f'{v.upper()} {ratio_text(results[v], engine)}' for v, r in ratios.items()
                                        if r is not None) + ')')
    if 8 in reports and 'fastvit_ma36' in reports[8]['results']:
        report = reports[8]
        peak = _peak(report, device)
        for model in ('ours', 'timm'):
            lat = report['results']['fastvit_ma36']['latency'].get(f'{model}/{engine}')
            if lat:
                frac = lat['gflops'] / peak
                verdict = ('HOLDS' if frac >= PEAK_TARGET else 'FAILS') if model == 'ours' else 'reference'
                lines.append(f'- MA36, batch 8, ONNX Runtime, {model}: {lat["gflops"]:.0f} GFLOP/s = '
                             f'{100 * frac:.0f}% of the measured {peak:.0f} GFLOP/s peak (target >= '
                             f'{100 * PEAK_TARGET:.0f}% for ours: {verdict})')
    return lines


def write_summary(reports: dict, device: str, out_dir: str, command: str) -> str:
    """``deploy_latency_<device>.md``: the compact table, links to the full ones, the verdicts."""
    lines = []
    for batch, report in reports.items():
        table = f'deploy_latency_{device}_b{batch}.md'
        settings = report['settings']
        lines.append(f'- batch {batch}: [`{table}`]({table}), {settings["warmup"]} warm-up + {settings["runs"]} '
                     f'timed runs per candidate')
    summary = [f'# FastViT deployed latency ({device})', '',
               f'Medians; {reports[next(iter(reports))]["settings"]["threads"]} CPU thread(s); ours = fused to the '
               f'deepest level + export rewrites, timm = timm\'s reparameterized model with the same weights, both '
               f'exported with the same exporter / opset and run with the same ONNX Runtime session options.', '',
               *summary_table(reports, device), '',
               'Full tables (p90, throughput, peak memory, PyTorch and ONNX Runtime side by side):', *lines, '',
               'Targets:', *verdicts(reports, device), '', f'Reproduce: `{command}`', '']
    path = osp.join(out_dir, f'deploy_latency_{device}.md')
    write_text_atomic(path, '\n'.join(summary))
    return '\n'.join(summary)


def render_only(args, logger) -> int:
    """Re-renders every table, figure and the summary from the JSON files (the measurements are not touched)."""
    reports = {}
    stems = {batch: osp.join(args.out_dir, f'deploy_latency_{args.device}_b{batch}') for batch in args.batches}
    missing = [stem + '.json' for stem in stems.values() if not osp.isfile(stem + '.json')]
    if missing:
        logger.error(f'--render-only re-renders measured runs, and there is none to render: {", ".join(missing)} '
                     f'not found (measure first, or point --out-dir / --batches / --device at existing results)')
        return 2
    for batch, stem in stems.items():
        with open(stem + '.json') as f:
            reports[batch] = json.load(f)
        write_text_atomic(stem + '.md', '# FastViT latency\n\n' + markdown_table(reports[batch]))
        accuracy_latency_plot(reports[batch], stem + '.png')
    logger.info(write_summary(reports, args.device, args.out_dir, reports[args.batches[0]]['settings']['command']))
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    logger = MMLogger.get_instance('deploy_latency', logger_name='deploy_latency')
    if args.render_only:
        return render_only(args, logger)
    backends = list(CPU_BACKENDS if args.device == 'cpu' else CUDA_BACKENDS)
    usable, why = available_backends(backends)
    if not usable:
        note = (f'# FastViT deployed latency ({args.device})\n\nNot measured on this machine: '
                + '; '.join(f'{b}: {w}' for b, w in why.items()) + f'.\n\nOn a machine that has them: '
                f'`python benchmarks/deploy_latency.py --device {args.device}`\n')
        write_text_atomic(osp.join(args.out_dir, f'deploy_latency_{args.device}.md'), note)
        logger.info(note)
        return 3
    command = shlex.join(sys.orig_argv)
    retry_above = args.retry_above if args.retry_above is not None else args.max_load + 1.0
    device = 'cuda' if args.device == 'cuda' else 'cpu'
    reports = {}

    def wait(label):
        waited = wait_for_load(args.max_load, args.max_wait, poll_s=10, log=logger.info)
        logger.info(f'{label}: load average {waited["load_average"]} after waiting {waited["waited_s"]} s')
        return dict(waited_for_load=waited)

    def peak():
        if device == 'cpu':
            return dict(cpu=matmul_peak(device='cpu'))
        return dict(cuda_fp32=matmul_peak(4096, device='cuda', dtype=torch.float32),
                    cuda_fp16=matmul_peak(4096, device='cuda', dtype=torch.float16))

    for batch in args.batches:
        big = batch > 1
        warmup = args.warmup_b8 if big and args.warmup_b8 is not None else args.warmup
        runs = args.runs_b8 if big and args.runs_b8 is not None else args.runs
        peaks, results, report = [peak()], {}, None
        for variant in args.variants:
            best, best_load = None, None
            for attempt in range(1 + args.retries):
                one = run(variants=[variant], backends=usable, protocol='paper', batch=batch, warmup=warmup,
                          runs=runs, threads=args.threads, compare_timm=True, measure_peak=False, log=logger.info,
                          before_each=wait, command=command)
                res = one['results'][f'fastvit_{variant}']
                load = max(res['load_before']['1min'], res['load_after']['1min'])
                res['attempt'] = attempt
                if best is None or load < best_load:
                    best, best_load, report = res, load, report or one
                if load <= retry_above:
                    break
                logger.info(f'{variant}, batch {batch}: the load average reached {load} while it was timed (> '
                            f'{retry_above}); measuring again ({attempt + 1}/{args.retries})')
            results[f'fastvit_{variant}'] = best
        peaks.append(peak())
        key = 'cpu' if device == 'cpu' else 'cuda_fp16'
        report['peak'] = max(peaks, key=lambda p: p[key]['best_gflops'])
        report['peak_measurements'] = peaks
        report['results'] = results
        report['settings'].update(max_load=args.max_load, retry_above=retry_above, retries=args.retries,
                                  load_after=load_average(), peak='best of the measurements before and after')
        stem = osp.join(args.out_dir, f'deploy_latency_{args.device}_b{batch}')
        for path in write_report(report, stem, log=logger.info):
            logger.info(f'wrote {path}')
        reports[batch] = report
    logger.info(write_summary(reports, args.device, args.out_dir, command))
    return 0


if __name__ == '__main__':
    sys.exit(main())
