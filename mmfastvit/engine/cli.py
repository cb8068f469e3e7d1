"""What ``tools/train.py`` and ``tools/test.py`` share: the common arguments, config loading, the work dir and the
Runner (mmengine only)."""
import argparse
import os
import os.path as osp
import sys
from typing import Any, Callable, Iterator, NoReturn, Sequence, Tuple

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


def config_type_name(cfg_dict) -> str:
    """The class name a config dict's ``type`` names: ``'DetVisualizationHook'`` for ``'mmdet.DetVisualizationHook'``,
    ``'DetVisualizationHook'`` or the class itself."""
    type_ = cfg_dict.get('type', '')
    return (type_ if isinstance(type_, str) else getattr(type_, '__name__', '')).rsplit('.', 1)[-1]


def _datasets(dataset, where: str) -> Iterator[Tuple[str, dict]]:
    """(config path, dataset dict) of ``dataset`` and of the datasets inside wrappers (RepeatDataset and
    ClassBalancedDataset: ``dataset``, ConcatDataset: ``datasets``)."""
    if not isinstance(dataset, dict):
        return
    yield where, dataset
    yield from _datasets(dataset.get('dataset'), f'{where}.dataset')
    for i, inner in enumerate(dataset.get('datasets') or []):
        yield from _datasets(inner, f'{where}.datasets.{i}')


def _local(path) -> bool:
    return isinstance(path, str) and bool(path) and '://' not in path


def check_data_paths(cfg, splits: Sequence[str], config_path: str) -> None:
    """Fails, naming the config key, when a ``<split>_dataloader`` dataset's ``data_root``, ``ann_file`` or
    ``data_prefix`` folder, or a ``<split>_evaluator``'s ``ann_file``, is a local path that does not exist.

    Without it, a missing dataset surfaces after the model is built, as a bare FileNotFoundError from deep inside the
    task package (or, for mmpretrain's folder datasets, as an empty dataset).
    """
    def missing(key: str, path: str, kind: str) -> NoReturn:
        fail(f'{key} "{path}" does not exist (config "{config_path}"): {kind}; prepare the dataset there (see the '
             f'task\'s page in docs/) or point the config at it with --cfg-options {key}=PATH')

    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        for where, dataset in _datasets((loader or {}).get('dataset'), f'{split}_dataloader.dataset'):
            root = dataset.get('data_root') or ''
            if _local(root) and not osp.isdir(root):
                missing(f'{where}.data_root', root, 'expected the dataset\'s folder')

            def in_root(path: str, root: str = root) -> str:
                return path if osp.isabs(path) or not _local(root) else osp.join(root, path)

            ann_file = dataset.get('ann_file')
            if _local(ann_file) and not osp.isfile(in_root(ann_file)):
                missing(f'{where}.ann_file', in_root(ann_file), 'expected an annotation file')
            prefix = dataset.get('data_prefix')
            prefixes = prefix.items() if isinstance(prefix, dict) else [('', prefix)]
            for name, path in prefixes:
                if _local(path) and not osp.isdir(in_root(path)):
                    key = f'{where}.data_prefix' + (f'.{name}' if name else '')
                    missing(key, in_root(path), 'expected a folder of the dataset')
        evaluators = cfg.get(f'{split}_evaluator') or []
        for i, metric in enumerate(evaluators if isinstance(evaluators, (list, tuple)) else [evaluators]):
            ann_file = metric.get('ann_file') if isinstance(metric, dict) else None
            if _local(ann_file) and not osp.isfile(ann_file):
                key = f'{split}_evaluator' + (f'.{i}' if isinstance(evaluators, (list, tuple)) else '') + '.ann_file'
                missing(key, ann_file, 'expected the ground-truth annotation file')


TENSORBOARD_BACKEND = 'TensorboardVisBackend'


def enable_tensorboard(cfg) -> None:
    """Adds mmengine's ``TensorboardVisBackend`` to the config's visualizer, beside its other backends (no-op when it is
    already there), so scalars (losses, learning rate, metrics) are written as TensorBoard event files in
    ``<work_dir>/<timestamp>/vis_data/``. Fails, saying what to install, when the ``tensorboard`` package is missing,
    instead of mmengine's error at the first logged iteration."""
    try:
        import tensorboard  # noqa: F401  (torch.utils.tensorboard imports it at the first logged iteration)
    except ImportError:
        fail('--tensorboard needs the tensorboard package: pip install tensorboard (it is in '
             'requirements/optional.txt)')
    visualizer = cfg.get('visualizer')
    if visualizer is None:
        fail('--tensorboard: the config has no visualizer to add the TensorBoard backend to')
    backends = list(visualizer.get('vis_backends') or [])
    if not any(config_type_name(backend) == TENSORBOARD_BACKEND for backend in backends):
        backends.append(dict(type=TENSORBOARD_BACKEND))
    visualizer.vis_backends = backends


# mmcv's image loader as configs name it. The shipped test pipelines use the plain name because mmpretrain's, mmdet's
# and mmseg's Inferencers look for exactly this type to remove it or swap in their in-memory loader.
PLAIN_IMAGE_LOADERS = ('LoadImageFromFile', 'mmcv.LoadImageFromFile')


def use_checked_image_loader(cfg, splits: Sequence[str]) -> None:
    """Swaps mmcv's plain ``LoadImageFromFile`` for ``mmfastvit.LoadImageFromFile`` in the pipelines of the
    ``<split>_dataloader`` datasets (wrapped ones included), in place, keeping every argument.

    The shipped test pipelines name the plain loader so that the OpenMMLab Inferencers recognize it. On a dataset,
    though, mmcv's loader stops at an undecodable file with a bare ``AssertionError`` from a dataloader worker;
    ``mmfastvit.LoadImageFromFile`` (``on_corrupt='error'``, its default) raises a ``CorruptImageError`` naming the
    file, which :func:`run_reporting_bad_input` reports in one line. ``tools/test.py`` (test) and ``tools/train.py``
    (train and val) call this; pipelines that name another loader are left as they are.
    """
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        for _, dataset in _datasets((loader or {}).get('dataset'), f'{split}_dataloader.dataset'):
            for transform in dataset.get('pipeline') or []:
                if isinstance(transform, dict) and transform.get('type') in PLAIN_IMAGE_LOADERS:
                    transform['type'] = 'mmfastvit.LoadImageFromFile'


def run_reporting_bad_input(step: Callable[[], Any]) -> Any:
    """Runs ``step`` (``runner.train`` / ``runner.test``); a checkpoint that does not fit or is refused as unsafe, and
    an undecodable image, are reported through :func:`fail` (one line, exit 2) instead of a traceback."""
    import pickle

    from mmfastvit.datasets.transforms import CorruptImageError
    from mmfastvit.engine.runner import unpickling_reason
    from mmfastvit.fileio import CheckpointError

    try:
        return step()
    except (CheckpointError, CorruptImageError) as e:
        fail(str(e))
    except pickle.UnpicklingError as e:  # e.g. init_cfg=dict(type='Pretrained', checkpoint=...) under weights_only
        fail(f'a checkpoint was refused: {unpickling_reason(e)}')


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
