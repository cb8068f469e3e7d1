from .backbones import FastViT, FMViT
from .classifier import FastViTClassifier, FMViTClassifier
from .pretrained import APPLE_WEIGHTS_PREFIX, register_apple_weights_scheme
from .utils.reparam import reparameterize_model

# Configs (init_cfg, load_from) may name Apple's published weights by URL: mmengine loads them through mmfastvit.
register_apple_weights_scheme()

__all__ = ['APPLE_WEIGHTS_PREFIX', 'FastViT', 'FastViTClassifier', 'FMViT', 'FMViTClassifier', 'reparameterize_model']
