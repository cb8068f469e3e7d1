from .backbones import FastViT, FMViT
from .classifier import FastViTClassifier, FMViTClassifier
from .utils.reparam import reparameterize_model

__all__ = ['FastViT', 'FastViTClassifier', 'FMViT', 'FMViTClassifier', 'reparameterize_model']
