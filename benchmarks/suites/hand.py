"""Throughput of the FreiHAND hand-mesh model: fused FastViT against ResNet-50, the same MANO head on each.

Each candidate is the whole model of ``configs/hand_mesh_fastvit_*_freihand.py`` after the data preprocessor:
backbone -> global average pool -> ``MANORegressionHead`` (three linear layers, 6D -> rotation matrices, the MANO
layer with FreiHAND's 21 joints, root-relative mesh and joints, weak-perspective projection), i.e.
``HandMeshEstimator(x, mode='tensor')`` on a normalized 3x224x224 batch, float32, eval mode. The candidates:

* ``fastvit_<v>``: FastViT-<V> (``out_indices=(4,)``: the classifier's ``final_conv``, 2x the last stage's width)
  fused as deployed: a train-form model is fused with ``reparameterize_model`` and its state dict loaded strictly
  into a model built with ``model.backbone.deploy=True``; the outputs are checked against the train form first.
* ``resnet50``: torchvision's ResNet-50 (its 2048-d pooled features, ``fc`` removed), BatchNorm as torchvision runs it.
* ``resnet50_fused``: the same with every BatchNorm folded into its convolution (``torch.fx`` conv-BN fusion), the
  form a deployment would run; the like-for-like baseline of the fused FastViT.

Timed runs are interleaved round-robin across every candidate within one run, one run per batch size, so drift in
the machine's speed affects all alike; the ratios (FPS over the ResNet-50's FPS) are taken within the run. The MANO
model is a synthetic one (``make_synthetic_mano``) unless ``--mano-path`` is given: the layer's cost does not depend
on its values. On CPU, a forward's peak extra resident memory is measured per candidate in a fresh subprocess; on
CUDA, the peak allocated memory above what the weights hold.

The machine may be shared: ``--max-load`` waits (up to ``--max-wait`` seconds) before each batch size until the
1-minute load average is below it; the load before and after timing is recorded either way. Writes
``benchmarks/results/hand_throughput_cpu_<cpu>.{json,md}`` (<cpu>: the CPU model, e.g. ``intel-xeon``) or, with
``--device cuda``, ``hand_throughput_cuda.{json,md}`` by default.

Example:
    .venv/bin/python benchmarks/bench.py hand --warmup 5 --runs 30 --warmup-big 2 --runs-big 6 --max-load 1.5
    .venv/bin/python benchmarks/bench.py hand --device cuda --warmup 50 --runs 200     # batch 1, as the paper
"""
import argparse
import copy
import os
import sys
import tempfile
from typing import Dict, Optional, Sequence, Tuple

import mmengine
import torch
from mmengine.logging import MMLogger
from torch import nn

from mmfastvit.deploy.latency import machine_info, summarize
from mmfastvit.hand import HandMeshEstimator, make_synthetic_mano
from mmfastvit.models import FastViT, reparameterize_model
from mmfastvit.models.utils.fusion_checks import randomize_fusable_state_, relative_error

from . import common
from .common import fmt_load, num_params, row

NAME = 'hand'
DEFAULT_VARIANTS = ('sa12', 'ma36')
BASELINES = ('resnet50_fused', 'resnet50')  # the first is the like-for-like one
BASELINE_LABELS = {
    'resnet50': 'ResNet-50 (torchvision, BatchNorm as is)',
    'resnet50_fused': 'ResNet-50 (torchvision, BatchNorm folded into the convolutions)',
}
SHORT_LABELS = {'resnet50': 'R50', 'resnet50_fused': 'R50 BN-folded'}
FINAL_CONV_INDEX = 4
RESNET50_CHANNELS = 2048
SIZE = 224  # FreiHAND's crop (HandCropAffine's out_size)
AGREEMENT_TOL = 1e-4  # max |fused - unfused| / max |unfused| over the features and every head output
MEMORY_RUNS = 2
PAPER = 'FastViT-MA36: 218 FPS at batch 1 on an RTX-2080Ti (paper, Table 8)'


def _torchvision():
    try:
        import torchvision
        from torch.fx.experimental.optimization import fuse as fx_fuse_conv_bn
    except ImportError as exc:
        sys.exit(f'bench.py hand needs torchvision for the ResNet-50 baseline ({exc})')
    return torchvision, fx_fuse_conv_bn


def hand_model(backbone: nn.Module, mano_path: str, in_channels: Optional[int] = None) -> HandMeshEstimator:
    """``HandMeshEstimator`` with the config's head (``MANORegressionHead``) on ``backbone``, eval mode."""
    head = dict(type='mmfastvit.MANORegressionHead', mano_path=mano_path)
    if in_channels is not None:
        head['in_channels'] = in_channels
    return HandMeshEstimator(backbone=backbone, head=head).eval()


def fastvit_hand(variant: str, mano_path: str, seed: int) -> Tuple[nn.Module, nn.Module]:
    """(train form, deploy form) of the FastViT-``variant`` hand model, same weights.

    The backbone's BatchNorm statistics and layer scales are randomized (seeded), so the fusion is not trivial. The
    deploy form is built as ``model.backbone.deploy=True`` builds it and loads the fused state dict strictly.
    """
    torch.manual_seed(seed)
    backbone = randomize_fusable_state_(FastViT(variant, out_indices=(FINAL_CONV_INDEX, )), seed)
    unfused = hand_model(backbone, mano_path)
    fused_state = reparameterize_model(copy.deepcopy(unfused), 'full').state_dict()
    deploy = hand_model(
        dict(type='mmfastvit.FastViT', arch=variant, out_indices=(FINAL_CONV_INDEX, ), deploy=True), mano_path)
    deploy.load_state_dict(fused_state, strict=True)
    return unfused, deploy.eval()


def resnet50_hand(mano_path: str, seed: int) -> Tuple[nn.Module, nn.Module]:
    """(BatchNorm as is, BatchNorm folded) ResNet-50 hand models, same weights (random BN statistics, seeded)."""
    torchvision, fx_fuse_conv_bn = _torchvision()
    torch.manual_seed(seed)
    backbone = torchvision.models.resnet50()
    backbone.fc = nn.Identity()  # the pooled 2048-d features
    randomize_fusable_state_(backbone.eval(), seed)
    unfused = hand_model(backbone, mano_path, RESNET50_CHANNELS)
    fused = copy.deepcopy(unfused)
    fused.backbone = fx_fuse_conv_bn(fused.backbone)
    return unfused, fused.eval()


def build_candidates(names: Sequence[str], mano_path: str, seed: int,
                     check_x: Optional[torch.Tensor] = None) -> Tuple[Dict[str, nn.Module], Dict[str, float]]:
    """The timed models by name, and (when ``check_x`` is given) each fused form's relative difference from its
    unfused form over the backbone features and every head output; exits if one is too big."""
    models, errors = {}, {}
    pairs = {}
    for name in names:
        if name.startswith('fastvit_'):
            pairs[name] = fastvit_hand(name[len('fastvit_'):], mano_path, seed)
        elif name in BASELINES:
            if 'resnet50' not in pairs:
                unfused, fused = resnet50_hand(mano_path, seed)
                pairs['resnet50'], pairs['resnet50_fused'] = (unfused, unfused), (unfused, fused)
        else:
            raise ValueError(f'candidate "{name}" is not fastvit_<variant> or one of {list(BASELINES)}')
    for name in names:
        unfused, timed = pairs[name]
        if check_x is not None and timed is not unfused:
            with torch.inference_mode():
                expected = (unfused.extract_feat(check_x), ) + tuple(unfused(check_x).values())
                actual = (timed.extract_feat(check_x), ) + tuple(timed(check_x).values())
            errors[name] = relative_error(tuple(_flat(actual)), tuple(_flat(expected)))
            if not errors[name] < AGREEMENT_TOL:
                sys.exit(f'{name}: the fused model disagrees with the unfused one (relative difference '
                         f'{errors[name]:.2e} >= {AGREEMENT_TOL}); no timings taken')
        models[name] = timed
    return models, errors


def _flat(outputs):
    for out in outputs:
        if isinstance(out, (tuple, list)):
            yield from _flat(out)
        else:
            yield out


def memory_child(args: argparse.Namespace) -> None:
    """Builds one candidate, runs it, prints its forward's peak extra resident memory (JSON)."""
    name = args.memory_child
    model = build_candidates((name, ), args.mano_path, args.seed)[0][name]
    memory = common.forward_peak(model, torch.randn(args.batches[0], 3, SIZE, SIZE), MEMORY_RUNS)
    common.print_child_result(peak_mib=memory['peak_mib'], peak_is_extra=memory['peak_is_extra'])


def measure_cpu_memory(name: str, batch: int, args: argparse.Namespace) -> dict:
    return common.memory_in_child(NAME, name, ['--batches', batch, '--seed', args.seed, '--threads', args.threads,
                                               '--mano-path', args.mano_path], what=f'{name} at batch {batch}')


def measure_cuda_memory(model: nn.Module, x: torch.Tensor) -> dict:
    """Peak CUDA memory allocated during a forward above what is allocated before it (weights, input)."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    with torch.inference_mode():
        model(x)
    torch.cuda.synchronize()
    return dict(peak_mib=(torch.cuda.max_memory_allocated() - before) / 2**20, peak_is_extra=True)


def label(name: str) -> str:
    return f"FastViT-{name[len('fastvit_'):].upper()} (fused)" if name.startswith('fastvit_') else BASELINE_LABELS[name]


def markdown(results: dict, settings: dict) -> str:
    """The FPS table with the ratios to ResNet-50, per-candidate details, settings per batch, and the command."""
    device, batches = settings['device'], settings['batches']
    info = settings['machine']
    where = (f"{info.get('gpu', 'GPU')} (CUDA {info.get('cuda')})" if device == 'cuda'
             else f"{common.cpu_text(info)}, {info['torch_threads']} thread(s)")
    base = [b for b in BASELINES if b in results['params']]
    lines = [f'Whole hand model after the data preprocessor (backbone -> pool -> MANO regression head -> MANO layer -> '
             f'21 joints, 778 vertices), 3x{SIZE}x{SIZE}, float32, eval mode, on {where}. FPS = images per second at '
             'the median batch time. Ratios are FPS over the ResNet-50\'s FPS in the same run (> 1: faster).', '']
    header = ['model', 'params (M)'] + [f'FPS, batch {b}' for b in batches] + [
        f'FPS / {SHORT_LABELS[b]}, batch {bs}' for b in base for bs in batches]
    lines += [row(header), row(['---'] * len(header))]
    for name, params in results['params'].items():
        fps = {bs: results['batches'][str(bs)]['latency'][name]['throughput_ips'] for bs in batches}
        cells = [label(name), f'{params / 1e6:.2f}'] + [f'{fps[bs]:.1f}' for bs in batches]
        for b in base:
            cells += [f"{fps[bs] / results['batches'][str(bs)]['latency'][b]['throughput_ips']:.2f}" for bs in batches]
        lines.append(row(cells))
    lines += ['', f'Paper: {PAPER}.', '']

    header = ['model', 'batch', 'median ms', 'p90 ms', 'min ms', 'FPS', 'peak MiB', 'rel. diff']
    lines += [row(header), row(['---'] * len(header))]
    for bs in batches:
        r = results['batches'][str(bs)]
        for name, stats in r['latency'].items():
            peak = f"{r['memory'][name]['peak_mib']:.0f}" if name in r['memory'] else '-'
            diff = f"{results['max_rel_diff'][name]:.1e}" if name in results['max_rel_diff'] else '-'
            lines.append(row([name, str(bs), f"{stats['median_ms']:.1f}", f"{stats['p90_ms']:.1f}",
                              f"{stats['min_ms']:.1f}", f"{stats['throughput_ips']:.1f}", peak, diff]))
    peak_note = ('the forward\'s peak extra resident memory (VmHWM - VmRSS after a first forward), in a fresh process '
                 'per candidate' if device == 'cpu' else 'peak CUDA memory allocated during a forward above the '
                 'weights and input')
    lines += ['', f'Peak MiB: {peak_note}. rel. diff: max |fused - unfused| / max |unfused| over the backbone '
              'features and every head output, checked before timing.', '']
    for bs in batches:
        r = results['batches'][str(bs)]
        waited = r['waited']
        wait_note = '' if waited is None else (
            f" (waited {waited['waited_s']:.0f} s for it to drop below {settings['max_load']}"
            + ('' if waited['below'] else ', timed out') + ')')
        lines.append(f"- Batch {bs}: {r['warmup']} warm-up + {r['runs']} timed rounds per candidate, interleaved; load "
                     f"average (1, 5, 15 min) before timing {fmt_load(r['load_before'])}{wait_note}, after "
                     f"{fmt_load(r['load_after'])}; timing took {r['timing_s'] / 60:.1f} min.")
    lines += ['', f"MANO: {settings['mano']}. torch {info['torch']}, torchvision {settings['torchvision']}, "
              f"{settings['date']}.", '', common.reproduce(settings['command'])]
    return '\n'.join(lines) + '\n'


def add_parser(subparsers) -> None:
    parser = common.add_subcommand(subparsers, NAME, __doc__, main, validate)
    parser.add_argument('--variants', nargs='+', choices=list(FastViT.arch_zoo), default=list(DEFAULT_VARIANTS))
    parser.add_argument('--baselines', nargs='*', choices=list(BASELINES), default=list(BASELINES))
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--batches', nargs='+', type=int, default=None,
                        help='batch sizes, one interleaved run each. Default: 1 32 on cpu (32: METRO\'s per-GPU '
                             'batch), 1 on cuda (the paper\'s FPS)')
    common.add_timing_options(parser, warmup=5, runs=30, unit='rounds at batch 1 (one forward of every candidate '
                              'each)', big=True)
    parser.add_argument('--mano-path', default=None,
                        help='MANO_RIGHT.pkl to build the head with. Default: a synthetic one in a temporary folder')
    common.add_shared_options(parser, None, load_when='before each batch size', memory_child=memory_child,
                              out_default_text=f'{common.cpu_results("hand_throughput").relative_to(common.REPO)} '
                                               '(--device cuda: hand_throughput_cuda)')


def validate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.batches is None:
        args.batches = [1, 32] if args.device == 'cpu' else [1]
    common.check_at_least(parser, args, runs=1, runs_big=1, threads=1, batches=1, warmup=0, warmup_big=0)
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda: torch sees no CUDA device here')
    if args.out is None:
        args.out = (common.cpu_results('hand_throughput') if args.device == 'cpu'
                    else common.RESULTS / f'hand_throughput_{args.device}')


def main(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    logger = MMLogger.get_instance('bench_hand', logger_name='bench_hand')
    torchvision, _ = _torchvision()
    with tempfile.TemporaryDirectory() as tmp:
        mano = f'{args.mano_path} (given)'
        if args.mano_path is None:
            args.mano_path = make_synthetic_mano(os.path.join(tmp, 'MANO_RIGHT.pkl'), seed=args.seed)
            mano = 'synthetic (make_synthetic_mano; the layer\'s cost does not depend on its values)'
        names = tuple(f'fastvit_{v}' for v in args.variants) + tuple(args.baselines)
        check_x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(args.seed))
        models, errors = build_candidates(names, args.mano_path, args.seed, check_x)
        logger.info(f'{len(models)} candidates; fused forms agree with unfused (worst rel. diff '
                    f'{max(errors.values(), default=0):.1e})')
        params = {name: num_params(model) for name, model in models.items()}
        device = torch.device(args.device)
        sync = None
        if args.device == 'cuda':
            torch.backends.cudnn.benchmark = True
            models = {name: model.to(device) for name, model in models.items()}
            sync = torch.cuda.synchronize

        per_batch = {}
        for batch in args.batches:
            warmup, runs = common.timing_for(args, batch)
            x = torch.randn(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(args.seed)).to(device)
            calls = {name: (lambda model=model: model(x)) for name, model in models.items()}
            timed = common.time_when_quiet(calls, warmup, runs, args, logger.info, label=f'batch {batch}: ', sync=sync)
            latency = {name: summarize(t, batch=batch) for name, t in timed['times'].items()}
            for name, stats in latency.items():
                logger.info(f"batch {batch}: {name} median {stats['median_ms']:.1f} ms, "
                            f"{stats['throughput_ips']:.1f} FPS")
            per_batch[str(batch)] = dict(warmup=warmup, runs=runs, latency=latency, load_before=timed['load_before'],
                                         load_after=timed['load_after'], waited=timed['waited'],
                                         timing_s=timed['timing_s'], memory={})

        if not args.no_memory:
            for batch in args.batches:
                memory = per_batch[str(batch)]['memory']
                x = torch.randn(batch, 3, SIZE, SIZE).to(device)
                for name in models:
                    memory[name] = (measure_cuda_memory(models[name], x) if args.device == 'cuda'
                                    else measure_cpu_memory(name, batch, args))
                    logger.info(f"batch {batch}: {name} peak {memory[name]['peak_mib']:.0f} MiB")

    settings = dict(device=args.device, variants=args.variants, baselines=args.baselines, batches=args.batches,
                    size=SIZE, seed=args.seed, dtype='float32', mano=mano, machine=machine_info(),
                    torchvision=torchvision.__version__, mmengine=mmengine.__version__, max_load=args.max_load,
                    max_wait=args.max_wait, agreement_tol=AGREEMENT_TOL,
                    cudnn_benchmark=args.device == 'cuda', memory_child_env=common.MEMORY_CHILD_ENV,
                    date=common.utc_now(), command=args._command)
    results = dict(params=params, max_rel_diff=errors, batches=per_batch)
    table = markdown(results, settings)
    print(table, flush=True)
    title = 'CPU' if args.device == 'cpu' else 'GPU'
    paths = common.write_results(args.out, dict(settings=settings, results=results),
                                 f'# FreiHAND hand-mesh model: throughput on {title}, FastViT against ResNet-50\n\n'
                                 + table)
    logger.info(f'wrote {paths[0]} and {paths[1]}')
    return 0
