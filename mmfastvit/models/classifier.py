"""The paper's ImageNet classifier as a plain torch module, for machines that have torch and mmengine only.

With mmpretrain, the same computation is ``ImageClassifier(backbone=FastViT(out_indices=(4,)),
neck=GlobalAveragePooling, head=LinearClsHead)`` and the state dicts are identical (``backbone.*``, ``head.fc.*``).
"""
from torch import Tensor, nn

from .backbones import FastViT
from .utils.reparam import DeployArg, ReparameterizeMixin


class _LinearHead(nn.Module):
    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_channels, num_classes)


class FastViTClassifier(ReparameterizeMixin, nn.Module):
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

    def __init__(self, arch='t8', num_classes: int = 1000, deploy: DeployArg = False) -> None:
        super().__init__()
        self.backbone = FastViT(arch, out_indices=(FastViT.FINAL_CONV_INDEX,), deploy=deploy)
        self.head = _LinearHead(self.backbone.final_channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head.fc(self.backbone(x)[0].mean((2, 3)))
