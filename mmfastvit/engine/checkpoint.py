"""Loading checkpoints that mmengine's own ``Runner`` saved, under torch's ``weights_only`` unpickler.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``. mmengine 0.10.7 calls ``torch.load`` without that
argument, so it can no longer resume from (or ``load_from``) a checkpoint its Runner wrote: besides tensors, such a
checkpoint holds the message hub (``HistoryBuffer`` objects with numpy arrays and scalars). Plain state-dict checkpoints
are unaffected.

:func:`mmengine_checkpoint_globals` is the fix: a context manager that allows, for its duration, exactly the globals a
Runner checkpoint contains (found with ``torch.serialization.get_unsafe_globals_in_checkpoint`` on real checkpoints)::

    mmengine.logging.history_buffer.HistoryBuffer    the message hub's log buffers
    numpy.ndarray, numpy.dtype                       their numpy arrays ...
    numpy._core.multiarray._reconstruct              ... as numpy pickles them (and numpy.core.* for numpy 1.x files)
    numpy._core.multiarray.scalar                    numpy scalars (metrics, logged values)
    numpy.dtypes.Float64DType, ...                   dtype classes: never named in the file, but the unpickler only
                                                     restores the state of a dtype whose class is allowed (bool,
                                                     numbers, str, bytes, object; not void, datetime or StringDType)
    builtins.getattr                                 see below: NOT the real getattr

``builtins.getattr`` appears because ``HistoryBuffer.__getstate__`` stores its statistic methods (``HistoryBuffer.min``,
``max``, ``current``, ``mean``), and pickle protocol 2 (torch.save's default) writes a function with a dotted qualname
as ``getattr(HistoryBuffer, 'min')``. The real ``getattr`` would hand a checkpoint any attribute of any allowed object,
so under that name this module allows :func:`history_buffer_statistic`, which returns only those four methods and
refuses everything else. Nothing else is patched, and nothing is allowed outside the ``with`` block; the load stays
``weights_only=True``, so a checkpoint that would run code when unpickled is refused.
"""
import contextlib
import pickle
from typing import Any, Callable, Iterator, List, Tuple, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

# The statistics HistoryBuffer registers on itself (HistoryBuffer._set_default_statistics).
HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')

# numpy 2 moved numpy.core to numpy._core; a checkpoint names whichever the saving side had.
_NUMPY_CORE = np._core if hasattr(np, '_core') else np.core
_NUMPY_CORE_NAMES = ('numpy._core.multiarray', 'numpy.core.multiarray')
# Kinds of numpy data a Runner checkpoint holds: np.dtype(...).kind of bool, signed/unsigned int, float, complex,
# object, str, bytes.
_NUMPY_DTYPE_KINDS = 'biufcOUS'


def _numpy_dtype_classes() -> List[type]:
    """numpy's per-dtype classes (``numpy.dtypes.Float64DType``, ...) of the kinds in ``_NUMPY_DTYPE_KINDS``."""
    classes = {cls for cls in vars(np.dtypes).values() if isinstance(cls, type) and issubclass(cls, np.dtype)}
    # cls.type is the scalar type; StringDType's is Python's str, not a numpy scalar, and is left out.
    kept = [cls for cls in classes
            if issubclass(cls.type, np.generic) and np.dtype(cls.type).kind in _NUMPY_DTYPE_KINDS]
    return sorted(kept, key=lambda cls: cls.__name__)


def history_buffer_statistic(owner: Any, name: str) -> Callable:
    """Stands in for ``builtins.getattr`` while a Runner checkpoint loads; only ``HistoryBuffer.<statistic>`` resolves.

    Raises:
        pickle.UnpicklingError: for any other object or attribute name.
    """
    if owner is HistoryBuffer and name in HISTORY_BUFFER_STATISTICS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'checkpoint asks for getattr({owner!r}, {name!r}); only the HistoryBuffer statistics '
        f'{list(HISTORY_BUFFER_STATISTICS)} are allowed')


def mmengine_checkpoint_allowlist() -> List[Union[Callable, Tuple[Callable, str]]]:
    """The entries :func:`mmengine_checkpoint_globals` adds to torch's ``weights_only`` allowlist.

    ``(object, 'module.name')`` pairs make the unpickler hand out ``object`` when the checkpoint names ``module.name``.
    """
    allowlist: List[Union[Callable, Tuple[Callable, str]]] = [
        (HistoryBuffer, 'mmengine.logging.history_buffer.HistoryBuffer'),
        (np.ndarray, 'numpy.ndarray'),
        (np.dtype, 'numpy.dtype'),
        (history_buffer_statistic, 'builtins.getattr'),
    ]
    for module in _NUMPY_CORE_NAMES:
        allowlist.append((_NUMPY_CORE.multiarray._reconstruct, f'{module}._reconstruct'))
        allowlist.append((_NUMPY_CORE.multiarray.scalar, f'{module}.scalar'))
    allowlist.extend(_numpy_dtype_classes())
    return allowlist


@contextlib.contextmanager
def mmengine_checkpoint_globals() -> Iterator[None]:
    """Lets ``torch.load(weights_only=True)`` read checkpoints saved by mmengine's Runner, inside the block only.

    Wrap the call that loads (``runner.train()`` when resuming, ``runner.test()``); see the module docstring for what
    is allowed and why.

    Example:
        >>> with mmengine_checkpoint_globals():
        ...     runner.train()  # doctest: +SKIP
    """
    with torch.serialization.safe_globals(mmengine_checkpoint_allowlist()):
        yield


def load_runner_checkpoint(filename: str, map_location: Any = 'cpu') -> dict:
    """``torch.load`` of a Runner checkpoint with ``weights_only=True`` and :func:`mmengine_checkpoint_globals`.

    Raises:
        pickle.UnpicklingError: if the file needs anything outside torch's allowlist and ours.
    """
    with mmengine_checkpoint_globals():
        return torch.load(filename, map_location=map_location, weights_only=True)
