from .checkpoint import SOURCE_FORMATS, ConversionResult, detect_format, fastvit_to_mmfastvit, infer_arch
from .download import (APPLE_WEIGHTS_PREFIX, MIRROR_ENV, WeightsChecksumError, WeightsDownloadError,
                       apple_weights_url, fetch_apple_weights, load_apple_checkpoint)
from .rename import (APPLE_TO_MMFASTVIT, TIMM_TO_MMFASTVIT, apple_to_mmfastvit, convert_state_dict, mmfastvit_to_apple,
                     timm_to_mmfastvit)

__all__ = [
    'APPLE_TO_MMFASTVIT', 'TIMM_TO_MMFASTVIT', 'apple_to_mmfastvit', 'convert_state_dict', 'mmfastvit_to_apple',
    'timm_to_mmfastvit',
    'APPLE_WEIGHTS_PREFIX', 'MIRROR_ENV', 'WeightsChecksumError', 'WeightsDownloadError', 'apple_weights_url',
    'fetch_apple_weights', 'load_apple_checkpoint',
    'SOURCE_FORMATS', 'ConversionResult', 'detect_format', 'fastvit_to_mmfastvit', 'infer_arch'
]
