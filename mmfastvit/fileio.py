"""Reading third-party weights safely and writing checkpoints whole (torch and mmengine only).

* :func:`load_weights` reads ``.pth`` / ``.pth.tar`` / ``.pt`` with ``torch.load(weights_only=True)`` and
  ``.safetensors`` files. Besides tensors and plain containers it lets through, by torch's safe-globals mechanism,
  only the harmless types that training checkpoints carry (:func:`training_checkpoint_allowlist`): timm's
  ``CheckpointSaver`` and DeiT's files hold the run's ``argparse.Namespace``, mmengine's Runner checkpoints their
  message hub. A file that would run code when unpickled is refused.
* :func:`extract_state_dict` finds the weights in the layouts trainers write, and their EMA weights on request.
* :func:`atomic_save` writes to a temporary name in the destination folder and renames it into place, so an
  interrupted or failed write never leaves a file that looks like a checkpoint.
"""
import argparse
import os
import os.path as osp
import pickle
import re
import tempfile
from typing import IO, Any, Callable, Dict, List, Mapping, Optional, Tuple

import torch
from torch import Tensor

# Where trainers keep the weights inside a checkpoint, in the order they are tried: Apple's, timm's CheckpointSaver's
# and mmengine's ``state_dict``, DeiT's training ``model``.
WEIGHT_CONTAINER_KEYS = ('state_dict', 'model')
# Where they keep the exponential moving average of the weights: timm's CheckpointSaver, DeiT, mmengine's EMAHook.
EMA_CONTAINER_KEYS = ('state_dict_ema', 'model_ema', 'ema_state_dict')


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used as asked; the message names the file and what was expected."""


def training_checkpoint_allowlist() -> List[Any]:
    """The globals :func:`load_weights` adds to torch's ``weights_only`` allowlist: types that training checkpoints
    carry besides tensors and containers, none of which runs code when rebuilt.

    * ``argparse.Namespace``: the command-line arguments timm's ``CheckpointSaver`` and DeiT's ``main.py`` save as
      ``args`` (rebuilt as an empty object whose attributes are then set to the plain values stored).
    * What mmengine's Runner checkpoints hold (:func:`mmfastvit.engine.mmengine_checkpoint_allowlist`): the message
      hub's ``HistoryBuffer``, numpy arrays and scalars (also what a numpy metric in timm's ``metric`` is).
    """
    from .engine.checkpoint import mmengine_checkpoint_allowlist
    return [argparse.Namespace, *mmengine_checkpoint_allowlist()]


def load_weights(path: str) -> Any:
    """Loads ``path`` without running any code stored in it.

    Training checkpoints (timm's ``CheckpointSaver``, DeiT's, mmengine's Runner's) load as well as bare state dicts:
    see :func:`training_checkpoint_allowlist` for the types allowed besides tensors and containers.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: the file is empty, truncated, not a checkpoint, or holds Python objects beyond those.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint "{path}" does not exist')
    if osp.getsize(path) == 0:
        raise CheckpointError(f'checkpoint "{path}" is empty (0 bytes)')
    if path.endswith('.safetensors'):
        try:
            from safetensors.torch import load_file
        except ImportError as err:
            raise CheckpointError(f'"{path}" is a safetensors file; install the `safetensors` package '
                                  f'(pip install safetensors) to read it') from err
        try:
            return load_file(path, device='cpu')
        except Exception as err:  # safetensors raises its own SafetensorError for bad headers / truncation
            raise CheckpointError(
                f'"{path}" is not a readable safetensors file (truncated or corrupt?): {err}') from err
    try:
        with torch.serialization.safe_globals(training_checkpoint_allowlist()):
            return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as err:
        if 'weights only' not in str(err).lower():
            raise CheckpointError(f'"{path}" is not a readable torch checkpoint (truncated or corrupt?): '
                                  f'{str(err).splitlines()[0]}') from err
        found = re.search(r'GLOBAL (\S+)', str(err))
        what = f' such as {found.group(1)}' if found else ''
        raise CheckpointError(
            f'"{path}" holds Python objects{what} beyond tensors, plain containers and the types training '
            f'checkpoints carry (argparse.Namespace, mmengine\'s message hub, numpy values), so it was not loaded: '
            f'torch.load(weights_only=True) refused it, since unpickling it could run code. If you made the file '
            f'yourself, save its state_dict alone') from err
    except (RuntimeError, EOFError, OSError) as err:
        raise CheckpointError(f'"{path}" is not a readable torch checkpoint (truncated or corrupt?): '
                              f'{str(err).splitlines()[0] if str(err) else type(err).__name__}') from err


def _strip_module(state: Dict[str, Any]) -> Dict[str, Any]:
    """Removes the ``module.`` prefix DistributedDataParallel (or an EMA wrapper) puts on every key."""
    if state and all(k.startswith('module.') for k in state):
        return {k[len('module.'):]: v for k, v in state.items()}
    return state


def _find_weights(obj: Any, ema: Optional[bool]) -> Tuple[Any, str]:
    """The weights container in ``obj`` and where it is; see :func:`extract_state_dict` for ``ema``."""
    if not isinstance(obj, Mapping):
        return obj, ''
    primary = next((k for k in WEIGHT_CONTAINER_KEYS if isinstance(obj.get(k), Mapping)), None)
    averaged = ema_weights_key(obj) or None
    # mmengine's EMAHook swaps before saving: 'state_dict' holds the averaged weights, 'ema_state_dict' the raw ones
    # (as 'module.<name>', plus the average's 'steps' counter).
    swapped = averaged == 'ema_state_dict' and primary == 'state_dict'
    if ema is None or (ema is False and not swapped):
        return (obj[primary], primary) if primary else (obj, '')
    if ema is False:
        raw = {k: v for k, v in obj['ema_state_dict'].items() if k.startswith('module.')}
        return _strip_module(raw), 'ema_state_dict (the weights before averaging: mmengine\'s EMAHook swaps them)'
    if swapped:
        return obj['state_dict'], 'state_dict (the averaged weights: mmengine\'s EMAHook swaps them)'
    if averaged is None:
        raise CheckpointError(f'EMA weights were asked for, but the checkpoint has none: expected them under '
                              f'{" / ".join(repr(k) for k in EMA_CONTAINER_KEYS)}; found keys {list(obj)[:8]}')
    return obj[averaged], averaged


def ema_weights_key(obj: Any) -> str:
    """Where ``obj`` (a loaded checkpoint) keeps EMA weights, or ``''`` if it has none."""
    if not isinstance(obj, Mapping):
        return ''
    return next((k for k in EMA_CONTAINER_KEYS if isinstance(obj.get(k), Mapping)), '')


def extract_state_dict(obj: Any, path: str, ema: Optional[bool] = None) -> Tuple[Dict[str, Tensor], str]:
    """The tensor dict inside a loaded checkpoint and where it was found (``''`` when ``obj`` is one).

    A ``module.`` prefix (from ``DistributedDataParallel``) on every key is removed.

    Args:
        obj: What :func:`load_weights` returned.
        path (str): The file, for messages.
        ema (bool, optional): ``None``: the weights a trainer saved as its model's (``state_dict`` / ``model``, which
            in a checkpoint of mmengine's ``EMAHook`` are the averaged ones). ``True``: the exponential moving
            average (timm's ``state_dict_ema``, DeiT's ``model_ema``, mmengine's ``state_dict`` beside
            ``ema_state_dict``). ``False``: the weights before averaging. Defaults to None.

    Raises:
        CheckpointError: no dict of tensors was found, or EMA weights were asked for and there are none.
    """
    try:
        obj, where = _find_weights(obj, ema)
    except CheckpointError as err:
        raise CheckpointError(f'"{path}": {err}') from None
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f'"{path}" holds no state dict: expected a dict of tensors, or one under '
                              f'{" / ".join(repr(k) for k in WEIGHT_CONTAINER_KEYS)}')
    not_tensors = [k for k, v in obj.items() if not isinstance(v, Tensor)]
    if not_tensors:
        raise CheckpointError(f'"{path}": the state dict{f" under {where!r}" if where else ""} has non-tensor '
                              f'entries {not_tensors[:5]}')
    return _strip_module(dict(obj)), where


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str, write: Callable[[IO], None], mode: str = 'wb') -> None:
    """Calls ``write(f)`` on a temporary file beside ``path`` (opened with ``mode``), flushes it to disk and renames it
    to ``path``: the file appears there only once complete. On any failure the temporary file is removed and an
    existing ``path`` is left as it was."""
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{osp.basename(path)}.', suffix='.tmp', dir=folder)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file private; what it becomes is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def atomic_save(obj: Any, path: str) -> None:
    """``torch.save(obj, path)``, all or nothing (:func:`atomic_write`)."""
    atomic_write(path, lambda f: torch.save(obj, f))
