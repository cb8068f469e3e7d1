"""Learning check: the FastViT-T8 ImageNet classifier, trained from scratch on CPU, learns the generated
ImageNet-layout shapes.

Not a test (it takes minutes): it writes a tiny ImageNet-layout set (``mmfastvit.datasets.make_tiny_imagenet``: one
coloured shape per class on a noisy background), trains ``configs/fastvit_t8_in1k.py`` from scratch with
``tools/train.py`` exactly as a user would, shrunk with ``--cfg-options`` only (as many classes as generated, small
images with the config's crop ratio, a short warm-up + cosine schedule, the config's AdamW at a higher lr since
nothing is pretrained, an EMA short enough for the run; Mixup / CutMix, RandAugment and random erasing as the config),
validates every ``--val-interval`` epochs with mmpretrain's Accuracy (on the EMA weights, as the config does), and
checks that the validation top-1 reaches ``--target`` within ``--epochs`` epochs. The curve, the verdict, the command
and the machine go to ``benchmarks/results/cls_learning_check.{md,json}``.

What stays in ``--work-dir`` for later steps (``artifacts`` in the JSON): the generated set (``data/``: its train split
for calibration, its val split for evaluation), the config mmengine dumped (``train/fastvit_t8_in1k.py``, with every
option above applied) and the last checkpoint (``train/epoch_<epochs>.pth``; its ``state_dict`` holds the validated
EMA weights). :func:`train_tiny_classifier` does the training for other suites.

Example:
    .venv/bin/python benchmarks/bench.py learning cls --threads 1             # the committed figure
    .venv/bin/python benchmarks/bench.py learning cls --epochs 4 --val-interval 2 --target 20 --out /tmp/clc
"""
import argparse
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Optional, Union

from mmfastvit.datasets import make_tiny_imagenet
from mmfastvit.deploy.latency import load_average, machine_info

from .. import common
from ..common import REPO, run_tool, tool_command

NAME = 'cls'
CONFIG = REPO / 'configs' / 'fastvit_t8_in1k.py'
DEFAULT_OUT = common.RESULTS / 'cls_learning_check'
DEFAULT_WORK_DIR = REPO / 'work_dirs' / 'cls_learning_check'
CROP_RATIO = 0.9  # the config's evaluation crop (configs/_base_/datasets/imagenet_bs128_fastvit_256.py)
TOPK = 5  # the config's Accuracy reports top-1 and top-5, so there must be at least 5 classes
# The recipe; the subcommand's options default to it, and train_tiny_classifier takes the same names.
DEFAULTS = dict(num_classes=8, train_per_class=40, val_per_class=25, size=64, batch=32, epochs=24, warmup_epochs=2,
                val_interval=2, lr=2e-3, ema_momentum=0.02, log_interval=5, seed=0)
VAL_LINE = re.compile(r'Epoch\(val\) +\[(\d+)\]\[\d+/\d+\]\s+accuracy/top1: ([0-9.]+)\s+accuracy/top5: ([0-9.]+)')
TRAIN_LINE = re.compile(r'Epoch\(train\) +\[(\d+)\]\[\s*(\d+)/(\d+)\].*?\blr: ([0-9.e+-]+).*?\bloss: ([0-9.]+)')


def check_settings(num_classes: int, train_per_class: int, val_per_class: int, size: int, batch: int, epochs: int,
                   warmup_epochs: int, val_interval: int, lr: float, ema_momentum: float, log_interval: int,
                   seed: int) -> Optional[str]:
    """What is wrong with a recipe (the first problem, naming the setting and what it must be), or None."""
    for name, value, low in (('num_classes', num_classes, TOPK), ('train_per_class', train_per_class, 1),
                             ('val_per_class', val_per_class, 1), ('size', size, 32), ('batch', batch, 1),
                             ('epochs', epochs, 2), ('val_interval', val_interval, 1),
                             ('log_interval', log_interval, 1)):
        if value < low:
            why = {'num_classes': ' (the config\'s Accuracy reports top-5)', 'size': ' (FastViT downsamples 32x)',
                   'epochs': ' (warm-up, then cosine)'}.get(name, '')
            return f'{name} must be >= {low}{why}, got {value}'
    if not 1 <= warmup_epochs < epochs:
        return f'warmup_epochs must be in [1, epochs - 1] = [1, {epochs - 1}], got {warmup_epochs}'
    if val_interval > epochs:
        return f'val_interval must be <= epochs ({epochs}), got {val_interval}'
    if lr <= 0:
        return f'lr must be > 0, got {lr}'
    if not 0 < ema_momentum <= 1:
        return f'ema_momentum must be in (0, 1], got {ema_momentum}'
    return None


def cfg_options(settings: dict, data_root: str) -> list:
    """--cfg-options turning the 300-epoch, 256 px, batch 1024 ImageNet recipe into a CPU-sized run from scratch on
    the generated set (``settings``: :data:`DEFAULTS`' keys)."""
    s, epochs = settings, settings['epochs']
    options = [
        'model.backbone.init_cfg=None', f"model.head.num_classes={s['num_classes']}",
        f"data_preprocessor.num_classes={s['num_classes']}",  # Mixup / CutMix one-hot width
        f'train_cfg.max_epochs={epochs}', f"train_cfg.val_interval={s['val_interval']}",
        f"optim_wrapper.optimizer.lr={s['lr']}",
        f"param_scheduler.0.end={s['warmup_epochs']}", f"param_scheduler.1.begin={s['warmup_epochs']}",
        f'param_scheduler.1.end={epochs}',
        f"custom_hooks.0.momentum={s['ema_momentum']}",  # EMAHook; the config's 5e-4 averages ~2000 iterations
        f'default_hooks.checkpoint.interval={epochs}', 'default_hooks.checkpoint.max_keep_ckpts=1',
        'default_hooks.checkpoint.save_best=None', f"default_hooks.logger.interval={s['log_interval']}",
        f"randomness.seed={s['seed']}", f"train_dataloader.batch_size={s['batch']}",
        f"train_dataloader.dataset.pipeline.1.scale={s['size']}",  # RandomResizedCrop
    ]
    for split in ('train', 'val', 'test'):
        options += [f'{split}_dataloader.dataset.data_root={data_root}', f'{split}_dataloader.num_workers=0',
                    f'{split}_dataloader.persistent_workers=False', f'{split}_dataloader.pin_memory=False']
    for split in ('val', 'test'):
        options += [f"{split}_dataloader.dataset.pipeline.1.scale={int(s['size'] / CROP_RATIO)}",  # ResizeEdge
                    f"{split}_dataloader.dataset.pipeline.2.crop_size={s['size']}"]  # CenterCrop
    return options


def parse_log(log: str) -> dict:
    """Validation top-1 / top-5 per epoch and the logged training losses and learning rates."""
    curve = [dict(epoch=int(e), top1=float(t1), top5=float(t5)) for e, t1, t5 in VAL_LINE.findall(log)]
    losses = [dict(epoch=int(e), iter=int(i), iters_per_epoch=int(n), lr=float(lr), loss=float(loss))
              for e, i, n, lr, loss in TRAIN_LINE.findall(log)]
    return dict(curve=curve, losses=losses)


def train_tiny_classifier(work_dir: Union[str, Path], threads: int = 1, **recipe) -> dict:
    """Generates the tiny ImageNet-layout set under ``work_dir/data`` and trains ``configs/fastvit_t8_in1k.py`` on it
    from scratch with ``tools/train.py`` (``OMP_NUM_THREADS=threads``) into ``work_dir/train``.

    A checkpoint of an earlier run in ``work_dir/train`` (``epoch_*.pth``, ``last_checkpoint``) is removed first, so
    the one returned is this run's.

    Args:
        work_dir (str | Path): Where the data, the training log and the train folder go (created if needed).
        threads (int): ``OMP_NUM_THREADS`` of ``tools/train.py``. Defaults to 1.
        **recipe: Any of :data:`DEFAULTS` (``num_classes``, ``train_per_class``, ``val_per_class``, ``size``,
            ``batch``, ``epochs``, ``warmup_epochs``, ``val_interval``, ``lr``, ``ema_momentum``, ``log_interval``,
            ``seed``); the others keep their defaults.

    Returns:
        dict: ``checkpoint`` (the last one; its ``state_dict`` holds the validated EMA weights), ``config`` (the
        config mmengine dumped, every option applied), ``data_root``, ``val_top1`` / ``val_top5`` (percent, the last
        validation: that checkpoint's), ``input_size`` (the model's input side), ``resize_edge`` (the evaluation's
        shorter edge before the center crop), ``num_classes``, ``data`` (``make_tiny_imagenet``'s summary: the splits'
        ``ann_file`` / ``data_prefix`` / ``num_images``), ``curve``, ``losses``, ``iters_per_epoch``, ``recipe``,
        ``cfg_options``, ``train_command``, ``train_log``, ``work_dir`` and ``wall_s`` (the training's).

    Raises:
        TypeError: an unknown recipe name.
        ValueError: a recipe value out of range.
        SystemExit: ``tools/train.py`` failed, or its log holds no validation (the end of the log is in the message).
    """
    unknown = sorted(set(recipe) - set(DEFAULTS))
    if unknown:
        raise TypeError(f'unknown recipe setting(s) {unknown}; valid: {sorted(DEFAULTS)}')
    if threads < 1:
        raise ValueError(f'threads must be >= 1, got {threads}')
    settings = dict(DEFAULTS, **recipe)
    problem = check_settings(**settings)
    if problem:
        raise ValueError(problem)
    work = Path(work_dir).resolve()
    train_dir = work / 'train'
    work.mkdir(parents=True, exist_ok=True)
    for stale in [*train_dir.glob('epoch_*.pth'), train_dir / 'last_checkpoint']:
        stale.unlink(missing_ok=True)

    data = make_tiny_imagenet(str(work / 'data'), num_classes=settings['num_classes'],
                              train_per_class=settings['train_per_class'], val_per_class=settings['val_per_class'],
                              size=settings['size'], seed=settings['seed'])
    options = cfg_options(settings, data['root'])
    tool_args = [str(CONFIG), '--work-dir', str(train_dir), '--cfg-options', *options]
    train_command = shlex.join(tool_command('train.py', *tool_args))
    log_path = work / 'train.log'
    print(f"training on {data['train']['num_images']} images ({settings['num_classes']} classes) for "
          f"{settings['epochs']} epochs; log: {log_path}", file=sys.stderr, flush=True)
    start = time.monotonic()
    log = run_tool('train.py', *tool_args, log_path=log_path, threads=threads)
    wall_s = time.monotonic() - start

    parsed = parse_log(log)
    if not parsed['curve'] or not parsed['losses']:
        sys.exit(f'no validation accuracy or training loss in the training log {log_path}:\n{log[-3000:]}')
    checkpoint, config = train_dir / f"epoch_{settings['epochs']}.pth", train_dir / CONFIG.name
    for what, path in (('checkpoint', checkpoint), ('dumped config', config)):
        if not path.is_file():
            sys.exit(f'tools/train.py finished but wrote no {what} {path}; log in {log_path}')
    last = parsed['curve'][-1]
    return dict(checkpoint=str(checkpoint), config=str(config), data_root=data['root'], val_top1=last['top1'],
                val_top5=last['top5'], input_size=settings['size'],
                resize_edge=int(settings['size'] / CROP_RATIO), num_classes=settings['num_classes'], data=data,
                curve=parsed['curve'], losses=parsed['losses'], iters_per_epoch=parsed['losses'][-1]['iters_per_epoch'],
                recipe=settings, cfg_options=options, train_command=train_command, train_log=str(log_path),
                work_dir=str(work), wall_s=wall_s)


def verdict(result: dict, settings: dict) -> str:
    """The results' first line: the target, and whether and when the validation top-1 reached it."""
    reached, final = result['reached_at'], result['final']
    text = (f"**HOLDS**: first at or above at epoch {reached['epoch']} (iteration {reached['iter']}, top-1 "
            f"{reached['top1']:.2f}%); {final['top1']:.2f}% after the last epoch" if reached else
            f"**FAILS**: best {max(p['top1'] for p in result['curve']):.2f}%, {final['top1']:.2f}% after the last "
            f"epoch")
    return (f"Target: validation top-1 >= {settings['target']}% within {settings['epochs']} epochs "
            f"({settings['epochs'] * settings['iters_per_epoch']} iterations). {text}.")


def markdown(result: dict, settings: dict, artifacts: dict) -> str:
    n = settings['iters_per_epoch']
    lines = [verdict(result, settings), '',
             '| after epoch | iterations | top-1 (%) | top-5 (%) | training loss (epoch end) | lr |',
             '|---|---|---|---|---|---|']
    ends = {p['epoch']: p for p in result['losses'] if p['iter'] == p['iters_per_epoch']}
    for point in result['curve']:
        end = ends.get(point['epoch'])
        lines.append(f"| {point['epoch']} | {point['epoch'] * n} | {point['top1']:.2f} | {point['top5']:.2f} | "
                     + (f"{end['loss']:.3f} | {end['lr']:.2e} |" if end else '- | - |'))
    first, last = result['losses'][0], result['losses'][-1]
    chance = 100.0 / settings['num_classes']
    lines += ['', f"Chance is {chance:.1f}% top-1. Training loss {first['loss']:.3f} (epoch 1, iteration "
              f"{first['iter']}) -> {last['loss']:.3f} (epoch {last['epoch']}, iteration {last['iter']}): label-"
              f"smoothed cross-entropy on Mixup / CutMix targets, which stays well above zero however well the "
              f"model classifies.", '',
              f"Data: `make_tiny_imagenet` with {settings['num_classes']} classes, {settings['train_per_class']} "
              f"training and {settings['val_per_class']} validation images per class ({settings['train_images']} "
              f"and {settings['val_images']}), {settings['size']}x{settings['size']} px, seed {settings['seed']}.",
              f"Model and recipe: `configs/fastvit_t8_in1k.py` from scratch (`model.backbone.init_cfg=None`), its head "
              f"cut to {settings['num_classes']} classes; the config's training pipeline (RandomResizedCrop to "
              f"{settings['size']}, flip, RandAugment, random erasing 0.25, Mixup 0.8 / CutMix 1.0, label smoothing "
              f"0.1) and evaluation at the config's crop ratio 0.9 (shorter edge {artifacts['resize_edge']}, center "
              f"crop {settings['size']}); AdamW (weight decay 0.05) at lr {settings['lr']} (the config: 1e-3 at "
              f"batch 1024 for 300 epochs), batch {settings['batch']}, {settings['warmup_epochs']} linear warm-up "
              f"epochs then cosine to 1e-5 over {settings['epochs']} epochs = {settings['epochs'] * n} iterations; "
              f"EMA momentum {settings['ema_momentum']} (the config: 5e-4), whose weights are validated every "
              f"{settings['val_interval']} epochs and saved.",
              f"Machine: {common.cpu_text(settings['machine'])}, {settings['threads']} thread(s), torch "
              f"{settings['machine']['torch']}; 1-minute load average {common.fmt_load(settings['load_before'])} "
              f"before, {common.fmt_load(settings['load_after'])} after; training wall time "
              f"{settings['wall_s'] / 60:.1f} min; {settings['date']}.", '',
              f"Kept in the work dir `{artifacts['work_dir']}`: the generated set (`data/`), the dumped config "
              f"(`train/{Path(artifacts['config']).name}`) and the last checkpoint "
              f"(`train/{Path(artifacts['checkpoint']).name}`).", '', common.reproduce(settings['command'])]
    return '\n'.join(lines) + '\n'


def add_parser(subparsers) -> None:
    d = DEFAULTS
    parser = common.add_subcommand(subparsers, NAME, __doc__, main, validate)
    parser.add_argument('--num-classes', type=int, default=d['num_classes'],
                        help=f"generated classes (>= {TOPK}). Default: {d['num_classes']}")
    parser.add_argument('--train-per-class', type=int, default=d['train_per_class'],
                        help=f"training images per class. Default: {d['train_per_class']}")
    parser.add_argument('--val-per-class', type=int, default=d['val_per_class'],
                        help=f"validation images per class. Default: {d['val_per_class']}")
    parser.add_argument('--size', type=int, default=d['size'],
                        help=f"generated image side and model input (>= 32). Default: {d['size']}")
    parser.add_argument('--batch', type=int, default=d['batch'], help=f"images per iteration. Default: {d['batch']}")
    parser.add_argument('--epochs', type=int, default=d['epochs'], help=f"training epochs. Default: {d['epochs']}")
    parser.add_argument('--warmup-epochs', type=int, default=d['warmup_epochs'],
                        help=f"linear warm-up epochs before the cosine. Default: {d['warmup_epochs']}")
    parser.add_argument('--val-interval', type=int, default=d['val_interval'],
                        help=f"validate every this many epochs (and after the last). Default: {d['val_interval']}")
    parser.add_argument('--lr', type=float, default=d['lr'],
                        help=f"AdamW peak lr (the config: 1e-3 at batch 1024). Default: {d['lr']}")
    parser.add_argument('--ema-momentum', type=float, default=d['ema_momentum'],
                        help=f"EMAHook momentum, the new weights' share (the config: 5e-4). "
                             f"Default: {d['ema_momentum']}")
    parser.add_argument('--log-interval', type=int, default=d['log_interval'],
                        help=f"log the training loss every N iterations. Default: {d['log_interval']}")
    parser.add_argument('--target', type=float, default=90.0, help='validation top-1 (percent) to reach. Default: 90')
    parser.add_argument('--work-dir', type=Path, default=DEFAULT_WORK_DIR,
                        help='keeps the data, the log, the dumped config and the checkpoint. Default: '
                             f'{DEFAULT_WORK_DIR.relative_to(REPO)}')
    common.add_shared_options(parser, DEFAULT_OUT, threads_what='OMP_NUM_THREADS of tools/train.py',
                              load_when='first')


def _recipe(args: argparse.Namespace) -> dict:
    return {name: getattr(args, name) for name in DEFAULTS}


def validate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    common.check_at_least(parser, args, threads=1)
    problem = check_settings(**_recipe(args))
    if problem:
        name, rest = problem.split(' ', 1)
        parser.error(f"--{name.replace('_', '-')} {rest}")


def main(args: argparse.Namespace) -> int:
    waited = common.wait_if_asked(args, log=common.log_stderr)
    load_before = load_average()
    trained = train_tiny_classifier(args.work_dir, args.threads, **_recipe(args))
    n = trained['iters_per_epoch']
    curve = trained['curve']
    for point in curve:
        point['iter'] = point['epoch'] * n
    reached_at = next((p for p in curve if p['top1'] >= args.target), None)
    result = dict(curve=curve, losses=trained['losses'], final=dict(curve[-1]), reached_at=reached_at,
                  reached=reached_at is not None)
    artifacts = {key: trained[key] for key in ('checkpoint', 'config', 'data_root', 'work_dir', 'train_log',
                                               'input_size', 'resize_edge', 'num_classes', 'data')}
    artifacts['weights'] = 'state_dict: the EMA weights validated above; ema_state_dict: the raw ones'
    settings = dict(common.options(args), work_dir=trained['work_dir'], out=str(args.out),
                    train_images=trained['data']['train']['num_images'],
                    val_images=trained['data']['val']['num_images'], iters_per_epoch=n,
                    cfg_options=trained['cfg_options'], train_command=trained['train_command'],
                    wall_s=trained['wall_s'], load_before=load_before, load_after=load_average(),
                    wait_for_load=waited, machine=machine_info(), date=common.utc_now(), command=args._command)
    text = markdown(result, settings, artifacts)
    print(text, flush=True)
    paths = common.write_results(args.out, dict(settings=settings, artifacts=artifacts, results=result),
                                 '# Learning check: FastViT-T8 classifier from scratch on generated ImageNet-layout '
                                 'shapes (CPU)\n\n' + text)
    print(f'wrote {paths[0]} and {paths[1]}', file=sys.stderr)
    return 0 if result['reached'] else 1
