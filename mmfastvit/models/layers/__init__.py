from .attention import Attention, AttentionBlock
from .common import ConvBN, DropPath, LayerScale2d
from .convffn import ConvFFN
from .embedding import PatchEmbed, RepCPE, build_stem
from .mobileone import MobileOneBlock, ReparamLargeKernelConv, SEBlock
from .multigroup import MultiGroupConv
from .repmixer import RepMixer, RepMixerBlock

__all__ = ['Attention', 'AttentionBlock', 'ConvBN', 'DropPath', 'LayerScale2d', 'ConvFFN', 'PatchEmbed', 'RepCPE',
           'build_stem', 'MobileOneBlock', 'ReparamLargeKernelConv', 'SEBlock', 'MultiGroupConv', 'RepMixer',
           'RepMixerBlock']
