"""Generated stand-ins for the datasets mmfastvit's configs read, in the layouts the task packages expect.

Only numpy and Pillow are needed to write them; reading them is the task packages' job.
"""
from .imagenet import make_tiny_imagenet

__all__ = ['make_tiny_imagenet']
