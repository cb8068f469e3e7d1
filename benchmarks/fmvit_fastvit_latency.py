"""FastViT and FMViT in one latency table: the same backends and protocol, timed together in one run per batch.

Every network (FastViT and FMViT classifiers built from their variant tables with seeded random weights, fused to the
deepest form, checked, exported with the deploy tool's export form) is timed with ``mmfastvit.deploy.benchmark.run(...,
interleave_networks=True)``: warm-up and timed runs round-robin across all networks within each backend (PyTorch eager,
then ONNX Runtime on the CPU; the GPU backends on a GPU machine), so that drift in the machine's speed affects every
network alike and the ratios between networks are taken under the same conditions.

* batch 1: FMViT at 224x224 and FastViT at 256x256, as FMViT's Table 2 compares them (``protocol='batch1'``);
* batch 8: the FastViT paper's protocol, FastViT at 256x256; FMViT at 224x224 here too, its own resolution.

Ratios, per backend and batch: every model against FastViT-T8, and FMViT-X against the FastViT of similar FLOPs
(T / T8, S / T12, M / SA12, B / SA24, L / SA36). Table 2's published figures (A10 GPU, iPhone 13) stand beside ours,
with the same ratios where Table 2 has both models.

Options: every option of ``benchmarks/deploy_latency.py``, whose parser this reuses (``--variants`` is the list of
FastViT variants; ``--batches``, ``--device``, ``--warmup``/``--runs``, ``--warmup-b8``/``--runs-b8``, ``--threads``,
``--max-load``/``--max-wait``, ``--retry-above``/``--retries``, ``--render-only``, ``--out-dir``), plus ``--fmvit``
(the FMViT variants) and ``--wait-timeout`` (``--max-wait`` under the name of the other benchmarks). A retry re-times
the whole batch. Writes ``fmvit_fastvit_latency_<device>.{json,md}`` and ``..._b<N>.png`` (accuracy vs latency).

Example:
    .venv/bin/python benchmarks/fmvit_fastvit_latency.py --threads 1 --warmup-b8 3 --runs-b8 15 --retries 0
    .venv/bin/python benchmarks/fmvit_fastvit_latency.py --variants t8 t12 --fmvit t s --warmup 5 --runs 20
"""
import argparse
import json
import os.path as osp
import shlex
import sys
from typing import Dict, List, Optional

from mmengine.logging import MMLogger

import deploy_latency  # benchmarks/deploy_latency.py: its options are this script's
from mmfastvit.deploy.benchmark import (BACKENDS, CPU_BACKENDS, CUDA_BACKENDS, accuracy_latency_plot,
                                        available_backends, markdown_table, run)
from mmfastvit.deploy.latency import load_average, wait_for_load, write_text_atomic
from mmfastvit.deploy.runtimes import BackendUnavailable
from mmfastvit.models import FastViT, FMViT

REFERENCE = 't8'
# FMViT-X -> the FastViT of similar FLOPs (fused, fvcore multiply-adds: FMViT at 224x224, FastViT at 256x256)
MATCHED = {'fmvit_t': 't8', 'fmvit_s': 't12', 'fmvit_m': 'sa12', 'fmvit_b': 'sa24', 'fmvit_l': 'sa36'}
# FMViT's Table 2 (docs/fmvit.md), batch 1, FMViT at 224x224, FastViT at 256x256: params (M), FLOPs (G), PyTorch 1.12
# and TensorRT 8.5.3 latency on an A10 (ms), Core ML latency on an iPhone 13 (ms), ImageNet-1k top-1 (%).
TABLE2 = {
    'fmvit_t': (2.0, 0.3, 6.7, 0.8, 0.55, 72.9), 'fmvit_s': (6.4, 0.8, 7.0, 1.1, 0.83, 78.5),
    'fmvit_m': (12.8, 2.0, 7.1, 1.5, 1.42, 80.3), 'fmvit_b': (24.3, 4.2, 9.1, 2.4, 2.40, 82.4),
    'fmvit_l': (35.3, 7.1, 15.2, 3.9, 3.30, 83.3), 't8': (3.6, 0.7, 4.9, 1.3, 0.92, 75.6),
    't12': (6.8, 1.4, 6.0, 1.7, 1.42, 79.1), 'sa24': (20.6, 3.8, 10.1, 3.4, 2.84, 82.6),
}
T2_PYTORCH, T2_TENSORRT = 2, 3
SHORT = {'pytorch-cpu': 'PyTorch', 'onnxruntime-cpu': 'ORT', 'pytorch-cuda': 'PyTorch CUDA',
         'pytorch-cuda-graph': 'CUDA graph', 'onnxruntime-cuda': 'ORT CUDA', 'tensorrt': 'TensorRT'}


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """``--fmvit`` and ``--wait-timeout`` here; everything else is ``deploy_latency.parse_args``'s."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], add_help=False,
                                     epilog='and every option of benchmarks/deploy_latency.py (below)')
    parser.add_argument('-h', '--help', action='store_true')
    parser.add_argument('--fmvit', nargs='+', default=list(FMViT.arch_zoo), choices=list(FMViT.arch_zoo),
                        help='FMViT variants (default: all five)')
    parser.add_argument('--wait-timeout', type=float, help='--max-wait under the other benchmarks\' name (s)')
    own, rest = parser.parse_known_args(argv)
    if own.help:
        parser.print_help()
        print()
        deploy_latency.parse_args(['--help'])  # prints its options and exits
    args = deploy_latency.parse_args(rest)
    args.fmvit = [f'fmvit_{arch}' for arch in own.fmvit]
    if own.wait_timeout is not None:
        args.max_wait = own.wait_timeout
    return args


# ---------------------------------------------------------------------------------------------------------------------
# the table

def _ratio(results: Dict[str, dict], model: str, reference: Optional[str], backend: str) -> Optional[float]:
    a = results.get(model, {}).get('latency', {}).get(f'ours/{backend}')
    b = results.get(reference, {}).get('latency', {}).get(f'ours/{backend}') if reference else None
    return a['median_ms'] / b['median_ms'] if a and b else None


def _cell(values: List[Optional[float]], fmt: str = '{:.2f}') -> str:
    return ' / '.join('-' if v is None else fmt.format(v) for v in values)


def _by_variant(report: dict) -> Dict[str, dict]:
    return {res['source']['variant']: res for res in report['results'].values()}


def _table2_ratio(variant: str, reference: Optional[str]) -> str:
    if reference is None or variant not in TABLE2 or reference not in TABLE2:
        return '-'
    a, b = TABLE2[variant], TABLE2[reference]
    return _cell([a[T2_PYTORCH] / b[T2_PYTORCH], a[T2_TENSORRT] / b[T2_TENSORRT]])


def combined_table(reports: Dict[int, dict]) -> List[str]:
    """One row per model: our medians and ratios at each batch, then Table 2's published figures and ratios."""
    first = next(iter(reports.values()))
    present = {key.split('/', 1)[1] for report in reports.values() for res in report['results'].values()
               for key in res['latency']}
    backends = [b for b in BACKENDS if b in present]
    engine = next((b for b in ('onnxruntime-cpu', 'tensorrt', 'onnxruntime-cuda') if b in backends), backends[-1])
    pair = ' / '.join(SHORT[b] for b in backends)
    header = ['model', 'input', 'GMACs']
    for batch in reports:
        header += [f'b{batch} {SHORT[b]} ms' for b in backends] + [f'b{batch} {SHORT[engine]} GFLOP/s',
                                                                  f'b{batch} / T8 ({pair})',
                                                                  f'b{batch} / FLOP-matched FastViT ({pair})']
    header += ['Table 2 GFLOPs', 'Table 2 PyTorch A10 ms', 'Table 2 TensorRT ms', 'Table 2 Core ML ms',
               'Table 2 / T8 (PyTorch / TensorRT)', 'Table 2 / matched (PyTorch / TensorRT)', 'Table 2 top-1']
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    by_batch = {batch: _by_variant(report) for batch, report in reports.items()}
    order = [v for v in list(FastViT.arch_zoo) + list(MATCHED) if v in _by_variant(first)]
    for variant in order:
        res = by_batch[next(iter(reports))][variant]
        matched = MATCHED.get(variant)
        name = (f'FMViT-{variant[6:].upper()} (vs {matched.upper()})' if matched else f'FastViT-{variant.upper()}')
        cells = [name, f'{res["shape"][0]}x{res["shape"][1]}', f'{res["macs"] / res["batch"] / 1e9:.3f}']
        for batch, results in by_batch.items():
            lat = results.get(variant, {}).get('latency', {})
            cells += [_cell([lat[f'ours/{b}']['median_ms'] if f'ours/{b}' in lat else None]) for b in backends]
            ours = lat.get(f'ours/{engine}')
            cells.append(f'{ours["gflops"]:.0f}' if ours else '-')
            cells.append(_cell([_ratio(results, variant, REFERENCE, b) for b in backends], '{:.3f}'))
            cells.append(_cell([_ratio(results, variant, matched, b) for b in backends], '{:.3f}') if matched
                         else '')
        t2 = TABLE2.get(variant)
        cells += [f'{t2[1]}', f'{t2[2]}', f'{t2[3]}', f'{t2[4]}'] if t2 else ['-'] * 4
        cells += [_table2_ratio(variant, REFERENCE) if t2 else '-', _table2_ratio(variant, matched) if matched else '',
                  f'{t2[5]}' if t2 else '-']
        lines.append('| ' + ' | '.join(cells) + ' |')
    return lines


def _load(load: Optional[dict]) -> str:
    return 'n/a' if not load else f"{load['1min']} / {load['5min']} / {load['15min']}"


def timing_load(report: dict) -> float:
    """The highest 1-minute load average at the start or end of the timing (the same for every network)."""
    return max(max(r['load_before']['1min'], r['load_after']['1min']) for r in report['results'].values())


def render(doc: dict, device: str, out_dir: str) -> str:
    """Writes ``fmvit_fastvit_latency_<device>.md`` and the figures from ``doc`` (the JSON); returns the markdown."""
    reports = {int(batch): report for batch, report in doc['reports'].items()}
    first = next(iter(reports.values()))
    machine, settings = first['machine'], first['settings']
    lines = [f'# FastViT and FMViT latency ({device}), timed together', '',
             'Every network is timed in the same run as the others: warm-up and timed runs round-robin across all '
             'networks within each backend (backends one after the other), so the ratios between networks are taken '
             'under the same conditions. Ours: classifiers with seeded random weights (latency does not depend on the '
             'values), fused to the deepest form and checked against the unfused model, exported to ONNX with the '
             'deploy tool\'s export form (FastViT: split grouped convs and channel-first attention; FMViT: its '
             'RLMHSA channel-first), float32, medians.', '',
             *combined_table(reports), '',
             '- Inputs: FMViT at 224x224 and FastViT at 256x256 at every batch, as in FMViT\'s Table 2 (the FastViT '
             'paper\'s batch-8 protocol is at 256x256; FMViT stays at its own resolution there too, so its GMACs are '
             'those of 224x224).',
             '- `/ T8`: median / FastViT-T8\'s median, same backend, same batch; `/ FLOP-matched FastViT`: FMViT-X / '
             'the FastViT named in its row (T / T8, S / T12, M / SA12, B / SA24, L / SA36), pairs of similar '
             'multiply-adds. Below 1: faster. Cells `a / b` list the backends in the header\'s order.',
             '- GMACs: fvcore multiply-adds of the fused network per image (the papers\' "FLOPs"); GFLOP/s = 2 x '
             'multiply-adds x batch / median.',
             '- Table 2: FMViT\'s published figures, batch 1, PyTorch 1.12 and TensorRT 8.5.3 on an NVIDIA A10, Core '
             'ML on an iPhone 13 (FastViT rows: the three FastViT models Table 2 lists); its ratios are computed here '
             'from those figures.', '']
    for batch, report in reports.items():
        s = report['settings']
        waited = next(iter(report['results'].values())).get('before', {}).get('waited_for_load')
        wait_text = (f'; waited {waited["waited_s"]} s for the 1-min load to drop below {s.get("max_load")} '
                     + ('(reached)' if waited['below'] else '(not reached: timed anyway)')) if waited else ''
        peak = report.get('peak', {}).get('cpu', {}).get('best_gflops')
        lines.append(f'- Batch {batch}: protocol "{s["protocol"]}", {s["warmup"]} warm-up + {s["runs"]} timed runs '
                     f'per candidate, {s["threads"]} CPU thread(s); load average (1 / 5 / 15 min) when the timing '
                     f'started: {_load(next(iter(report["results"].values()))["load_before"])}, when it ended: '
                     f'{_load(next(iter(report["results"].values()))["load_after"])}{wait_text}'
                     + (f'; fp32 matmul peak {peak:.0f} GFLOP/s' if peak else '') + '.')
    versions = ', '.join(f'{k} {v}' for k, v in settings['versions'].items() if v)
    lines += [f'- Machine: {machine["cpu"]} ({machine["cpu_count"]} cores), '
              + (f'{machine["gpu"]}; ' if machine.get('gpu') else 'no GPU; ')
              + f'torch {machine["torch"]}, {versions}. Other jobs were running on it: the load averages above say '
                f'how busy it was; compare ratios within this run, not absolute times across runs.',
              f'- ONNX: {settings["onnx"]["exporter"]} exporter, opset {settings["onnx"]["opset"]}; ONNX Runtime '
              f'session: all graph optimizations, {settings["onnxruntime_session"]["intra_op_num_threads"]} intra-op '
              f'thread(s), no spinning, the same for every model.', '',
              f'Reproduce: `{doc["command"]}`', '', '## Details per batch', '']
    for batch, report in reports.items():
        lines += [f'### Batch {batch}', '', markdown_table(report)]
        png = osp.join(out_dir, f'fmvit_fastvit_latency_{device}_b{batch}.png')
        try:
            if accuracy_latency_plot(report, png):
                lines += [f'![accuracy vs latency, batch {batch}]({osp.basename(png)})', '']
        except BackendUnavailable as err:  # matplotlib missing: the tables are complete without the figure
            lines += [f'(no figure: {err})', '']
    text = '\n'.join(lines)
    write_text_atomic(osp.join(out_dir, f'fmvit_fastvit_latency_{device}.md'), text)
    return text


def main(argv=None) -> int:
    args = parse_args(argv)
    logger = MMLogger.get_instance('fmvit_fastvit_latency', logger_name='fmvit_fastvit_latency')
    json_path = osp.join(args.out_dir, f'fmvit_fastvit_latency_{args.device}.json')
    if args.render_only:
        with open(json_path) as f:
            logger.info(render(json.load(f), args.device, args.out_dir))
        return 0
    usable, why = available_backends(list(CPU_BACKENDS if args.device == 'cpu' else CUDA_BACKENDS))
    if not usable:
        logger.info('not measured here: ' + '; '.join(f'{b}: {w}' for b, w in why.items()))
        return 3
    command = shlex.join(sys.orig_argv)
    retry_above = args.retry_above if args.retry_above is not None else args.max_load + 1.0
    variants = list(args.variants) + list(args.fmvit)

    def wait(label):
        waited = wait_for_load(args.max_load, args.max_wait, poll_s=10, log=logger.info)
        logger.info(f'{label}: load average {waited["load_average"]} after waiting {waited["waited_s"]} s')
        return dict(waited_for_load=waited)

    reports = {}
    for batch in args.batches:
        big = batch > 1
        warmup = args.warmup_b8 if big and args.warmup_b8 is not None else args.warmup
        runs = args.runs_b8 if big and args.runs_b8 is not None else args.runs
        best = None
        for attempt in range(1 + args.retries):
            report = run(variants=variants, backends=usable, protocol='batch1' if batch == 1 else 'paper',
                         batch=batch, warmup=warmup, runs=runs, threads=args.threads, interleave_networks=True,
                         before_each=wait, log=logger.info, command=command)
            report['settings'].update(max_load=args.max_load, max_wait=args.max_wait, retry_above=retry_above,
                                      retries=args.retries, attempt=attempt)
            load = timing_load(report)
            if best is None or load < timing_load(best):
                best = report
            if load <= retry_above:
                break
            logger.info(f'batch {batch}: the load average reached {load} while it was timed (> {retry_above}); '
                        f'timing the batch again ({attempt + 1}/{args.retries})')
        reports[batch] = best
    doc = dict(command=command, device=args.device, reference=REFERENCE, matched=MATCHED,
               table2=dict(columns=['params_m', 'gflops', 'pytorch_a10_ms', 'tensorrt_a10_ms', 'coreml_iphone13_ms',
                                    'top1'], rows=TABLE2),
               load_at_end=load_average(), reports={str(batch): report for batch, report in reports.items()})
    write_text_atomic(json_path, json.dumps(doc, indent=2, default=str) + '\n')
    logger.info(render(doc, args.device, args.out_dir))
    logger.info(f'wrote {json_path} and fmvit_fastvit_latency_{args.device}.md in {args.out_dir}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
