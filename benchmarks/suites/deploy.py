"""Deployed latency of the classifiers in PyTorch eager and ONNX Runtime (and, on a GPU machine, the GPU backends).

``--against timm`` (default): the seven FastViT classifiers, ours against timm's. For every variant, ours (fused to
the deepest level, exported with the export rewrites) and timm's reparameterized model with the same weights
(exported by the same exporter, same opset, run with the same ONNX Runtime session options) are timed in PyTorch
eager mode and in ONNX Runtime, at batch 1 (FMViT's tables) and at the paper's batch 8, 256x256, float32, on the CPU
(and on the GPU backends when there is one). The machine's fp32 matrix-multiply peak is measured in the same run;
the load average is recorded before and after (the machine may be shared: --max-load waits for it to drop first,
before each variant). Writes ``OUT_b<N>.{json,md,png}`` (one run each) and ``OUT.md``, the summary with the targets
(OUT: ``benchmarks/results/deploy_latency_cpu_<cpu>`` by default, <cpu> the CPU model, e.g. ``intel-xeon``;
``deploy_latency_cuda`` with ``--device cuda``):

* ours in ONNX Runtime at most 0.90x the latency of timm's fused export in ONNX Runtime, for every variant;
* MA36 at batch 8 in ONNX Runtime at 75 % or more of the measured fp32 peak.

``--against fmvit``: FastViT (``--variants``) and FMViT (``--fmvit``) in one latency table, timed together. Every
network (built from its variant table with seeded random weights, fused to the deepest form, checked, exported with
the deploy tool's export form) is timed with warm-up and timed runs round-robin across all networks within each
backend, so that drift in the machine's speed affects every network alike and the ratios between networks are taken
under the same conditions; --max-load waits once per batch, right before the timing, and a retry re-times the whole
batch. Batch 1: FMViT at 224x224 and FastViT at 256x256, as FMViT's Table 2 compares them; batch 8: the FastViT
paper's protocol, FastViT at 256x256, FMViT at 224x224 here too. Ratios, per backend and batch: every model against
FastViT-T8, and FMViT-X against the FastViT of similar FLOPs (T / T8, S / T12, M / SA12, B / SA24, L / SA36); Table
2's published figures (A10 GPU, iPhone 13) stand beside ours, with the same ratios where Table 2 has both models.
Writes ``OUT.{json,md}`` and ``OUT_b<N>.png`` (OUT: ``benchmarks/results/fmvit_fastvit_latency_cpu_<cpu>``,
``fmvit_fastvit_latency_cuda`` with ``--device cuda``).

Example:
    .venv/bin/python benchmarks/bench.py deploy                        # CPU, all variants, both batches
    .venv/bin/python benchmarks/bench.py deploy --variants t8 ma36 --batches 8 --runs 30
    .venv/bin/python benchmarks/bench.py deploy --against fmvit --variants t8 t12 --fmvit t s --warmup 5 --runs 20
"""
import argparse
import json
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
from mmengine.logging import MMLogger

from mmfastvit.deploy.latency import load_average, matmul_peak, write_text_atomic
from mmfastvit.models import FastViT, FMViT

from . import common

NAME = 'deploy'
RATIO_TARGET = 0.90
PEAK_TARGET = 0.75
# --against fmvit: every network is also compared with FastViT-T8
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


# ---------------------------------------------------------------------------------------------------------------------
# mmfastvit.deploy: every call this subcommand makes into it (but for mmfastvit.deploy.latency) is in this section,
# so that a change of that API is met here alone.

def all_backends() -> Tuple[str, ...]:
    """Every backend, in the order the tables list them."""
    from mmfastvit.deploy.engines import BACKENDS
    return tuple(BACKENDS)


def usable_backends(device: str) -> Tuple[List[str], Dict[str, str]]:
    """The backends of ``device`` that can run here, and why each other one cannot."""
    from mmfastvit.deploy.engines import CPU_BACKENDS, CUDA_BACKENDS, available_backends
    return available_backends(list(CPU_BACKENDS if device == 'cpu' else CUDA_BACKENDS))


def measure(variants: List[str], backends: List[str], protocol: str, batch: int, warmup: int, runs: int,
            threads: int, seed: int, against_timm: bool, before_each, log, command: str) -> dict:
    """One report: ``variants`` fused, exported, checked and timed on ``backends``. Against timm: each variant with
    timm's fused model, one after the other, no peak (measured around the variants here). Otherwise: all networks
    timed together (round-robin within each backend) and the peak measured."""
    from mmfastvit.deploy.benchmark import run
    from mmfastvit.deploy.settings import BenchmarkSettings
    common = dict(variants=tuple(variants), backends=tuple(backends), protocol=protocol, batch=batch, warmup=warmup,
                  runs=runs, threads=threads, seed=seed, command=command)
    if against_timm:
        settings = BenchmarkSettings(**common, compare_timm=True, measure_peak=False)
    else:
        settings = BenchmarkSettings(**common, interleave_networks=True)
    return run(settings, log=log, before_each=before_each)


def ratio_cell(result: dict, backend: str) -> str:
    """``ours / timm`` on ``backend`` with its 95% interval."""
    from mmfastvit.deploy.report import ratio_text
    return ratio_text(result, backend)


def detail_table(report: dict) -> str:
    """The full table of one report."""
    from mmfastvit.deploy.report import markdown_table
    return markdown_table(report)


def plot(report: dict, path: Path) -> Tuple[bool, Optional[str]]:
    """Draws accuracy against latency to ``path``: (drawn, why not where it could not be drawn)."""
    from mmfastvit.deploy.plot import accuracy_latency_plot
    from mmfastvit.deploy.runtimes import BackendUnavailable
    try:
        return bool(accuracy_latency_plot(report, str(path))), None
    except BackendUnavailable as err:  # matplotlib missing
        return False, str(err)


def write_detail(report: dict, stem: Path, log) -> List[str]:
    """``STEM.json``, ``STEM.md`` and ``STEM.png`` of one report; the paths written."""
    from mmfastvit.deploy.report import write_report
    return write_report(report, str(stem), log=log)


# ---------------------------------------------------------------------------------------------------------------------
# --against timm: the summary

def _load(load: Optional[dict]) -> str:
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
                ratio_cell(res, engine), ms(f'ours/{eager}'), ms(f'timm/{eager}'), ratio_cell(res, eager),
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
                     + ' (' + ', '.join(f'{v.upper()} {ratio_cell(results[v], engine)}' for v, r in ratios.items()
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


def write_summary(reports: dict, device: str, out: Path, command: str) -> str:
    """``OUT.md``: the compact table, links to the full ones (``OUT_b<N>.md``), the verdicts."""
    lines = []
    for batch, report in reports.items():
        table = f'{out.name}_b{batch}.md'
        settings = report['settings']
        lines.append(f'- batch {batch}: [`{table}`]({table}), {settings["warmup"]} warm-up + {settings["runs"]} '
                     f'timed runs per candidate')
    machine = reports[next(iter(reports))].get('machine')
    machine_line = [f'Machine: {common.cpu_text(machine)}' + (f', {machine["gpu"]}' if machine.get('gpu') else '')
                    + '.', ''] if machine else []
    summary = [f'# FastViT deployed latency ({device})', '',
               f'Medians; {reports[next(iter(reports))]["settings"]["threads"]} CPU thread(s); ours = fused to the '
               f'deepest level + export rewrites, timm = timm\'s reparameterized model with the same weights, both '
               f'exported with the same exporter / opset and run with the same ONNX Runtime session options.', '',
               *summary_table(reports, device), '',
               'Full tables (p90, throughput, peak memory, PyTorch and ONNX Runtime side by side):', *lines, '',
               'Targets:', *verdicts(reports, device), '', *machine_line, common.reproduce(command), '']
    write_text_atomic(common.result_paths(out)[1], '\n'.join(summary))
    return '\n'.join(summary)


# ---------------------------------------------------------------------------------------------------------------------
# --against timm: measuring and rendering

def default_out(args: argparse.Namespace) -> Path:
    """``deploy_latency`` (``--against fmvit``: ``fmvit_fastvit_latency``) with the device; on the CPU, with the CPU
    model too (:func:`common.cpu_results`)."""
    stem = 'deploy_latency' if args.against == 'timm' else 'fmvit_fastvit_latency'
    return common.cpu_results(stem) if args.device == 'cpu' else common.RESULTS / f'{stem}_{args.device}'


def batch_stem(out: Path, batch: int) -> Path:
    return out.with_name(f'{out.name}_b{batch}')


def render_timm(args: argparse.Namespace, log, error) -> int:
    """Re-renders every table, figure and the summary from the JSON files (the measurements are not touched)."""
    reports = {}
    stems = {batch: batch_stem(args.out, batch) for batch in args.batches}
    missing = [str(path) for path in (common.result_paths(stem)[0] for stem in stems.values()) if not path.is_file()]
    if missing:
        error(f'--render-only re-renders measured runs, and there is none to render: {", ".join(missing)} not found '
              '(measure first, or point --out / --batches / --device at existing results)')
        return 2
    for batch, stem in stems.items():
        json_path, md_path = common.result_paths(stem)
        reports[batch] = json.loads(json_path.read_text())
        write_text_atomic(md_path, '# FastViT latency\n\n' + detail_table(reports[batch]))
        _, why_not = plot(reports[batch], stem.with_name(stem.name + '.png'))
        if why_not:
            log(f'no plot: {why_not}')
    log(write_summary(reports, args.device, args.out, reports[args.batches[0]]['settings']['command']))
    return 0


def measure_timm(args: argparse.Namespace, backends: List[str], log, wait) -> int:
    """Each variant with timm's, batch by batch; a variant timed while the load rose above --retry-above is timed
    again (at most --retries times) and the attempt with the lowest load kept."""
    device = args.device
    reports = {}

    def peak():
        if device == 'cpu':
            return dict(cpu=matmul_peak(device='cpu'))
        return dict(cuda_fp32=matmul_peak(4096, device='cuda', dtype=torch.float32),
                    cuda_fp16=matmul_peak(4096, device='cuda', dtype=torch.float16))

    for batch in args.batches:
        warmup, runs = common.timing_for(args, batch)
        peaks, results, report = [peak()], {}, None
        for variant in args.variants:
            best, best_load = None, None
            for attempt in range(1 + args.retries):
                one = measure([variant], backends, 'paper', batch, warmup, runs, args.threads, args.seed, True,
                              wait, log, args._command)
                res = one['results'][f'fastvit_{variant}']
                load = max(res['load_before']['1min'], res['load_after']['1min'])
                res['attempt'] = attempt
                if best is None or load < best_load:
                    best, best_load, report = res, load, report or one
                if args.retry_above is None or load <= args.retry_above:
                    break
                log(f'{variant}, batch {batch}: the load average reached {load} while it was timed (> '
                    f'{args.retry_above}); measuring again ({attempt + 1}/{args.retries})')
            results[f'fastvit_{variant}'] = best
        peaks.append(peak())
        key = 'cpu' if device == 'cpu' else 'cuda_fp16'
        report['peak'] = max(peaks, key=lambda p: p[key]['best_gflops'])
        report['peak_measurements'] = peaks
        report['results'] = results
        report['settings'].update(max_load=args.max_load, retry_above=args.retry_above, retries=args.retries,
                                  load_after=load_average(), peak='best of the measurements before and after')
        for path in write_detail(report, batch_stem(args.out, batch), log):
            log(f'wrote {path}')
        reports[batch] = report
    log(write_summary(reports, device, args.out, args._command))
    return 0


# ---------------------------------------------------------------------------------------------------------------------
# --against fmvit: FastViT and FMViT in one table

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
    backends = [b for b in all_backends() if b in present]
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


def timing_load(report: dict) -> float:
    """The highest 1-minute load average at the start or end of the timing (the same for every network)."""
    return max(max(r['load_before']['1min'], r['load_after']['1min']) for r in report['results'].values())


def render(doc: dict, device: str, out: Path) -> str:
    """Writes ``OUT.md`` and the figures ``OUT_b<N>.png`` from ``doc`` (the JSON); returns the markdown."""
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
    lines += [f'- Machine: {common.cpu_text(machine)}, '
              + (f'{machine["gpu"]}; ' if machine.get('gpu') else 'no GPU; ')
              + f'torch {machine["torch"]}, {versions}. Other jobs were running on it: the load averages above say '
                f'how busy it was; compare ratios within this run, not absolute times across runs.',
              f'- ONNX: {settings["onnx"]["exporter"]} exporter, opset {settings["onnx"]["opset"]}; ONNX Runtime '
              f'session: all graph optimizations, {settings["onnxruntime_session"]["intra_op_num_threads"]} intra-op '
              f'thread(s), no spinning, the same for every model.', '',
              common.reproduce(doc['command']), '', '## Details per batch', '']
    for batch, report in reports.items():
        lines += [f'### Batch {batch}', '', detail_table(report)]
        png = out.with_name(f'{out.name}_b{batch}.png')
        drawn, why_not = plot(report, png)
        if drawn:
            lines += [f'![accuracy vs latency, batch {batch}]({png.name})', '']
        elif why_not:  # matplotlib missing: the tables are complete without the figure
            lines += [f'(no figure: {why_not})', '']
    text = '\n'.join(lines)
    write_text_atomic(common.result_paths(out)[1], text)
    return text


def render_fmvit(args: argparse.Namespace, log, error) -> int:
    json_path = common.result_paths(args.out)[0]
    if not json_path.is_file():
        error(f'--render-only re-renders a measured run, and there is none to render: {json_path} not found (measure '
              'first, or point --out / --device at existing results)')
        return 2
    log(render(json.loads(json_path.read_text()), args.device, args.out))
    return 0


def measure_fmvit(args: argparse.Namespace, backends: List[str], log, wait) -> int:
    """All networks timed together, batch by batch; a batch timed while the load rose above --retry-above is timed
    again (at most --retries times) and the attempt with the lowest load kept."""
    variants = list(args.variants) + [f'fmvit_{arch}' for arch in args.fmvit]
    reports = {}
    for batch in args.batches:
        warmup, runs = common.timing_for(args, batch)
        best = None
        for attempt in range(1 + args.retries):
            report = measure(variants, backends, 'batch1' if batch == 1 else 'paper', batch, warmup, runs,
                             args.threads, args.seed, False, wait, log, args._command)
            report['settings'].update(max_load=args.max_load, max_wait=args.max_wait, retry_above=args.retry_above,
                                      retries=args.retries, attempt=attempt)
            load = timing_load(report)
            if best is None or load < timing_load(best):
                best = report
            if args.retry_above is None or load <= args.retry_above:
                break
            log(f'batch {batch}: the load average reached {load} while it was timed (> {args.retry_above}); '
                f'timing the batch again ({attempt + 1}/{args.retries})')
        reports[batch] = best
    doc = dict(command=args._command, device=args.device, reference=REFERENCE, matched=MATCHED,
               table2=dict(columns=['params_m', 'gflops', 'pytorch_a10_ms', 'tensorrt_a10_ms', 'coreml_iphone13_ms',
                                    'top1'], rows=TABLE2),
               load_at_end=load_average(), reports={str(batch): report for batch, report in reports.items()})
    json_path = common.result_paths(args.out)[0]
    write_text_atomic(json_path, json.dumps(doc, indent=2, default=str) + '\n')
    log(render(doc, args.device, args.out))
    log(f'wrote {json_path} and {common.result_paths(args.out)[1]}')
    return 0


# ---------------------------------------------------------------------------------------------------------------------
# the subcommand

def add_parser(subparsers) -> None:
    parser = common.add_subcommand(subparsers, NAME, __doc__, main, validate)
    parser.add_argument('--against', default='timm', choices=['timm', 'fmvit'],
                        help='timm: ours against timm\'s fused model, per variant; fmvit: FastViT and FMViT timed '
                             'together. Default: timm')
    parser.add_argument('--variants', nargs='+', default=list(FastViT.arch_zoo), choices=list(FastViT.arch_zoo),
                        help='FastViT variants. Default: all seven')
    parser.add_argument('--fmvit', nargs='+', choices=list(FMViT.arch_zoo),
                        help='FMViT variants, with --against fmvit. Default: all five')
    parser.add_argument('--batches', nargs='+', type=int, default=[1, 8])
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    common.add_timing_options(parser, warmup=100, runs=100, unit='runs per candidate (the paper\'s 100)', big=True)
    parser.add_argument('--retry-above', type=float, default=None,
                        help='re-measure a variant (--against fmvit: a batch) whose 1-min load average rose above this '
                             'while it was timed; the attempt with the lowest load is kept. Default: --max-load + 1 '
                             'with --max-load, else no retry')
    parser.add_argument('--retries', type=int, default=2, help='at most this many re-measurements. Default: 2')
    parser.add_argument('--render-only', action='store_true',
                        help='re-render the tables, figures and summary from the JSON files at --out')
    common.add_shared_options(parser, None, threads_what='PyTorch and ONNX Runtime',
                              load_when='before each variant (--against fmvit: each batch)',
                              out_writes='OUT.md, OUT.json or OUT_b<N>.{json,md,png} (see above)',
                              out_default_text=(
                                  f'{common.cpu_results("deploy_latency").relative_to(common.REPO)} (--against fmvit: '
                                  f'{common.cpu_results("fmvit_fastvit_latency").name}; with --device cuda: '
                                  'deploy_latency_cuda, fmvit_fastvit_latency_cuda)'))


def validate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    common.check_at_least(parser, args, batches=1, runs=1, runs_big=1, warmup=0, warmup_big=0, threads=1, retries=0)
    if args.against == 'timm' and args.fmvit is not None:
        parser.error(f'--fmvit {" ".join(args.fmvit)} goes with --against fmvit (timm has no FMViT)')
    if args.fmvit is None:
        args.fmvit = list(FMViT.arch_zoo)
    if args.retry_above is None and args.max_load is not None:
        args.retry_above = args.max_load + 1.0
    if args.out is None:
        args.out = default_out(args)


def main(args: argparse.Namespace) -> int:
    logger = MMLogger.get_instance('bench_deploy', logger_name='bench_deploy')
    log = logger.info
    if args.render_only:
        return (render_timm if args.against == 'timm' else render_fmvit)(args, log, logger.error)
    usable, why = usable_backends(args.device)
    if not usable:
        if args.against == 'fmvit':
            log('not measured here: ' + '; '.join(f'{b}: {w}' for b, w in why.items()))
            return 3
        note = (f'# FastViT deployed latency ({args.device})\n\nNot measured on this machine: '
                + '; '.join(f'{b}: {w}' for b, w in why.items()) + f'.\n\nOn a machine that has them: '
                f'`python benchmarks/bench.py deploy --device {args.device}`\n')
        write_text_atomic(common.result_paths(args.out)[1], note)
        log(note)
        return 3

    def wait(label):
        waited = common.wait_if_asked(args, log, poll_s=10)
        log(f'{label}: load average {waited["load_average"]} after waiting {waited["waited_s"]} s')
        return dict(waited_for_load=waited)

    before_each = wait if args.max_load is not None else None
    return (measure_timm if args.against == 'timm' else measure_fmvit)(args, usable, log, before_each)
