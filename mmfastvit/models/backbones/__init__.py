from .fastvit import FastViT

__all__ = ['FastViT']
