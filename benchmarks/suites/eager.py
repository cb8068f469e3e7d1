"""CPU latency and peak memory of the FastViT classifier in PyTorch eager: mmfastvit's forms against timm's fused model.

Four forms of one classifier (stem -> final_conv -> global average pool -> 1000-way linear), all with the same
weights: ``train`` (ours, unfused), ``ref_fused`` (ours fused at level ``'reference'``, the form timm and Apple
produce), ``full_fused`` (ours fused at level ``'full'``: no BatchNorm, no layer-scale multiply) and ``timm_fused``
(timm's model after ``timm.utils.reparameterize_model``). Timed runs are interleaved round-robin across the forms, so
drift in the machine's speed affects all of them alike. Peak memory is measured per form in a fresh subprocess.
Writes ``benchmarks/results/backbone_latency_cpu_<cpu>.{json,md}`` by default (<cpu>: the CPU model, e.g.
``intel-xeon``).

Example:
    .venv/bin/python benchmarks/bench.py eager --variants t8 sa12 --threads 1
"""
import argparse
import copy
import os
import sys
from typing import Dict, Sequence

import mmengine
import torch
from mmengine.logging import MMLogger
from torch import Tensor, nn

from mmfastvit.convert import timm_to_mmfastvit
from mmfastvit.deploy.latency import cpu_facts, cpu_model, ratio_interval, summarize, time_interleaved
from mmfastvit.models import FastViT, FastViTClassifier
from mmfastvit.models.layers import pointwise_kernel_policy
from mmfastvit.models.utils.fusion_checks import randomize_fusable_state_

from . import common
from .common import row

NAME = 'eager'
FORMS = ('train', 'ref_fused', 'full_fused', 'timm_fused')
OUR_FUSION_LEVELS = {'ref_fused': 'reference', 'full_fused': 'full'}
RATIOS = (('full_fused', 'timm_fused'), ('ref_fused', 'timm_fused'), ('full_fused', 'ref_fused'),
          ('train', 'timm_fused'))
AGREEMENT_TOL = 1e-4  # max |form - train| over max |train|
MEMORY_RUNS = 3  # forwards after the high-water mark is reset
MIB = 2**20
DEFAULT_OUT = common.cpu_results('backbone_latency')  # one file per CPU model, side by side


def _timm():
    try:
        import timm
        from timm.utils import reparameterize_model
    except ImportError as exc:
        sys.exit(f'bench.py eager needs timm for the timm_fused column ({exc}); install it with '
                 'requirements/tests.txt')
    return timm, reparameterize_model


def randomized_timm_model(variant: str, seed: int) -> nn.Module:
    """timm's ``fastvit_<variant>`` with seeded random BN statistics, BN affines and layer scales.

    The defaults (unit BN, layer scales of 1e-5) would make most of the fusion arithmetic trivial.
    """
    timm, _ = _timm()
    torch.manual_seed(seed)
    return randomize_fusable_state_(timm.create_model(f'fastvit_{variant}'), seed).eval()


def build_forms(variant: str, seed: int, forms: Sequence[str] = FORMS) -> Dict[str, nn.Module]:
    """The requested forms, in ``FORMS`` order and in eval mode, all carrying the same (timm's) weights."""
    _, reparameterize_model = _timm()
    timm_model = randomized_timm_model(variant, seed)
    ours = FastViTClassifier(variant)
    ours.load_state_dict(timm_to_mmfastvit(timm_model.state_dict()))
    models = {}
    for form in forms:
        if form == 'train':
            models[form] = ours
        elif form == 'timm_fused':
            models[form] = reparameterize_model(timm_model)  # a fused deep copy
        else:
            models[form] = copy.deepcopy(ours)
            models[form].backbone.switch_to_deploy(OUR_FUSION_LEVELS[form])
    return {form: models[form].eval() for form in FORMS if form in models}


def kernels_chosen(models: Dict[str, nn.Module]) -> Dict[str, Dict[str, str]]:
    """The 1x1 kernel each of our forms ran, per input shape (``PointwiseKernelChoice``, policy ``'auto'``)."""
    chosen = {}
    for form, model in models.items():
        chooser = getattr(model, 'backbone', model).__dict__.get('_pointwise_kernel')
        if chooser is not None:
            chosen[form] = {' '.join(key): kernel for key, kernel in chooser.choices.items()}
    return chosen


def check_agreement(variant: str, models: Dict[str, nn.Module], x: Tensor) -> Dict[str, float]:
    """Each form's max abs difference from the train form, relative to its output scale; exits if one is too big."""
    with torch.inference_mode():
        outputs = {form: model(x) for form, model in models.items()}
    reference = outputs['train']
    scale = max(reference.abs().max().item(), 1e-12)
    errors = {form: (out - reference).abs().max().item() / scale for form, out in outputs.items() if form != 'train'}
    bad = {form: err for form, err in errors.items() if not err < AGREEMENT_TOL}
    if bad:
        sys.exit(f'{variant}: outputs disagree with the train form (max |diff| / max |train| >= {AGREEMENT_TOL}): '
                 + ', '.join(f'{form} {err:.2e}' for form, err in bad.items()) + '; no timings taken')
    return errors


def memory_child(args: argparse.Namespace) -> None:
    """Builds one form (``--_memory-child VARIANT/FORM``), runs it, and prints its forward's peak extra memory and
    its parameters as one JSON line."""
    variant, form = args.memory_child.split('/')
    model = build_forms(variant, args.seed, (form,))[form]
    memory = common.forward_peak(model, torch.randn(args.batch, 3, args.size, args.size), MEMORY_RUNS)
    params = list(model.parameters())
    common.print_child_result(peak_mib=memory['peak_mib'], peak_is_extra=memory['peak_is_extra'],
                              baseline_rss_mib=memory['baseline_rss_mib'], params=sum(p.numel() for p in params),
                              param_mib=sum(p.numel() * p.element_size() for p in params) / MIB)


def measure_memory(variant: str, form: str, args: argparse.Namespace) -> dict:
    return common.memory_in_child(NAME, f'{variant}/{form}', ['--batch', args.batch, '--size', args.size, '--seed',
                                                              args.seed, '--threads', args.threads])


def ratio_cell(result: dict, key: str) -> str:
    """``0.970 [0.952, 0.991]``: the ratio of medians and its paired-bootstrap 95% interval."""
    interval = result.get('ratio_intervals', {}).get(key)
    text = f"{result['ratios'][key]:.3f}"
    return text + (f" [{interval['low']:.3f}, {interval['high']:.3f}]" if interval else '')


def markdown(results: Dict[str, dict], settings: dict) -> str:
    """The summary table, the per-form table, the verdict on the targets and the command that reproduces them."""
    header = (['variant'] + [f'{f} ms' for f in FORMS] + [f'{a} / {b}' for a, b in RATIOS]
              + [f'peak MiB {f}' for f in FORMS])
    lines = [row(header), row(['---'] * len(header))]
    for variant, r in results.items():
        lines.append(row([variant] + [f"{r['latency'][f]['median_ms']:.2f}" for f in FORMS]
                         + [ratio_cell(r, f'{a}/{b}') for a, b in RATIOS]
                         + [f"{r['memory'][f]['peak_mib']:.1f}" for f in FORMS]))
    if all(r['memory'][f]['peak_is_extra'] for r in results.values() for f in FORMS):
        lines += ['', 'Peak MiB: the forward\'s peak extra resident memory (VmHWM - VmRSS after a first forward), '
                  'in a fresh process per form.']
    else:
        lines += ['', 'Peak MiB is the absolute VmHWM of the measuring process, imports included: '
                  '/proc/self/clear_refs was not writable, so the forward\'s own peak could not be isolated.']
    detail_header = ['variant', 'form', 'median ms', 'p90 ms', 'params (M)', 'param MiB', 'max rel. diff vs train']
    lines += ['', row(detail_header), row(['---'] * len(detail_header))]
    for variant, r in results.items():
        for f in FORMS:
            lat, mem = r['latency'][f], r['memory'][f]
            diff = f"{r['max_rel_diff'][f]:.1e}" if f in r['max_rel_diff'] else '-'
            lines.append(row([variant, f, f"{lat['median_ms']:.2f}", f"{lat['p90_ms']:.2f}",
                              f"{mem['params'] / 1e6:.2f}", f"{mem['param_mib']:.1f}", diff]))

    def verdict(ratios: Sequence[str], limit: float) -> str:
        failing = [v for v, r in results.items() if any(r['ratios'][k] > limit for k in ratios)]
        return 'HOLDS' if not failing else f"FAILS on {', '.join(failing)}"

    lines += ['', f"Targets: ours fused no slower than timm's fused on every variant (ref_fused/timm_fused <= 1.00 and "
              f"full_fused/timm_fused <= 1.00): {verdict(('ref_fused/timm_fused', 'full_fused/timm_fused'), 1.0)}; "
              f"deepest fusion faster (full_fused/timm_fused <= 0.90): {verdict(('full_fused/timm_fused',), 0.9)}.",
              '', f"Batch {settings['batch']}, 3x{settings['size']}x{settings['size']}, float32, "
              f"{settings['threads']} thread(s), {settings['warmup']} warm-up + {settings['runs']} timed runs per form "
              f"(medians; ratios with their paired-bootstrap 95% interval), {common.cpu_text(settings)}, torch "
              f"{settings['torch']}, timm {settings['timm']}, {settings['date']}.", '',
              f"CPU kernel of our forms (conv: oneDNN on NCHW as timm; gemm: 1x1 layers as one GEMM; channels_last: "
              f"the pass in NHWC), policy `{settings.get('pointwise_kernel', 'auto')}`, chosen per network and input "
              f"by timing whole passes during the warm-up: " + '; '.join(
                  f"{v} " + ', '.join(f"{form} {'/'.join(sorted(set(k.values())))}"
                                      for form, k in r.get('pointwise_kernels', {}).items())
                  for v, r in results.items()) + '.', '', common.reproduce(settings['command'])]
    return '\n'.join(lines) + '\n'


def add_parser(subparsers) -> None:
    parser = common.add_subcommand(subparsers, NAME, __doc__, main, validate)
    parser.add_argument('--variants', nargs='+', choices=list(FastViT.arch_zoo), default=list(FastViT.arch_zoo))
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--size', type=int, default=256, help='input height and width')
    common.add_timing_options(parser, warmup=20, runs=50, unit='runs per form')  # >= the 18 passes of a choice
    common.add_shared_options(parser, DEFAULT_OUT, memory_child=memory_child, memory_metavar='VARIANT/FORM',
                              memory_optional=False)


def validate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    common.check_at_least(parser, args, runs=1, warmup=0, threads=1, batch=1, size=32)


def main(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    timm, _ = _timm()
    logger = MMLogger.get_instance('bench_eager', logger_name='bench_eager')
    settings = dict(batch=args.batch, size=args.size, warmup=args.warmup, runs=args.runs,
                    threads=torch.get_num_threads(), seed=args.seed, dtype='float32', torch=torch.__version__,
                    timm=timm.__version__, mmengine=mmengine.__version__, cpu=cpu_model(), cpu_facts=cpu_facts(),
                    cpu_count=os.cpu_count(), pointwise_kernel=pointwise_kernel_policy(),
                    date=common.utc_now(), command=args._command, memory_child_env=common.MEMORY_CHILD_ENV,
                    agreement_tol=AGREEMENT_TOL)
    results = {}
    for variant in args.variants:
        models = build_forms(variant, args.seed)
        x = torch.randn(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(args.seed))
        errors = check_agreement(variant, models, x)
        logger.info(f'{variant}: forms agree with train (max rel. diff {max(errors.values()):.1e}); timing '
                    f'{args.warmup} + {args.runs} runs x {len(models)} forms')
        calls = {form: (lambda model=model: model(x)) for form, model in models.items()}
        latency = {form: summarize(t) for form, t in time_interleaved(calls, args.warmup, args.runs).items()}
        kernels = kernels_chosen(models)
        del models
        memory = {}
        for form in FORMS:
            memory[form] = measure_memory(variant, form, args)
            logger.info(f"{variant}/{form}: median {latency[form]['median_ms']:.2f} ms, p90 "
                        f"{latency[form]['p90_ms']:.2f} ms, peak {memory[form]['peak_mib']:.1f} MiB, "
                        f"{memory[form]['params'] / 1e6:.2f} M params")
        ratios = {f'{a}/{b}': latency[a]['median_ms'] / latency[b]['median_ms'] for a, b in RATIOS}
        intervals = {f'{a}/{b}': ratio_interval(latency[a]['runs_ms'], latency[b]['runs_ms'], seed=args.seed)
                     for a, b in RATIOS}
        results[variant] = dict(latency=latency, memory=memory, ratios=ratios, ratio_intervals=intervals,
                                max_rel_diff=errors, pointwise_kernels=kernels)
    table = markdown(results, settings)
    print(table, flush=True)
    paths = common.write_results(args.out, dict(settings=settings, results=results),
                                 '# FastViT classifier CPU latency\n\n' + table)
    logger.info(f'wrote {paths[0]} and {paths[1]}')
    return 0
