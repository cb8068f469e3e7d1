"""One reparameterization protocol for every fusable module.

Two fused forms exist:

- ``'reference'``: what Apple's and timm's ``reparameterize()`` produce. The multi-branch MobileOne blocks, the
  large-kernel patch embedding, RepMixer and RepCPE become single convolutions; the ConvFFN BatchNorm, the attention
  pre-norm and the block layer scales stay.
- ``'full'`` (our default, also ``deploy=True``): additionally folds those three, so the deployed graph has no
  BatchNorm and no layer-scale multiply.

A module takes part by subclassing :class:`Reparameterizable`, saying at which level it fuses (``fuse_level``) and
implementing ``_fuse()``, which swaps its own train-time parts for the fused ones. The walk is pre-order and looks at a
module's children only after the module itself has fused, so a parent (e.g. RepMixer) reads the kernels of its still
unfused children and the children it drops are never fused for nothing.
"""
from typing import Union

from torch import nn

DeployArg = Union[bool, str, None]
DEPLOY_LEVELS = {'train': 0, 'reference': 1, 'full': 2}
REFERENCE, FULL = DEPLOY_LEVELS['reference'], DEPLOY_LEVELS['full']


def deploy_level(deploy: DeployArg) -> int:
    """Normalizes a ``deploy`` argument: ``False``/``None`` -> train form, ``True`` -> ``'full'``, or a level name."""
    if deploy is None or deploy is False:
        return 0
    if deploy is True:
        return FULL
    if isinstance(deploy, str) and deploy in DEPLOY_LEVELS:
        return DEPLOY_LEVELS[deploy]
    raise ValueError(f'deploy={deploy!r} is not one of False, True, {sorted(DEPLOY_LEVELS)}')


class ReparameterizeMixin:
    """``reparameterize()`` / ``switch_to_deploy()`` for any module that holds fusable parts (blocks, containers,
    backbones): both fuse everything inside up to ``level``, in place, and return the module."""

    def reparameterize(self, level: DeployArg = 'full'):
        """Fuses every fusable module inside, up to ``level`` (``'full'`` or ``'reference'``). Idempotent."""
        reparameterize_model(self, level)
        return self

    def switch_to_deploy(self, level: DeployArg = 'full'):
        """mmpretrain's name for :meth:`reparameterize`."""
        return self.reparameterize(level)


class Reparameterizable(ReparameterizeMixin, nn.Module):
    """Base class of modules with a train-time form and a fused inference form.

    Subclasses set ``fuse_level`` and implement ``_fuse()``, which swaps the module's own train-time parts for the
    fused ones; they build their fused form directly when constructed with ``deploy`` at or above their level (use
    :meth:`builds_fused`).
    """

    fuse_level: int = REFERENCE

    def __init__(self) -> None:
        super().__init__()
        self.deploy = False

    def builds_fused(self, deploy: DeployArg) -> bool:
        """Whether a module constructed with ``deploy`` starts in its fused form (and records it)."""
        self.deploy = deploy_level(deploy) >= self.fuse_level
        return self.deploy

    def _fuse(self) -> None:
        raise NotImplementedError


def fused_level(model: nn.Module) -> str:
    """The fused form ``model`` is in: ``'full'``, ``'reference'``, ``'train'`` or ``'partial'`` (some parts fused
    below a level whose other parts are not)."""
    states = [(m.fuse_level, m.deploy) for m in model.modules() if isinstance(m, Reparameterizable)]
    reached = [name for name, level in DEPLOY_LEVELS.items()
               if all(done for lvl, done in states if lvl <= level)]
    best = reached[-1]
    if best != 'full' and any(done for lvl, done in states if lvl > DEPLOY_LEVELS[best]):
        return 'partial'
    return best


def reparameterize_model(model: nn.Module, level: DeployArg = 'full') -> nn.Module:
    """Fuses every :class:`Reparameterizable` module in ``model`` (any model: classifier, detector, segmentor).

    Idempotent, and a no-op on parts already built fused. Asking for a lower level than a part already has leaves
    it as it is: fusion cannot be undone.
    """
    target = deploy_level(level)
    if target == 0:
        raise ValueError(f'level={level!r}: reparameterize needs a fused level, one of {["reference", "full", True]}')

    def visit(module: nn.Module) -> None:
        if isinstance(module, Reparameterizable) and not module.deploy and module.fuse_level <= target:
            module._fuse()
            module.deploy = True
        for child in module.children():
            visit(child)

    visit(model)
    return model
