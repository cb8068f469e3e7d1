"""Learning check: the FastViT-SA12 Semantic FPN config learns the generated ADE20K-format scenes on CPU.

Not a test (it takes minutes): it writes a tiny ADE20K-layout dataset (``mmfastvit.datasets.make_tiny_ade20k``),
trains ``configs/sem_fpn_fastvit_sa12_ade20k_40k.py`` from scratch with ``tools/train.py`` exactly as a user would,
shrunk with ``--cfg-options`` only (small crops, a short poly schedule, the config's AdamW), validates every
``--val-interval`` iterations with mmseg's IoUMetric, and checks that the validation mIoU reaches ``--target`` within
``--iters`` iterations. The curve, the verdict and the command go to
``benchmarks/results/seg_learning_check.{md,json}``.

Example:
    .venv/bin/python benchmarks/bench.py learning seg --threads 1             # the committed figure
    .venv/bin/python benchmarks/bench.py learning seg --iters 100 --val-interval 50 --target 10
"""
import argparse
import os
import re
import shlex
import sys
import time
from pathlib import Path

from mmfastvit.datasets import make_tiny_ade20k
from mmfastvit.deploy.latency import machine_info

from .. import common
from ..common import REPO, run_tool, tool_command

NAME = 'seg'
CONFIG = REPO / 'configs' / 'sem_fpn_fastvit_sa12_ade20k_40k.py'
DEFAULT_OUT = common.RESULTS / 'seg_learning_check'
VAL_LINE = re.compile(r'Iter\(val\) \[\d+/\d+\]\s+aAcc: ([0-9.]+)\s+mIoU: ([0-9.]+)\s+mAcc: ([0-9.]+)')
TRAIN_LINE = re.compile(r'Iter\(train\) \[\s*(\d+)/\d+\].*?\bloss: ([0-9.]+)')


def train_options(args: argparse.Namespace, data_root: str) -> list:
    """--cfg-options turning the 40k-iteration, 512x512 protocol into a CPU-sized run on the generated data."""
    crop = f'({args.crop},{args.crop})'
    scale = f'({4 * args.crop},{args.crop})'  # shorter edge `crop` (x 0.5-2.0 while training), as 512 for ADE20K
    options = [f'train_cfg.max_iters={args.iters}', f'train_cfg.val_interval={args.val_interval}',
               f'param_scheduler.0.end={args.iters}', f'default_hooks.checkpoint.interval={args.iters}',
               'default_hooks.checkpoint.max_keep_ckpts=1', 'default_hooks.checkpoint.save_best=None',
               'default_hooks.logger.interval=10', f'randomness.seed={args.seed}', 'model.backbone.init_cfg=None',
               f'train_dataloader.batch_size={args.batch}', f'model.data_preprocessor.size={crop}',
               f'train_dataloader.dataset.pipeline.2.scale={scale}',
               f'train_dataloader.dataset.pipeline.3.crop_size={crop}']
    for split in ('train', 'val', 'test'):
        options += [f'{split}_dataloader.dataset.data_root={data_root}', f'{split}_dataloader.num_workers=0',
                    f'{split}_dataloader.persistent_workers=False']
    for split in ('val', 'test'):
        options.append(f'{split}_dataloader.dataset.pipeline.1.scale={scale}')
    return options


def parse_log(log: str, val_interval: int) -> dict:
    """Validation metrics per iteration (the n-th validation ran at n x val_interval) and the training losses."""
    vals = [tuple(float(v) for v in m) for m in VAL_LINE.findall(log)]
    curve = [dict(iter=(i + 1) * val_interval, aAcc=a, mIoU=miou, mAcc=macc) for i, (a, miou, macc) in enumerate(vals)]
    losses = [dict(iter=int(it), loss=float(loss)) for it, loss in TRAIN_LINE.findall(log)]
    return dict(curve=curve, losses=losses)


def markdown(result: dict, settings: dict) -> str:
    curve, target = result['curve'], settings['target']
    reached = next((p['iter'] for p in curve if p['mIoU'] >= target), None)
    verdict = (f"HOLDS: validation mIoU {curve[-1]['mIoU']:.2f} after {settings['iters']} iterations; first at or "
               f"above {target} at iteration {reached}" if reached is not None else
               f"FAILS: best validation mIoU {max((p['mIoU'] for p in curve), default=float('nan')):.2f} < {target}")
    lines = [f"Target: validation mIoU >= {target} within {settings['iters']} iterations. {verdict}.", '',
             '| iteration | mIoU | mAcc | aAcc | training loss (logged near it) |', '| --- | --- | --- | --- | --- |']
    losses = {p['iter']: p['loss'] for p in result['losses']}
    for p in curve:
        loss = losses.get(p['iter'])
        lines.append(f"| {p['iter']} | {p['mIoU']:.2f} | {p['mAcc']:.2f} | {p['aAcc']:.2f} | "
                     f"{f'{loss:.3f}' if loss is not None else '-'} |")
    first = result['losses'][0] if result['losses'] else None
    info = settings['machine']
    lines += ['', f"Training loss {first['loss']:.3f} at iteration {first['iter']}, "
              f"{result['losses'][-1]['loss']:.3f} at iteration {result['losses'][-1]['iter']}." if first else '',
              '', f"Data: `make_tiny_ade20k` with {settings['num_train']} training and {settings['num_val']} "
              f"validation images of {settings['size'][0]}x{settings['size'][1]}, background class 1 and object "
              f"classes {settings['classes']} (seed {settings['seed']}); mIoU is IoUMetric's mean over the classes "
              'present in the ground truth or the predictions.',
              f"Model: `configs/sem_fpn_fastvit_sa12_ade20k_40k.py` from scratch (`model.backbone.init_cfg=None`), "
              f"AdamW lr 2e-4, weight decay 1e-4, poly 0.9 over {settings['iters']} iterations, batch "
              f"{settings['batch']}, {settings['crop']}x{settings['crop']} crops from a 0.5-2.0 ratio range, "
              f"validation every {settings['val_interval']} iterations at the generated size.",
              f"Machine: {info['cpu']} ({info['cpu_count']} cores), {settings['threads']} thread(s), torch "
              f"{info['torch']}; load average before {settings['load_before']}, after {settings['load_after']}; "
              f"wall time {settings['wall_s'] / 60:.1f} min; {settings['date']}.", '',
              common.reproduce(settings['command'])]
    return '\n'.join(lines) + '\n'


def add_parser(subparsers) -> None:
    parser = common.add_subcommand(subparsers, NAME, __doc__, main, validate)
    parser.add_argument('--iters', type=int, default=400, help='training iterations')
    parser.add_argument('--val-interval', type=int, default=50, help='validate every this many iterations')
    parser.add_argument('--target', type=float, default=60.0, help='validation mIoU (percent) to reach')
    parser.add_argument('--batch', type=int, default=4)
    parser.add_argument('--crop', type=int, default=64, help='training crop side; also the test shorter edge')
    parser.add_argument('--num-train', type=int, default=64)
    parser.add_argument('--num-val', type=int, default=16)
    parser.add_argument('--size', type=int, nargs=2, default=[64, 80], metavar=('H', 'W'), help='generated images')
    parser.add_argument('--work-dir', type=Path, help='keep the data, log and checkpoint here (default: a temp dir)')
    common.add_shared_options(parser, DEFAULT_OUT, threads_what='OMP_NUM_THREADS of tools/train.py')


def validate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    common.check_at_least(parser, args, iters=1, val_interval=1, batch=1, threads=1, num_train=1, num_val=1)
    if args.val_interval > args.iters:
        parser.error(f'--val-interval must be <= --iters ({args.iters}), got {args.val_interval}')


def main(args: argparse.Namespace) -> int:
    with common.work_dir(args.work_dir) as work:
        data = make_tiny_ade20k(str(work / 'data'), num_train=args.num_train, num_val=args.num_val,
                                size=tuple(args.size), seed=args.seed)
        tool_args = [str(CONFIG), '--work-dir', str(work / 'train'), '--cfg-options',
                     *train_options(args, data['root'])]
        train_command = shlex.join(tool_command('train.py', *tool_args))
        load_before = [round(x, 2) for x in os.getloadavg()]
        print(f'training: {train_command}', flush=True)
        start = time.monotonic()
        log = run_tool('train.py', *tool_args, log_path=work / 'train.log', threads=args.threads)
        wall_s = time.monotonic() - start
    result = parse_log(log, args.val_interval)
    if not result['curve']:
        sys.exit(f'no validation results in the training log:\n{log[-4000:]}')
    settings = dict(iters=args.iters, val_interval=args.val_interval, target=args.target, batch=args.batch,
                    crop=args.crop, num_train=args.num_train, num_val=args.num_val, size=args.size, seed=args.seed,
                    classes=data['labels'][1:], threads=args.threads, machine=machine_info(), wall_s=wall_s,
                    load_before=load_before, load_after=[round(x, 2) for x in os.getloadavg()],
                    date=common.utc_now(), command=args._command, train_command=train_command)
    table = markdown(result, settings)
    print(table, flush=True)
    paths = common.write_results(args.out, dict(settings=settings, result=result),
                                 '# Semantic FPN + FastViT-SA12 learning check (CPU, generated ADE20K)\n\n' + table)
    print(f'wrote {paths[0]} and {paths[1]}')
    reached = any(p['mIoU'] >= args.target for p in result['curve'])
    return 0 if reached else 1
