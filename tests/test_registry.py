"""Registration: mmfastvit's own scope, ``type='mmfastvit.FastViT'`` from the task packages' scopes, their own
registries after the opt-in integration import, and a backbone import that pulls in no task package."""
import importlib
import subprocess
import sys

import pytest
from mmengine.registry import DefaultScope

from mmfastvit.integrations import EXPORTED_MODELS
from mmfastvit.models import FastViT, FMViT

TASK_PACKAGES = ['mmpretrain', 'mmdet', 'mmseg']
# every backbone mmfastvit exports, with a small arch to build
BACKBONES = {FastViT: 't8', FMViT: 't'}


def test_every_exported_backbone_is_tested_here():
    assert set(EXPORTED_MODELS) == set(BACKBONES)


def test_build_from_own_registry():
    from mmfastvit.registry import MODELS
    # mmengine builds in the current default scope's registry; other tests (and tools) leave e.g. mmpretrain current,
    # so state the scope a config with default_scope='mmfastvit' would set.
    with DefaultScope.overwrite_default_scope('mmfastvit'):
        model = MODELS.build(dict(type='FastViT', arch='sa12', out_indices=(0, 3)))
    assert isinstance(model, FastViT) and model.out_channels == (64, 512)


@pytest.mark.parametrize('backbone', list(BACKBONES), ids=lambda cls: cls.__name__)
@pytest.mark.parametrize('package', TASK_PACKAGES)
def test_scoped_type_resolves_from_task_scope(package, backbone):
    registry = importlib.import_module(f'{package}.registry').MODELS
    model = registry.build(dict(type=f'mmfastvit.{backbone.__name__}', arch=BACKBONES[backbone], out_indices=(1,)))
    assert isinstance(model, backbone) and model.out_indices == (1,)


@pytest.mark.parametrize('backbone', list(BACKBONES), ids=lambda cls: cls.__name__)
@pytest.mark.parametrize('package', TASK_PACKAGES)
def test_plain_type_after_integration_import(package, backbone):
    importlib.import_module(f'mmfastvit.integrations.{package}')
    importlib.import_module(f'mmfastvit.integrations.{package}')  # a second import / registration is harmless
    registry = importlib.import_module(f'{package}.registry').MODELS
    assert registry.get(backbone.__name__) is backbone
    with DefaultScope.overwrite_default_scope(package):
        model = registry.build(dict(type=backbone.__name__, arch=BACKBONES[backbone]))
    assert isinstance(model, backbone)


def test_register_into_refuses_a_different_class_under_our_name():
    from mmengine.registry import Registry

    from mmfastvit.integrations import register_into
    registry = Registry('model', scope='test_conflict')

    @registry.register_module(name='FastViT')
    class Impostor:
        pass

    with pytest.raises(KeyError, match='already has a different "FastViT"'):
        register_into(registry)


CORE_CHECK = """
import importlib.abc, sys
FORBIDDEN = ('mmdet', 'mmseg', 'mmpretrain', 'mmcv', 'timm')

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in FORBIDDEN:
            raise ImportError(f'core code imported {name}')
        return None

sys.meta_path.insert(0, Block())
import torch
from mmfastvit.analysis import flop_analyzer
from mmfastvit.convert import timm_to_mmfastvit
from mmfastvit.models import FastViT, FastViTClassifier, reparameterize_model
from mmfastvit.registry import MODELS
from mmfastvit.models.utils.fusion_checks import randomize_fusable_state_
model = randomize_fusable_state_(FastViTClassifier('sa12')).eval()
x = torch.rand(1, 3, 64, 64)
with torch.no_grad():
    before = model(x)
    reparameterize_model(model, 'reference')
    model.switch_to_deploy()
    assert (model(x) - before).abs().max() < 1e-4
flop_analyzer(model, (x,)).total()
MODELS.build(dict(type='FastViT', arch='t8'))
print('core ok')
"""


def test_core_runs_with_task_packages_unimportable():
    """Backbone, fusion, FLOP counting, registry and converter never import mmdet / mmseg / mmpretrain / mmcv / timm,
    at import or at run time (an import of them raises in this subprocess)."""
    result = subprocess.run([sys.executable, '-c', CORE_CHECK], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'core ok' in result.stdout


@pytest.mark.parametrize('package', TASK_PACKAGES)
def test_scoped_type_resolves_in_a_fresh_process_without_any_mmfastvit_import(package):
    """mmengine finds mmfastvit's registry by the scope name alone, as a config with no custom_imports relies on."""
    code = (f'import sys; from {package}.registry import MODELS; '
            'assert not any(m.startswith("mmfastvit") for m in sys.modules); '
            'm = MODELS.build(dict(type="mmfastvit.FastViT", arch="sa12", out_indices=(0, 3))); '
            'print(type(m).__module__, m.out_channels)')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'mmfastvit.models.backbones.fastvit (64, 512)' in result.stdout
