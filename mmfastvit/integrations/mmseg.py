"""Registers mmfastvit's models into mmseg's ``MODELS`` registry (imports mmseg)."""
from mmseg.registry import MODELS

from . import register_into

register_into(MODELS)
