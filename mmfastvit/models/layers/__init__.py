from .attention import Attention, AttentionBlock
from .common import (ConvBN, DropPath, LayerScale2d, PointwiseConv, pointwise_kernel_choices, pointwise_kernel_policy,
                     set_pointwise_kernel)
from .convffn import ConvFFN
from .embedding import PatchEmbed, RepCPE, build_stem
from .mobileone import MobileOneBlock, ReparamLargeKernelConv, SEBlock
from .multigroup import MultiGroupConv
from .repmixer import RepMixer, RepMixerBlock

__all__ = ['Attention', 'AttentionBlock', 'ConvBN', 'DropPath', 'LayerScale2d', 'PointwiseConv',
           'pointwise_kernel_choices', 'pointwise_kernel_policy', 'set_pointwise_kernel', 'ConvFFN', 'PatchEmbed',
           'RepCPE',
           'build_stem', 'MobileOneBlock', 'ReparamLargeKernelConv', 'SEBlock', 'MultiGroupConv', 'RepMixer',
           'RepMixerBlock']
