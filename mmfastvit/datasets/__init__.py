"""Dataset helpers. Importing this package imports no task package (mmpretrain, mmdet, mmseg); ``transforms`` (mmcv's
image loading that names or skips corrupt files) is imported by the registry when a config asks for it; ``robustness``
(ImageNet-C / -A / -R / -Sketch, imports mmpretrain) by ``mmfastvit.integrations.mmpretrain``."""
from .synthetic import (make_tiny_ade20k, make_tiny_coco, make_tiny_freihand, make_tiny_imagenet,
                        make_tiny_robustness)

__all__ = ['make_tiny_ade20k', 'make_tiny_coco', 'make_tiny_freihand', 'make_tiny_imagenet', 'make_tiny_robustness']
