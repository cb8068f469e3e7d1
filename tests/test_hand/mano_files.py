"""A writer of MANO files in the structure of the official, licence-gated ``MANO_RIGHT.pkl`` (chumpy objects, an
old-scipy sparse matrix, Python 2 pickle), so that tests exercise :func:`mmfastvit.hand.mano_file.load_mano_file` on
that structure without the file, chumpy or scipy's old module names."""
import contextlib
import os
import os.path as osp
import pickle
import sys
import types
from typing import Dict, Optional, Union

import numpy as np


@contextlib.contextmanager
def _fake_modules(modules: Dict[str, types.ModuleType]):
    """Puts modules in ``sys.modules`` for the duration (pickle looks classes up there), then restores what was."""
    saved = {name: sys.modules.get(name) for name in modules}
    sys.modules.update(modules)
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def save_chumpy_style_mano(path: Union[str, os.PathLike], params: Dict[str, np.ndarray],
                           chumpy_keys: Optional[tuple] = ('shapedirs', 'posedirs')) -> str:
    """Writes MANO arrays in the structure of the official file, for testing :func:`load_mano_file` without it.

    ``chumpy_keys`` become ``chumpy.ch.Ch`` objects pickled as chumpy pickles them (a ``__dict__`` state holding the
    array under ``'x'`` and chumpy's bookkeeping), ``J_regressor`` a ``scipy.sparse.csc.csc_matrix`` with the old
    scipy state (``_shape``, ``data``, ``indices``, ``indptr``, ``maxprint``), ``kintree_table`` and ``f`` uint32 (the
    root's parent 4294967295), plus the file's extra keys (``J``, ``bs_style``, ``bs_type``, ``hands_coeffs``).
    Pickle protocol 2, as Python 2 wrote it. Classes with chumpy's and scipy's module names are put in ``sys.modules``
    only while pickling, so neither package is needed.
    """
    path = os.fspath(path)

    def _getstate(self):
        return dict(self.__dict__)

    ch_class = type('Ch', (), {'__module__': 'chumpy.ch', '__qualname__': 'Ch', '__getstate__': _getstate})
    csc_class = type('csc_matrix', (), {'__module__': 'scipy.sparse.csc', '__qualname__': 'csc_matrix',
                                        '__getstate__': _getstate})
    chumpy_pkg, chumpy_ch, csc_module = (types.ModuleType(n) for n in ('chumpy', 'chumpy.ch', 'scipy.sparse.csc'))
    chumpy_ch.Ch = ch_class
    chumpy_pkg.ch = chumpy_ch
    csc_module.csc_matrix = csc_class

    def as_ch(array):
        obj = ch_class()
        obj.__dict__.update(x=np.asarray(array, dtype=np.float64), _dirty_vars=set(), _itr=None,
                            _depends_on_deps={}, _make_dense=False, _make_sparse=False)
        return obj

    def as_csc(array):
        array = np.asarray(array, dtype=np.float64)
        cols = [np.flatnonzero(array[:, c]) for c in range(array.shape[1])]
        obj = csc_class()
        obj.__dict__.update(_shape=array.shape, maxprint=50, format='csc',
                            indices=np.concatenate(cols).astype(np.int32),
                            indptr=np.concatenate(([0], np.cumsum([len(c) for c in cols]))).astype(np.int32),
                            data=np.concatenate([array[c_rows, c] for c, c_rows in enumerate(cols)]))
        return obj

    content = {key: np.asarray(value) for key, value in params.items()}
    for key in chumpy_keys or ():
        content[key] = as_ch(content[key])
    content['J_regressor'] = as_csc(params['J_regressor'])
    kintree = np.asarray(params['kintree_table']).astype(np.int64)
    kintree[0, 0] = 2**32 - 1
    content['kintree_table'] = kintree.astype(np.uint32)
    content['f'] = np.asarray(params['f']).astype(np.uint32)
    content['J'] = np.asarray(params['J_regressor']) @ np.asarray(params['v_template'])
    content.update(bs_style='lbs', bs_type='lrotmin', hands_coeffs=np.zeros((4, 45)))
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with _fake_modules({'chumpy': chumpy_pkg, 'chumpy.ch': chumpy_ch, 'scipy.sparse.csc': csc_module}):
        data = pickle.dumps(content, protocol=2)
    with open(path, 'wb') as f:
        f.write(data)
    return path
