from .fastvit import FastViT
from .fmvit import FMViT

__all__ = ['FastViT']
