from .backbones import FastViT
from .utils.reparam import reparameterize_model

__all__ = ['FastViT', 'reparameterize_model']
