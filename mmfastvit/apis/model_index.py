"""mmfastvit's models by name, from metafiles in OpenMMLab's model-index format.

The index is ``model-index.yml`` at the repository root; it imports ``configs/metafiles/*.yml``, each in the format
of the upstream repositories' ``configs/<model>/metafile.yml`` (``Collections`` and ``Models`` with ``Name``,
``In Collection``, ``Config``, ``Metadata``, ``Results``, ``Weights``), so mmpretrain's ``ModelHub`` reads it as it
reads its own. An installed (non-editable) package carries a copy of the index and the configs in
``mmfastvit/.mim/``, where OpenMMLab's packages keep theirs.

Names (docs/model_zoo.md lists them all):

=================================================  ==============================================================
``fastvit-<v>_in1k``                                ImageNet-1k classifier at 256x256, ``configs/fastvit_<v>_in1k.py``
``fastvit-<v>_in1k-distill``                        the same, trained with DeiT hard distillation (``_distill.py``)
``fastvit-<v>_in1k-384px``                          fine-tuned at 384x384 (``_384.py``); no released weights
``fmvit-<v>_in1k``                                  FMViT ImageNet-1k classifier at 224x224; no released weights
``mask-rcnn_<backbone>-<v>_fpn_1x_coco``            Mask R-CNN 1x on COCO (mmdet's naming); no released weights
``fpn_<backbone>-<v>_8xb4-40k_ade20k-512x512``      Semantic FPN 40k on ADE20K (mmseg's naming); no released weights
=================================================  ==============================================================

``Weights`` is Apple's published file for the classifiers Apple released; an entry without released weights has no
``Weights`` key. Importing this module imports neither mmpretrain, mmdet nor mmseg: :func:`get_model` imports the
task package that builds the model, and :func:`register_with_mmpretrain` (called by
``import mmfastvit.integrations.mmpretrain``) adds the index to mmpretrain's ``ModelHub``.
"""
import difflib
import fnmatch
import functools
import os
import os.path as osp
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Union

import yaml

INDEX_FILE = 'model-index.yml'
TASKS = ('classification', 'detection', 'segmentation')
# A metafile's ``Results[].Task`` -> the task package that builds the model.
TASK_OF_RESULT = {
    'Image Classification': 'classification',
    'Object Detection': 'detection',
    'Instance Segmentation': 'detection',
    'Semantic Segmentation': 'segmentation',
}
_REQUIRED_KEYS = ('Name', 'In Collection', 'Config', 'Metadata', 'Results')


@dataclass(frozen=True)
class ModelInfo:
    """One entry of the model index.

    Attributes:
        name (str): The model's name, lower case.
        task (str): One of :data:`TASKS`: the package that builds it (mmpretrain, mmdet, mmseg).
        config (str): Absolute path of its config.
        weights (str, optional): Its released weights (a URL), or None when none were released.
        collection (str): The ``In Collection`` name.
        metadata (dict): ``Metadata`` (``Parameters``, ``FLOPs``, ``Training Data``, ...).
        results (tuple): ``Results``: dicts with ``Task``, ``Dataset`` and ``Metrics`` (the published figures; empty
            where none were published).
        metafile (str): The metafile that holds the entry.
    """
    name: str
    task: str
    config: str
    weights: Optional[str]
    collection: str
    metadata: dict = field(hash=False)
    results: Tuple[dict, ...] = field(hash=False)
    metafile: str = ''

    @property
    def metrics(self) -> dict:
        """All published metrics of the entry in one dict (e.g. ``{'box AP': 38.9, 'mask AP': 35.9}``)."""
        merged = {}
        for result in self.results:
            merged.update(result.get('Metrics') or {})
        return merged


def model_index_path() -> str:
    """The ``model-index.yml`` in use: ``mmfastvit/.mim/`` of an installed package, else the repository root.

    Raises:
        FileNotFoundError: neither exists.
    """
    package_dir = osp.dirname(osp.dirname(osp.abspath(__file__)))
    candidates = (osp.join(package_dir, '.mim', INDEX_FILE), osp.join(osp.dirname(package_dir), INDEX_FILE))
    for path in candidates:
        if osp.isfile(path):
            return path
    raise FileNotFoundError(f'mmfastvit\'s model index is at neither of {list(candidates)}; install mmfastvit from '
                            f'its repository (pip install -e .), which holds {INDEX_FILE} and configs/')


def _read_yaml(path: str) -> dict:
    if not osp.isfile(path):
        raise FileNotFoundError(f'model index file "{path}" does not exist')
    with open(path, encoding='utf-8') as f:
        data = yaml.safe_load(f)
    if not isinstance(data, dict):
        raise ValueError(f'model index file "{path}" holds {type(data).__name__}, expected a mapping with '
                         f'"Import", "Collections" or "Models"')
    return data


def _parse_entry(entry: dict, collections: Dict[str, dict], metafile: str, root: str) -> ModelInfo:
    where = f'{metafile}: model "{entry.get("Name", "?")}"' if isinstance(entry, dict) else metafile
    if not isinstance(entry, dict):
        raise ValueError(f'{where}: a model entry is {type(entry).__name__}, expected a mapping')
    missing = [key for key in _REQUIRED_KEYS if key not in entry]
    if missing:
        raise ValueError(f'{where} lacks {missing} (each entry needs {list(_REQUIRED_KEYS)})')
    if entry['In Collection'] not in collections:
        raise ValueError(f'{where}: "In Collection: {entry["In Collection"]}" is not among the file\'s collections '
                         f'{sorted(collections)}')
    results = entry['Results']
    results = tuple(results) if isinstance(results, list) else (results, )
    if not results:
        raise ValueError(f'{where}: "Results" is empty; it needs at least the Task and Dataset')
    tasks = set()
    for result in results:
        if not isinstance(result, dict) or result.get('Task') not in TASK_OF_RESULT:
            raise ValueError(f'{where}: each result needs a Task among {sorted(TASK_OF_RESULT)}, got {result!r}')
        tasks.add(TASK_OF_RESULT[result['Task']])
    if len(tasks) != 1:
        raise ValueError(f'{where}: its results name tasks built by different packages: {sorted(tasks)}')
    metadata = dict(collections[entry['In Collection']].get('Metadata') or {})
    metadata.update(entry['Metadata'] or {})
    return ModelInfo(
        name=str(entry['Name']).lower(),
        task=tasks.pop(),
        config=osp.normpath(osp.join(root, entry['Config'])),
        weights=entry.get('Weights'),
        collection=entry['In Collection'],
        metadata=metadata,
        results=results,
        metafile=metafile)


@functools.lru_cache(maxsize=None)
def _load_index(path: str) -> Dict[str, ModelInfo]:
    """``{name: ModelInfo}`` of the index at ``path`` and the metafiles it imports (config paths are relative to the
    index's folder, as in the upstream repositories)."""
    root = osp.dirname(osp.abspath(path))
    index = _read_yaml(path)
    metafiles = [path] + [osp.join(root, rel) for rel in index.get('Import') or []]
    models: Dict[str, ModelInfo] = {}
    for metafile in metafiles:
        data = index if metafile == path else _read_yaml(metafile)
        collections = {c['Name']: c for c in data.get('Collections') or []}
        for entry in data.get('Models') or []:
            info = _parse_entry(entry, collections, metafile, root)
            if info.name in models:
                raise ValueError(f'model name "{info.name}" is in both {models[info.name].metafile} and {metafile}')
            models[info.name] = info
    return models


def model_infos() -> Dict[str, ModelInfo]:
    """Every model of the index (``model-index.yml`` and its metafiles) by name, in the metafiles' order."""
    return _load_index(model_index_path())


def list_models(pattern: Optional[str] = None, task: Optional[str] = None) -> List[str]:
    """The names of mmfastvit's models, sorted.

    Args:
        pattern (str, optional): A wildcard pattern matched, case-insensitively, against the start of each name (as
            ``mmpretrain.list_models`` does): ``'fastvit-sa12'``, ``'*_in1k-distill'``, ``'mask-rcnn*'``.
        task (str, optional): Keep only the models of one of :data:`TASKS`.

    Returns:
        list[str]: The names, e.g. ``['fastvit-sa12_in1k', 'fastvit-sa12_in1k-384px', 'fastvit-sa12_in1k-distill']``.

    Raises:
        ValueError: ``task`` is not one of :data:`TASKS`.
    """
    if task is not None and task not in TASKS:
        raise ValueError(f'task "{task}" is not one of {list(TASKS)}')
    names = []
    for name, info in model_infos().items():
        if task is not None and info.task != task:
            continue
        if pattern is not None and not fnmatch.fnmatchcase(name, pattern.lower() + '*'):
            continue
        names.append(name)
    return sorted(names)


def get_model_info(name: str) -> ModelInfo:
    """The index entry of the model called ``name`` (case-insensitive).

    Raises:
        ValueError: no model has that name; the message lists the closest names.
    """
    models = model_infos()
    info = models.get(str(name).lower())
    if info is not None:
        return info
    lowered = str(name).lower()
    close = difflib.get_close_matches(lowered, list(models), n=5, cutoff=0.6)
    close += [n for n in sorted(models) if lowered in n and n not in close][:5]
    hint = f'close matches: {close}' if close else 'no name is close'
    raise ValueError(f'model "{name}" is not in mmfastvit\'s model index; {hint}. mmfastvit.list_models() lists all '
                     f'{len(models)} names (docs/model_zoo.md explains them)')


def _checkpoint_of(info: ModelInfo, pretrained: Union[bool, str, os.PathLike, None]) -> Optional[str]:
    if pretrained is None or pretrained is False:
        return None
    if pretrained is True:
        if info.weights is None:
            raise ValueError(f'model "{info.name}" has no released weights: train it with {info.config} and pass '
                             f'pretrained=<your checkpoint>, or use pretrained=False for random weights')
        return info.weights
    if isinstance(pretrained, (str, os.PathLike)):
        return os.fspath(pretrained)
    raise TypeError(f'pretrained must be True, False or a checkpoint path / URL, got {type(pretrained).__name__}')


def _build_classifier(cfg, checkpoint: Optional[str], device: str):
    from mmpretrain.apis import get_model as mmpretrain_get_model

    from ..integrations import mmpretrain as _registered  # noqa: F401 (FastViT in mmpretrain's scope)
    return mmpretrain_get_model(cfg, pretrained=checkpoint or False, device=device)


def _build_detector(cfg, checkpoint: Optional[str], device: str):
    from mmdet.apis import init_detector
    return init_detector(cfg, checkpoint, device=device)


def _build_segmentor(cfg, checkpoint: Optional[str], device: str):
    from mmseg.apis import init_model
    return init_model(cfg, checkpoint, device=device)


_BUILDERS = {'classification': _build_classifier, 'detection': _build_detector, 'segmentation': _build_segmentor}


def get_model(name: str, pretrained: Union[bool, str, os.PathLike] = False, device: Optional[str] = None, **kwargs):
    """Builds the model called ``name`` from its config through its task package, in eval mode.

    Classifiers are built by ``mmpretrain.get_model``, detectors by ``mmdet.apis.init_detector``, segmentors by
    ``mmseg.apis.init_model``; each result works with that package's Inferencer and inference functions. The
    backbone's ``init_cfg`` is not applied (as in those functions): the weights are random unless ``pretrained``
    names some.

    Args:
        name (str): A name from :func:`list_models`, e.g. ``'fastvit-sa12_in1k'``.
        pretrained (bool | str): True: load the entry's released ``Weights`` (Apple's file, downloaded once and
            converted on the fly); a string: load that checkpoint (path or URL); False: random weights.
            Defaults to False.
        device (str, optional): Where to put the model. Defaults to ``'cuda:0'`` when CUDA is available, else
            ``'cpu'``.
        **kwargs: Overrides of the config's ``model`` (e.g. ``head=dict(num_classes=10)``).

    Returns:
        torch.nn.Module: The model, with its config as ``model.cfg`` (mmdet, mmseg) or ``model._config``
        (mmpretrain).

    Raises:
        ValueError: unknown ``name`` (with the closest names), or ``pretrained=True`` for a model with no released
            weights.

    Example:
        >>> import mmfastvit
        >>> model = mmfastvit.get_model('fastvit-t8_in1k')             # random weights
        >>> model = mmfastvit.get_model('fastvit-t8_in1k', pretrained=True)   # Apple's weights
    """
    info = get_model_info(name)
    checkpoint = _checkpoint_of(info, pretrained)
    from mmengine.config import Config
    cfg = Config.fromfile(info.config)
    if kwargs:
        cfg.merge_from_dict({'model': kwargs})
    if device is None:
        import torch
        device = 'cuda:0' if torch.cuda.is_available() else 'cpu'
    from .. import models  # noqa: F401 (registers the loader of Apple's URLs: mmfastvit.models.pretrained)
    return _BUILDERS[info.task](cfg, checkpoint, device)


def register_with_mmpretrain() -> None:
    """Adds the index to ``mmpretrain.apis.ModelHub``, so that ``mmpretrain.get_model``, ``mmpretrain.list_models``
    and ``ImageClassificationInferencer`` resolve mmfastvit's names. A second call is a no-op.

    ``ModelHub`` reads mmpretrain's own index lazily, on its first lookup, into the same table: entries added here
    before that stay.

    Raises:
        RuntimeError: ``ModelHub`` already holds some of mmfastvit's names but not all (another index claims them).
    """
    from mmpretrain.apis import ModelHub

    path = model_index_path()
    names = list(_load_index(path))
    present = [name for name in names if ModelHub.has(name)]
    if len(present) == len(names):
        return
    if present:
        raise RuntimeError(f'mmpretrain\'s ModelHub already has {present[:5]} but not the rest of mmfastvit\'s names: '
                           f'another model index registered these names; mmfastvit\'s ({path}) was not added')
    # With our own ``Config`` paths relative to the index's folder, as mmpretrain's own index is registered.
    ModelHub.register_model_index(path, config_prefix=osp.dirname(path))
