"""A chumpy-free, code-free reader of MANO's model file ``MANO_RIGHT.pkl``.

The official ``MANO_RIGHT.pkl`` (licence-gated: https://mano.is.tue.mpg.de, never in this repository) is a Python 2
pickle that holds chumpy objects (``chumpy.ch.Ch``, whose pickled state keeps its array under ``'x'``) and a
``scipy.sparse`` ``J_regressor``. chumpy does not import on Python 3.11 / numpy 2, so :func:`load_mano_file` maps every
chumpy class to a stand-in that records the pickled state and is replaced by its array once the file is read; sparse
matrices become dense arrays the same way, without scipy's (renamed) classes. Only the globals a MANO file needs are
loaded (numpy arrays, sparse matrices, chumpy objects, a few builtins): anything else is refused.
"""
import os
import os.path as osp
import pickle
from typing import Dict, Union

import numpy as np

from .conventions import MANO_PARENTS, NUM_BETAS, NUM_FACES, NUM_MANO_JOINTS, NUM_VERTICES

MANO_URL = 'https://mano.is.tue.mpg.de'

# The 9 arrays smplx's MANO reads and their shapes.
MANO_SHAPES = dict(
    v_template=(NUM_VERTICES, 3),
    shapedirs=(NUM_VERTICES, 3, NUM_BETAS),
    posedirs=(NUM_VERTICES, 3, 9 * (NUM_MANO_JOINTS - 1)),
    J_regressor=(NUM_MANO_JOINTS, NUM_VERTICES),
    weights=(NUM_VERTICES, NUM_MANO_JOINTS),
    kintree_table=(2, NUM_MANO_JOINTS),
    f=(NUM_FACES, 3),
    hands_components=(45, 45),
    hands_mean=(45, ),
)
_INTEGER_KEYS = ('kintree_table', 'f')


def _not_found_message(path) -> str:
    return (f'MANO model file not found: {path!r}. MANO_RIGHT.pkl is licence-gated and not shipped with mmfastvit: '
            f'register at {MANO_URL}, accept the MANO licence, download "Models & Code" and set the config value '
            "`mano_path` (e.g. model.head.mano_path) to the path of mano_v1_2/models/MANO_RIGHT.pkl.")


class _PickledStandIn:
    """Records how a foreign object was pickled (constructor arguments and ``__setstate__`` state), to be turned into
    a numpy array after unpickling. Pickle builds objects with ``cls.__new__`` (protocol 2+), ``copyreg._reconstructor``
    (protocols 0/1) or ``cls(*args)``; all three end up here."""
    source = ''

    def __new__(cls, *args, **kwargs):
        obj = super().__new__(cls)
        obj.args = args
        obj.state = None
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.state = state

    def state_dict(self) -> dict:
        state = self.state
        if isinstance(state, tuple) and len(state) == 2:  # (__dict__, slot values)
            merged = {}
            for part in state:
                if isinstance(part, dict):
                    merged.update(part)
            return merged
        return dict(state) if isinstance(state, dict) else {}


class _ChumpyObject(_PickledStandIn):
    """A chumpy object: its array is the state's ``'x'`` (``Ch(array)``), or the first constructor argument."""


class _SparseMatrix(_PickledStandIn):
    """A compressed scipy sparse matrix (csc/csr, matrix or array; any scipy version's module name)."""


_SPARSE_FORMATS = {'csc_matrix': 'csc', 'csr_matrix': 'csr', 'csc_array': 'csc', 'csr_array': 'csr'}
# Globals a MANO pickle may name besides chumpy's and scipy.sparse's classes, by their Python 3 module names.
_SAFE_GLOBALS = {
    'builtins': {'object', 'set', 'frozenset', 'slice', 'complex', 'bytearray', 'bytes', 'int', 'float', 'bool', 'str',
                 'list', 'tuple', 'dict', 'range'},
    'copyreg': {'_reconstructor', '__newobj__'},
    '_codecs': {'encode'},
    'collections': {'OrderedDict'},
}
# Python 2 module names (protocol 0-2 pickles, also those Python 3 writes) for the checks above; find_class of the base
# class maps them the same way when it imports.
_PY2_MODULES = {'__builtin__': 'builtins', 'copy_reg': 'copyreg'}
_NUMPY_NAMES = {'_reconstruct', 'ndarray', 'dtype', 'scalar', '_frombuffer', 'frombuffer'}


class RefusedGlobalError(pickle.UnpicklingError):
    """A pickle names a global that a MANO file never holds (the reader does not run arbitrary code)."""


class _MANOUnpickler(pickle.Unpickler):
    """Maps chumpy classes and compressed sparse matrices to stand-ins; refuses globals a MANO file never holds."""

    def __init__(self, file, path: str):
        super().__init__(file, encoding='latin1')
        self.path = path
        self._classes: Dict[str, type] = {}

    def _stand_in(self, base: type, module: str, name: str) -> type:
        source = f'{module}.{name}'
        if source not in self._classes:
            self._classes[source] = type(name, (base, ), dict(source=source))
        return self._classes[source]

    def find_class(self, module: str, name: str):
        if module == 'chumpy' or module.startswith('chumpy.'):
            return self._stand_in(_ChumpyObject, module, name)
        if module == 'scipy.sparse' or module.startswith('scipy.sparse.'):
            if name in _SPARSE_FORMATS:
                return self._stand_in(_SparseMatrix, module, name)
            return super().find_class(module, name)  # another sparse format: densified by its own toarray()
        top = module.split('.')[0]
        if (top == 'numpy' and (name in _NUMPY_NAMES or module.startswith('numpy.dtypes'))) or \
                name in _SAFE_GLOBALS.get(_PY2_MODULES.get(module, module), ()):
            return super().find_class(module, name)
        raise RefusedGlobalError(f'{self.path}: refusing to load the global {module}.{name}: a MANO file holds '
                                     'only numpy arrays, scipy sparse matrices and chumpy objects')


def _sparse_to_dense(obj: _SparseMatrix, path: str, key: str) -> np.ndarray:
    state = obj.state_dict()
    fmt = _SPARSE_FORMATS[obj.source.rsplit('.', 1)[1]]
    shape = state.get('_shape', state.get('shape'))
    missing = [k for k in ('data', 'indices', 'indptr') if k not in state] + ([] if shape is not None else ['_shape'])
    if missing:
        raise ValueError(f'{path}: key {key!r} holds a {obj.source} whose pickled state lacks {missing} '
                         f'(it has {sorted(state)})')
    data, indices, indptr = (np.asarray(_resolve(state[k], path, key)) for k in ('data', 'indices', 'indptr'))
    rows, cols = (int(s) for s in shape)
    major = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    dense = np.zeros((rows, cols), dtype=np.result_type(data.dtype, np.float64))
    row_ids, col_ids = (indices, major) if fmt == 'csc' else (major, indices)
    np.add.at(dense, (row_ids, col_ids), data)  # duplicate entries add up, as in scipy
    return dense


def _chumpy_to_array(obj: _ChumpyObject, path: str, key: str) -> np.ndarray:
    state = obj.state_dict()
    if 'x' in state:
        value = _resolve(state['x'], path, key)
    elif obj.args:
        value = _resolve(obj.args[0], path, key)
    else:
        raise ValueError(f'{path}: key {key!r} holds a chumpy {obj.source} object without an array: its pickled state '
                         f'has no "x" (keys: {sorted(state)}) and it has no constructor argument. Only plain chumpy '
                         'arrays (Ch(array)) can be read without chumpy.')
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f'{path}: key {key!r} holds a chumpy {obj.source} object whose "x" is not numeric '
                         f'({type(value).__name__})') from err


def _resolve(obj, path: str, key: str):
    """Replaces stand-ins (recursively) by numpy arrays."""
    if isinstance(obj, _ChumpyObject):
        return _chumpy_to_array(obj, path, key)
    if isinstance(obj, _SparseMatrix):
        return _sparse_to_dense(obj, path, key)
    if isinstance(obj, dict):
        return {k: _resolve(v, path, key if key else str(k)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_resolve(v, path, key) for v in obj)
    if hasattr(obj, 'toarray') and type(obj).__module__.startswith('scipy.sparse'):
        return np.asarray(obj.toarray())
    return obj


def _validate(raw: dict, path: str) -> Dict[str, np.ndarray]:
    missing = [k for k in MANO_SHAPES if k not in raw]
    if missing:
        raise ValueError(f'{path}: missing MANO key(s) {missing}; a MANO file holds {list(MANO_SHAPES)} '
                         f'(found {sorted(map(str, raw))})')
    params = {}
    for key, expected in MANO_SHAPES.items():
        try:
            value = np.asarray(raw[key])
        except (TypeError, ValueError) as err:
            raise ValueError(f'{path}: key {key!r} is not an array ({type(raw[key]).__name__})') from err
        if value.shape != expected:
            raise ValueError(f'{path}: key {key!r} has shape {value.shape}, expected {expected}')
        if not (np.issubdtype(value.dtype, np.number) or value.dtype == bool):
            raise ValueError(f'{path}: key {key!r} has dtype {value.dtype}, expected numbers')
        if key in _INTEGER_KEYS:
            if not np.issubdtype(value.dtype, np.integer):
                if not np.all(np.isfinite(value)) or not np.array_equal(value, np.round(value)):
                    raise ValueError(f'{path}: key {key!r} must hold integers')
            value = value.astype(np.int64)
        else:
            value = value.astype(np.float64)
            if not np.all(np.isfinite(value)):
                raise ValueError(f'{path}: key {key!r} holds NaN or infinite values')
        params[key] = value
    # The official file stores the root's parent as uint32 -1 (4294967295); smplx ignores it, so does everyone else.
    params['kintree_table'][0, 0] = -1
    if tuple(params['kintree_table'][0].tolist()) != MANO_PARENTS:
        raise ValueError(f"{path}: key 'kintree_table' has parents {params['kintree_table'][0].tolist()}, expected "
                         f"MANO's {list(MANO_PARENTS)}")
    faces = params['f']
    if faces.min() < 0 or faces.max() >= NUM_VERTICES:
        raise ValueError(f"{path}: key 'f' has vertex ids outside [0, {NUM_VERTICES}): {faces.min()}..{faces.max()}")
    return params


def load_mano_file(path: Union[str, os.PathLike]) -> Dict[str, np.ndarray]:
    """Reads a MANO model pickle (the official chumpy one or a plain numpy one) without chumpy.

    Args:
        path (str | PathLike): ``MANO_RIGHT.pkl``.

    Returns:
        dict: the 9 arrays of ``MANO_SHAPES``: floats as float64 (``J_regressor`` dense), ``f`` and
        ``kintree_table`` as int64 (the root's parent set to -1). Other keys of the file are dropped.

    Raises:
        FileNotFoundError: no such file (the message says where MANO is obtained).
        RefusedGlobalError: the pickle names a global other than numpy's, scipy.sparse's, chumpy's or a few
            builtins (a ``pickle.UnpicklingError``).
        ValueError: unreadable file, a missing key, a wrong shape or dtype, a kinematic tree that is not MANO's; the
            message names the file and the key.
    """
    path = os.fspath(path)
    if not osp.isfile(path):
        raise FileNotFoundError(_not_found_message(path))
    try:
        with open(path, 'rb') as f:
            raw = _MANOUnpickler(f, path).load()
    except RefusedGlobalError:
        raise
    except Exception as err:  # truncated or foreign files fail in many ways inside pickle
        raise ValueError(f'{path}: not a readable MANO pickle ({type(err).__name__}: {err})') from err
    if not isinstance(raw, dict):
        raise ValueError(f'{path}: a MANO file holds a dict of arrays, got {type(raw).__name__}')
    raw = {str(k): _resolve(v, path, str(k)) for k, v in raw.items()}
    return _validate(raw, path)
