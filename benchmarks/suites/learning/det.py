"""Learning check: Mask R-CNN with FastViT-SA12, trained from scratch on CPU, learns to detect and segment the shapes
of the generated COCO-format set.

Not a test (it takes minutes): it writes a tiny COCO set (``mmfastvit.datasets.make_tiny_coco``: disks, triangles,
rings and rectangles under COCO's names, with polygon, RLE and crowd annotations), trains
``configs/mask_rcnn_fastvit_sa12_1x.py`` from scratch with ``tools/train.py`` exactly as a user would, shrunk with
``--cfg-options`` only (small images, fewer proposals and RoIs, a short step schedule, a higher lr since nothing is
pretrained), evaluates after every epoch with mmdet's CocoMetric (pycocotools), then runs ``tools/test.py`` on the
last checkpoint and checks that its bbox AP reaches ``--target``. The curve, the verdict and the command go to
``benchmarks/results/det_learning_check.{md,json}``.

Example:
    .venv/bin/python benchmarks/bench.py learning det --threads 2            # the committed figure
    .venv/bin/python benchmarks/bench.py learning det --epochs 2 --train-images 40 --target 0.01 --out /tmp/dlc
"""
import argparse
import re
import sys
import time
from pathlib import Path

from mmfastvit.datasets import make_tiny_coco
from mmfastvit.deploy.latency import load_average, machine_info

from .. import common
from ..common import REPO, run_tool

NAME = 'det'
CONFIG = REPO / 'configs' / 'mask_rcnn_fastvit_sa12_1x.py'
DEFAULT_OUT = common.RESULTS / 'det_learning_check'
VAL_LINE = re.compile(r'Epoch\((?:val|test)\) (?:\[(\d+)\])?\[\d+/\d+\]\s+coco/bbox_mAP: (-?[0-9.]+)\s+'
                      r'coco/bbox_mAP_50: (-?[0-9.]+).*?coco/segm_mAP: (-?[0-9.]+)\s+coco/segm_mAP_50: (-?[0-9.]+)')
TRAIN_LINE = re.compile(r'Epoch\(train\)\s+\[(\d+)\]\[\s*(\d+)/(\d+)\].*?\bloss: ([0-9.]+)')


def cfg_options(args: argparse.Namespace, data_root: str) -> list:
    """--cfg-options turning the 12-epoch 1333x800 protocol into a CPU-sized run from scratch on the generated set."""
    scale = f'({args.size},{args.size})'
    options = [
        'model.backbone.init_cfg=None', f'train_cfg.max_epochs={args.epochs}', 'train_cfg.val_interval=1',
        f'optim_wrapper.optimizer.lr={args.lr}', f'param_scheduler.0.end={args.warmup_iters}',
        f'param_scheduler.1.milestones=[{args.epochs - 1}]', f'param_scheduler.1.end={args.epochs}',
        f'default_hooks.checkpoint.interval={args.epochs}', 'default_hooks.checkpoint.max_keep_ckpts=1',
        'default_hooks.logger.interval=10', f'randomness.seed={args.seed}',
        f'train_dataloader.batch_size={args.batch}', f'train_dataloader.dataset.pipeline.2.scale={scale}',
        'model.train_cfg.rpn_proposal.max_per_img=300', f'model.train_cfg.rcnn.sampler.num={args.rois}',
        'model.test_cfg.rpn.max_per_img=300',
    ]
    for split in ('train', 'val', 'test'):
        options += [f'{split}_dataloader.dataset.data_root={data_root}', f'{split}_dataloader.num_workers=0',
                    f'{split}_dataloader.persistent_workers=False']
    for split in ('val', 'test'):
        options += [f'{split}_dataloader.dataset.pipeline.1.scale={scale}',
                    f'{split}_evaluator.ann_file={data_root}annotations/instances_val2017.json']
    return options


def parse_log(log: str) -> dict:
    curve = [dict(epoch=int(e) if e else None, bbox_mAP=float(b), bbox_mAP_50=float(b50), segm_mAP=float(s),
                  segm_mAP_50=float(s50)) for e, b, b50, s, s50 in VAL_LINE.findall(log)]
    losses = [dict(epoch=int(e), iter=int(i), iters_per_epoch=int(n), loss=float(loss))
              for e, i, n, loss in TRAIN_LINE.findall(log)]
    return dict(curve=curve, losses=losses)


def markdown(result: dict, settings: dict) -> str:
    lines = ['| after epoch | iterations | bbox AP | bbox AP50 | segm AP | segm AP50 |', '|---|---|---|---|---|---|']
    for point in result['curve']:
        lines.append(f"| {point['epoch']} | {point['epoch'] * settings['iters_per_epoch']} | {point['bbox_mAP']:.3f} | "
                     f"{point['bbox_mAP_50']:.3f} | {point['segm_mAP']:.3f} | {point['segm_mAP_50']:.3f} |")
    test = result['test']
    first, last = result['losses'][0], result['losses'][-1]
    lines += ['', f"`tools/test.py` on the last checkpoint: bbox AP {test['bbox_mAP']:.3f} (AP50 "
              f"{test['bbox_mAP_50']:.3f}), segm AP {test['segm_mAP']:.3f} (AP50 {test['segm_mAP_50']:.3f}). "
              f"Target bbox AP >= {settings['target']}: **{'REACHED' if result['reached'] else 'NOT REACHED'}**.",
              '', f"Training loss {first['loss']:.3f} (epoch 1, iteration {first['iter']}) -> {last['loss']:.3f} "
              f"(epoch {last['epoch']}, iteration {last['iter']}).", '',
              f"Setup: `configs/mask_rcnn_fastvit_sa12_1x.py` from scratch (`model.backbone.init_cfg=None`), "
              f"{settings['train_images']} training and {settings['val_images']} validation images of the generated "
              f"COCO set (longer side {settings['size']}, up to {settings['max_objects']} objects and a crowd region "
              f"with probability {settings['crowd_prob']}, seed {settings['seed']}), resized to fit "
              f"{settings['size']}x{settings['size']}; batch {settings['batch']}, {settings['epochs']} epochs = "
              f"{settings['epochs'] * settings['iters_per_epoch']} iterations; the config's AdamW (weight decay 1e-4) "
              f"at lr {settings['lr']} with {settings['warmup_iters']} warm-up iterations and x0.1 for the last "
              f"epoch; 300 RPN proposals and {settings['rois']} sampled RoIs per image (the config: 2000 and 512). "
              f"Validation and test use the config's test settings (score 0.05, 100 detections) with 300 proposals.",
              '', f"Wall time {settings['wall_s'] / 60:.1f} min on {settings['machine']['cpu']} "
              f"({settings['machine']['cpu_count']} cores; 1-minute load average {settings['load_before']['1min']} "
              f"before, {settings['load_after']['1min']} after), torch {settings['machine']['torch']}, "
              f"{settings['date']}.", '', common.reproduce(settings['command'])]
    return '\n'.join(lines) + '\n'


def add_parser(subparsers) -> None:
    parser = common.add_subcommand(subparsers, NAME, __doc__, main, validate)
    parser.add_argument('--train-images', type=int, default=100, help='generated training images. Default: 100')
    parser.add_argument('--val-images', type=int, default=24, help='generated validation images. Default: 24')
    parser.add_argument('--size', type=int, default=128, help='longer image side. Default: 128')
    parser.add_argument('--max-objects', type=int, default=3, help='most objects per image. Default: 3')
    parser.add_argument('--crowd-prob', type=float, default=0.2, help='chance of a crowd region. Default: 0.2')
    parser.add_argument('--batch', type=int, default=2, help='images per iteration. Default: 2')
    parser.add_argument('--epochs', type=int, default=6, help='training epochs. Default: 6')
    parser.add_argument('--lr', type=float, default=1e-3, help='AdamW peak lr (the config: 2e-4). Default: 1e-3')
    parser.add_argument('--warmup-iters', type=int, default=50, help='linear warm-up iterations. Default: 50')
    parser.add_argument('--rois', type=int, default=64, help='sampled RoIs per image (the config: 512). Default: 64')
    parser.add_argument('--target', type=float, default=0.5, help='bbox AP@[.5:.95] to reach. Default: 0.5')
    parser.add_argument('--work-dir', type=Path, help='keep the data, logs and checkpoint here (default: a temp dir)')
    common.add_shared_options(parser, DEFAULT_OUT, threads_what='OMP_NUM_THREADS of tools/train.py and tools/test.py',
                              load_when='first')


def validate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    common.check_at_least(parser, args, train_images=1, val_images=1, batch=1, threads=1, warmup_iters=0)
    if args.epochs < 2:
        parser.error(f'--epochs must be >= 2 (the last one runs at lr x0.1), got {args.epochs}')


def main(args: argparse.Namespace) -> int:
    waited = common.wait_if_asked(args, log=common.log_stderr)
    load_before = load_average()
    start = time.monotonic()
    with common.work_dir(args.work_dir) as work:
        data = make_tiny_coco(str(work / 'data'), num_train=args.train_images, num_val=args.val_images,
                              size=args.size, max_objects=args.max_objects, crowd_prob=args.crowd_prob,
                              seed=args.seed)
        data_root = data['root'] + '/'
        options = cfg_options(args, data_root)
        print(f"training on {data['train']['num_images']} images ({data['train']['num_annotations']} annotations) "
              f"for {args.epochs} epochs; log: {work / 'train.log'}", file=sys.stderr, flush=True)
        train_log = run_tool('train.py', str(CONFIG), '--work-dir', str(work / 'work_dir'), '--cfg-options', *options,
                             log_path=work / 'train.log', threads=args.threads)
        test_log = run_tool('test.py', str(CONFIG), str(work / 'work_dir' / f'epoch_{args.epochs}.pth'), '--work-dir',
                            str(work / 'test_dir'), '--cfg-options', *options, log_path=work / 'test.log',
                            threads=args.threads)
    wall_s = time.monotonic() - start
    parsed = parse_log(train_log)
    tests = parse_log(test_log)['curve']
    if not parsed['curve'] or not tests:
        sys.exit('no CocoMetric results found in the logs')
    test = tests[-1]
    result = dict(curve=parsed['curve'], losses=parsed['losses'], test=test, reached=test['bbox_mAP'] >= args.target)
    iters_per_epoch = parsed['losses'][-1]['iters_per_epoch']
    settings = dict(common.options(args), work_dir=str(args.work_dir) if args.work_dir else None, out=str(args.out),
                    train_images=data['train']['num_images'], val_images=data['val']['num_images'],
                    train_annotations=data['train']['num_annotations'], val_annotations=data['val']['num_annotations'],
                    iters_per_epoch=iters_per_epoch, cfg_options=options, wall_s=wall_s, load_before=load_before,
                    load_after=load_average(), wait_for_load=waited, machine=machine_info(),
                    date=common.utc_now(), command=args._command)
    text = markdown(result, settings)
    print(text, flush=True)
    paths = common.write_results(args.out, dict(settings=settings, results=result),
                                 '# Learning check: Mask R-CNN FastViT-SA12 from scratch on generated shapes (CPU)\n\n'
                                 + text)
    print(f'wrote {paths[0]} and {paths[1]}', file=sys.stderr)
    return 0 if result['reached'] else 1


