"""mmengine's ``Runner`` with what reliable training here needs (torch and mmengine only).

``tools/train.py`` and ``tools/test.py`` build this Runner unless a config names its own ``runner_type``. It changes
three things and nothing else:

- **Checkpoints are written atomically.** mmengine writes ``epoch_N.pth`` in place, so a run killed while saving
  leaves a truncated file with a valid-looking name. Here the checkpoint goes to a hidden temporary name in the same
  directory, is flushed to disk, and only then renamed (``os.replace``, atomic on POSIX). CheckpointHook updates
  ``last_checkpoint`` after the rename, so ``--resume`` always finds a complete file.
- **Checkpoints load under ``weights_only=True``.** Resuming and ``load_from`` go through
  :func:`mmfastvit.engine.mmengine_checkpoint_globals`, which allows exactly the types a Runner checkpoint holds;
  a checkpoint that would run code is still refused.
- **A checkpoint must fit the model's backbone.** mmengine loads ``load_from`` non-strictly and only logs shape
  mismatches, so testing a checkpoint of another variant (or a fused one without ``deploy=True``) runs and reports
  meaningless numbers. Here any difference in the ``backbone.`` tensors (shapes, or which tensors exist) is a
  :class:`~mmfastvit.fileio.CheckpointError` naming the checkpoint and the first differences; other parts (e.g. a
  classification head with another number of classes, when fine-tuning) still load non-strictly as in mmengine.
  A checkpoint ``torch.load(weights_only=True)`` refuses is reported the same way.
- **Distributed training works without a GPU.** mmengine's launcher code calls ``torch.cuda.set_device`` and wraps the
  model with ``device_ids=[LOCAL_RANK]``, both of which fail on a CPU-only machine. Without CUDA this Runner starts
  the process group itself with the gloo backend (torchrun's or slurm's environment), wraps the model in
  ``MMDistributedDataParallel`` without device ids, and turns SyncBatchNorm layers (which need a GPU) back into
  per-process BatchNorm, saying so in the log. With CUDA everything is mmengine's own code path.
"""
import os
import os.path as osp
import pickle
import re
import subprocess
from datetime import timedelta
from typing import Mapping

import torch
import torch.distributed as torch_dist
from mmengine.dist import is_distributed, master_only
from mmengine.hooks import Hook
from mmengine.model import MMDistributedDataParallel, is_model_wrapper, revert_sync_batchnorm
from mmengine.runner import Runner as MMEngineRunner

from ..fileio import CheckpointError
from .checkpoint import mmengine_checkpoint_globals

__all__ = ['Runner', 'check_backbone_fits', 'init_cpu_process_group', 'unpickling_reason']


def _slurm_environment() -> None:
    """torchrun's variables from slurm's (as mmengine's slurm launcher sets them), for ``init_method='env://'``."""
    try:
        proc_id, num_tasks = int(os.environ['SLURM_PROCID']), int(os.environ['SLURM_NTASKS'])
        node_list = os.environ['SLURM_NODELIST']
    except KeyError as e:
        raise RuntimeError(f'--launcher slurm needs slurm\'s environment, and {e.args[0]} is not set: start the job '
                           'with srun (tools/slurm_train.sh)') from None
    if 'MASTER_ADDR' not in os.environ:
        os.environ['MASTER_ADDR'] = subprocess.getoutput(f'scontrol show hostname {node_list} | head -n1')
    os.environ.setdefault('MASTER_PORT', '29500')
    os.environ['WORLD_SIZE'] = str(num_tasks)
    os.environ['RANK'] = str(proc_id)
    os.environ['LOCAL_RANK'] = os.environ.get('SLURM_LOCALID', str(proc_id))


def init_cpu_process_group(launcher: str, dist_cfg: dict) -> str:
    """Starts torch.distributed with gloo for ``launcher`` ('pytorch' or 'slurm'); returns what it did, for the log.

    ``dist_cfg`` is the config's ``env_cfg.dist_cfg``: its ``timeout`` (seconds) is kept; its ``backend`` is
    replaced by gloo unless it already is gloo or mpi (nccl needs CUDA).
    """
    if launcher == 'slurm':
        _slurm_environment()
    elif launcher != 'pytorch':
        raise RuntimeError(f'--launcher {launcher} without CUDA is not supported: use --launcher pytorch (torchrun, '
                           'tools/dist_train.sh) or slurm')
    requested = dist_cfg.get('backend', 'nccl')
    backend = requested if requested in ('gloo', 'mpi') else 'gloo'
    kwargs = {}
    if dist_cfg.get('timeout') is not None:
        kwargs['timeout'] = timedelta(seconds=dist_cfg['timeout'])
    torch_dist.init_process_group(backend=backend, init_method='env://', **kwargs)
    note = f' (the config asked for {requested}, which needs CUDA)' if backend != requested else ''
    return (f'No CUDA device: started torch.distributed with {backend}{note}, rank {torch_dist.get_rank()} of '
            f'{torch_dist.get_world_size()}')


def unpickling_reason(error: pickle.UnpicklingError) -> str:
    """The line of torch's weights-only refusal that says what it refused (its message is a page long)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    named = [line for line in lines if 'Unsupported global' in line or 'Unsupported operand' in line]
    what = named[0] if named else (lines[0] if lines else type(error).__name__)
    return f'torch.load(weights_only=True) found more than tensors and plain data in it ({what})'


def check_backbone_fits(model_state: Mapping, checkpoint_state: Mapping, source: str, prefix: str = 'backbone.',
                        shown: int = 3) -> None:
    """Raises :class:`CheckpointError` when the ``prefix`` tensors of ``checkpoint_state`` differ from the model's in
    shape or in which exist (``module.`` prefixes of DDP checkpoints are ignored). Nothing to check when the model has
    no tensors under ``prefix``."""
    ours = {key: value for key, value in model_state.items() if key.startswith(prefix)}
    if not ours:
        return
    theirs = {re.sub(r'^module\.', '', key): value for key, value in checkpoint_state.items()}
    theirs = {key: value for key, value in theirs.items() if key.startswith(prefix)}

    def listed(keys, describe=lambda key: key):
        keys = sorted(keys)
        more = f', ... ({len(keys) - shown} more)' if len(keys) > shown else ''
        return ', '.join(describe(key) for key in keys[:shown]) + more

    problems = []
    if not theirs:
        problems.append(f'it has no "{prefix}" tensors at all (is it a checkpoint of this kind of model?)')
    else:
        shapes = [key for key in ours if key in theirs and tuple(theirs[key].shape) != tuple(ours[key].shape)]
        if shapes:
            problems.append(f'{len(shapes)} tensors have other shapes: ' + listed(
                shapes, lambda key: f'{key} {tuple(theirs[key].shape)} here vs {tuple(ours[key].shape)} in the model'))
        missing, unexpected = ours.keys() - theirs.keys(), theirs.keys() - ours.keys()
        if missing:
            problems.append(f'{len(missing)} of the model\'s tensors are missing: {listed(missing)}'
                            + _out_norm_hint(missing, 'the model has per-output norms the checkpoint lacks: build it '
                                             'with model.backbone.out_norm_cfg=None, or start from this checkpoint '
                                             'through model.backbone.init_cfg, which leaves the norms initialized'))
        if unexpected:
            problems.append(f'{len(unexpected)} tensors are not the model\'s: {listed(unexpected)}'
                            + _out_norm_hint(unexpected, 'the checkpoint has per-output norms: build the model with '
                                             'model.backbone.out_norm_cfg=dict(type=\'BN\')'))
    if problems:
        raise CheckpointError(
            f'checkpoint {source} does not fit the model\'s {prefix.rstrip(".")}: ' + '; '.join(problems) + '. It was '
            'saved for another variant or configuration; a fused (reparameterized) checkpoint needs '
            '--cfg-options model.backbone.deploy=True')


def _out_norm_hint(keys, hint: str) -> str:
    """`` (<hint>)`` when ``keys`` include a backbone's per-output norms (``out_norm_cfg``, docs/backbone.md)."""
    return f' ({hint})' if any('.out_norms.' in key for key in keys) else ''


class _CheckpointFitHook(Hook):
    """Runs :func:`check_backbone_fits` on every checkpoint the Runner loads, before it reaches the model."""
    priority = 'VERY_HIGH'

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        source = f'"{runner._load_from}"' if runner._load_from else '(the work dir\'s last checkpoint)'
        check_backbone_fits(model.state_dict(), checkpoint.get('state_dict', checkpoint), source)


class Runner(MMEngineRunner):
    """mmengine's Runner with atomic checkpoint files, weights-only checkpoint loading and CPU distributed training
    (see the module docstring)."""

    def setup_env(self, env_cfg: dict) -> None:
        self._cpu_dist_note = None
        if self.distributed and not is_distributed() and not torch.cuda.is_available():
            self._cpu_dist_note = init_cpu_process_group(self.launcher, env_cfg.get('dist_cfg', {}))
        super().setup_env(env_cfg)  # mmengine skips init_dist once a process group exists

    def wrap_model(self, model_wrapper_cfg, model):
        if not (self.distributed and not torch.cuda.is_available() and not is_model_wrapper(model)):
            return super().wrap_model(model_wrapper_cfg, model)
        if getattr(self, '_cpu_dist_note', None):
            self.logger.info(self._cpu_dist_note)
        if model_wrapper_cfg is not None:
            # A wrapper the config chose; only the device ids mmengine would add are wrong on CPU.
            model_wrapper_cfg = dict(model_wrapper_cfg, device_ids=None)
            return super().wrap_model(model_wrapper_cfg, model)
        if any(isinstance(m, torch.nn.SyncBatchNorm) or type(m).__name__ == 'SyncBatchNorm' for m in model.modules()) \
                or self.cfg.get('sync_bn') is not None:
            self.logger.warning('SyncBatchNorm needs a GPU: on CPU each process normalizes with its own batch '
                                'statistics (SyncBN layers reverted to BatchNorm, cfg.sync_bn ignored)')
        model = revert_sync_batchnorm(model)
        return MMDistributedDataParallel(
            module=model,
            device_ids=None,
            broadcast_buffers=False,
            find_unused_parameters=self.cfg.get('find_unused_parameters', False))

    def load_or_resume(self) -> None:
        if self._resume or self._load_from:
            self.logger.info('Loading the checkpoint with torch.load(weights_only=True) and the globals of mmengine '
                             'Runner checkpoints allowed (mmfastvit.engine.mmengine_checkpoint_globals)')
        if not any(isinstance(hook, _CheckpointFitHook) for hook in self._hooks):
            self.register_hook(_CheckpointFitHook())
        source = self._load_from or '(last in the work dir)'
        if isinstance(self._load_from, str) and osp.isfile(self._load_from) and osp.getsize(self._load_from) == 0:
            raise CheckpointError(f'checkpoint "{source}" is empty (0 bytes)')
        try:
            with mmengine_checkpoint_globals():
                super().load_or_resume()
        except pickle.UnpicklingError as e:
            raise CheckpointError(f'checkpoint "{source}" was refused: {unpickling_reason(e)}') from None
        except (EOFError, RuntimeError) as e:
            # torch's zip reader on a cut-off file: "PytorchStreamReader failed reading zip archive: ..."
            if not isinstance(e, EOFError) and 'PytorchStreamReader' not in str(e):
                raise
            raise CheckpointError(f'checkpoint "{source}" is not a readable torch checkpoint (truncated or corrupt?): '
                                  f'{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}') from None

    @master_only
    def save_checkpoint(self, out_dir: str, filename: str, *args, **kwargs) -> None:
        if '://' in out_dir:  # a remote backend: mmengine's own upload
            return super().save_checkpoint(out_dir, filename, *args, **kwargs)
        directory, name = osp.split(osp.join(out_dir, filename))
        temporary = osp.join(directory, f'.{name}.{os.getpid()}.tmp')  # hidden, and not a *.pth a tool would pick
        try:
            super().save_checkpoint(directory, osp.basename(temporary), *args, **kwargs)
            with open(temporary, 'rb') as f:
                os.fsync(f.fileno())
            os.replace(temporary, osp.join(directory, name))
        finally:
            if osp.exists(temporary):
                os.remove(temporary)
