"""Evaluate a classifier checkpoint on ImageNet-C, -A, -R and -Sketch (and clean ImageNet) and print the FastViT paper's
Table 7 beside it.

    python tools/analysis_tools/robustness.py configs/fastvit_sa12_in1k.py checkpoints/fastvit_sa12_in1k.pth \\
        --data-root data/ --benchmarks clean c a r sketch --out work_dirs/robustness_sa12.json

Each benchmark is one ``Runner.test`` with the model config's model and test pipeline, and with the dataset and metric
of ``configs/_base_/datasets/imagenet_{c,a,r,sketch}.py``. The data lie under ``--data-root`` in the released
layouts: ``imagenet-c/<corruption>/<severity>/<wnid>/``, ``imagenet-a/<wnid>/``, ``imagenet-r/<wnid>/``,
``imagenet-sketch/sketch/<wnid>/`` and, for ``clean``, ``imagenet/`` as the config reads it (docs/robustness.md).
The evaluation follows RVT (Mao et al., CVPR 2022), as the paper does: every set goes through the model's own test
pipeline, ImageNet-C's 224x224 images included. ImageNet-A and -R are read over their 200 classes. ImageNet-C gives
the AlexNet-normalized mCE and the unnormalized mean error.
"""
import argparse
import json
import os.path as osp
import time
from collections import OrderedDict
from typing import Dict, Optional, Sequence

from mmfastvit.engine.cli import (add_common_args, apply_common_args, build_runner, check_data_paths,
                                  export_local_rank, fail, load_config, run_reporting_bad_input,
                                  use_checked_image_loader)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DATASET_CONFIGS = osp.join(REPO, 'configs', '_base_', 'datasets')
# name -> (table column, folder under --data-root, dataset config (None: the model config's own test set), metric key)
BENCHMARKS: Dict[str, tuple] = OrderedDict(
    clean=('clean', 'imagenet', None, 'accuracy/top1'),
    c=('IN-C mCE', 'imagenet-c', 'imagenet_c.py', 'imagenet_c/mCE'),
    a=('IN-A', 'imagenet-a', 'imagenet_a.py', 'imagenet_a/top1'),
    r=('IN-R', 'imagenet-r', 'imagenet_r.py', 'imagenet_r/top1'),
    sketch=('IN-SK', 'imagenet-sketch', 'imagenet_sketch.py', 'imagenet_sketch/top1'),
)
COLUMNS = tuple(column for column, _, _, _ in BENCHMARKS.values())
# The paper's Table 7 (Vasu et al., "FastViT", ICCV 2023): clean top-1, IN-C mCE (lower is better), IN-A, IN-R, IN-SK.
PAPER_ROWS = OrderedDict(
    sa12=(80.6, 62.2, 17.2, 42.6, 29.7),
    sa24=(82.6, 55.3, 26.0, 46.5, 34.0),
    sa36=(83.6, 51.8, 32.3, 48.1, 35.8),
    ma36=(83.9, 49.9, 34.6, 49.5, 36.6),
)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    from mmfastvit.evaluation.robustness import CORRUPTIONS, EXTRA_CORRUPTIONS, SEVERITIES

    parser = argparse.ArgumentParser(description='Robustness of a classifier (the FastViT paper\'s Table 7)')
    parser.add_argument('config', help='the model\'s classification config (its model and test pipeline are used)')
    parser.add_argument('checkpoint', help='checkpoint file (mmpretrain classifier, e.g. from '
                        'tools/model_converters/fastvit_to_mmfastvit.py)')
    parser.add_argument('--data-root', default='data', help='folder holding imagenet-c/, imagenet-a/, imagenet-r/, '
                        'imagenet-sketch/ (and imagenet/ for clean). Default: data')
    parser.add_argument('--benchmarks', nargs='+', choices=list(BENCHMARKS), default=['c', 'a', 'r', 'sketch'],
                        help='what to evaluate, in this order. Default: c a r sketch (add clean for the first column)')
    parser.add_argument('--corruptions', nargs='+', choices=list(CORRUPTIONS + EXTRA_CORRUPTIONS), metavar='NAME',
                        help='ImageNet-C corruptions to evaluate. Default: the 15 of mCE. A subset gives partial_mCE, '
                        'which is not the paper\'s mCE')
    parser.add_argument('--severities', nargs='+', type=int, choices=list(SEVERITIES), metavar='S',
                        help='ImageNet-C severities. Default: 1 2 3 4 5 (a subset gives partial_mCE)')
    parser.add_argument('--wnids', help='the sorted 1000 ImageNet wnids for ImageNet-A / -R labels: a file with one '
                        'wnid per line (meta/wnids.txt, LOC_synset_mapping.txt) or an ImageNet train/ folder. '
                        'Default: timm\'s copy when timm is installed')
    parser.add_argument('--batch-size', type=int, help='images per batch. Default: the config\'s test batch size')
    parser.add_argument('--num-workers', type=int, help='data loading workers. Default: the config\'s')
    parser.add_argument('--log-interval', type=int, default=50, help='log progress every N batches. Default: 50')
    parser.add_argument('--work-dir', help='where the logs go. Default: work_dirs/robustness/<config name>')
    parser.add_argument('--out', help='write the results (every metric, the table and the paper\'s row) to this .json')
    add_common_args(parser)
    args = parser.parse_args(argv)
    export_local_rank(args)
    return args


def _innermost(dataset: dict) -> dict:
    while isinstance(dataset, dict) and 'dataset' in dataset:
        dataset = dataset['dataset']
    return dataset


def check_inputs(args: argparse.Namespace) -> None:
    """One line and exit 2 for a missing checkpoint, data root or benchmark folder, or a bad --out, before any run."""
    if '://' not in args.checkpoint and not osp.isfile(args.checkpoint):
        fail(f'checkpoint "{args.checkpoint}" does not exist')
    if not osp.isdir(args.data_root):
        fail(f'--data-root "{args.data_root}" does not exist; expected a folder holding '
             f'{", ".join(BENCHMARKS[b][1] + "/" for b in args.benchmarks)} (docs/robustness.md)')
    missing = [osp.join(args.data_root, BENCHMARKS[b][1]) for b in args.benchmarks
               if not osp.isdir(osp.join(args.data_root, BENCHMARKS[b][1]))]
    if missing:
        fail(f'{", ".join(missing)} not found under --data-root; prepare the sets there (docs/robustness.md) or '
             f'choose others with --benchmarks')
    if args.out is not None and not args.out.endswith('.json'):
        fail(f'--out must name a .json file, got "{args.out}"')
    if args.wnids is not None and not osp.exists(args.wnids):
        fail(f'--wnids "{args.wnids}" does not exist; expected a file with one wnid per line or an ImageNet folder '
             f'of class folders')
    for option in ('batch_size', 'num_workers', 'log_interval'):
        value = getattr(args, option)
        if value is not None and value < (0 if option == 'num_workers' else 1):
            fail(f'--{option.replace("_", "-")} must be {"non-negative" if option == "num_workers" else "positive"}, '
                 f'got {value}')


def benchmark_config(args: argparse.Namespace, name: str, partial: bool):
    """The model config with ``name``'s test set and metric (and the command line applied)."""
    from mmengine.config import Config, ConfigDict

    cfg = load_config(args.config)
    apply_common_args(cfg, args)
    if args.work_dir is None:
        cfg.work_dir = osp.join('work_dirs', 'robustness', osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    cfg.resume = False
    if cfg.get('test_dataloader') is None or cfg.get('test_evaluator') is None:
        fail(f'config "{args.config}" has no test_dataloader / test_evaluator to take the test pipeline from')
    pipeline = _innermost(cfg.test_dataloader.get('dataset')).get('pipeline')
    if not pipeline:
        fail(f'config "{args.config}" has no test_dataloader.dataset.pipeline to evaluate with')
    _, folder, dataset_config, _ = BENCHMARKS[name]
    root = osp.join(args.data_root, folder, '')
    if dataset_config is None:  # clean: the config's own ImageNet test set, under --data-root
        _innermost(cfg.test_dataloader.dataset).data_root = root
    else:
        bench = Config.fromfile(osp.join(DATASET_CONFIGS, dataset_config))
        loader = ConfigDict(bench.test_dataloader)
        loader.dataset.update(data_root=root, pipeline=pipeline)
        if args.wnids is not None:
            loader.dataset.wnids_file = args.wnids
        if name == 'c':
            if args.corruptions:
                loader.dataset.corruptions = list(args.corruptions)
            if args.severities:
                loader.dataset.severities = list(args.severities)
        for key in ('batch_size', 'num_workers', 'persistent_workers', 'pin_memory'):
            if key in cfg.test_dataloader:
                loader[key] = cfg.test_dataloader[key]
        cfg.test_dataloader = loader
        cfg.test_evaluator = ConfigDict(bench.test_evaluator, **({'allow_partial': True} if partial and name == 'c'
                                                                  else {}))
    if args.batch_size is not None:
        cfg.test_dataloader.batch_size = args.batch_size
    if args.num_workers is not None:
        cfg.test_dataloader.num_workers = args.num_workers
    if cfg.test_dataloader.get('num_workers', 0) == 0:
        cfg.test_dataloader.persistent_workers = False
    cfg.setdefault('default_hooks', ConfigDict())
    cfg.default_hooks.setdefault('logger', ConfigDict(type='LoggerHook'))
    cfg.default_hooks.logger.interval = args.log_interval
    cfg.experiment_name = f'robustness_{name}_{time.strftime("%Y%m%d_%H%M%S")}'
    use_checked_image_loader(cfg, ('test', ))  # a corrupt image is named, as in tools/test.py
    return cfg


def check_dataset(cfg, name: str) -> None:
    """Builds the test set without reading its images and checks its folders and wnids (one line, exit 2)."""
    if BENCHMARKS[name][2] is None:
        return
    import mmfastvit.integrations.mmpretrain  # noqa: F401  (registers the datasets and metrics in mmpretrain)
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import DATASETS

    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    dataset_cfg = dict(cfg.test_dataloader.dataset, pipeline=[], lazy_init=True)
    try:
        DATASETS.build(dataset_cfg).check_layout()
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))


def headline(name: str, metrics: dict) -> Optional[float]:
    """The table entry of ``name`` in ``metrics`` (``partial_mCE`` for a partial ImageNet-C)."""
    key = BENCHMARKS[name][3]
    if key in metrics:
        return float(metrics[key])
    partial = key.replace('/mCE', '/partial_mCE')
    return float(metrics[partial]) if partial in metrics else None


def arch_of(cfg) -> str:
    backbone = (cfg.get('model') or {}).get('backbone') or {}
    arch = backbone.get('arch', '')
    return arch.lower() if isinstance(arch, str) else 'custom'


def format_table(arch: str, ours: Dict[str, Optional[float]], partial: bool) -> str:
    """The paper's FastViT rows (the variant's, or all four) and this checkpoint's, one line each."""
    label = 'IN-C pmCE' if partial else 'IN-C mCE'
    header = ['model'] + [label if c == 'IN-C mCE' else c for c in COLUMNS]
    rows = [[f'paper FastViT-{a.upper()}'] + [f'{v:.1f}' for v in PAPER_ROWS[a]]
            for a in ([arch] if arch in PAPER_ROWS else PAPER_ROWS)]
    rows.append([f'this checkpoint ({arch})'] + [('-' if ours.get(c) is None else f'{ours[c]:.1f}') for c in COLUMNS])
    widths = [max(len(row[i]) for row in [header] + rows) for i in range(len(header))]
    lines = ['  '.join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in [header] + rows]
    notes = ['top-1 %; IN-C: mean corruption error %, AlexNet-normalized, lower is better (paper: Table 7)']
    if partial:
        notes.append('pmCE: partial mCE over the corruptions / severities evaluated, not the paper\'s mCE')
    return '\n'.join(lines + notes)


def _jsonable(metrics: dict) -> dict:
    return {k: (float(v) if isinstance(v, (int, float)) or hasattr(v, 'item') else v) for k, v in metrics.items()}


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    check_inputs(args)
    from mmengine.dist import is_main_process

    from mmfastvit.evaluation.robustness import CORRUPTIONS, SEVERITIES
    partial = bool(args.corruptions and set(args.corruptions) != set(CORRUPTIONS)) or bool(
        args.severities and set(args.severities) != set(SEVERITIES))
    configs = OrderedDict((name, benchmark_config(args, name, partial)) for name in dict.fromkeys(args.benchmarks))
    for name, cfg in configs.items():  # every input is checked before the first run
        check_data_paths(cfg, ('test', ), args.config)
        check_dataset(cfg, name)

    results, table = OrderedDict(), OrderedDict()
    for step, (name, cfg) in enumerate(configs.items(), 1):
        if is_main_process():
            print(f'[robustness {step}/{len(configs)}] {BENCHMARKS[name][0]}: {cfg.test_dataloader.dataset.data_root}',
                  flush=True)
        runner = build_runner(cfg)
        metrics = run_reporting_bad_input(runner.test)
        results[name] = _jsonable(metrics)
        table[BENCHMARKS[name][0]] = headline(name, metrics)

    arch = arch_of(configs[next(iter(configs))])
    if is_main_process():
        print(format_table(arch, table, partial))
        if args.out is not None:
            from mmfastvit.fileio import atomic_write
            report = dict(config=args.config, checkpoint=args.checkpoint, arch=arch, data_root=args.data_root,
                          partial_imagenet_c=partial, table=table, results=results,
                          paper=dict(columns=list(COLUMNS), rows={a: list(r) for a, r in PAPER_ROWS.items()}))
            atomic_write(args.out, lambda f: f.write(json.dumps(report, indent=2) + '\n'), mode='w')
            print(f'wrote {args.out}')
    return dict(table=table, results=results)


if __name__ == '__main__':
    main()
