"""The MANO hand model: a chumpy-free reader of ``MANO_RIGHT.pkl``, the layer that poses it (smplx's, fed rotation
matrices) with FreiHAND's 21 official joints, and a synthetic stand-in file for tests.

The official ``MANO_RIGHT.pkl`` (licence-gated: https://mano.is.tue.mpg.de, never in this repository) is a Python 2
pickle that holds chumpy objects (``chumpy.ch.Ch``, whose pickled state keeps its array under ``'x'``) and a
``scipy.sparse`` ``J_regressor``. chumpy does not import on Python 3.11 / numpy 2, so :func:`load_mano_file` maps every
chumpy class to a stand-in that records the pickled state and is replaced by its array once the file is read; sparse
matrices become dense arrays the same way, without scipy's (renamed) classes. Only the globals a MANO file needs are
loaded (numpy arrays, sparse matrices, chumpy objects, a few builtins): anything else is refused.

Joints. MANO's own 16 joints are ordered 0 wrist, 1-3 index, 4-6 middle, 7-9 pinky, 10-12 ring, 13-15 thumb. FreiHAND's
21 official joints (its toolbox) are the ``J_regressor`` rows applied to the **posed** mesh, then the fingertip vertices
``MANO_TIP_VERTICES`` (thumb, index, middle, ring, pinky), reordered by ``MANO_TO_FREIHAND`` to 0 wrist, 1-4 thumb,
5-8 index, 9-12 middle, 13-16 ring, 17-20 pinky (each MCP -> tip). That is :func:`official_joints`.

Pose. :class:`MANOLayer` takes the FULL pose as 16 rotation matrices (global orientation + 15 finger joints in MANO's
order) and adds nothing to it (smplx ``MANOLayer``, ``use_pca=False``, ``flat_hand_mean=True``, ``pose2rot=False``).
FreiHAND's ``training_mano.json`` pose is relative to the mean hand: :func:`freihand_to_full_pose` adds ``hands_mean``.

Example:
    >>> import torch
    >>> path = make_synthetic_mano('/tmp/MANO_RIGHT.pkl')
    >>> mano = MANOLayer(path)
    >>> out = mano(torch.eye(3).expand(2, 16, 3, 3), torch.zeros(2, 10))
    >>> out['vertices'].shape, out['joints'].shape, mano.faces.shape, mano.hands_mean.shape
    (torch.Size([2, 778, 3]), torch.Size([2, 21, 3]), torch.Size([1538, 3]), torch.Size([45]))
"""
import contextlib
import io
import os
import os.path as osp
import pickle
import sys
import types
from typing import Dict, Optional, Union

import numpy as np
import torch
from torch import Tensor, nn

MANO_URL = 'https://mano.is.tue.mpg.de'
NUM_VERTICES = 778
NUM_FACES = 1538
NUM_MANO_JOINTS = 16
NUM_JOINTS = 21
NUM_BETAS = 10
# MANO's kinematic tree: parent of each of the 16 joints (wrist; index, middle, pinky, ring, thumb chains of 3).
MANO_PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)
# Fingertip vertices of FreiHAND's toolbox: thumb, index, middle, ring, pinky.
MANO_TIP_VERTICES = (744, 320, 443, 555, 672)
# [16 MANO joints, 5 tips] -> FreiHAND's 21 joints.
MANO_TO_FREIHAND = [0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20]
# FreiHAND's 61 numbers per sample in ``*_mano.json``: name -> (start, stop).
FREIHAND_MANO_SLICES = dict(pose=(0, 48), betas=(48, 58), uv_root=(58, 60), scale=(60, 61))

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


# ---------------------------------------------------------------------------------------------------------------------
# Reading the file without chumpy


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


# ---------------------------------------------------------------------------------------------------------------------
# The layer


def official_joints(vertices: Tensor, J_regressor: Tensor) -> Tensor:
    """FreiHAND's 21 joints ``[..., 21, 3]`` (FreiHAND order) of MANO meshes ``[..., 778, 3]``: ``J_regressor``
    ``[16, 778]`` rows applied to the mesh, plus the fingertip vertices, reordered by ``MANO_TO_FREIHAND``."""
    if vertices.shape[-2:] != (NUM_VERTICES, 3):
        raise ValueError(f'official_joints: vertices must be [..., {NUM_VERTICES}, 3], got {list(vertices.shape)}')
    if tuple(J_regressor.shape) != (NUM_MANO_JOINTS, NUM_VERTICES):
        raise ValueError(f'official_joints: J_regressor must be [{NUM_MANO_JOINTS}, {NUM_VERTICES}], '
                         f'got {list(J_regressor.shape)}')
    regressed = torch.einsum('jv,...vc->...jc', J_regressor.to(vertices.dtype), vertices)
    tips = vertices[..., list(MANO_TIP_VERTICES), :]
    return torch.cat((regressed, tips), dim=-2)[..., MANO_TO_FREIHAND, :]


def _build_smplx_mano(params: Dict[str, np.ndarray], model_path: str, dtype: torch.dtype) -> nn.Module:
    try:
        import smplx
        from smplx.utils import Struct
    except ImportError as err:
        raise ImportError('MANOLayer needs smplx (pip install -r requirements/hand.txt)') from err
    # smplx prints a warning on stdout for every MANO it builds ("only 10 shape coefficients"), which is MANO's size.
    # create_body_pose=False: otherwise smplx's MANOLayer keeps an unused trainable `body_pose` (breaks DDP).
    with contextlib.redirect_stdout(io.StringIO()):
        return smplx.MANOLayer(model_path, data_struct=Struct(**params), use_pca=False, flat_hand_mean=True,
                               num_betas=NUM_BETAS, is_rhand=True, create_body_pose=False, dtype=dtype)


class MANOLayer(nn.Module):
    """MANO posed by rotation matrices, returning the mesh and FreiHAND's 21 official joints.

    smplx's ``MANOLayer`` (``use_pca=False``, ``flat_hand_mean=True``, rotation matrices through ``pose2rot=False``)
    built from the arrays :func:`load_mano_file` reads, so smplx never unpickles the file. The result is in metres in
    MANO's own frame (no translation). The MANO arrays are non-persistent buffers: they follow ``.to()`` and
    ``.double()`` but stay out of checkpoints, which therefore carry none of the licensed model.

    Args:
        model_path (str): ``MANO_RIGHT.pkl``.
        dtype (torch.dtype): dtype of the MANO arrays (converted from the file's float64). Defaults to float32.

    Attributes:
        hands_mean (Tensor): ``[45]`` mean finger pose (axis-angle), for :func:`freihand_to_full_pose`.
        faces (Tensor): ``[1538, 3]`` int64 triangles.
        J_regressor (Tensor): ``[16, 778]``.

    Example:
        >>> import torch
        >>> mano = MANOLayer(make_synthetic_mano('/tmp/MANO_RIGHT.pkl'))
        >>> out = mano(torch.eye(3).expand(4, 16, 3, 3), torch.zeros(4, 10))
        >>> out['vertices'].shape, out['joints'].shape
        (torch.Size([4, 778, 3]), torch.Size([4, 21, 3]))
    """

    def __init__(self, model_path: Union[str, os.PathLike], dtype: torch.dtype = torch.float32):
        super().__init__()
        self.model_path = os.fspath(model_path)
        params = load_mano_file(self.model_path)
        self.mano = _build_smplx_mano(params, self.model_path, dtype)
        for module in self.mano.modules():
            for name, buffer in list(module.named_buffers(recurse=False)):
                module.register_buffer(name, buffer, persistent=False)
        self.register_buffer('hands_mean', torch.tensor(params['hands_mean'], dtype=dtype), persistent=False)
        self.register_buffer('faces', torch.tensor(params['f'], dtype=torch.long), persistent=False)

    @property
    def J_regressor(self) -> Tensor:
        return self.mano.J_regressor

    def forward(self, pose: Tensor, betas: Tensor) -> Dict[str, Tensor]:
        """Poses the hand.

        Args:
            pose (Tensor): ``[B, 16, 3, 3]`` full pose as rotation matrices: global orientation, then the 15 finger
                joints in MANO's order (``hands_mean`` already included).
            betas (Tensor): ``[B, 10]`` shape coefficients.

        Returns:
            dict: ``vertices`` ``[B, 778, 3]`` and ``joints`` ``[B, 21, 3]`` (FreiHAND order), metres.
        """
        if not isinstance(pose, Tensor) or pose.dim() != 4 or tuple(pose.shape[1:]) != (NUM_MANO_JOINTS, 3, 3):
            shape = list(pose.shape) if isinstance(pose, Tensor) else type(pose).__name__
            raise ValueError(f'MANOLayer: pose must be a [B, {NUM_MANO_JOINTS}, 3, 3] tensor of rotation matrices '
                             f'(global + 15 finger joints), got {shape}')
        batch = pose.shape[0]
        if not isinstance(betas, Tensor) or tuple(betas.shape) != (batch, NUM_BETAS):
            shape = list(betas.shape) if isinstance(betas, Tensor) else type(betas).__name__
            raise ValueError(f'MANOLayer: betas must be a [B, {NUM_BETAS}] tensor with B = {batch} as in pose, '
                             f'got {shape}')
        output = self.mano(betas=betas, global_orient=pose[:, :1], hand_pose=pose[:, 1:])
        vertices = output.vertices
        return dict(vertices=vertices, joints=official_joints(vertices, self.mano.J_regressor))


# ---------------------------------------------------------------------------------------------------------------------
# FreiHAND's MANO parameters


def split_freihand_mano(mano_params: Tensor) -> Dict[str, Tensor]:
    """Splits FreiHAND's 61 numbers ``[..., 61]`` into ``pose`` ``[..., 48]`` (axis-angle, fingers relative to the
    mean hand), ``betas`` ``[..., 10]``, ``uv_root`` ``[..., 2]`` (pixel projection of the wrist) and ``scale``
    ``[..., 1]`` (focal / wrist depth: FreiHAND's toolbox recovers ``xyz[0] = (uv_root - pp, focal) / scale``)."""
    if not isinstance(mano_params, Tensor) or mano_params.dim() < 1 or mano_params.shape[-1] != 61:
        shape = list(mano_params.shape) if isinstance(mano_params, Tensor) else type(mano_params).__name__
        raise ValueError(f'split_freihand_mano: mano_params must be a [..., 61] tensor, got {shape}')
    return {name: mano_params[..., start:stop] for name, (start, stop) in FREIHAND_MANO_SLICES.items()}


def freihand_to_full_pose(mano_params: Tensor, hands_mean: Tensor) -> Tensor:
    """MANO's full axis-angle pose ``[..., 16, 3]`` from FreiHAND's parameters: ``[..., 61]`` (or just the pose,
    ``[..., 48]``), whose finger part is relative to the mean hand: full = ``hands_mean`` + pose[3:48]; the global
    orientation pose[0:3] is kept."""
    if not isinstance(mano_params, Tensor) or mano_params.dim() < 1 or mano_params.shape[-1] not in (48, 61):
        shape = list(mano_params.shape) if isinstance(mano_params, Tensor) else type(mano_params).__name__
        raise ValueError(f'freihand_to_full_pose: mano_params must be a [..., 61] or [..., 48] tensor, got {shape}')
    if not isinstance(hands_mean, Tensor) or tuple(hands_mean.shape) != (45, ):
        shape = list(hands_mean.shape) if isinstance(hands_mean, Tensor) else type(hands_mean).__name__
        raise ValueError(f'freihand_to_full_pose: hands_mean must be a [45] tensor, got {shape}')
    pose = mano_params[..., :48]
    fingers = pose[..., 3:] + hands_mean.to(pose)
    return torch.cat((pose[..., :3], fingers), dim=-1).reshape(pose.shape[:-1] + (NUM_MANO_JOINTS, 3))


# ---------------------------------------------------------------------------------------------------------------------
# A synthetic MANO file

# Rest joints of the synthetic hand in a hand frame (metres): u along the fingers, s across the palm towards the
# thumb, n out of the back of the hand. MANO order. Not the real MANO geometry, only its size and topology.
_FINGERS = (  # MANO joints, MCP (u, s), phalanx lengths proximal / middle / distal(to tip)
    ((1, 2, 3), (0.085, 0.025), (0.040, 0.024, 0.022)),  # index
    ((4, 5, 6), (0.090, 0.003), (0.044, 0.028, 0.024)),  # middle
    ((7, 8, 9), (0.074, -0.035), (0.032, 0.020, 0.020)),  # pinky
    ((10, 11, 12), (0.084, -0.017), (0.041, 0.027, 0.023)),  # ring
)
_THUMB = ((0.025, 0.020, -0.008), (0.050, 0.045, -0.012), (0.070, 0.060, -0.014), (0.088, 0.072, -0.015))
# Tip vertex of each finger's distal joint (MANO joint -> vertex id).
_TIP_OF_JOINT = {15: 744, 3: 320, 6: 443, 12: 555, 9: 672}
# Where the wrist sits in MANO's frame (the real model's wrist is also away from the origin; the fingers point to -x).
_WRIST = np.array([0.095, 0.006, 0.006])
_PALM_VERTICES = 178  # the other 600 are 40 per finger joint


def _synthetic_skeleton():
    """Rest joints (16, 3) and the end point of each joint's bone (the child joint or the fingertip), hand frame."""
    joints = np.zeros((NUM_MANO_JOINTS, 3))
    ends = np.zeros((NUM_MANO_JOINTS, 3))
    for ids, (u0, s0), lengths in _FINGERS:
        direction = np.array([1.0, 0.25 * s0 / u0, -0.08])
        direction /= np.linalg.norm(direction)
        point = np.array([u0, s0, 0.0])
        for joint, length in zip(ids, lengths):
            joints[joint] = point
            point = point + length * direction
            ends[joint] = point
    for joint, (start, end) in zip((13, 14, 15), zip(_THUMB[:-1], _THUMB[1:])):
        joints[joint], ends[joint] = start, end
    ends[0] = joints[4]  # the palm "bone" runs from the wrist to the middle finger's MCP
    return joints, ends


def _to_mano_frame(points: np.ndarray) -> np.ndarray:
    """Hand frame (u, s, n) -> MANO-like frame: fingers along -x, the back of the hand towards +y, thumb towards +z."""
    u, s, n = points[..., 0], points[..., 1], points[..., 2]
    return np.stack((-u, n, s), axis=-1) + _WRIST


def synthetic_mano_params(seed: int = 0) -> Dict[str, np.ndarray]:
    """The 9 MANO arrays of a random but valid hand (see :func:`make_synthetic_mano`)."""
    rng = np.random.default_rng(seed)
    joints, ends = _synthetic_skeleton()
    # Which bone (joint) each vertex belongs to; the fingertip vertices on their finger's distal bone.
    bone = np.concatenate([np.zeros(_PALM_VERTICES, dtype=np.int64), np.repeat(np.arange(1, NUM_MANO_JOINTS), 40)])
    rng.shuffle(bone)
    for joint, tip in _TIP_OF_JOINT.items():
        if bone[tip] != joint:
            other = next(i for i in np.flatnonzero(bone == joint) if i not in _TIP_OF_JOINT.values())
            bone[tip], bone[other] = bone[other], bone[tip]
    t = rng.uniform(0.0, 1.0, size=NUM_VERTICES)
    verts = np.zeros((NUM_VERTICES, 3))
    for v in range(NUM_VERTICES):
        b = int(bone[v])
        if b == 0:  # palm: a flat box between the wrist and the knuckles
            verts[v] = (rng.uniform(-0.005, 0.075), rng.uniform(-0.042, 0.033), rng.uniform(-0.012, 0.012))
            continue
        axis = ends[b] - joints[b]
        axis_unit = axis / np.linalg.norm(axis)
        if v in _TIP_OF_JOINT.values():
            verts[v] = ends[b] + 0.004 * axis_unit  # the fingertip's skin, just past the bone's end
            t[v] = 1.0
            continue
        normal = np.cross(axis_unit, rng.normal(size=3))
        normal /= np.linalg.norm(normal)
        radius = (0.011 if b >= 13 else 0.009) * (1.0 - 0.15 * ((b - 1) % 3))
        verts[v] = joints[b] + t[v] * axis + radius * rng.uniform(0.8, 1.0) * normal
    v_template = _to_mano_frame(verts)
    joints_mano = _to_mano_frame(joints)

    parents = np.array(MANO_PARENTS)
    weights = rng.uniform(0.005, 0.02, size=(NUM_VERTICES, NUM_MANO_JOINTS))  # positive everywhere
    weights[np.arange(NUM_VERTICES), bone] += 1.0
    has_parent = bone > 0
    weights[np.flatnonzero(has_parent), parents[bone[has_parent]]] += 0.6 * (1.0 - t[has_parent])
    weights /= weights.sum(axis=1, keepdims=True)

    # Each joint is regressed from the 12 template vertices nearest to it, with positive weights summing to 1.
    J_regressor = np.zeros((NUM_MANO_JOINTS, NUM_VERTICES))
    for j in range(NUM_MANO_JOINTS):
        dist = np.linalg.norm(v_template - joints_mano[j], axis=1)
        near = np.argsort(dist)[:12]
        J_regressor[j, near] = np.exp(-(dist[near] / 0.01)**2) * rng.uniform(0.5, 1.0, size=12)
        J_regressor[j] /= J_regressor[j].sum()

    # Shape: beta 0 scales the hand about the wrist (3 % per unit), the others move bones by a few millimetres.
    shapedirs = np.zeros((NUM_VERTICES, 3, NUM_BETAS))
    shapedirs[:, :, 0] = 0.03 * (v_template - _WRIST)
    bone_moves = rng.normal(0.0, 0.0015, size=(NUM_BETAS - 1, NUM_MANO_JOINTS, 3))
    shapedirs[:, :, 1:] = np.einsum('vj,bjc->vcb', weights, bone_moves)
    shapedirs += rng.normal(0.0, 2e-4, size=shapedirs.shape)

    # Pose correctives: each vertex reacts to the (R - I) features of its bone and its bone's parent only.
    posedirs = np.zeros((NUM_VERTICES, 3, 9 * (NUM_MANO_JOINTS - 1)))
    for v in range(NUM_VERTICES):
        for j in {int(bone[v]), int(parents[bone[v]]) if bone[v] > 0 else 0} - {0}:
            posedirs[v, :, 9 * (j - 1):9 * j] = rng.normal(0.0, 1e-3, size=(3, 9))

    # Triangles between near neighbours.
    dist = np.linalg.norm(v_template[:, None] - v_template[None], axis=-1)
    neighbours = np.argsort(dist, axis=1)[:, 1:7]
    firsts = rng.integers(0, NUM_VERTICES, size=NUM_FACES)
    faces = np.stack([np.concatenate(([a], rng.choice(neighbours[a], size=2, replace=False))) for a in firsts])

    hands_components = np.linalg.qr(rng.normal(size=(45, 45)))[0]
    # Mean pose: the fingers a little curled (flexion about MANO's z axis, see _to_mano_frame), the thumb random.
    hands_mean = rng.normal(0.0, 0.03, size=(15, 3))
    hands_mean[:12, 2] += rng.uniform(0.1, 0.35, size=12)
    hands_mean[12:] += rng.normal(0.0, 0.15, size=(3, 3))

    kintree_table = np.stack((parents, np.arange(NUM_MANO_JOINTS))).astype(np.int64)
    return dict(v_template=v_template, shapedirs=shapedirs, posedirs=posedirs, J_regressor=J_regressor,
                weights=weights, kintree_table=kintree_table, f=faces.astype(np.int64),
                hands_components=hands_components, hands_mean=hands_mean.reshape(45))


def make_synthetic_mano(path: Union[str, os.PathLike], seed: int = 0) -> str:
    """Writes a synthetic ``MANO_RIGHT.pkl``: a plain numpy pickle of the 9 arrays, random but valid, readable by
    :func:`load_mano_file` and by smplx. For tests and smoke runs; its geometry is not the real hand's.

    MANO's kinematic tree, a hand-sized template (~0.18 m long, wrist away from the origin as in the real file) whose
    vertices sit around the bones, fingertip vertices ``MANO_TIP_VERTICES`` at the tips, positive row-normalised
    skinning weights, a non-negative row-normalised ``J_regressor`` on the vertices nearest each joint, small shape
    and pose blend shapes, triangles between neighbouring vertices, an orthonormal ``hands_components`` and a slightly
    curled ``hands_mean``.

    Args:
        path (str | PathLike): File to write (its directory is created).
        seed (int): Seed; the same seed gives the same file. Defaults to 0.

    Returns:
        str: ``path``.
    """
    path = os.fspath(path)
    params = synthetic_mano_params(seed)
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'wb') as f:
        pickle.dump(params, f, protocol=pickle.HIGHEST_PROTOCOL)
    return path


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
