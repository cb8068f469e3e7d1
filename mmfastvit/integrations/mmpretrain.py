"""Registers mmfastvit's models into mmpretrain's ``MODELS`` registry (imports mmpretrain)."""
from mmpretrain.registry import MODELS

from . import register_into

register_into(MODELS)
