"""What ``tools/train.py`` and ``tools/test.py`` share: the common arguments, config loading, the work dir and the
Runner (mmengine only)."""
import argparse
import os
import os.path as osp
import sys
from typing import NoReturn

from mmengine.evaluator import DumpResults


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """``--cfg-options``, ``--launcher`` and ``--local-rank`` (also spelled ``--local_rank``)."""
    from mmengine.config import DictAction

    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, key=value (nested keys with dots, list items by index: '
        'train_dataloader.dataset.pipeline.1.scale=64); applied before the other options')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none', help='job launcher')
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or --local_rank; torchrun sets LOCAL_RANK instead.
    parser.add_argument('--local-rank', '--local_rank', type=int, default=0)


def export_local_rank(args: argparse.Namespace) -> None:
    """Makes ``--local-rank`` visible to mmengine as ``LOCAL_RANK`` unless a launcher already set it."""
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)


def fail(message: str) -> NoReturn:
    """Reports a bad input as ``<tool>: error: ...`` and exits with status 2, before anything is written."""
    print(f'{osp.basename(sys.argv[0]) or "mmfastvit"}: error: {message}', file=sys.stderr)
    sys.exit(2)


def load_config(path: str):
    """The config at ``path``; a missing or unreadable file is reported through :func:`fail`."""
    from mmengine.config import Config

    if not osp.isfile(path):
        fail(f'config file "{path}" does not exist')
    try:
        return Config.fromfile(path)
    except Exception as e:  # syntax errors, missing bases, ...: all mean the config cannot be used
        fail(f'cannot load config "{path}": {type(e).__name__}: {e}')


def apply_common_args(cfg, args: argparse.Namespace) -> None:
    """``--cfg-options`` first, then the launcher and the work dir: the command line's, else the config's, else
    ``work_dirs/<config name>``."""
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('work_dirs', osp.splitext(osp.basename(args.config))[0])


def build_runner(cfg):
    """:class:`mmfastvit.engine.runner.Runner` (mmengine's, with atomic checkpoints, weights-only loading and CPU
    distributed training), or the config's ``runner_type`` looked up in the config's default scope."""
    if 'runner_type' not in cfg:
        from mmfastvit.engine.runner import Runner
        return Runner.from_cfg(cfg)
    from mmengine.registry import RUNNERS, init_default_scope
    if cfg.get('default_scope') is not None:
        init_default_scope(cfg.default_scope)
    return RUNNERS.build(cfg)



# Per-pixel class scores: 150 float32 maps per ADE20K image, about 200 MB each, which the label map already summarizes.
DROPPED_PREDICTION_FIELDS = ('seg_logits', )


class PredictionDump(DumpResults):
    """mmengine's ``DumpResults`` for ``tools/test.py --out``, minus :data:`DROPPED_PREDICTION_FIELDS`."""

    def process(self, data_batch, predictions) -> None:
        super().process(data_batch, [{key: value
                                      for key, value in prediction.items() if key not in DROPPED_PREDICTION_FIELDS}
                                     for prediction in predictions])
