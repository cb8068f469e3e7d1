"""Reading third-party weights safely and writing checkpoints whole (torch only).

* :func:`load_weights` reads ``.pth`` / ``.pth.tar`` / ``.pt`` with ``torch.load(weights_only=True)`` (tensors and
  plain containers only: a file that would run code when unpickled is refused) and ``.safetensors`` files.
* :func:`atomic_save` writes to a temporary name in the destination folder and renames it into place, so an
  interrupted or failed write never leaves a file that looks like a checkpoint.
"""
import os
import os.path as osp
import pickle
import tempfile
from typing import IO, Any, Callable, Dict, Mapping, Tuple

import torch
from torch import Tensor

# Where trainers keep the weights inside a checkpoint, in the order they are tried: Apple's and mmengine's
# ``state_dict``, timm's / DeiT's training ``model``.
WEIGHT_CONTAINER_KEYS = ('state_dict', 'model')


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used as asked; the message names the file and what was expected."""


def load_weights(path: str) -> Any:
    """Loads ``path`` without running any code stored in it.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: the file is empty, truncated, not a checkpoint, or holds Python objects beyond tensors.
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
            raise CheckpointError(f'"{path}" is not a readable safetensors file (truncated or corrupt?): {err}') from err
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as err:
        if 'weights only' not in str(err).lower():
            raise CheckpointError(f'"{path}" is not a readable torch checkpoint (truncated or corrupt?): '
                                  f'{str(err).splitlines()[0]}') from err
        raise CheckpointError(
            f'"{path}" holds Python objects other than tensors and plain containers, so it was not loaded '
            f'(torch.load(weights_only=True) refused it: {str(err).splitlines()[0]}). Third-party weights are only '
            f'read this way; if the file is your own training checkpoint, extract its state_dict first') from err
    except (RuntimeError, EOFError, OSError) as err:
        raise CheckpointError(f'"{path}" is not a readable torch checkpoint (truncated or corrupt?): '
                              f'{str(err).splitlines()[0] if str(err) else type(err).__name__}') from err


def extract_state_dict(obj: Any, path: str) -> Tuple[Dict[str, Tensor], str]:
    """The tensor dict inside a loaded checkpoint and where it was found (``''`` when ``obj`` is one).

    A ``module.`` prefix (from ``DistributedDataParallel``) on every key is removed.

    Raises:
        CheckpointError: no dict of tensors was found.
    """
    where = ''
    if isinstance(obj, Mapping):
        for key in WEIGHT_CONTAINER_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj, where = obj[key], key
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f'"{path}" holds no state dict: expected a dict of tensors, or one under '
                              f'{" / ".join(repr(k) for k in WEIGHT_CONTAINER_KEYS)}')
    not_tensors = [k for k, v in obj.items() if not isinstance(v, Tensor)]
    if not_tensors:
        raise CheckpointError(f'"{path}": the state dict{f" under {where!r}" if where else ""} has non-tensor '
                              f'entries {not_tensors[:5]}')
    state = dict(obj)
    if all(k.startswith('module.') for k in state):
        state = {k[len('module.'):]: v for k, v in state.items()}
    return state, where


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
