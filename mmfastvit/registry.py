"""mmfastvit's own registry scope.

``MODELS`` is a child of mmengine's root registry, so ``type='mmfastvit.FastViT'`` resolves from any OpenMMLab scope
(mmdet, mmseg, mmpretrain): mmengine imports this module by the scope name and then the ``locations`` below.
Registration into mmdet's / mmseg's / mmpretrain's own registries lives in :mod:`mmfastvit.integrations`.
"""
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='mmfastvit', locations=['mmfastvit.models'])
# The hand-mesh task (mmfastvit/hand/) registers its dataset, transforms, metric and model here. Its configs import it
# through custom_imports, so that the core never imports smplx / scipy. mmfastvit.LoadImageFromFile (mmcv only) is
# found by location.
DATASETS = Registry('dataset', parent=MMENGINE_DATASETS, scope='mmfastvit')
TRANSFORMS = Registry('transform', parent=MMENGINE_TRANSFORMS, scope='mmfastvit',
                      locations=['mmfastvit.datasets.transforms'])
METRICS = Registry('metric', parent=MMENGINE_METRICS, scope='mmfastvit')
# mmfastvit.HandMeshVisualizationHook (mmfastvit/hand/visualization.py) for tools/test.py --show-dir.
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='mmfastvit')
