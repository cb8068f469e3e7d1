from .backbones import FastViT
from .backbones.fmvit import FMViT, FMViTClassifier
from .classifier import FastViTClassifier
from .utils.reparam import reparameterize_model

__all__ = ['FastViT', 'FastViTClassifier', 'reparameterize_model']
