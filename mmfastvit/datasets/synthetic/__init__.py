"""Generated stand-ins for the datasets mmfastvit's configs read, in the layouts the task packages expect.

Only numpy and Pillow are needed to write them (the FreiHAND set also renders its meshes with torch and smplx, and the
tiny ImageNet-C takes its corruption names from ``mmfastvit.evaluation``, imported when they run); reading them is the
task packages' job.
"""
from .ade20k import make_tiny_ade20k
from .coco import make_tiny_coco
from .freihand import make_tiny_freihand
from .imagenet import make_tiny_imagenet
from .robustness import make_tiny_robustness

__all__ = ['make_tiny_ade20k', 'make_tiny_coco', 'make_tiny_freihand', 'make_tiny_imagenet', 'make_tiny_robustness']
