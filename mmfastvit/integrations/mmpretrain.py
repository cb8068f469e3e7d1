"""Registers mmfastvit's models into mmpretrain's ``MODELS`` registry and its model index into mmpretrain's
``ModelHub`` (imports mmpretrain), so that ``mmpretrain.get_model('fastvit-sa12_in1k')`` and
``ImageClassificationInferencer('fastvit-sa12_in1k')`` resolve mmfastvit's names (docs/model_zoo.md); also the
robustness datasets and metrics into mmpretrain's ``DATASETS`` / ``METRICS`` (docs/robustness.md)."""
import warnings

from mmpretrain.registry import METRICS, MODELS

from ..apis.model_index import register_with_mmpretrain
from ..datasets import robustness  # noqa: F401  (registers ImageNetC / -A / -R / -Sketch in mmpretrain's DATASETS)
from ..evaluation.robustness import CorruptionError, SubsetAccuracy
from . import register_into

register_into(MODELS)
# ImageNet-C mCE and ImageNet-A / -R top-1 (docs/robustness.md)
register_into(METRICS, (SubsetAccuracy, CorruptionError))
try:
    register_with_mmpretrain()
except FileNotFoundError as error:  # a copy of the package without its model index: the registry part still works
    warnings.warn(f'{error}; mmfastvit\'s model names are not available to mmpretrain.get_model')
