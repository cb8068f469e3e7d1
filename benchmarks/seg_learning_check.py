"""Learning check: the FastViT-SA12 Semantic FPN config learns the generated ADE20K-format scenes on CPU.

Not a test (it takes minutes): it writes a tiny ADE20K-layout dataset (``mmfastvit.datasets.make_tiny_ade20k``),
trains ``configs/sem_fpn_fastvit_sa12_ade20k_40k.py`` from scratch with ``tools/train.py`` exactly as a user would,
shrunk with ``--cfg-options`` only (small crops, a short poly schedule, the config's AdamW), validates every
``--val-interval`` iterations with mmseg's IoUMetric, and checks that the validation mIoU reaches ``--target`` within
``--iters`` iterations. The curve, the verdict and the command go to
``benchmarks/results/seg_learning_check.{md,json}``.

Example:
    .venv/bin/python benchmarks/seg_learning_check.py                       # the committed figure
    .venv/bin/python benchmarks/seg_learning_check.py --iters 100 --val-interval 50 --target 10
"""
import argparse
import datetime
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from mmfastvit.datasets import make_tiny_ade20k
from mmfastvit.deploy.latency import machine_info, write_text_atomic

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / 'configs' / 'sem_fpn_fastvit_sa12_ade20k_40k.py'
DEFAULT_OUT = Path(__file__).resolve().parent / 'results' / 'seg_learning_check'
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
              f"Reproduce: `{settings['command']}`"]
    return '\n'.join(lines) + '\n'


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--iters', type=int, default=400, help='training iterations')
    parser.add_argument('--val-interval', type=int, default=50, help='validate every this many iterations')
    parser.add_argument('--target', type=float, default=60.0, help='validation mIoU (percent) to reach')
    parser.add_argument('--batch', type=int, default=4)
    parser.add_argument('--crop', type=int, default=64, help='training crop side; also the test shorter edge')
    parser.add_argument('--num-train', type=int, default=64)
    parser.add_argument('--num-val', type=int, default=16)
    parser.add_argument('--size', type=int, nargs=2, default=[64, 80], metavar=('H', 'W'), help='generated images')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--threads', type=int, default=1,
                        help='OMP_NUM_THREADS of the training process (on a shared machine 1 is steadier)')
    parser.add_argument('--work-dir', type=Path, default=REPO / 'work_dirs' / 'seg_learning_check')
    parser.add_argument('--out', type=Path, default=DEFAULT_OUT, help='writes OUT.json and OUT.md')
    args = parser.parse_args()
    if args.iters < 1 or args.val_interval < 1 or args.val_interval > args.iters:
        parser.error('--iters and --val-interval must be >= 1, --val-interval <= --iters')
    return args


def main() -> None:
    args = parse_args()
    data = make_tiny_ade20k(str(args.work_dir / 'data'), num_train=args.num_train, num_val=args.num_val,
                            size=tuple(args.size), seed=args.seed)
    cmd = [sys.executable, str(REPO / 'tools' / 'train.py'), str(CONFIG), '--work-dir', str(args.work_dir / 'train'),
           '--cfg-options', *train_options(args, data['root'])]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads),
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get('PYTHONPATH', ''))
    load_before = [round(x, 2) for x in os.getloadavg()]
    print(f'training: {shlex.join(cmd)}', flush=True)
    start = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
    wall_s = time.monotonic() - start
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        sys.exit(f'training failed (exit {proc.returncode}):\n{log[-4000:]}')
    result = parse_log(log, args.val_interval)
    if not result['curve']:
        sys.exit(f'no validation results in the training log:\n{log[-4000:]}')
    settings = dict(iters=args.iters, val_interval=args.val_interval, target=args.target, batch=args.batch,
                    crop=args.crop, num_train=args.num_train, num_val=args.num_val, size=args.size, seed=args.seed,
                    classes=data['labels'][1:], threads=args.threads, machine=machine_info(), wall_s=wall_s,
                    load_before=load_before, load_after=[round(x, 2) for x in os.getloadavg()],
                    date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
                    command=shlex.join(sys.orig_argv), train_command=shlex.join(cmd))
    table = markdown(result, settings)
    print(table, flush=True)
    json_path, md_path = (args.out.with_name(args.out.name + suffix) for suffix in ('.json', '.md'))
    write_text_atomic(json_path, json.dumps(dict(settings=settings, result=result), indent=2) + '\n')
    write_text_atomic(md_path, '# Semantic FPN + FastViT-SA12 learning check (CPU, generated ADE20K)\n\n' + table)
    print(f'wrote {json_path} and {md_path}')
    reached = any(p['mIoU'] >= args.target for p in result['curve'])
    sys.exit(0 if reached else 1)


if __name__ == '__main__':
    main()
