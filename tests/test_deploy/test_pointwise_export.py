"""PointwiseConv runs as one batched GEMM in eager mode where that was chosen, and exports as a plain 1x1 Conv (ONNX
Runtime, TensorRT and Core ML run that faster than a MatMul), with the same parameters and outputs either way."""
import io
import warnings

import pytest
import torch
from torch import nn

from mmfastvit.models.layers.common import PointwiseConv


def _module(bias=True):
    torch.manual_seed(0)
    return PointwiseConv(12, 20, bias=bias).eval()


def _eager_ops(module, x):
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        module(x)
    return {event.key for event in prof.key_averages()}


@pytest.mark.parametrize('bias', [True, False])
def test_eager_runs_the_gemm_when_chosen(bias):
    from mmfastvit.models.layers import set_pointwise_kernel
    previous = set_pointwise_kernel('gemm')
    try:
        ops = _eager_ops(_module(bias), torch.randn(2, 12, 5, 7))
    finally:
        set_pointwise_kernel(previous)
    assert ('aten::baddbmm' if bias else 'aten::bmm') in ops
    assert not {'aten::convolution', 'aten::_convolution'} & ops


def test_trace_records_a_convolution_with_identical_output():
    module = _module()
    x = torch.randn(2, 12, 5, 7)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        traced = torch.jit.trace(module, (x,))
    kinds = {node.kind() for node in traced.inlined_graph.nodes()}
    assert 'aten::_convolution' in kinds
    assert not {'aten::baddbmm', 'aten::bmm'} & kinds
    conv = nn.Conv2d(12, 20, 1)
    conv.load_state_dict(module.state_dict())  # same keys, same shapes
    y = torch.randn(3, 12, 4, 4)
    torch.testing.assert_close(traced(y), conv(y), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(module(y), conv(y), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('dynamo', [False, True])
def test_onnx_export_emits_conv_not_matmul(dynamo):
    onnx = pytest.importorskip('onnx')
    if dynamo:
        pytest.importorskip('onnxscript')
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.onnx.export(_module(), (torch.randn(1, 12, 5, 7),), f, dynamo=dynamo, opset_version=18,
                          external_data=False)
    ops = {node.op_type for node in onnx.load_from_string(f.getvalue()).graph.node}
    assert 'Conv' in ops
    assert not {'MatMul', 'Gemm'} & ops


def test_state_dict_keys_unchanged():
    assert sorted(_module().state_dict()) == ['bias', 'weight']
    assert _module().weight.shape == (20, 12, 1, 1)
