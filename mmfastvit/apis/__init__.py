"""High-level entry points: models by name (:mod:`mmfastvit.apis.model_index`).

``import mmfastvit.apis`` imports neither mmpretrain, mmdet nor mmseg; building a model imports its task package.
"""
from .model_index import ModelInfo, get_model, get_model_info, list_models, register_with_mmpretrain

__all__ = ['ModelInfo', 'get_model', 'get_model_info', 'list_models', 'register_with_mmpretrain']
