"""Lets a config name Apple's published FastViT weights by URL (torch and mmengine only).

Importing :mod:`mmfastvit.models` registers :func:`load_from_apple` with mmengine's ``CheckpointLoader`` for the
prefix :data:`APPLE_WEIGHTS_PREFIX`, so that ``init_cfg=dict(type='Pretrained', checkpoint=<Apple URL>)``,
``load_from = <Apple URL>`` and ``mmengine.runner.load_checkpoint(model, <Apple URL>)`` all download, check and convert
Apple's file (:mod:`mmfastvit.convert.download`) instead of loading it raw. mmengine tries its longer prefixes first,
so this one takes precedence over its generic ``https://`` loader. The download code is imported only when such a
URL is loaded.
"""
import re
from typing import Any

# Where Apple publishes the FastViT ImageNet checkpoints (github.com/apple/ml-fastvit, README, "Model Zoo").
APPLE_WEIGHTS_PREFIX = 'https://docs-assets.developer.apple.com/ml-research/models/fastvit/'


def load_from_apple(filename: str, map_location: Any = None) -> dict:
    """mmengine checkpoint loader for Apple's URLs: the converted mmfastvit classifier checkpoint
    (:func:`mmfastvit.convert.download.load_apple_checkpoint`)."""
    from ..convert.download import load_apple_checkpoint
    return load_apple_checkpoint(filename, map_location=map_location)


def register_apple_weights_scheme() -> None:
    """Registers :func:`load_from_apple` for :data:`APPLE_WEIGHTS_PREFIX` with mmengine; a second call is a no-op."""
    from mmengine.runner.checkpoint import CheckpointLoader

    # mmengine matches its prefixes as regular expressions; force: registering again replaces our own entry
    CheckpointLoader.register_scheme(prefixes=re.escape(APPLE_WEIGHTS_PREFIX), loader=load_from_apple, force=True)
