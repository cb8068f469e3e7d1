"""Reduced precision and the deepest fusion: FastViT's fused levels in float16 and bfloat16 against float32.

Does folding the layer scales and BatchNorms into the weights (fusion level ``'full'``) cost float16 / bfloat16
accuracy against level ``'reference'`` (Apple's and timm's fused form)? Layer scales start at 1e-5 (1e-6 for SA36
and MA36), so ``'full'`` turns a ConvFFN's ``fc2`` and an attention ``proj`` into weights of about 1e-7, below
float16's smallest normal (6.1e-5). For each variant and weight regime it builds the classifier, takes the float32
output of the unfused model on a seeded batch as the truth, and runs each fusion level in float32, float16 and
bfloat16 on the CPU, reporting the error of the output against the truth, top-1 agreement with it, and how many
nonzero weights become subnormal or zero once cast to float16 (and in which layers).

Weight regimes: ``init`` (the arch's own layer-scale init values, BatchNorm statistics and affines randomized),
``randomized`` (``randomize_fusable_state_``: trained-like layer scales in [0.1, 0.6]) and ``spread`` (as
``randomized``, but every layer-scale entry drawn log-uniformly from [1e-6, 1], so that small and large scales meet in
one layer, the case where folding could hurt most). Reduced-precision models run in ``channels_last``: on a CPU
without float16 arithmetic torch's NCHW float16 convolution takes a slow generic kernel (MA36, batch 4 at 256x256, one
thread: 53 s, against 15 s in ``channels_last`` and 1.8 s in float32), ``channels_last`` takes oneDNN. Activations
and weights are float16 (bfloat16) tensors throughout; how a kernel accumulates is the library's choice. The 1x1
convolutions run as convolutions (``set_pointwise_kernel('conv')``), the kernel every export gets. Writes
``benchmarks/results/fusion_precision.{json,md}`` by default.

Example:
    .venv/bin/python benchmarks/bench.py fusion-precision --variants t8 --size 64 --batch 2 --threads 1
"""
import argparse
import copy
import math
import time
from collections import defaultdict
from typing import Dict, Optional, Sequence

import mmengine
import torch
from mmengine.logging import MMLogger
from torch import Tensor, nn

from mmfastvit.deploy.latency import machine_info
from mmfastvit.models import FastViT, FastViTClassifier
from mmfastvit.models.layers import LayerScale2d, set_pointwise_kernel
from mmfastvit.models.utils.fusion_checks import randomize_fusable_state_

from . import common
from .common import row

NAME = 'fusion-precision'
REGIMES = ('init', 'randomized', 'spread')
LEVELS = ('unfused', 'reference', 'full')  # 'unfused' in float32 is the truth, so it is run only in reduced precision
DTYPES = {'float32': torch.float32, 'float16': torch.float16, 'bfloat16': torch.bfloat16}
SPREAD_LOG10 = (-6.0, 0.0)  # the 'spread' regime's layer scales: 10 ** U(-6, 0)
# The verdict: 'full' loses precision on a (regime, dtype) when its error exceeds LOSS_RATIO x the 'reference' error
# and LOSS_FLOOR (relative, max |error| / max |float32 output|); below the floor both are at the dtype's noise.
LOSS_RATIO = 1.5
LOSS_FLOOR = 1e-3
FP32_TOL = 1e-4  # a fused level in float32 against the unfused float32 output (the eager benchmark's tolerance)
DEFAULT_OUT = common.RESULTS / 'fusion_precision'


# ---------------------------------------------------------------------------------------------------------------------
# the models

@torch.no_grad()
def build_model(variant: str, regime: str, seed: int) -> nn.Module:
    """The unfused classifier, in eval mode, with seeded weights in ``regime`` (see the module docstring)."""
    if regime not in REGIMES:
        raise ValueError(f'regime {regime!r} is not one of {list(REGIMES)}')
    torch.manual_seed(seed)
    model = randomize_fusable_state_(FastViTClassifier(variant), seed).eval()
    scales = [m for m in model.modules() if isinstance(m, LayerScale2d)]
    if regime == 'init':
        init = FastViT.arch_zoo[variant]['layer_scale_init_value']
        for module in scales:
            module.gamma.fill_(init)
    elif regime == 'spread':
        gen = torch.Generator().manual_seed(seed + 1)
        low, high = SPREAD_LOG10
        for module in scales:
            module.gamma.copy_(10 ** (torch.rand(module.gamma.shape, generator=gen) * (high - low) + low))
    return model


def fused(model: nn.Module, level: str) -> nn.Module:
    """A deep copy of ``model`` at ``level`` (``'unfused'``: a plain copy)."""
    out = copy.deepcopy(model)
    if level != 'unfused':
        out.backbone.switch_to_deploy(level)
    return out.eval()


def cast(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """``model`` in ``dtype``; reduced precision in ``channels_last`` (see the module docstring)."""
    if dtype == torch.float32:
        return model.to(dtype)
    return model.to(dtype=dtype, memory_format=torch.channels_last)


def run(model: nn.Module, x: Tensor, dtype: torch.dtype) -> Tensor:
    """The output of ``model`` (already in ``dtype``) on ``x``, as float32."""
    if dtype != torch.float32:
        x = x.to(dtype).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        return model(x).float()


# ---------------------------------------------------------------------------------------------------------------------
# the measurements

def output_errors(out: Tensor, truth: Tensor) -> dict:
    """``max_rel``: max |out - truth| / max |truth|; ``mean_rel``: the mean over samples of ||out - truth|| / ||truth||
    (L2 over the logits); ``top1_agreement``: the share of samples with the same top-1 class."""
    diff = out - truth
    return dict(max_rel=(diff.abs().max() / truth.abs().max().clamp_min(1e-30)).item(),
                mean_rel=(diff.norm(dim=1) / truth.norm(dim=1).clamp_min(1e-30)).mean().item(),
                top1_agreement=(out.argmax(1) == truth.argmax(1)).float().mean().item(),
                finite=bool(torch.isfinite(out).all()))


def layer_type(name: str, modules: Dict[str, nn.Module]) -> str:
    """``ConvFFN.fc2.weight`` for ``backbone.stages.2.blocks.0.mlp.fc2.weight``: the class that holds the layer, the
    layer's attribute and the tensor's."""
    parts = name.split('.')
    if len(parts) < 2:
        return name
    owner = modules.get('.'.join(parts[:-2]))
    return f"{type(owner).__name__ if owner is not None else '?'}.{parts[-2]}.{parts[-1]}"


@torch.no_grad()
def weight_underflow(model: nn.Module, dtype: torch.dtype = torch.float16) -> dict:
    """How many nonzero float32 weights (parameters and floating buffers) become subnormal or zero, or overflow, when
    cast to ``dtype``: in all, and per :func:`layer_type` for the types that have any."""
    modules = dict(model.named_modules())
    tiny = torch.finfo(dtype).tiny
    per_type = defaultdict(lambda: dict(nonzero=0, subnormal=0, zero=0, overflow=0))
    tensors = list(model.named_parameters()) + [(n, b) for n, b in model.named_buffers() if b.is_floating_point()]
    for name, tensor in tensors:
        value = tensor.detach().float()
        nonzero = value != 0
        casted = value.to(dtype)
        counts = per_type[layer_type(name, modules)]
        counts['nonzero'] += int(nonzero.sum())
        counts['zero'] += int((nonzero & (casted == 0)).sum())
        counts['subnormal'] += int((nonzero & (casted != 0) & (casted.abs() < tiny)).sum())
        counts['overflow'] += int(torch.isinf(casted).sum())
    total = dict(nonzero=0, subnormal=0, zero=0, overflow=0)
    for counts in per_type.values():
        for key in total:
            total[key] += counts[key]

    def fraction(counts: dict) -> float:
        return (counts['subnormal'] + counts['zero']) / max(counts['nonzero'], 1)

    return dict(dtype=str(dtype).replace('torch.', ''), smallest_normal=tiny, **total, fraction=fraction(total),
                per_layer_type={k: dict(v, fraction=fraction(v)) for k, v in sorted(per_type.items())
                                if v['subnormal'] + v['zero'] + v['overflow']})


def measure(variant: str, regime: str, args: argparse.Namespace, log) -> dict:
    """Every (level, dtype) of one variant in one regime against the unfused float32 output."""
    model = build_model(variant, regime, args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=gen)
    xa = (torch.randn(args.agreement_batch, 3, args.agreement_size, args.agreement_size, generator=gen)
          if args.agreement_batch else None)
    truth = run(model, x, torch.float32)
    truth_a = run(model, xa, torch.float32) if xa is not None else None
    levels, runs = {}, {}
    for level in args.levels:
        fused_model = fused(model, level)
        levels[level] = dict(weights={d: weight_underflow(fused_model, DTYPES[d]) for d in ('float16', 'bfloat16')})
        for dtype_name in args.dtypes:
            if level == 'unfused' and dtype_name == 'float32':
                continue  # the truth itself
            dtype = DTYPES[dtype_name]
            start = time.monotonic()
            entry = dict(level=level, dtype=dtype_name)
            try:
                net = cast(copy.deepcopy(fused_model), dtype)
                entry.update(output_errors(run(net, x, dtype), truth))
                if xa is not None:
                    entry['top1_agreement_large'] = output_errors(run(net, xa, dtype), truth_a)['top1_agreement']
            except (RuntimeError, NotImplementedError) as exc:  # a kernel torch lacks for this dtype on this CPU
                entry['error'] = f'{type(exc).__name__}: {str(exc).splitlines()[0][:300]}'
            entry['seconds'] = round(time.monotonic() - start, 2)
            runs[f'{level}/{dtype_name}'] = entry
            log(f"{variant}/{regime}/{level}/{dtype_name}: " + (
                entry['error'] if 'error' in entry else
                f"max rel {entry['max_rel']:.2e}, mean rel {entry['mean_rel']:.2e}, top-1 agree "
                f"{entry['top1_agreement']:.2f}") + f" ({entry['seconds']:.1f} s)")
    return dict(output_scale=truth.abs().max().item(), levels=levels, runs=runs)


def verdict(result: Dict[str, dict], dtypes: Sequence[str]) -> dict:
    """Whether ``'full'`` loses precision relative to ``'reference'`` (:data:`LOSS_RATIO`, :data:`LOSS_FLOOR`) in
    any regime and reduced dtype; the worst ratio of their errors."""
    losses, worst = [], None
    for regime, r in result.items():
        for dtype in dtypes:
            ref, full = r['runs'].get(f'reference/{dtype}'), r['runs'].get(f'full/{dtype}')
            if dtype == 'float32' or not ref or not full or 'error' in ref or 'error' in full:
                continue
            ratio = full['max_rel'] / max(ref['max_rel'], 1e-30)
            if worst is None or ratio > worst['ratio']:
                worst = dict(regime=regime, dtype=dtype, ratio=ratio, reference=ref['max_rel'], full=full['max_rel'])
            if full['max_rel'] > LOSS_RATIO * ref['max_rel'] and full['max_rel'] > LOSS_FLOOR:
                losses.append(dict(regime=regime, dtype=dtype, reference=ref['max_rel'], full=full['max_rel']))
    return dict(full_loses_precision=bool(losses), losses=losses, worst_ratio=worst)


# ---------------------------------------------------------------------------------------------------------------------
# the report

def _cell(entry: Optional[dict], key: str, fmt: str) -> str:
    if entry is None:
        return '-'
    if 'error' in entry:
        return f"kernel missing ({entry['error']})" if key == 'max_rel' else '-'
    value = entry.get(key)
    return '-' if value is None else format(value, fmt)


def _top_types(weights: dict, limit: int = 3) -> str:
    """The layer types holding most of the subnormal-or-zero weights: ``ConvFFN.fc2.weight 100%``."""
    held = sorted(((v['subnormal'] + v['zero'], k, v['fraction']) for k, v in weights['per_layer_type'].items()),
                  reverse=True)
    return ', '.join(f'{k} {frac:.1%}' for n, k, frac in held[:limit] if n) or '-'


def markdown(results: Dict[str, dict], settings: dict) -> str:
    dtypes = [d for d in settings['dtypes'] if d != 'float32']
    lines = ['Max |error| / max |float32 output| of each fused level run in reduced precision, against the unfused '
             'model in float32 (`full / ref`: the ratio of the two):', '']
    header = ['variant', 'regime'] + [f'{d} {lvl}' for d in dtypes for lvl in ('reference', 'full', 'full / ref')]
    lines += [row(header), row(['---'] * len(header))]
    for variant, res in results.items():
        for regime, r in res['regimes'].items():
            cells = []
            for d in dtypes:
                ref, full = r['runs'].get(f'reference/{d}'), r['runs'].get(f'full/{d}')
                ok = ref and full and 'error' not in ref and 'error' not in full
                cells += [_cell(ref, 'max_rel', '.2e'), _cell(full, 'max_rel', '.2e'),
                          f"{full['max_rel'] / max(ref['max_rel'], 1e-30):.2f}" if ok else '-']
            lines.append(row([variant, regime] + cells))
    lines += ['', f'Verdict per variant (`full` loses precision where, in some regime and reduced dtype, its error is '
              f'above {LOSS_RATIO}x the `reference` error and above {LOSS_FLOOR:g}):', '']
    for variant, res in results.items():
        v, worst = res['verdict'], res['verdict']['worst_ratio']
        worst_text = (f"worst full / ref {worst['ratio']:.2f} ({worst['regime']}, {worst['dtype']}: "
                      f"{worst['full']:.2e} vs {worst['reference']:.2e})" if worst else 'no pair measured')
        if v['full_loses_precision']:
            lost = '; '.join(f"{x['regime']} {x['dtype']} {x['full']:.2e} vs {x['reference']:.2e}" for x in v['losses'])
            lines.append(f'- {variant}: full LOSES precision ({lost}); {worst_text}.')
        else:
            lines.append(f'- {variant}: no loss from the deepest fusion; {worst_text}.')

    lines += ['', 'Nonzero weights that become subnormal or zero in float16 (all parameters and floating buffers of '
              'the fused model; the layer types holding most of them, with the share of each type\'s weights):', '']
    header = ['variant', 'regime'] + [f'{lvl}' for lvl in settings['levels']]
    lines += [row(header), row(['---'] * len(header))]
    for variant, res in results.items():
        for regime, r in res['regimes'].items():
            cells = []
            for lvl in settings['levels']:
                w = r['levels'][lvl]['weights']['float16']
                cells.append(f"{w['fraction']:.2%} ({w['subnormal']} sub., {w['zero']} zero; {_top_types(w)})")
            lines.append(row([variant, regime] + cells))

    bf16 = max(r['levels'][lvl]['weights']['bfloat16']['fraction'] for res in results.values()
               for r in res['regimes'].values() for lvl in settings['levels'])
    lines += ['', f'In bfloat16 (float32\'s exponent range) the largest such share is {bf16:.2%}.']
    header = ['variant', 'regime', 'level', 'dtype', 'max rel.', 'mean rel.',
              f"top-1 agree (batch {settings['batch']})",
              f"top-1 agree (batch {settings['agreement_batch']} at {settings['agreement_size']})", 's']
    lines += ['', 'Every run:', '', row(header), row(['---'] * len(header))]
    for variant, res in results.items():
        for regime, r in res['regimes'].items():
            for key, e in r['runs'].items():
                lines.append(row([variant, regime, e['level'], e['dtype'], _cell(e, 'max_rel', '.2e'),
                                  _cell(e, 'mean_rel', '.2e'), _cell(e, 'top1_agreement', '.2f'),
                                  _cell(e, 'top1_agreement_large', '.2f'), f"{e['seconds']:.1f}"]))
    m = settings['machine']
    lines += ['', f"Truth: the unfused classifier in float32. Batch {settings['batch']} at "
              f"{settings['size']}x{settings['size']} (top-1 agreement also on batch {settings['agreement_batch']} at "
              f"{settings['agreement_size']}x{settings['agreement_size']}), seed {settings['seed']}, CPU: "
              f"{m['cpu']} ({m['cpu_count']} cores, {m['torch_threads']} thread(s)), torch {m['torch']}, "
              f"{settings['date']}. Mean rel.: the mean over samples of the L2 norm of the logit error over that of "
              'the float32 logits. Random weights: top-1 agreement measures how often rounding flips the winner of '
              'near-tied logits, a harsher test than a trained model\'s confident predictions.', '',
              common.reproduce(settings['command'])]
    return '\n'.join(lines) + '\n'


# ---------------------------------------------------------------------------------------------------------------------
# the subcommand

def add_parser(subparsers) -> None:
    parser = common.add_subcommand(subparsers, NAME, __doc__, main, validate)
    parser.add_argument('--variants', nargs='+', choices=list(FastViT.arch_zoo), default=list(FastViT.arch_zoo))
    parser.add_argument('--regimes', nargs='+', choices=REGIMES, default=list(REGIMES), help='weight regimes')
    parser.add_argument('--levels', nargs='+', choices=LEVELS, default=list(LEVELS),
                        help='fusion levels (unfused: run in reduced precision only)')
    parser.add_argument('--dtypes', nargs='+', choices=list(DTYPES), default=list(DTYPES))
    parser.add_argument('--batch', type=int, default=4, help='Default: 4')
    parser.add_argument('--size', type=int, default=192, help='input height and width. Default: 192')
    parser.add_argument('--agreement-batch', type=int, default=16,
                        help='a second, larger batch for top-1 agreement (0: none). Default: 16')
    parser.add_argument('--agreement-size', type=int, default=64,
                        help='input height and width of --agreement-batch. Default: 64')
    common.add_shared_options(parser, DEFAULT_OUT)


def validate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    common.check_at_least(parser, args, threads=1, batch=1, size=FastViT.MIN_INPUT_SIZE, agreement_batch=0,
                          agreement_size=FastViT.MIN_INPUT_SIZE)
    if 'reference' not in args.levels or 'full' not in args.levels:
        parser.error(f'--levels must include reference and full (the pair the verdict compares), got {args.levels}')


def main(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    logger = MMLogger.get_instance('bench_fusion_precision', logger_name='bench_fusion_precision')
    settings = dict(variants=args.variants, regimes=args.regimes, levels=args.levels, dtypes=args.dtypes,
                    batch=args.batch, size=args.size, agreement_batch=args.agreement_batch,
                    agreement_size=args.agreement_size, seed=args.seed, threads=torch.get_num_threads(),
                    loss_ratio=LOSS_RATIO, loss_floor=LOSS_FLOOR, fp32_tol=FP32_TOL, spread_log10=SPREAD_LOG10,
                    pointwise_kernel='conv', low_precision_memory_format='channels_last',
                    mmengine=mmengine.__version__, machine=machine_info(), date=common.utc_now(),
                    command=args._command)
    previous = set_pointwise_kernel('conv')
    results = {}
    start = time.monotonic()
    try:
        for variant in args.variants:
            regimes = {regime: measure(variant, regime, args, logger.info) for regime in args.regimes}
            results[variant] = dict(regimes=regimes, verdict=verdict(regimes, args.dtypes))
    finally:
        set_pointwise_kernel(previous)
    settings['total_s'] = round(time.monotonic() - start, 1)
    fp32_bad = {f'{v}/{g}/{k}': e['max_rel'] for v, res in results.items() for g, r in res['regimes'].items()
                for k, e in r['runs'].items() if e['dtype'] == 'float32' and not e.get('max_rel', math.inf) < FP32_TOL}
    settings['fp32_fusion_exact'] = not fp32_bad
    if fp32_bad:
        logger.warning(f'fused levels in float32 differ from the unfused model by >= {FP32_TOL}: {fp32_bad}')
    table = markdown(results, settings)
    print(table, flush=True)
    paths = common.write_results(args.out, dict(settings=settings, results=results),
                                 '# FastViT in float16 and bfloat16: does the deepest fusion cost precision?\n\n'
                                 + table)
    logger.info(f'wrote {paths[0]} and {paths[1]}')
    return 0
