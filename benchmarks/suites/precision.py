"""Reduced precision on the CPU: our fastest path against timm's fused model in ONNX Runtime fp32, in one run.

For every variant (the seven FastViT classifiers and, with ``--variants ... fmvit``, the FMViT ones) at each batch:
ours fused to the deepest level and exported with the export form, and timm's reparameterized model with the same
weights exported by the same exporter, are run as

* ``timm ORT fp32``: timm's export in ONNX Runtime, float32 (the baseline of every ratio);
* ``ours ORT fp32``: ours in ONNX Runtime, float32;
* ``ours OV bf16``: ours in OpenVINO with bfloat16 execution (CPUs with ``avx512_bf16`` / AMX);
* ``ours OV int8``: ours quantized to int8 by NNCF (OpenVINO; CPUs with VNNI / AMX), the rest in bf16 where the CPU
  has it.

All candidates of one network are timed round-robin in one loop, so a slow stretch of the machine moves all of them;
ONNX Runtime's threads do not spin between runs (they would slow the OpenVINO run after them), and each ratio to
the baseline comes with its paired-bootstrap 95 % interval. FMViT has no timm model: its baseline is our own FMViT
in ONNX Runtime fp32. The int8 graphs here are calibrated on seeded random images: enough to time them, not to judge
their accuracy, which ``bench.py precision-accuracy`` measures on a trained model. A precision this CPU lacks is
left out and the results say why. Writes ``OUT.{json,md}`` (OUT: ``benchmarks/results/precision_latency_cpu_<cpu>``).

Example:
    .venv/bin/python benchmarks/bench.py precision --variants all fmvit        # every variant, batch 1 and 8
    .venv/bin/python benchmarks/bench.py precision --variants t8 sa12 fmvit_t --batches 1 --runs 20
"""
import argparse
import os
import tempfile
from typing import List, Optional, Tuple

import torch
from mmengine.logging import MMLogger

from mmfastvit.deploy.backbones import canonical_variant, families, parse_variant, variant_groups, variant_names
from mmfastvit.deploy.engines import RunTarget, backend_engine
from mmfastvit.deploy.latency import cpu_facts, machine_info, ratio_interval, summarize
from mmfastvit.deploy.loading import CLASSIFIER, from_variant
from mmfastvit.deploy.runtimes import BackendUnavailable
from mmfastvit.deploy.settings import BenchmarkSettings
from mmfastvit.deploy.timm_pair import timm_fused_pair
from mmfastvit.deploy.verify import fuse_and_verify

from . import common
from .common import row

NAME = 'precision'
DEFAULT_OUT = common.cpu_results('precision_latency')
BASELINE = ('timm', 'onnxruntime-cpu')
OURS = ('onnxruntime-cpu', 'openvino-cpu-bf16', 'openvino-cpu-int8')
LABELS = {'onnxruntime-cpu': 'ORT fp32', 'openvino-cpu-bf16': 'OV bf16', 'openvino-cpu-int8': 'OV int8'}
TARGET = 0.50


def add_parser(subparsers) -> None:
    parser = common.add_subcommand(subparsers, NAME, __doc__, main, validate)
    parser.add_argument('--variants', nargs='+', type=str.lower, default=['all'],
                        help='FastViT and FMViT variants (t8 ... fmvit_t ...; "all": the seven FastViT ones, '
                             '"fmvit": the five FMViT ones); default: all')
    parser.add_argument('--batches', nargs='+', type=int, default=[1, 8])
    parser.add_argument('--backends', nargs='+', choices=list(OURS), default=list(OURS),
                        help='our candidates (the baseline is always timm in ONNX Runtime fp32)')
    common.add_timing_options(parser, warmup=10, runs=30, unit='rounds', big=True)
    common.add_shared_options(parser, DEFAULT_OUT, threads_what='torch, ONNX Runtime and OpenVINO threads',
                              load_when='before each network is timed')


def validate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    common.check_at_least(parser, args, runs=2, warmup=0, threads=1, batches=1)
    groups, variants = variant_groups(), []
    try:
        for name in args.variants:  # 'all' (FastViT) and 'fmvit' stand for a family's variants
            variants += variant_names(groups[name]) if name in groups else [canonical_variant(name)]
    except ValueError as err:
        parser.error(str(err))
    args.variants = list(dict.fromkeys(variants))


def _network(variant: str, seed: int):
    """Our deployable and timm's fused model (None for a family timm does not have)."""
    family, _ = parse_variant(variant)
    if families()[family].timm_model:
        return timm_fused_pair(variant, seed)
    return from_variant(variant, CLASSIFIER, seed=seed), None


def measure(variant: str, batch: int, args: argparse.Namespace, work_dir: str, log) -> dict:
    """Prepares and times every candidate of one network at one batch; returns its results."""
    deployable, timm_model = _network(variant, args.seed)
    settings = BenchmarkSettings(variants=(variant,), batch=batch, threads=args.threads, seed=args.seed,
                                 ort_spinning=False)
    batch, shape = settings.plan(deployable.kind, deployable.family)
    x = torch.rand(batch, 3, *shape, generator=torch.Generator().manual_seed(args.seed)) * 2 - 1
    fused, form, expected, _ = fuse_and_verify(deployable, x, settings.rewrites, log=lambda m: None)
    stem = f'{deployable.name}_{shape[0]}x{shape[1]}_b{batch}'
    ours = RunTarget('ours', fused, form, x, expected, deployable.output_names, f'{stem}_ours', work_dir, settings)
    plan: List[Tuple[RunTarget, str]] = [(ours, b) for b in args.backends]
    baseline = 'timm' if timm_model is not None else 'ours'
    if timm_model is not None:
        timm = RunTarget('timm', timm_model, timm_model, x, expected, deployable.output_names, f'{stem}_timm',
                         work_dir, settings)
        plan.insert(0, (timm, BASELINE[1]))
    elif BASELINE[1] not in args.backends:
        plan.insert(0, (ours, BASELINE[1]))
    calls, checks, skipped = {}, {}, {}
    for target, backend in plan:
        reason = backend_engine(backend).why_unavailable(backend)
        if reason:
            skipped[backend] = reason
            continue
        try:
            candidate, check = backend_engine(backend).runner(backend, target)
        except BackendUnavailable as err:
            skipped[backend] = str(err)
            continue
        calls[candidate.key] = candidate.call
        checks[candidate.key] = check
    warmup, runs = common.timing_for(args, batch)
    timed = common.time_when_quiet(calls, warmup, runs, args, log, label=f'{variant} b{batch}: ')
    latency = {key: summarize(t, batch) for key, t in timed['times'].items()}
    base_key = f'{baseline}/{BASELINE[1]}'
    ratios = {key: ratio_interval(timed['times'][key], timed['times'][base_key], seed=args.seed)
              for key in latency if key != base_key}
    reduced = [k for k in ratios if k.startswith('ours/openvino')]
    fastest = min(reduced or list(ratios), key=lambda k: latency[k]['median_ms'])
    return dict(variant=variant, batch=batch, shape=list(shape), baseline=base_key, latency=latency, ratios=ratios,
                fastest=fastest, checks=checks, skipped=skipped, load_before=timed['load_before'],
                load_after=timed['load_after'], waited=timed['waited'])


def _ms(result: dict, key: str) -> str:
    lat = result['latency'].get(key)
    return f"{lat['median_ms']:.2f}" if lat else '-'


def _ratio(result: dict, key: str) -> str:
    r = result['ratios'].get(key)
    return f"{r['ratio']:.2f} [{r['low']:.2f}, {r['high']:.2f}]" if r else '-'


def markdown(results: List[dict], settings: dict) -> str:
    header = (['variant', 'batch', 'baseline: ORT fp32 ms'] + [f'ours {LABELS[b]} ms' for b in settings['backends']]
              + [f'ours {LABELS[b]} / baseline' for b in settings['backends']] + ['fastest', 'fastest / baseline'])
    lines = [row(header), row(['---'] * len(header))]
    for r in results:
        lines.append(row([r['variant'], str(r['batch']), _ms(r, r['baseline'])
                          + ('' if r['baseline'].startswith('timm') else ' (ours)')]
                         + [_ms(r, f'ours/{b}') for b in settings['backends']]
                         + [_ratio(r, f'ours/{b}') for b in settings['backends']]
                         + [LABELS[r['fastest'].split('/')[1]], _ratio(r, r['fastest'])]))
    within = [r for r in results if r['ratios'][r['fastest']]['ratio'] <= TARGET]
    missed = [f"{r['variant']} b{r['batch']}" for r in results if r not in within]
    lines += ['', f"Target: our fastest CPU path at most {TARGET:.2f}x timm's fused model in ONNX Runtime fp32: "
              f"{len(within)} of {len(results)} networks" + (f" (not: {', '.join(missed)})." if missed else '.')]
    skipped = {b: why for r in results for b, why in r['skipped'].items()}
    for backend, why in skipped.items():
        lines += ['', f'{LABELS.get(backend, backend)} not run: {why}']
    lines += ['', 'Baseline: timm\'s fused model exported to ONNX and run in ONNX Runtime fp32 (FMViT: ours, timm has '
              'none). Ratios are medians over the baseline\'s median, with paired-bootstrap 95% intervals; every '
              'candidate of a network was timed round-robin in one loop, ONNX Runtime without spin-waiting. int8 '
              'graphs calibrated on random images (speed only; accuracy: `bench.py precision-accuracy`).',
              '', f"Settings: {settings['threads']} threads, warm-up {settings['warmup']} / timed {settings['runs']} "
              f"rounds (batch > 1: {settings['warmup_big'] or settings['warmup']} / "
              f"{settings['runs_big'] or settings['runs']}), {common.cpu_text(settings)}, torch {settings['torch']}, "
              f"onnxruntime {settings['onnxruntime']}, openvino {settings['openvino']}, nncf {settings['nncf']}, "
              f"{settings['date']}.", '', common.reproduce(settings['command'])]
    return '\n'.join(lines) + '\n'


def _version(package: str) -> Optional[str]:
    try:
        return __import__(package).__version__
    except ImportError:
        return None


def main(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    logger = MMLogger.get_instance('bench_precision', logger_name='bench_precision')
    settings = dict(common.options(args), cpu=cpu_facts()['model'], cpu_facts=cpu_facts(), cpu_count=os.cpu_count(),
                    torch=torch.__version__, onnxruntime=_version('onnxruntime'), openvino=_version('openvino'),
                    nncf=_version('nncf'), date=common.utc_now(), command=args._command)
    settings['out'] = str(settings['out'])
    results = []
    with tempfile.TemporaryDirectory(prefix='bench_precision_') as work_dir:
        for variant in args.variants:
            for batch in args.batches:
                result = measure(variant, batch, args, work_dir, logger.info)
                fastest = result['ratios'][result['fastest']]
                logger.info(f"{variant} b{batch}: fastest {result['fastest']} {fastest['ratio']:.2f} "
                            f"[{fastest['low']:.2f}, {fastest['high']:.2f}] of the baseline")
                results.append(result)
    table = markdown(results, settings)
    print(table, flush=True)
    paths = common.write_results(args.out, dict(settings=settings, machine=machine_info(), results=results),
                                 '# Reduced-precision CPU latency\n\n' + table)
    logger.info(f'wrote {paths[0]} and {paths[1]}')
    return 0
