"""The papers' ImageNet classifiers as plain torch modules, for machines that have torch and mmengine only.

With mmpretrain, the same computation is ``ImageClassifier(backbone=..., neck=GlobalAveragePooling,
head=LinearClsHead)`` and the state dicts are identical (``backbone.*``, ``head.fc.*``): FastViT with
``out_indices=(4,)`` (its ``final_conv``), FMViT with ``out_indices=(3,)`` (the FMB output).
"""
from typing import Union

from torch import Tensor, nn

from .backbones import FastViT, FMViT
from .utils.reparam import DeployArg, ReparameterizeMixin


class _LinearHead(nn.Module):
    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_channels, num_classes)


class PooledLinearClassifier(ReparameterizeMixin, nn.Module):
    """``backbone`` up to the output its classifier pools (the backbone class's ``classifier_out_indices``) -> global
    average pool -> linear. A subclass names the backbone class in ``backbone_class``."""

    backbone_class: type = None

    def __init__(self, arch: Union[str, dict], num_classes: int = 1000, deploy: DeployArg = False) -> None:
        super().__init__()
        cls = self.backbone_class
        self.backbone = cls(arch, out_indices=cls.classifier_out_indices, deploy=deploy)
        self.head = _LinearHead(self.backbone.out_channels[0], num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head.fc(self.backbone(x)[0].mean((2, 3)))


def classifier_for(backbone_class: type) -> type:
    """The :class:`PooledLinearClassifier` subclass whose backbone is ``backbone_class``.

    Raises:
        TypeError: no classifier is declared for it.
    """
    for cls in PooledLinearClassifier.__subclasses__():
        if cls.backbone_class is backbone_class:
            return cls
    raise TypeError(f'no PooledLinearClassifier subclass has backbone_class={backbone_class.__name__}')


class FastViTClassifier(PooledLinearClassifier):
    """stem -> four stages -> ``final_conv`` -> global average pool -> linear.

    Args:
        arch (str | dict): A FastViT arch (see :class:`FastViT`).
        num_classes (int): Classes. Defaults to 1000.
        deploy (bool | str): Build the backbone fused. Defaults to False.

    Example:
        >>> import torch
        >>> FastViTClassifier('t8').eval()(torch.rand(1, 3, 256, 256)).shape
        torch.Size([1, 1000])
    """

    backbone_class = FastViT

    def __init__(self, arch: Union[str, dict] = 't8', num_classes: int = 1000, deploy: DeployArg = False) -> None:
        super().__init__(arch, num_classes, deploy)


class FMViTClassifier(PooledLinearClassifier):
    """stem -> four stages -> global average pool of the FMB output -> linear.

    Args:
        arch (str | dict): An FMViT arch (see :class:`FMViT`).
        num_classes (int): Classes. Defaults to 1000.
        deploy (bool | str): Build the backbone fused. Defaults to False.

    Example:
        >>> import torch
        >>> FMViTClassifier('t').eval()(torch.rand(1, 3, 224, 224)).shape
        torch.Size([1, 1000])
    """

    backbone_class = FMViT

    def __init__(self, arch: Union[str, dict] = 't', num_classes: int = 1000, deploy: DeployArg = False) -> None:
        super().__init__(arch, num_classes, deploy)
