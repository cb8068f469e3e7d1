"""ImageNet-C, -A, -R and -Sketch as mmpretrain datasets, in their released folder layouts (imports mmpretrain).

- ``ImageNetC``: ``<corruption>/<severity>/<wnid>/<image>``, or grouped as ``<group>/<corruption>/<severity>/...``
  (groups ``noise``, ``blur``, ``weather``, ``digital``, ``extra``). All 1000 classes, one (corruption, severity)
  pair after another, recorded in the metainfo's ``corruption_groups``.
- ``ImageNetA`` and ``ImageNetR``: ``<wnid>/<image>``, 200 of the 1000 classes.
- ``ImageNetSketch``: ``sketch/<wnid>/<image>`` (or the class folders directly), the 1000 classes.

Labels are ImageNet-1k indices, as mmpretrain's ``ImageNet`` gives them: the position of the class's wnid among the
1000 ImageNet wnids in sorted order. So a 1000-class classifier is scored unchanged, and ImageNet-A / -R record the
indices of their 200 classes as ``label_subset`` in the metainfo for
:class:`mmfastvit.evaluation.robustness.SubsetAccuracy`. mmpretrain itself ships the class names
(``IMAGENET_CATEGORIES``), not the wnids. The sorted wnid list comes from, in this order:

1. ``wnids_file``: a text file whose lines start with a wnid (``meta/wnids.txt``, or ImageNet's own
   ``LOC_synset_mapping.txt``, ``n01440764 tench, Tinca tinca``), or an ImageNet ``train/`` / ``val/`` folder whose
   1000 class folders are the wnids;
2. the dataset's own class folders when there are 1000 of them (ImageNet-C and ImageNet-Sketch);
3. timm's copy of the list (``timm/data/_info/imagenet_synsets.txt``), when timm is installed. It is read as a file,
   without importing timm.

Otherwise ImageNet-A and -R are refused with a message that says how to supply the list.
"""
import importlib.util
import os
import os.path as osp
import re
from typing import Dict, List, Optional, Sequence, Tuple

from mmengine.logging import MMLogger
from mmpretrain.datasets.categories import IMAGENET_CATEGORIES
from mmpretrain.datasets.custom import CustomDataset, get_samples
from mmpretrain.registry import DATASETS

from ..evaluation.robustness import CORRUPTION_GROUPS, CORRUPTIONS, EXTRA_CORRUPTIONS, SEVERITIES

NUM_IMAGENET_CLASSES = 1000
WNID = re.compile(r'^n\d{8}$')
IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif')
# ImageNet-C group folders some mirrors put the corruptions in.
GROUP_OF = {c: group for group, members in CORRUPTION_GROUPS.items() for c in members}
GROUP_OF.update({c: 'extra' for c in EXTRA_CORRUPTIONS})
_TIMM_WNIDS = ('data', '_info', 'imagenet_synsets.txt')
_HOW_TO_GIVE_WNIDS = ('give the sorted list of the 1000 ImageNet wnids as wnids_file: a text file with one wnid at '
                      'the start of each line (e.g. meta/wnids.txt, or ImageNet\'s LOC_synset_mapping.txt) or an '
                      'ImageNet train/ or val/ folder of the 1000 class folders (tools/analysis_tools/robustness.py '
                      '--wnids PATH); or install timm, which ships the list')


def _class_folders(root: str) -> List[str]:
    """Sorted names of the sub-folders of ``root`` (files such as README.txt are skipped)."""
    return sorted(name for name in os.listdir(root) if osp.isdir(osp.join(root, name)))


def read_wnids(source: str) -> List[str]:
    """The 1000 ImageNet wnids, sorted, from a file (first token of each non-empty line) or a folder of class folders.

    Raises:
        FileNotFoundError: ``source`` does not exist.
        ValueError: it does not hold exactly 1000 distinct wnids (``n`` and eight digits).
    """
    if osp.isdir(source):
        wnids = _class_folders(source)
    elif osp.isfile(source):
        with open(source, encoding='utf-8') as f:
            wnids = [line.split()[0] for line in f if line.strip()]
    else:
        raise FileNotFoundError(f'wnids_file "{source}" does not exist; expected a text file with one wnid per line '
                                f'or an ImageNet folder of class folders')
    bad = [w for w in wnids if not WNID.match(w)]
    if bad:
        raise ValueError(f'wnids_file "{source}": {bad[:3]} are not wnids (n + 8 digits, e.g. n01440764)')
    if len(set(wnids)) != NUM_IMAGENET_CLASSES or len(wnids) != NUM_IMAGENET_CLASSES:
        raise ValueError(f'wnids_file "{source}" has {len(wnids)} wnids ({len(set(wnids))} distinct); expected the '
                         f'{NUM_IMAGENET_CLASSES} ImageNet-1k classes')
    return sorted(wnids)


def packaged_wnids_file() -> Optional[str]:
    """timm's file of the 1000 sorted ImageNet wnids, if timm is installed (found without importing it)."""
    spec = importlib.util.find_spec('timm')
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = osp.join(location, *_TIMM_WNIDS)
        if osp.isfile(path):
            return path
    return None


def resolve_wnids(wnids_file: Optional[str], folders: Sequence[str], what: str) -> Tuple[List[str], str]:
    """The sorted 1000 ImageNet wnids and where they came from (see the module docstring for the order).

    Raises:
        ValueError: no source holds them.
    """
    if wnids_file:
        return read_wnids(wnids_file), f'wnids_file "{wnids_file}"'
    if len(folders) == NUM_IMAGENET_CLASSES and all(WNID.match(f) for f in folders):
        return sorted(folders), f'the {NUM_IMAGENET_CLASSES} class folders of {what}'
    packaged = packaged_wnids_file()
    if packaged:
        return read_wnids(packaged), f'timm\'s "{packaged}"'
    raise ValueError(f'{what} has {len(folders)} class folders, and their ImageNet-1k indices need the full list: '
                     f'{_HOW_TO_GIVE_WNIDS}')


class ImageNetClassFolders(CustomDataset):
    """Base of the robustness sets: class folders named by wnid, labelled with their ImageNet-1k indices.

    Args:
        data_root (str): The dataset's folder.
        data_prefix (str): Folder of the class folders, under ``data_root``. Defaults to ''.
        wnids_file (str, optional): Where the sorted 1000 ImageNet wnids come from (see the module docstring); a
            relative path is taken as it is, not under ``data_root``. Defaults to None.
        **kwargs: mmpretrain ``BaseDataset`` arguments (``pipeline``, ``test_mode``, ...).
    """

    METAINFO = {'classes': IMAGENET_CATEGORIES}
    display_name = 'dataset'
    expected_classes = NUM_IMAGENET_CLASSES

    def __init__(self, data_root: str = '', data_prefix: str = '', wnids_file: Optional[str] = None, **kwargs) -> None:
        self.wnids_file = wnids_file
        kwargs.setdefault('extensions', IMG_EXTENSIONS)
        super().__init__(data_root=data_root, data_prefix=data_prefix, ann_file='', **kwargs)

    def _check_root(self, root: str) -> None:
        if not osp.isdir(root):
            raise FileNotFoundError(f'{self.display_name} folder "{root}" does not exist; expected '
                                    f'{self._layout_help()}')

    def _layout_help(self) -> str:
        return '<wnid>/<image> class folders (docs/robustness.md)'

    def _wnid_index(self, folders: Sequence[str], where: str) -> Dict[str, int]:
        stray = [f for f in folders if not WNID.match(f)]
        if stray:
            raise ValueError(f'{self.display_name} folder "{where}" has folders {stray[:3]} that are not wnids; '
                             f'expected {self._layout_help()}')
        wnids, source = resolve_wnids(self.wnids_file, folders, f'{self.display_name} "{where}"')
        index = {w: i for i, w in enumerate(wnids)}
        unknown = [f for f in folders if f not in index]
        if unknown:
            raise ValueError(f'{self.display_name} classes {unknown[:3]} are not among the ImageNet-1k wnids of '
                             f'{source}')
        if len(folders) != self.expected_classes:
            MMLogger.get_current_instance().warning(
                f'{self.display_name} "{where}" has {len(folders)} classes; the released set has '
                f'{self.expected_classes}')
        return index

    def _samples(self, root: str, index: Dict[str, int], folders: Sequence[str]) -> List[dict]:
        samples, empty = get_samples(root, {f: index[f] for f in folders}, is_valid_file=self.is_valid_file)
        if empty:
            raise ValueError(f'{self.display_name} class folders {sorted(empty)[:3]} under "{root}" hold no images '
                             f'(extensions {list(self.extensions)})')
        return [dict(img_path=osp.join(root, path), gt_label=int(label)) for path, label in samples]

    def check_layout(self):
        """Checks the folders (not the images) and the wnid list; returns what :meth:`load_data_list` reads.

        Cheap: a tool calls it on a dataset built with ``lazy_init=True`` to refuse a bad layout before a run.

        Raises:
            FileNotFoundError, ValueError: naming the folder and the expected layout.
        """
        root = self.img_prefix
        self._check_root(root)
        folders = _class_folders(root)
        if not folders:
            raise ValueError(f'{self.display_name} folder "{root}" has no class folders; expected '
                             f'{self._layout_help()}')
        return root, folders, self._wnid_index(folders, root)

    def load_data_list(self) -> List[dict]:
        root, folders, index = self.check_layout()
        self._metainfo['label_subset'] = tuple(sorted(index[f] for f in folders))
        return self._samples(root, index, folders)


@DATASETS.register_module()
class ImageNetA(ImageNetClassFolders):
    """ImageNet-A (Hendrycks et al., CVPR 2021): 7500 natural adversarial images of 200 ImageNet classes.

    Score it with :class:`~mmfastvit.evaluation.robustness.SubsetAccuracy` (the prediction is read over the 200
    classes of ``metainfo['label_subset']``).

    Example:
        >>> ds = ImageNetA(data_root='data/imagenet-a', wnids_file='data/meta/wnids.txt')  # doctest: +SKIP
        >>> len(ds.metainfo['label_subset'])  # doctest: +SKIP
        200
    """
    display_name = 'ImageNet-A'
    expected_classes = 200


@DATASETS.register_module()
class ImageNetR(ImageNetClassFolders):
    """ImageNet-R (Hendrycks et al., ICCV 2021): 30000 renditions (art, cartoons, sketches, ...) of 200 ImageNet
    classes. Score it with :class:`~mmfastvit.evaluation.robustness.SubsetAccuracy`."""
    display_name = 'ImageNet-R'
    expected_classes = 200


@DATASETS.register_module()
class ImageNetSketch(ImageNetClassFolders):
    """ImageNet-Sketch (Wang et al., NeurIPS 2019): about 50 sketches of each of the 1000 classes.

    ``data_prefix`` defaults to ``'sketch'`` when ``data_root`` has that folder (the released archive's layout), else
    the class folders are taken from ``data_root`` itself. Scored over all 1000 classes (mmpretrain's ``Accuracy``).
    """
    display_name = 'ImageNet-Sketch'

    def __init__(self, data_root: str = '', data_prefix: Optional[str] = None, **kwargs) -> None:
        if data_prefix is None:
            data_prefix = 'sketch' if osp.isdir(osp.join(data_root, 'sketch')) else ''
        super().__init__(data_root=data_root, data_prefix=data_prefix, **kwargs)

    def _layout_help(self) -> str:
        return 'sketch/<wnid>/<image> (or <wnid>/<image>) class folders (docs/robustness.md)'


@DATASETS.register_module()
class ImageNetC(ImageNetClassFolders):
    """ImageNet-C (Hendrycks & Dietterich, ICLR 2019): the 50000 validation images under 15 corruptions (plus 4 extra)
    at 5 severities, 224x224.

    One dataset holds the selected (corruption, severity) pairs one after another; ``metainfo['corruption_groups']``
    lists ``(corruption, severity, start, stop)`` sample-index ranges, from which
    :class:`~mmfastvit.evaluation.robustness.CorruptionError` computes the per-pair errors and mCE.

    Args:
        data_root (str): The ImageNet-C folder.
        corruptions (Sequence[str]): Corruptions to load. Defaults to the 15 of mCE.
        severities (Sequence[int]): Severities to load (1..5). Defaults to all five.
        wnids_file (str, optional): See :class:`ImageNetClassFolders`; not needed when the folders hold all 1000
            classes. Defaults to None.
        **kwargs: mmpretrain ``BaseDataset`` arguments.

    Raises:
        ValueError: unknown corruption names or severities.
        FileNotFoundError: a requested ``<corruption>/<severity>`` folder is missing (all of them are named).
    """
    display_name = 'ImageNet-C'

    def __init__(self, data_root: str = '', corruptions: Sequence[str] = CORRUPTIONS,
                 severities: Sequence[int] = SEVERITIES, wnids_file: Optional[str] = None, **kwargs) -> None:
        known = CORRUPTIONS + EXTRA_CORRUPTIONS
        if isinstance(corruptions, str):
            corruptions = [corruptions]
        unknown = [c for c in corruptions if c not in known]
        if unknown or not corruptions:
            raise ValueError(f'ImageNet-C corruptions {unknown or list(corruptions)} are not among {list(known)}')
        bad = [s for s in severities if s not in SEVERITIES]
        if bad or not severities:
            raise ValueError(f'ImageNet-C severities {bad or list(severities)} are not among {list(SEVERITIES)}')
        self.corruptions = tuple(dict.fromkeys(corruptions))
        self.severities = tuple(sorted(set(int(s) for s in severities)))
        super().__init__(data_root=data_root, data_prefix='', wnids_file=wnids_file, **kwargs)

    def _layout_help(self) -> str:
        return ('<corruption>/<severity>/<wnid>/<image> (or <group>/<corruption>/..., groups '
                f'{list(CORRUPTION_GROUPS) + ["extra"]}) (docs/robustness.md)')

    def corruption_folder(self, root: str, corruption: str) -> Optional[str]:
        """``root/<corruption>``, else ``root/<group>/<corruption>``, else None."""
        for path in (osp.join(root, corruption), osp.join(root, GROUP_OF[corruption], corruption)):
            if osp.isdir(path):
                return path
        return None

    def check_layout(self):
        """Checks that every requested ``<corruption>/<severity>`` folder exists and the wnids resolve; returns
        ``({(corruption, severity): folder}, wnid index)``. See :meth:`ImageNetClassFolders.check_layout`."""
        root = self.img_prefix
        self._check_root(root)
        folders, missing = {}, []
        for corruption in self.corruptions:
            base = self.corruption_folder(root, corruption)
            for severity in self.severities:
                path = None if base is None else osp.join(base, str(severity))
                if path is None or not osp.isdir(path):
                    missing.append(f'{corruption}/{severity}')
                else:
                    folders[(corruption, severity)] = path
        if missing:
            raise FileNotFoundError(
                f'ImageNet-C folder "{root}" lacks {len(missing)} of the '
                f'{len(self.corruptions) * len(self.severities)} requested corruption/severity folders: '
                f'{", ".join(missing[:6])}'
                f'{" ..." if len(missing) > 6 else ""}; expected {self._layout_help()}')
        first = next(iter(folders.values()))
        return folders, self._wnid_index(_class_folders(first), first)

    def load_data_list(self) -> List[dict]:
        folders, index = self.check_layout()
        data_list, groups = [], []
        for (corruption, severity), path in folders.items():
            classes = _class_folders(path)
            stray = [c for c in classes if c not in index]
            if stray:
                raise ValueError(f'ImageNet-C folder "{path}" has class folders {stray[:3]} that are not ImageNet-1k '
                                 f'wnids')
            start = len(data_list)
            data_list.extend(self._samples(path, index, classes))
            groups.append((corruption, severity, start, len(data_list)))
        self._metainfo['corruption_groups'] = tuple(groups)
        self._metainfo['corruptions'] = self.corruptions
        self._metainfo['severities'] = self.severities
        return data_list
