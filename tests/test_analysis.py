"""FLOP counting counts the 1x1 convolutions that run as baddbmm like the convolutions they are."""
import torch
from torch import nn

from mmfastvit.analysis import flop_analyzer
from mmfastvit.models.layers.common import PointwiseConv


def test_pointwise_conv_counts_as_the_equivalent_conv():
    x = torch.randn(2, 16, 8, 8)
    conv_flops = flop_analyzer(nn.Conv2d(16, 48, 1), (x,)).total()
    assert conv_flops == 2 * 48 * 16 * 8 * 8
    assert flop_analyzer(PointwiseConv(16, 48), (x,)).total() == conv_flops


def test_fastvit_t8_flops_at_256_match_the_paper_to_its_precision():
    from mmfastvit.models import FastViTClassifier
    total = flop_analyzer(FastViTClassifier('t8').eval(), (torch.randn(1, 3, 256, 256),)).total()
    assert round(total / 1e9, 1) == 0.7  # the paper's Table 1: 0.7 GFLOPs at 256x256 (fvcore)
