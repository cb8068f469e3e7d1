"""Test (evaluate) a checkpoint with a config, for every task in mmfastvit.

The config's ``default_scope`` decides the task package; its ``test_dataloader`` / ``test_evaluator`` say what is run
and measured. The metrics are logged (``accuracy/top1: ...`` for classification)::

    python tools/test.py configs/fastvit_t8_in1k.py work_dirs/fastvit_t8_in1k/epoch_300.pth
    python tools/test.py CONFIG CHECKPOINT --out preds.pkl         # also dump every prediction
    python tools/test.py CONFIG CHECKPOINT --show-dir vis          # draw predictions with the task's visualization hook
    python tools/test.py CONFIG CHECKPOINT --tta                   # the config's tta_model and tta_pipeline

For several GPUs use tools/dist_test.sh (torchrun) or tools/slurm_test.sh (srun).
"""
import argparse
import os.path as osp
from typing import Optional, Sequence

from mmfastvit.engine.cli import (add_common_args, apply_common_args, build_runner, check_data_paths,
                                  config_type_name, export_local_rank, fail, load_config, run_reporting_bad_input,
                                  use_checked_image_loader)

# Visualization hooks by type name, and how --show-dir turns each on:
#   mmpretrain VisualizationHook: enable=True, out_dir=<dir> (used as given), every image unless the config
#                                 sets an interval
#   mmdet DetVisualizationHook:   draw=True, test_out_dir=<dir> (under the run's work_dir/<timestamp>/)
#   mmseg SegVisualizationHook:   draw=True; images go through the visualizer's backends, so visualizer.save_dir=<dir>
#   mmfastvit HandMeshVisualizationHook: draw=True, out_dir=<dir> (used as given): <image name>.png per test image, the
#                                 mesh over the crop (and .obj meshes with default_hooks.visualization.save_mesh=True)
VISUALIZATION_HOOKS = ('VisualizationHook', 'DetVisualizationHook', 'SegVisualizationHook', 'HandMeshVisualizationHook')


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test a checkpoint with an OpenMMLab config')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='where the test log and metrics go. Default: work_dirs/<config name>')
    parser.add_argument('--out', help='dump every prediction to this .pkl file (mmengine DumpResults)')
    parser.add_argument('--show-dir', help='draw predictions into this directory with the config\'s visualization hook '
                        '(mmdet puts it under work_dir/<timestamp>/)')
    parser.add_argument('--tta', action='store_true', help='test-time augmentation: the config\'s tta_model and '
                        'tta_pipeline')
    add_common_args(parser)
    args = parser.parse_args(argv)
    export_local_rank(args)
    return args


def enable_visualization(cfg, show_dir: str, config_path: str, tta: bool = False) -> None:
    """Turns on the config's visualization hook(s) so that test predictions are drawn into ``show_dir``."""
    hooks = list((cfg.get('default_hooks') or {}).values()) + list(cfg.get('custom_hooks') or [])
    hooks = [hook for hook in hooks if hook is not None and config_type_name(hook) in VISUALIZATION_HOOKS]
    if not hooks:
        fail(f'--show-dir needs a visualization hook, and config "{config_path}" has none in default_hooks or '
             f'custom_hooks (one of {list(VISUALIZATION_HOOKS)})')
    for hook in hooks:
        name = config_type_name(hook)
        if name == 'VisualizationHook':
            if tta:  # it draws data_batch['inputs'][i], which TTA turns into one list per augmentation
                fail('--show-dir cannot be combined with --tta for mmpretrain: its VisualizationHook does not draw '
                     'test-time-augmented batches; run them separately')
            hook.enable = True
            hook.out_dir = show_dir
            hook.setdefault('interval', 1)  # every image, as mmpretrain's own test tool (the hook's default: 5000)
        elif name == 'DetVisualizationHook':
            hook.draw = True
            hook.test_out_dir = show_dir
        elif name == 'HandMeshVisualizationHook':
            hook.draw = True
            hook.out_dir = show_dir
        else:  # SegVisualizationHook
            hook.draw = True
            hook.setdefault('interval', 1)  # every test image (the hook's default draws one batch in 50)
            cfg.setdefault('visualizer', dict(type='SegLocalVisualizer', vis_backends=[dict(type='LocalVisBackend')]))
            cfg.visualizer.save_dir = show_dir


def enable_tta(cfg, config_path: str) -> None:
    """Wraps the model in ``cfg.tta_model`` and gives the innermost test dataset ``cfg.tta_pipeline``."""
    from mmengine.config import ConfigDict

    missing = [key for key in ('tta_model', 'tta_pipeline') if cfg.get(key) is None]
    if missing:
        fail(f'--tta: config "{config_path}" does not define {" and ".join(missing)}')
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    dataset = cfg.test_dataloader.dataset
    while 'dataset' in dataset:  # wrappers (ConcatDataset, RepeatDataset, ...) hold the real one
        dataset = dataset.dataset
    dataset.pipeline = cfg.tta_pipeline


def merge_args(cfg, args: argparse.Namespace):
    """Applies the command line to ``cfg`` (in place) and returns it."""
    apply_common_args(cfg, args)

    if '://' not in args.checkpoint and not osp.isfile(args.checkpoint):
        fail(f'checkpoint "{args.checkpoint}" does not exist')
    cfg.load_from = args.checkpoint
    cfg.resume = False  # testing loads weights only, whatever the training config said

    if cfg.get('test_dataloader') is None or cfg.get('test_evaluator') is None:
        fail(f'config "{args.config}" has no test_dataloader / test_evaluator to test with')
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        fail(f'--out must name a .pkl or .pickle file, got "{args.out}"')
    if args.show_dir is not None:
        enable_visualization(cfg, args.show_dir, args.config, tta=args.tta)
    if args.tta:
        enable_tta(cfg, args.config)
    return cfg


def main(argv: Optional[Sequence[str]] = None) -> dict:
    args = parse_args(argv)
    cfg = merge_args(load_config(args.config), args)
    check_data_paths(cfg, ('test', ), args.config)
    use_checked_image_loader(cfg, ('test', ))  # a corrupt test image is named, not an AssertionError
    runner = build_runner(cfg)

    if args.out is not None:
        from mmfastvit.engine.cli import PredictionDump
        runner.test_evaluator.metrics.append(PredictionDump(out_file_path=args.out))

    return run_reporting_bad_input(runner.test)


if __name__ == '__main__':
    main()
