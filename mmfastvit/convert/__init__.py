from .rename import TIMM_TO_MMFASTVIT, convert_state_dict, timm_to_mmfastvit

__all__ = ['TIMM_TO_MMFASTVIT', 'convert_state_dict', 'timm_to_mmfastvit']
