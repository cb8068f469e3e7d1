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


class _PooledLinearClassifier(ReparameterizeMixin, nn.Module):
    """``backbone`` (one output) -> global average pool -> linear."""

    def __init__(self, backbone: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = _LinearHead(backbone.out_channels[0], num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head.fc(self.backbone(x)[0].mean((2, 3)))


class FastViTClassifier(_PooledLinearClassifier):
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

    def __init__(self, arch: Union[str, dict] = 't8', num_classes: int = 1000, deploy: DeployArg = False) -> None:
        super().__init__(FastViT(arch, out_indices=(FastViT.FINAL_CONV_INDEX,), deploy=deploy), num_classes)


class FMViTClassifier(_PooledLinearClassifier):
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

    def __init__(self, arch: Union[str, dict] = 't', num_classes: int = 1000, deploy: DeployArg = False) -> None:
        super().__init__(FMViT(arch, out_indices=(3,), deploy=deploy), num_classes)
