"""Registration: mmfastvit's own scope, ``type='mmfastvit.FastViT'`` from the task packages' scopes, their own
registries after the opt-in integration import, and a backbone import that pulls in no task package."""
import importlib
import subprocess
import sys

import pytest
from mmengine.registry import DefaultScope

from mmfastvit.models import FastViT

TASK_PACKAGES = ['mmpretrain', 'mmdet', 'mmseg']


def test_build_from_own_registry():
    from mmfastvit.registry import MODELS
    model = MODELS.build(dict(type='FastViT', arch='sa12', out_indices=(0, 3)))
    assert isinstance(model, FastViT) and model.out_channels == (64, 512)


@pytest.mark.parametrize('package', TASK_PACKAGES)
def test_scoped_type_resolves_from_task_scope(package):
    registry = importlib.import_module(f'{package}.registry').MODELS
    model = registry.build(dict(type='mmfastvit.FastViT', arch='t8', out_indices=(1,)))
    assert isinstance(model, FastViT) and model.out_indices == (1,)


@pytest.mark.parametrize('package', TASK_PACKAGES)
def test_plain_type_after_integration_import(package):
    importlib.import_module(f'mmfastvit.integrations.{package}')
    importlib.import_module(f'mmfastvit.integrations.{package}')  # a second import / registration is harmless
    registry = importlib.import_module(f'{package}.registry').MODELS
    assert registry.get('FastViT') is FastViT
    with DefaultScope.overwrite_default_scope(package):
        model = registry.build(dict(type='FastViT', arch='t8'))
    assert isinstance(model, FastViT)


def test_register_into_refuses_a_different_class_under_our_name():
    from mmengine.registry import Registry

    from mmfastvit.integrations import register_into
    registry = Registry('model', scope='test_conflict')

    @registry.register_module(name='FastViT')
    class Impostor:
        pass

    with pytest.raises(KeyError, match='already has a different "FastViT"'):
        register_into(registry)


def test_backbone_import_pulls_in_no_task_package():
    code = ('import sys, torch; from mmfastvit.models import FastViT, FastViTClassifier; '
            'import mmfastvit.registry, mmfastvit.convert, mmfastvit.testing; FastViT("sa12")(torch.rand(1, 3, 64, 64)); '
            'bad = [m for m in sys.modules if m.split(".")[0] in ("mmdet", "mmseg", "mmpretrain", "mmcv", "timm")]; '
            'print(bad); sys.exit(1 if bad else 0)')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


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
