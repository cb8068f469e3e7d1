"""Registration of mmfastvit's models into the OpenMMLab task packages' own registries.

Each submodule imports one task package and is imported only on request, so ``import mmfastvit`` (and the backbone,
the fusion code and the latency tool) never imports mmdet, mmseg or mmpretrain. A config opts in with::

    custom_imports = dict(imports=['mmfastvit.integrations.mmdet'], allow_failed_imports=False)

after which ``type='FastViT'`` and ``type='FMViT'`` resolve in that package's scope. Without any import,
``type='mmfastvit.FastViT'`` / ``type='mmfastvit.FMViT'`` resolve from every scope through mmfastvit's own registry.
"""
from typing import Iterable

from mmengine.registry import Registry

from ..models.backbones import ReparamBackbone
from ..registry import MODELS

# every backbone registered in mmfastvit's own scope (FastViT, FMViT), in registration order
EXPORTED_MODELS = tuple(cls for cls in MODELS.module_dict.values()
                        if isinstance(cls, type) and issubclass(cls, ReparamBackbone))


def register_into(registry: Registry, modules: Iterable[type] = EXPORTED_MODELS) -> None:
    """Registers ``modules`` under their class names in ``registry``; a second call is a no-op.

    Raises:
        KeyError: if the registry already holds a *different* class under one of the names.
    """
    for module in modules:
        existing = registry.get(module.__name__) if module.__name__ in registry.module_dict else None
        if existing is module:
            continue
        if existing is not None:
            raise KeyError(f'{registry.scope}.{registry.name} already has a different "{module.__name__}" '
                           f'({existing.__module__}); mmfastvit will not replace it')
        registry.register_module(module=module)
