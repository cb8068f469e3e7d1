"""Accuracy of the reduced-precision CPU exports on a trained model: fp32, bf16 and int8 against PyTorch fp32.

No ImageNet here, so the check trains one: the classification learning check's recipe (``bench.py learning cls``)
trains ``configs/fastvit_t8_in1k.py`` from scratch on a generated tiny ImageNet until it is accurate on its val
split. That checkpoint is then exported exactly as a user would, ``tools/deploy/export.py CONFIG CKPT --backend
openvino --precision P`` for each precision, int8 calibrated on the config's train images, and each export's own
accuracy check runs it on the whole val split: val accuracy, top-1 agreement with the fp32 PyTorch model, and the
logit error (max and mean over the max |logit|). Target: top-1 agreement >= 99 % for bf16 and int8.

On ImageNet with Apple's weights the same export reports the same figures: give the ImageNet config (its
``val_dataloader`` pointing at your copy) as ``--calib-config`` and ``--check-images 50000``.

Writes ``OUT.{json,md}`` (OUT: ``benchmarks/results/precision_accuracy_tiny_imagenet_cpu_<cpu>``).

Example:
    .venv/bin/python benchmarks/bench.py precision-accuracy --threads 2
    .venv/bin/python benchmarks/bench.py precision-accuracy --checkpoint work/train/epoch_24.pth \\
        --config work/train/fastvit_t8_in1k.py --size 64
"""
import argparse
import json
import shlex
from pathlib import Path
from mmfastvit.deploy.latency import machine_info

from . import common
from .common import row
from .learning.cls import DEFAULT_WORK_DIR, train_tiny_classifier

NAME = 'precision-accuracy'
DEFAULT_OUT = common.cpu_results('precision_accuracy_tiny_imagenet')
PRECISIONS = ('fp32', 'bf16', 'int8')
TARGET = 0.99


def add_parser(subparsers) -> None:
    parser = common.add_subcommand(subparsers, NAME, __doc__, main, validate)
    parser.add_argument('--precisions', nargs='+', choices=list(PRECISIONS), default=list(PRECISIONS))
    parser.add_argument('--work-dir', type=Path, default=DEFAULT_WORK_DIR.with_name('precision_accuracy'),
                        help='training run, data and exports')
    parser.add_argument('--checkpoint', help='a trained checkpoint to use instead of training one (with --config)')
    parser.add_argument('--config', help='its config (the one tools/train.py dumped, data roots included)')
    parser.add_argument('--size', type=int, help='input side of --checkpoint\'s model')
    parser.add_argument('--calib-images', type=int, default=300, help='int8 calibration images. Default: 300')
    parser.add_argument('--check-images', type=int, default=10000,
                        help='val images each export is checked on (all of the tiny val split by default)')
    parser.add_argument('--keep-float', nargs='+', default=[], help='passed to the int8 export')
    parser.add_argument('--sensitivity-images', type=int, default=64,
                        help='val images of the leave-one-out measurement of every int8 quantizer (0 skips it)')
    common.add_shared_options(parser, DEFAULT_OUT, threads_what='training and export threads')


def validate(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    common.check_at_least(parser, args, threads=1, calib_images=1, check_images=1, sensitivity_images=0)
    if bool(args.checkpoint) != bool(args.config) or (args.checkpoint and not args.size):
        parser.error('--checkpoint, --config and --size go together')


def export_report(trained: dict, precision: str, args: argparse.Namespace, out: Path) -> dict:
    """Runs the export tool for one precision and returns its report (or why it did not run)."""
    tool_args = [trained['config'], trained['checkpoint'], '--backend', 'openvino', '--precision', precision,
                 '--shape', str(trained['input_size']), '--calib-config', trained['config'],
                 '--check-images', str(args.check_images), '--min-agreement', '0', '--out', str(out)]
    if precision == 'int8':
        tool_args += ['--calib-images', str(args.calib_images)] + (['--keep-float', *args.keep_float]
                                                                    if args.keep_float else [])
    command = shlex.join(common.tool_command('deploy/export.py', *tool_args))
    log_path = out / f'export_{precision}.log'
    out.mkdir(parents=True, exist_ok=True)
    try:
        common.run_tool('deploy/export.py', *tool_args, log_path=log_path, threads=args.threads)
    except SystemExit as err:
        return dict(ran=False, reason=str(err).splitlines()[-1][:300], command=command)
    reports = sorted(out.glob(f'*_{precision}.openvino.json'))
    report = json.loads(reports[-1].read_text())
    return dict(ran=True, report=str(reports[-1]), xml=str(reports[-1]).replace('.openvino.json', '.xml'),
                command=command,
                accuracy=report['verification']['openvino'].get('accuracy'),
                export=report['export']['openvino'])


def markdown(results: dict, trained: dict, settings: dict) -> str:
    header = ['precision', 'val accuracy', 'fp32 PyTorch accuracy', 'top-1 agreement with fp32',
              'max logit error', 'mean logit error', 'kept in higher precision']
    lines = [row(header), row(['---'] * len(header))]
    for precision, r in results.items():
        if not r['ran']:
            lines.append(row([precision, f"not run: {r['reason']}"] + [''] * (len(header) - 2)))
            continue
        a = r['accuracy']
        kept = ', '.join(f'`{k}`' for k in r['export'].get('kept_float', [])) or '-'
        lines.append(row([precision, f"{a['accuracy']:.2%}", f"{a['fp32_accuracy']:.2%}", f"{a['top1_agreement']:.2%}",
                          f"{a['max_rel_error']:.1e}", f"{a['mean_rel_error']:.1e}", kept]))
    sensitivity = results.get('int8', {}).get('sensitivity')
    if sensitivity:
        top = sensitivity['quantizers'][:3]
        lines += ['', f"Where int8 loses: every one of the {len(sensitivity['quantizers'])} int8 quantizers bypassed "
                  f"in turn (leave-one-out, {sensitivity['images']} val images, the rest in fp32): the int8 model's "
                  f"mean logit error is {sensitivity['all']['mean_rel_error']:.2%}, and keeping any one quantizer in "
                  f"float removes at most {top[0]['gain']:.1%} of it ("
                  + '; '.join(f"`{r['quantizer']}` {r['gain']:.1%}" for r in top) + '). '
                  + ('The error is spread over the network, not one layer that quantizes poorly, so no layer beyond '
                     'the first and the last is kept in higher precision.' if top[0]['gain'] < 0.25 else
                     'One quantizer dominates: keep its layer in higher precision with --keep-float.')]
    reduced = {p: r for p, r in results.items() if p != 'fp32' and r['ran']}
    failing = [p for p, r in reduced.items() if r['accuracy']['top1_agreement'] < TARGET]
    images = next((r['accuracy']['images'] for r in results.values() if r['ran']), 0)
    lines += ['', f"Target: top-1 agreement with fp32 >= {TARGET:.0%} for bf16 and int8: "
              + ('HOLDS' if reduced and not failing else f"FAILS for {', '.join(failing)}" if failing else 'not run')
              + f" ({images} val images).", '',
              f"Model: FastViT-T8 (`configs/fastvit_t8_in1k.py`) trained from scratch by the classification learning "
              f"check's recipe to {trained['val_top1']:.1f}% val top-1 ({trained['num_classes']} classes, "
              f"{trained['input_size']}x{trained['input_size']} input); logit errors are over the max |fp32 logit|. "
              f"Each row is `tools/deploy/export.py --backend openvino --precision P` with its own accuracy check "
              f"(int8 calibrated on {settings['calib_images']} train images).", '',
              f"{common.cpu_text(settings)}, {settings['date']}.", '', common.reproduce(settings['command'])]
    return '\n'.join(lines) + '\n'


def main(args: argparse.Namespace) -> int:
    import os

    from mmfastvit.deploy.latency import cpu_facts, cpu_model
    work = Path(args.work_dir).resolve()
    if args.checkpoint:
        trained = dict(checkpoint=args.checkpoint, config=args.config, input_size=args.size, val_top1=float('nan'),
                       num_classes=None)
    else:
        trained = train_tiny_classifier(work / 'model', threads=args.threads, seed=args.seed)
    results = {}
    for precision in args.precisions:
        results[precision] = export_report(trained, precision, args, work / 'exports')
        common.log_stderr(f'{precision}: ' + (json.dumps(results[precision]['accuracy']) if results[precision]['ran']
                                              else results[precision]['reason']))
    if args.sensitivity_images and results.get('int8', {}).get('ran') and results.get('fp32', {}).get('ran'):
        from mmfastvit.deploy.calibration import dataset_batches
        from mmfastvit.deploy.engines.openvino import quantizer_sensitivity
        size = trained['input_size']
        images = dataset_batches(trained['config'], 'val', args.sensitivity_images, (size, size), seed=args.seed,
                                 log=common.log_stderr).batches(1)
        common.log_stderr(f'leave-one-out over the int8 quantizers on {len(images)} images')
        results['int8']['sensitivity'] = quantizer_sensitivity(results['int8']['xml'], results['fp32']['xml'], images,
                                                               threads=args.threads)
    settings = dict(common.options(args), cpu=cpu_model(), cpu_facts=cpu_facts(), cpu_count=os.cpu_count(),
                    date=common.utc_now(), command=args._command)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in settings.items()}
    model = {k: trained.get(k) for k in ('checkpoint', 'config', 'data_root', 'val_top1', 'val_top5', 'input_size',
                                         'num_classes', 'train_command', 'wall_s')}
    table = markdown(results, trained, settings)
    print(table, flush=True)
    paths = common.write_results(args.out, dict(settings=settings, machine=machine_info(), model=model,
                                                results=results),
                                 '# Reduced-precision accuracy on a trained tiny classifier\n\n' + table)
    common.log_stderr(f'wrote {paths[0]} and {paths[1]}')
    return 0 if all(r['accuracy']['top1_agreement'] >= TARGET for p, r in results.items()
                    if p != 'fp32' and r['ran']) else 1

