"""Train a model from a config, for every task in mmfastvit.

The config's ``default_scope`` (mmpretrain, mmdet, mmseg, ...) decides which task package builds the model, data and
metrics; this script only turns the command line into config changes and runs mmengine's ``Runner``::

    python tools/train.py configs/fastvit_t8_in1k.py --cfg-options train_dataloader.batch_size=64
    python tools/train.py configs/fastvit_t8_in1k.py --resume                 # the work dir's last checkpoint
    python tools/train.py configs/fastvit_t8_in1k.py --resume path/to/epoch_10.pth

For several GPUs use tools/dist_train.sh (torchrun) or tools/slurm_train.sh (srun).
"""
import argparse
import os.path as osp
from typing import Optional, Sequence

from mmfastvit.engine.cli import (add_common_args, apply_common_args, build_runner, check_data_paths,
                                  enable_tensorboard, export_local_rank, fail, load_config, run_reporting_bad_input,
                                  use_checked_image_loader)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a model from an OpenMMLab config')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--work-dir', help='where logs and checkpoints go. Default: work_dirs/<config name>')
    parser.add_argument(
        '--resume',
        nargs='?',
        const='auto',
        metavar='CHECKPOINT',
        help='resume training (model, optimizer, schedulers, iteration) from CHECKPOINT, or, without a value, from '
        'the last checkpoint in the work dir')
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision (needs a CUDA device)')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate by the actual total batch size over the config\'s auto_scale_lr.base_batch_size')
    parser.add_argument('--no-validate', action='store_true', help='do not evaluate during training')
    parser.add_argument(
        '--tensorboard',
        action='store_true',
        help='also write losses, learning rates and metrics as TensorBoard events (work_dir/<timestamp>/vis_data); '
        'view them with: tensorboard --logdir work_dirs')
    add_common_args(parser)
    args = parser.parse_args(argv)
    export_local_rank(args)
    return args


def is_local_path(path: str) -> bool:
    return '://' not in path


def amp_device_available() -> bool:
    """Whether mmengine's AmpOptimWrapper can be built here: it asserts a CUDA, NPU, MLU or MUSA device."""
    from mmengine.device import is_cuda_available, is_mlu_available, is_musa_available, is_npu_available
    return is_cuda_available() or is_npu_available() or is_mlu_available() or is_musa_available()


def merge_args(cfg, args: argparse.Namespace):
    """Applies the command line to ``cfg`` (in place) and returns it."""
    apply_common_args(cfg, args)

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None  # Runner then resumes from the work dir's last_checkpoint
    elif args.resume is not None:
        if is_local_path(args.resume) and not osp.isfile(args.resume):
            fail(f'--resume checkpoint "{args.resume}" does not exist')
        cfg.resume = True
        cfg.load_from = args.resume

    if args.amp:
        if not amp_device_available():
            fail('--amp needs a CUDA device: mmengine\'s AmpOptimWrapper (torch.cuda.amp) cannot be built on CPU, '
                 'and no CUDA (or NPU/MLU/MUSA) device is available here')
        if cfg.get('optim_wrapper') is None:
            fail(f'--amp: config "{args.config}" has no optim_wrapper')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')

    if args.auto_scale_lr:
        if 'base_batch_size' not in (cfg.get('auto_scale_lr') or {}):
            fail(f'--auto-scale-lr: config "{args.config}" has no auto_scale_lr = dict(base_batch_size=...)')
        cfg.auto_scale_lr.enable = True

    if args.tensorboard:
        enable_tensorboard(cfg)

    if args.no_validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None
    return cfg


def check_pretrained(cfg, config_path: str) -> None:
    """Fails early, with what to do, when ``model.backbone.init_cfg`` names a local checkpoint that is missing or an
    Apple URL that is not one of Apple's files. Other URLs are left to mmengine (Apple's are downloaded, converted and
    cached on first use by :mod:`mmfastvit.convert.download`).

    mmengine would only notice after building the whole model and data pipeline, with a bare FileNotFoundError.
    """
    from mmfastvit.convert.download import APPLE_ARCHS, APPLE_WEIGHTS_PREFIX, apple_weights_url, parse_apple_weights_url
    from mmfastvit.fileio import CheckpointError

    backbone = (cfg.get('model') or {}).get('backbone') or {}
    init_cfgs = backbone.get('init_cfg') or []
    for init_cfg in init_cfgs if isinstance(init_cfgs, (list, tuple)) else [init_cfgs]:
        checkpoint = init_cfg.get('checkpoint') if init_cfg.get('type') == 'Pretrained' else None
        if checkpoint and checkpoint.startswith(APPLE_WEIGHTS_PREFIX):
            try:
                parse_apple_weights_url(checkpoint)
            except CheckpointError as err:
                fail(f'model.backbone.init_cfg.checkpoint (from config "{config_path}"): {err}')
        elif checkpoint and is_local_path(checkpoint) and not osp.isfile(checkpoint):
            arch, by_url = backbone.get('arch'), ''
            if str(backbone.get('type', '')).endswith('FastViT') and str(arch).lower() in APPLE_ARCHS:
                by_url = (f'Name Apple\'s ImageNet weights by URL, downloaded and converted on first use '
                          f'(--cfg-options model.backbone.init_cfg.checkpoint={apple_weights_url(arch)}), ')
            fail(f'model.backbone.init_cfg.checkpoint "{checkpoint}" (from config "{config_path}") does not exist. '
                 f'{by_url}{"c" if by_url else "C"}onvert the ImageNet weights there (python '
                 f'tools/model_converters/fastvit_to_mmfastvit.py <Apple .pth.tar or timm file> {checkpoint}), point '
                 f'the config elsewhere with --cfg-options model.backbone.init_cfg.checkpoint=PATH, or train from '
                 f'scratch with --cfg-options model.backbone.init_cfg=None')


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    cfg = merge_args(load_config(args.config), args)
    check_pretrained(cfg, args.config)
    check_data_paths(cfg, ('train', 'val'), args.config)  # val_* are None under --no-validate
    use_checked_image_loader(cfg, ('train', 'val'))  # a corrupt image is named, not an AssertionError
    runner = build_runner(cfg)
    run_reporting_bad_input(runner.train)


if __name__ == '__main__':
    main()
