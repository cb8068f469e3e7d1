"""CPU latency of the FastViT dense-prediction backbones at 512x512, batch 2, against ResNet-50 and PoolFormer-S12.

The setting of the FastViT paper's detection and segmentation tables (backbone only, batch 2, 3x512x512): every
FastViT variant with its four stage outputs (``out_indices=(0, 1, 2, 3)``, what Semantic FPN and Mask R-CNN read) in
three forms carrying the same weights:

* ``unfused``: the train-time form, in eval mode;
* ``ref_fused``: fused at level ``'reference'`` (the form Apple's and timm's ``reparameterize()`` give);
* ``deploy``: the deploy form, ``FastViT(..., deploy=True)`` (full fusion: no BatchNorm, no layer-scale multiply)
  loaded with the fused weights, as ``tools/test.py --cfg-options model.backbone.deploy=True`` builds it;

and three baselines: ``resnet50_v1c`` (mmseg's ``ResNetV1c``, depth 50: the Semantic FPN R-50 of mmseg's configs),
``resnet50`` (mmdet's ``ResNet``, depth 50, ``style='pytorch'``: torchvision's ResNet-50, the Mask R-CNN R-50) and
``poolformer_s12`` (mmpretrain's ``PoolFormer`` s12 with its four dense outputs ``out_indices=(0, 2, 4, 6)``, each with
its output norm). All run in eval mode, float32. Timed runs are interleaved round-robin across every candidate, so
drift in the machine's speed affects all alike; ratios are taken within the run. The fused forms are checked against
the unfused one before timing. Peak memory of a forward is measured per candidate in a fresh subprocess.

The machine may be shared: ``--max-load`` waits (up to ``--max-wait`` seconds) until the 1-minute load average is
below it before timing; the load before and after timing is recorded either way. Writes
``benchmarks/results/dense_backbone_latency_cpu_<cpu>.{json,md}`` by default (<cpu>: the CPU model, e.g.
``intel-xeon``).

Example:
    .venv/bin/python benchmarks/bench.py dense --variants t8 sa12 --warmup 2 --runs 5
"""
import argparse
import copy
import sys
from typing import Dict, Sequence

import mmengine
import torch
from mmengine.logging import MMLogger
from torch import nn

from mmfastvit.deploy.latency import machine_info, summarize
from mmfastvit.models import FastViT
from mmfastvit.models.utils.fusion_checks import randomize_fusable_state_, relative_error

from . import common
from .common import fmt_load, num_params, row

NAME = 'dense'
FORMS = ('unfused', 'ref_fused', 'deploy')
BASELINES = ('resnet50_v1c', 'resnet50', 'poolformer_s12')
BASELINE_LABELS = {
    'resnet50_v1c': 'ResNet-50 (mmseg ResNetV1c)',
    'resnet50': 'ResNet-50 (mmdet ResNet, torchvision style)',
    'poolformer_s12': 'PoolFormer-S12 (mmpretrain)',
}
DENSE_OUT_INDICES = (0, 1, 2, 3)
AGREEMENT_TOL = 1e-4  # max |form - unfused| over max |unfused|, worst stage output
MEMORY_RUNS = 2
DEFAULT_OUT = common.cpu_results('dense_backbone_latency')


def fastvit_forms(variant: str, seed: int, forms: Sequence[str] = FORMS) -> Dict[str, nn.Module]:
    """The requested forms of FastViT-``variant`` (four stage outputs), same weights, eval mode.

    The BatchNorm statistics and layer scales are randomized (seeded), so the fusion checked here is not trivial.
    """
    torch.manual_seed(seed)
    unfused = randomize_fusable_state_(FastViT(variant, out_indices=DENSE_OUT_INDICES), seed).eval()
    models = {}
    for form in forms:
        if form == 'unfused':
            models[form] = unfused
        elif form == 'ref_fused':
            models[form] = copy.deepcopy(unfused).switch_to_deploy('reference').eval()
        elif form == 'deploy':
            fused_state = copy.deepcopy(unfused).switch_to_deploy('full').state_dict()
            deploy = FastViT(variant, out_indices=DENSE_OUT_INDICES, deploy=True)
            deploy.load_state_dict(fused_state, strict=True)
            models[form] = deploy.eval()
        else:
            raise ValueError(f'form "{form}" is not one of {list(FORMS)}')
    return models


def build_baseline(name: str, seed: int) -> nn.Module:
    """One of :data:`BASELINES`, randomly initialized (seeded), eval mode, returning its four stage outputs."""
    torch.manual_seed(seed)
    if name == 'resnet50_v1c':
        from mmseg.models.backbones import ResNetV1c
        model = ResNetV1c(depth=50, out_indices=(0, 1, 2, 3))
    elif name == 'resnet50':
        from mmdet.models.backbones import ResNet
        model = ResNet(depth=50, out_indices=(0, 1, 2, 3), style='pytorch')
    elif name == 'poolformer_s12':
        from mmpretrain.models.backbones import PoolFormer
        model = PoolFormer('s12', out_indices=(0, 2, 4, 6))
    else:
        raise ValueError(f'baseline "{name}" is not one of {list(BASELINES)}')
    model.eval()  # mmpretrain's PoolFormer.train() returns None, so no chaining
    return model


def build_candidate(name: str, seed: int) -> nn.Module:
    """``fastvit_<variant>/<form>`` or a baseline name."""
    if name.startswith('fastvit_'):
        variant, form = name[len('fastvit_'):].split('/')
        return fastvit_forms(variant, seed, (form,))[form]
    return build_baseline(name, seed)


def memory_child(args: argparse.Namespace) -> None:
    """Builds one candidate, runs it, prints its forward's peak extra resident memory and its parameters (JSON)."""
    model = build_candidate(args.memory_child, args.seed)
    memory = common.forward_peak(model, torch.randn(args.batch, 3, args.size, args.size), MEMORY_RUNS)
    common.print_child_result(peak_mib=memory['peak_mib'], peak_is_extra=memory['peak_is_extra'],
                              params=num_params(model))


def measure_memory(name: str, args: argparse.Namespace) -> dict:
    return common.memory_in_child(NAME, name, ['--batch', args.batch, '--size', args.size, '--seed', args.seed,
                                               '--threads', args.threads])


def markdown(results: dict, settings: dict) -> str:
    """Per-variant summary (deploy form vs the baselines, fusion speed-up), every candidate, settings, command."""
    lat, mem, variants = results['latency'], results['memory'], settings['variants']
    base = [b for b in BASELINES if b in lat]
    lines = [f"FastViT backbones with four stage outputs, batch {settings['batch']}, "
             f"3x{settings['size']}x{settings['size']}; `deploy` is the fused form "
             '(`model.backbone.deploy=True`). Ratios are median latency over the baseline\'s median in the same '
             'run (< 1: faster).', '']
    header = (['variant', 'deploy ms', 'unfused ms', 'unfused / deploy', 'ref_fused / deploy']
              + [f'deploy / {b}' for b in base] + ['params M (unfused / deploy)'])
    lines += [row(header), row(['---'] * len(header))]
    for v in variants:
        names = {f: f'fastvit_{v}/{f}' for f in FORMS}
        med = {f: lat[names[f]]['median_ms'] for f in FORMS}
        params = (f"{mem[names['unfused']]['params'] / 1e6:.2f} / {mem[names['deploy']]['params'] / 1e6:.2f}"
                  if names['unfused'] in mem else '-')
        lines.append(row([v.upper(), f"{med['deploy']:.1f}", f"{med['unfused']:.1f}",
                          f"{med['unfused'] / med['deploy']:.3f}", f"{med['ref_fused'] / med['deploy']:.3f}"]
                         + [f"{med['deploy'] / lat[b]['median_ms']:.3f}" for b in base] + [params]))
    lines += ['', 'Baselines: ' + '; '.join(f"`{b}` = {BASELINE_LABELS[b]}, {lat[b]['median_ms']:.1f} ms"
                                              + (f", {mem[b]['params'] / 1e6:.2f} M params" if b in mem else '')
                                              for b in base) + '.', '']

    header = ['candidate', 'median ms', 'p90 ms', 'min ms', 'peak MiB'] + [f'/ {b}' for b in base] + ['rel. diff']
    lines += [row(header), row(['---'] * len(header))]
    for name, stats in lat.items():
        peak = f"{mem[name]['peak_mib']:.0f}" if name in mem else '-'
        diff = f"{results['max_rel_diff'][name]:.1e}" if name in results['max_rel_diff'] else '-'
        lines.append(row([name, f"{stats['median_ms']:.1f}", f"{stats['p90_ms']:.1f}", f"{stats['min_ms']:.1f}", peak]
                         + [f"{stats['median_ms'] / lat[b]['median_ms']:.3f}" for b in base] + [diff]))
    if mem:
        lines += ['', 'Peak MiB: the forward\'s peak extra resident memory (VmHWM - VmRSS after a first forward), in '
                  'a fresh process per candidate. rel. diff: max |output - unfused output| / max |unfused output| '
                  'over the four stage outputs.']
    info = settings['machine']
    lines += ['', f"Batch {settings['batch']}, 3x{settings['size']}x{settings['size']}, float32, eval mode, "
              f"{info['torch_threads']} thread(s), {settings['warmup']} warm-up + {settings['runs']} timed runs per "
              f"candidate, interleaved (medians); {common.cpu_text(info)}, torch {info['torch']}, "
              f"{settings['date']}. Load average (1, 5, 15 min) before timing: {fmt_load(settings['load_before'])}; "
              f"after: {fmt_load(settings['load_after'])}. Timing took {settings['timing_s'] / 60:.1f} min.", '',
              common.reproduce(settings['command'])]
    return '\n'.join(lines) + '\n'


def add_parser(subparsers) -> None:
    parser = common.add_subcommand(subparsers, NAME, __doc__, main, validate)
    parser.add_argument('--variants', nargs='+', choices=list(FastViT.arch_zoo), default=list(FastViT.arch_zoo))
    parser.add_argument('--baselines', nargs='*', choices=list(BASELINES), default=list(BASELINES))
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--size', type=int, default=512, help='input height and width')
    common.add_timing_options(parser, warmup=3, runs=15, unit='rounds (one forward of every candidate each)')
    common.add_shared_options(parser, DEFAULT_OUT, load_when='before timing', memory_child=memory_child)


def validate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    common.check_at_least(parser, args, runs=1, warmup=0, threads=1, batch=1, size=32)


def main(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    logger = MMLogger.get_instance('bench_dense', logger_name='bench_dense')
    candidates: Dict[str, nn.Module] = {}
    errors: Dict[str, float] = {}
    x = torch.randn(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(args.seed))
    for variant in args.variants:
        forms = fastvit_forms(variant, args.seed)
        with torch.inference_mode():
            outputs = {form: model(x) for form, model in forms.items()}
        for form in FORMS[1:]:
            errors[f'fastvit_{variant}/{form}'] = relative_error(outputs[form], outputs['unfused'])
        bad = {k: e for k, e in errors.items() if k.startswith(f'fastvit_{variant}/') and not e < AGREEMENT_TOL}
        if bad:
            sys.exit(f'{variant}: fused outputs disagree with the unfused ones (>= {AGREEMENT_TOL}): {bad}; '
                     'no timings taken')
        candidates.update({f'fastvit_{variant}/{form}': model for form, model in forms.items()})
    for name in args.baselines:
        candidates[name] = build_baseline(name, args.seed)
    logger.info(f'{len(candidates)} candidates; fused forms agree with unfused (worst rel. diff '
                f'{max(errors.values(), default=0):.1e})')

    calls = {name: (lambda model=model: model(x)) for name, model in candidates.items()}
    timed = common.time_when_quiet(calls, args.warmup, args.runs, args, logger.info)
    latency = {name: summarize(t, batch=args.batch) for name, t in timed['times'].items()}
    del candidates, calls

    memory = {}
    if not args.no_memory:
        for name in latency:
            memory[name] = measure_memory(name, args)
            logger.info(f"{name}: median {latency[name]['median_ms']:.1f} ms, peak {memory[name]['peak_mib']:.0f} MiB")
    settings = dict(variants=args.variants, baselines=args.baselines, batch=args.batch, size=args.size,
                    warmup=args.warmup, runs=args.runs, seed=args.seed, dtype='float32', machine=machine_info(),
                    mmengine=mmengine.__version__, load_before=timed['load_before'], load_after=timed['load_after'],
                    waited=timed['waited'], timing_s=timed['timing_s'], agreement_tol=AGREEMENT_TOL,
                    memory_child_env=common.MEMORY_CHILD_ENV, date=common.utc_now(), command=args._command)
    results = dict(latency=latency, memory=memory, max_rel_diff=errors)
    table = markdown(results, settings)
    print(table, flush=True)
    paths = common.write_results(args.out, dict(settings=settings, results=results),
                                 f'# FastViT dense-prediction backbones: CPU latency at {args.size}x{args.size}, '
                                 f'batch {args.batch}\n\n' + table)
    logger.info(f'wrote {paths[0]} and {paths[1]}')
    return 0
