from .base import ReparamBackbone
from .fastvit import FastViT
from .fmvit import FMViT

__all__ = ['ReparamBackbone', 'FastViT', 'FMViT']
