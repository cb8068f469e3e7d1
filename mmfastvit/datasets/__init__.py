"""Dataset helpers. Importing this package imports no task package (mmpretrain, mmdet, mmseg)."""
from .synthetic import make_tiny_ade20k, make_tiny_coco, make_tiny_imagenet

__all__ = ['make_tiny_ade20k', 'make_tiny_coco', 'make_tiny_imagenet']
