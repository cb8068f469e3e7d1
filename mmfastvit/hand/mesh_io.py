"""Writing a predicted hand mesh as a Wavefront ``.obj`` file, which any mesh viewer (MeshLab, Blender, Open3D) opens.

The file holds one ``v x y z`` line per vertex and one ``f a b c`` line per triangle, with 1-based vertex indices as the
format requires. Coordinates are written with 9 significant digits, enough to read float32 values back exactly.
"""
import os
from typing import Optional, Union

import numpy as np

from mmfastvit.fileio import atomic_write


def _as_array(value, name: str) -> np.ndarray:
    if hasattr(value, 'detach'):  # a torch tensor, on any device
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f'save_obj: {name} must be an array, got {type(value).__name__}') from err


def save_obj(path: Union[str, os.PathLike], vertices, faces, header: Optional[str] = None) -> str:
    """Writes a triangle mesh to ``path`` as Wavefront ``.obj``, atomically (the file appears only once complete).

    Args:
        path (str | PathLike): The file to write (its folder is created).
        vertices (array-like): ``(N, 3)`` finite vertex positions, e.g. a prediction's ``vertices`` (778, 3) in metres.
        faces (array-like): ``(M, 3)`` 0-based integer vertex indices, e.g. MANO's 1538 triangles
            (``model.head.mano.faces``); written 1-based.
        header (str, optional): A comment written first, one ``#`` line per line of text. Defaults to None.

    Returns:
        str: ``path``.

    Raises:
        ValueError: ``vertices`` or ``faces`` have the wrong shape, ``vertices`` a non-finite value, or ``faces`` an
            index outside ``[0, N)``; nothing is written.

    Example:
        >>> import numpy as np
        >>> _ = save_obj('/tmp/triangle.obj', np.eye(3), [[0, 1, 2]])
        >>> open('/tmp/triangle.obj').read().splitlines()[-1]
        'f 1 2 3'
    """
    path = os.fspath(path)
    vertices = _as_array(vertices, 'vertices')
    faces = _as_array(faces, 'faces')
    if vertices.ndim != 2 or vertices.shape[1] != 3 or vertices.shape[0] == 0:
        raise ValueError(f'save_obj: vertices must be an (N, 3) array with N >= 1, got shape {vertices.shape}')
    if vertices.dtype.kind not in 'fiu':
        raise ValueError(f'save_obj: vertices must be numbers, got dtype {vertices.dtype}')
    if not np.isfinite(vertices).all():
        raise ValueError(f'save_obj: vertices hold {int((~np.isfinite(vertices)).sum())} non-finite values')
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.dtype.kind not in 'iu':
        raise ValueError(f'save_obj: faces must be an (M, 3) integer array of 0-based vertex indices, got '
                         f'{faces.dtype} {faces.shape}')
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ValueError(f'save_obj: faces index vertices {faces.min()}..{faces.max()}, outside [0, {len(vertices)}) '
                         f'(faces are 0-based indices into the {len(vertices)} vertices)')

    lines = [f'# {line}' for line in (header.splitlines() if header else [])]
    lines += ['v {:.9g} {:.9g} {:.9g}'.format(*v) for v in vertices.astype(np.float64).tolist()]
    lines += ['f {} {} {}'.format(*f) for f in (faces.astype(np.int64) + 1).tolist()]
    text = '\n'.join(lines) + '\n'
    atomic_write(path, lambda f: f.write(text), mode='w')
    return path
