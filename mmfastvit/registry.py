"""mmfastvit's own registry scope.

``MODELS`` is a child of mmengine's root registry, so ``type='mmfastvit.FastViT'`` resolves from any OpenMMLab scope
(mmdet, mmseg, mmpretrain): mmengine imports this module by the scope name and then the ``locations`` below.
Registration into mmdet's / mmseg's / mmpretrain's own registries lives in :mod:`mmfastvit.integrations`.
"""
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='mmfastvit', locations=['mmfastvit.models'])
