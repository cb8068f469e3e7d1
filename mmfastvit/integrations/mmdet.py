"""Registers mmfastvit's models into mmdet's ``MODELS`` registry (imports mmdet)."""
from mmdet.registry import MODELS

from . import register_into

register_into(MODELS)
