"""FreiHAND (Zimmermann et al., ICCV 2019) read in its released layout, without conversion::

    data_root/
      training/rgb/%08d.jpg          N unique ids x 4 versions: file index = id + N * k
                                     (k: 0 green screen, 1 homogenized, 2 sample, 3 auto)
      training_{K,mano,xyz,verts,scale}.json       per-id lists (index = unique id)
      evaluation/rgb/%08d.jpg        one version (green screen)
      evaluation_{K,scale}.json, and, once released (FreiHAND_pub_v2_eval), evaluation_{xyz,verts,mano}.json

N = 32,560 for training and 3,960 for evaluation in the real set; the reader takes it from ``<split>_K.json`` and
requires every other list of the split to have that length. Units are metres, camera frame.

Each JSON is read once, one item at a time: ``training_verts.json`` is ~2 GB of text, which ``json.load`` would turn
into several GB of Python lists (~8 GB extrapolated from 1,000 items); streamed, it takes one 16 M-character chunk
plus the result. Each is validated (list, length, per-item shape, finite values) and kept as one read-only float32
array per annotation, indexed by unique id. The four versions of an id share those arrays: ``data_list`` only holds
``img_path``, ``id`` and ``version``, and :meth:`FreiHANDDataset.get_data_info` attaches copies of the id's
annotations. Serializing 130k vertex arrays into ``data_list`` would take ~1.2 GB; these arrays (~0.3 GB for the
vertices) are shared by forked dataloader workers without copies.

Images are not all checked up front (130k stat calls on a network file system take minutes): the first and the last
image of each chosen version are, which catches a missing folder or a missing or truncated version; any other missing
image fails when ``LoadImageFromFile`` reads it, naming its path.
"""
import json
import os.path as osp
import re
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from mmengine.dataset import BaseDataset

from mmfastvit.registry import DATASETS

from .conventions import NUM_JOINTS, NUM_MANO_PARAMS, NUM_VERTICES

SPLITS = ('training', 'evaluation')
VERSION_NAMES = ('green screen', 'homogenized', 'sample', 'auto')

# Annotation name (the JSON is ``<split>_<name>.json``) -> (shape of one item, what one item is, data-info key).
ANNOTATIONS: Dict[str, Tuple[Tuple[int, ...], str, str]] = {
    'K': ((3, 3), '3x3 camera intrinsics', 'K'),
    'xyz': ((NUM_JOINTS, 3), f'{NUM_JOINTS}x3 joint arrays', 'joints_3d'),
    'verts': ((NUM_VERTICES, 3), f'{NUM_VERTICES}x3 vertex arrays', 'vertices'),
    'mano': ((NUM_MANO_PARAMS, ), f'1x{NUM_MANO_PARAMS} MANO parameter arrays', 'mano'),
    'scale': ((), 'numbers (the length of bone 9->10)', 'scale'),
}
# Loaded for every sample of a split / only for annotated splits.
CAMERA_ANNOTATIONS = ('K', 'scale')
HAND_ANNOTATIONS = ('xyz', 'verts', 'mano')

_DECODER = json.JSONDecoder()
_NON_SPACE = re.compile(r'\S')
_JSON_TYPE_NAMES = {dict: 'an object', str: 'a string', int: 'a number', float: 'a number', bool: 'a boolean'}


def _as_number_array(data) -> Optional[np.ndarray]:
    """``data`` as a numeric array; None for a ragged list, or one holding strings, objects or null."""
    if isinstance(data, (str, dict, bool)) or data is None:
        return None
    try:
        array = np.asarray(data)  # no dtype: numpy would parse numeric strings and turn null into NaN
    except (ValueError, TypeError):
        return None
    return array if array.dtype.kind in 'fiu' else None


def _item_shape(item) -> Optional[Tuple[int, ...]]:
    array = _as_number_array(item)
    return None if array is None else array.shape


def _item_shape_ok(name: str, shape: Optional[Tuple[int, ...]]) -> bool:
    if name == 'mano':  # the release writes 1x61; a flat 61 is accepted too
        return shape in ((NUM_MANO_PARAMS, ), (1, NUM_MANO_PARAMS))
    return shape == ANNOTATIONS[name][0]


def _describe_item(item) -> str:
    shape = _item_shape(item)
    if shape is None:
        return _JSON_TYPE_NAMES.get(type(item), 'null' if item is None else 'a ragged or non-numeric list')
    if len(shape) < 2:
        return 'a number' if shape == () else f'a length-{shape[0]} list'
    return f'a {"x".join(map(str, shape))} array'


class _NotJSON(ValueError):
    """A syntax error in a JSON file; the message says where."""


class _NotAList(Exception):
    """The file's top-level value is not a list."""


class _JSONListReader:
    """The items of a file's top-level JSON list, one at a time.

    The file is read in chunks of ``chunk_chars`` and each item decoded with the standard library's decoder as soon
    as it is complete, so a file of gigabytes (``training_verts.json``) is never held whole, neither as text nor as
    Python lists: only one chunk and one item are.
    """

    _SLACK = 64  # an item ending (or failing) this close to the end of the buffer may have been cut by the chunk

    def __init__(self, file, chunk_chars: int = 1 << 24) -> None:
        self.file = file
        self.chunk_chars = chunk_chars
        self.buf = ''
        self.pos = 0
        self.dropped = 0  # characters of the file before ``buf``

    def _refill(self) -> bool:
        more = self.file.read(self.chunk_chars)
        if not more:
            return False
        self.dropped += self.pos
        self.buf = self.buf[self.pos:] + more
        self.pos = 0
        return True

    def _peek(self) -> str:
        """Moves to the next non-space character and returns it ('' at the end of the file)."""
        while True:
            match = _NON_SPACE.search(self.buf, self.pos)
            if match:
                self.pos = match.start()
                return self.buf[self.pos]
            self.pos = len(self.buf)
            if not self._refill():
                return ''

    def _decode(self, index: int):
        while True:
            try:
                item, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as err:
                if err.pos >= len(self.buf) - self._SLACK and self._refill():
                    continue
                raise _NotJSON(f'{err.msg} at character {self.dropped + err.pos}, in item {index}') from None
            if end >= len(self.buf) - self._SLACK and self._refill():  # a number may continue in the next chunk
                continue
            self.pos = end
            return item

    def __iter__(self):
        if self._peek() != '[':
            raise _NotAList
        self.pos += 1
        index = 0
        if self._peek() != ']':
            while True:
                if not self._peek():
                    raise _NotJSON(f'the file ends inside item {index}')
                yield self._decode(index)
                char = self._peek()
                if char == ']':
                    break
                if char != ',':
                    raise _NotJSON(f"expected ',' or ']' after item {index} at character {self.dropped + self.pos}"
                                   if char else f'the file ends after item {index} without closing the list')
                self.pos += 1
                index += 1
        self.pos += 1
        if self._peek():
            raise _NotJSON(f'extra data after the list at character {self.dropped + self.pos}')


def load_freihand_json(path: str, name: str, length: Optional[int] = None, hint: str = '') -> np.ndarray:
    """Reads and validates one FreiHAND annotation list, one item at a time (see :class:`_JSONListReader`).

    Args:
        path (str): The JSON file.
        name (str): Which annotation it is: one of ``ANNOTATIONS`` ('K', 'xyz', 'verts', 'mano', 'scale').
        length (int, optional): The number of items required (the number of unique ids). Defaults to None (any).
        hint (str): Appended to the error messages, e.g. where ``length`` comes from.

    Returns:
        np.ndarray: float32, read-only, shape ``(length, *item shape)``; MANO parameters as ``(length, 61)``, scales
        as ``(length,)``.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: it is not JSON, not a list, has the wrong length, an item of the wrong shape or a non-finite
            value; the message names the file, the item and what was expected.
    """
    if name not in ANNOTATIONS:
        raise KeyError(f'FreiHAND annotation name "{name}" is not one of {list(ANNOTATIONS)}')
    item_shape, what, _ = ANNOTATIONS[name]
    expected = f'a list of {"" if length is None else f"{length} "}{what}{hint}'
    if not osp.isfile(path):
        raise FileNotFoundError(f'FreiHAND annotation "{path}" is missing (expected {expected})')
    # filled as items are read: preallocated when the length is known, so the array is never held twice
    array = np.empty((length, ) + item_shape, np.float32) if length is not None else None
    items: List[np.ndarray] = []
    count = 0
    try:
        with open(path, encoding='utf-8') as f:
            for item in _JSONListReader(f):
                count += 1
                if length is not None and count > length:
                    continue  # only counted, for the message
                value = _as_number_array(item)
                if value is None or not _item_shape_ok(name, value.shape):
                    raise ValueError(f'FreiHAND annotation "{path}": item {count - 1} is {_describe_item(item)}, '
                                     f'expected {expected}')
                value = value.astype(np.float32).reshape(item_shape)
                if not np.isfinite(value).all():
                    raise ValueError(f'FreiHAND annotation "{path}": item {count - 1} holds a non-finite value '
                                     f'(NaN or Infinity), expected {expected}')
                if array is None:
                    items.append(value)
                else:
                    array[count - 1] = value
    except (_NotJSON, UnicodeDecodeError) as err:
        raise ValueError(f'FreiHAND annotation "{path}" is not valid JSON ({err}); expected {expected}') from None
    except _NotAList:
        try:  # not a list: read it whole to say what it is
            with open(path, encoding='utf-8') as f:
                kind = _JSON_TYPE_NAMES.get(type(json.load(f)), 'null')
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f'FreiHAND annotation "{path}" is not valid JSON ({err}); expected {expected}') from None
        raise ValueError(f'FreiHAND annotation "{path}" holds {kind}, expected {expected}') from None
    if not count or (length is not None and count != length):
        raise ValueError(f'FreiHAND annotation "{path}" holds a list of {count} items, expected {expected}')
    array = np.stack(items) if array is None else array
    array.setflags(write=False)
    return array


@DATASETS.register_module()
class FreiHANDDataset(BaseDataset):
    """FreiHAND's training or evaluation split, one sample per image.

    A sample's data info (what the pipeline receives) holds ``img_path``, ``sample_idx`` (the running index in this
    dataset, after ``indices``), ``id`` (the unique sample id, the index into the JSON lists), ``version`` (k), ``K``
    (3, 3) and ``scale`` (a float); annotated splits add ``joints_3d`` (21, 3), ``vertices`` (778, 3) and ``mano``
    (61,), all float32 numpy arrays in metres in the camera frame. Samples run version-major (all ids of the first
    chosen version, then the next), so with all four versions ``sample_idx`` is the image's file index.

    Args:
        data_root (str): The folder holding ``training/``, ``evaluation/`` and the JSON files.
        split (str): 'training' or 'evaluation'. Defaults to 'training'.
        versions (Sequence[int], optional): Which of the 4 training versions to use (0 green screen, 1 homogenized,
            2 sample, 3 auto). Defaults to None: all four for training, (0,) for evaluation (its only one).
        with_annotations (bool, optional): True: require ``<split>_{xyz,verts,mano}.json``; False: read only
            ``<split>_{K,scale}.json``; None: require them for training, and read the evaluation ones when any of
            them exists (so a partial set is an error naming the missing file). Defaults to None.
        indices (int | Sequence[int], optional): Keep only these samples (an int n keeps the first n), for tests
            and quick runs. Defaults to None.
        metainfo, serialize_data, pipeline, test_mode, lazy_init, max_refetch: as :class:`BaseDataset`.

    Example:
        >>> import tempfile
        >>> from mmfastvit.datasets.synthetic.freihand import make_tiny_freihand
        >>> root = tempfile.mkdtemp()
        >>> _ = make_tiny_freihand(root, num_train=8)
        >>> dataset = FreiHANDDataset(root, versions=(0, 3))
        >>> len(dataset), dataset[9]['img_path'][-25:], dataset[9]['id'], dataset[9]['vertices'].shape
        (16, 'training/rgb/00000025.jpg', 1, (778, 3))
    """

    METAINFO: dict = dict(dataset_name='FreiHAND', num_joints=NUM_JOINTS, num_vertices=NUM_VERTICES,
                          version_names=VERSION_NAMES)

    def __init__(self,
                 data_root: str,
                 split: str = 'training',
                 versions: Optional[Sequence[int]] = None,
                 with_annotations: Optional[bool] = None,
                 indices: Optional[Union[int, Sequence[int]]] = None,
                 metainfo: Optional[dict] = None,
                 serialize_data: bool = True,
                 pipeline: Sequence[Union[dict, Callable]] = (),
                 test_mode: bool = False,
                 lazy_init: bool = False,
                 max_refetch: int = 1000) -> None:
        if split not in SPLITS:
            raise ValueError(f'FreiHAND split "{split}" is not one of {list(SPLITS)}')
        if not isinstance(data_root, str) or not osp.isdir(data_root):
            raise FileNotFoundError(f'FreiHAND data_root "{data_root}" is not a folder (expected one holding '
                                    f'training/, evaluation/ and the training_*.json / evaluation_*.json files)')
        self.split = split
        self.versions = self._check_versions(split, versions)
        if with_annotations not in (None, True, False):
            raise TypeError(f'with_annotations must be None, True or False, got {with_annotations!r}')
        self.with_annotations = with_annotations
        self.num_ids = 0
        self.annotated = False
        self._per_id: Dict[str, np.ndarray] = {}
        super().__init__(
            data_root=data_root,
            metainfo=metainfo,
            indices=indices,
            serialize_data=serialize_data,
            pipeline=list(pipeline),
            test_mode=test_mode,
            lazy_init=lazy_init,
            max_refetch=max_refetch)

    @staticmethod
    def _check_versions(split: str, versions: Optional[Sequence[int]]) -> Tuple[int, ...]:
        if versions is None:
            return (0, 1, 2, 3) if split == 'training' else (0, )
        versions = tuple(versions)
        valid = tuple(range(len(VERSION_NAMES))) if split == 'training' else (0, )
        if (not versions or len(set(versions)) != len(versions)
                or not all(isinstance(k, int) and not isinstance(k, bool) and k in valid for k in versions)):
            raise ValueError(f'FreiHAND {split} versions {versions!r} must be distinct values of {list(valid)} '
                             f'({", ".join(f"{k}: {VERSION_NAMES[k]}" for k in valid)})')
        return versions

    def json_path(self, name: str) -> str:
        """The path of ``<split>_<name>.json``."""
        return osp.join(self.data_root, f'{self.split}_{name}.json')

    def image_path(self, sample_id: int, version: int = 0) -> str:
        """The image of unique id ``sample_id`` in version ``version``: ``<split>/rgb/%08d.jpg`` of id + N * k."""
        return osp.join(self.data_root, self.split, 'rgb', '%08d.jpg' % (sample_id + self.num_ids * version))

    def _read_annotations(self) -> bool:
        if self.with_annotations is not None:
            return self.with_annotations
        if self.split == 'training':
            return True
        return any(osp.isfile(self.json_path(name)) for name in HAND_ANNOTATIONS)

    def load_data_list(self) -> List[dict]:
        k_path = self.json_path('K')
        per_id = {'K': load_freihand_json(k_path, 'K', hint=', one per unique sample id')}
        self.num_ids = len(per_id['K'])
        self.annotated = self._read_annotations()
        names = CAMERA_ANNOTATIONS[1:] + (HAND_ANNOTATIONS if self.annotated else ())
        for name in names:
            hint = f', one per unique sample id as in {osp.basename(k_path)}'
            per_id[name] = load_freihand_json(self.json_path(name), name, self.num_ids, hint)
        self._per_id = {ANNOTATIONS[name][2]: array for name, array in per_id.items()}

        for version in self.versions:
            for sample_id in (0, self.num_ids - 1):
                path = self.image_path(sample_id, version)
                if not osp.isfile(path):
                    raise FileNotFoundError(
                        f'FreiHAND image "{path}" is missing (id {sample_id}, version {version} '
                        f'"{VERSION_NAMES[version]}"; the {self.split} split names its images by id + '
                        f'{self.num_ids} * version, {self.num_ids} ids per version)')
        return [
            dict(img_path=self.image_path(sample_id, version), id=sample_id, version=version)
            for version in self.versions for sample_id in range(self.num_ids)
        ]

    def get_data_info(self, idx: int) -> dict:
        """The data info of sample ``idx``, with copies of its id's annotations (the pipeline may edit them)."""
        info = super().get_data_info(idx)
        for key, array in self._per_id.items():
            value = array[info['id']]
            info[key] = float(value) if key == 'scale' else value.copy()
        return info

    def _copy_without_annotation(self, memo: Optional[dict] = None) -> 'FreiHANDDataset':
        # ``get_subset`` copies the dataset: the read-only per-id arrays are shared rather than deep-copied.
        memo = {} if memo is None else memo
        memo[id(self._per_id)] = self._per_id
        return super()._copy_without_annotation(memo)
