"""PointwiseConv's two kernels give the convolution's results, and the 'auto' policy picks the faster one for a
network from timed forward passes of that network on the running machine, remembered per input shape."""
import time

import pytest
import torch
from torch import nn

from mmfastvit.models import FastViT
from mmfastvit.models.layers import common
from mmfastvit.models.layers import PointwiseConv, pointwise_kernel_choices, pointwise_kernel_policy, \
    set_pointwise_kernel


@pytest.fixture
def policy():
    """Sets the kernel policy for one test, then puts the previous one back."""
    previous = common._kernel_policy['mode']
    yield set_pointwise_kernel
    set_pointwise_kernel(previous)


def _ops(call):
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        call()
    return {event.key for event in prof.key_averages()}


@pytest.mark.parametrize('kernel', ['gemm', 'conv'])
@pytest.mark.parametrize('bias', [True, False])
def test_both_kernels_equal_conv2d_forward_and_backward(policy, kernel, bias):
    policy(kernel)
    torch.manual_seed(0)
    pw, conv = PointwiseConv(12, 20, bias=bias), nn.Conv2d(12, 20, 1, bias=bias)
    conv.load_state_dict(pw.state_dict())
    x = torch.randn(3, 12, 5, 7, requires_grad=True)
    assert pw.kernel_for(x) == kernel
    out = pw(x)
    assert ('aten::bmm' in _ops(lambda: pw(x)) or 'aten::baddbmm' in _ops(lambda: pw(x))) == (kernel == 'gemm')
    torch.testing.assert_close(out, conv(x), rtol=1e-5, atol=1e-5)
    out.square().sum().backward()
    grads = x.grad.clone(), pw.weight.grad.clone()
    x.grad = None
    conv(x).square().sum().backward()
    torch.testing.assert_close(grads[0], x.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grads[1], conv.weight.grad, rtol=1e-4, atol=1e-5)


def test_a_layer_outside_a_backbone_and_channels_last_take_the_convolution(policy):
    policy('auto')
    pw = PointwiseConv(12, 20)
    x = torch.randn(2, 12, 5, 7)
    assert pw.kernel_for(x) == 'conv'
    policy('gemm')
    assert pw.kernel_for(x.to(memory_format=torch.channels_last)) == 'conv'


def test_a_bad_policy_is_named(policy, monkeypatch):
    with pytest.raises(ValueError, match="mode='fast' is not one of"):
        policy('fast')
    policy(None)
    monkeypatch.setenv('MMFASTVIT_POINTWISE_KERNEL', 'blas')
    with pytest.raises(ValueError, match="MMFASTVIT_POINTWISE_KERNEL='blas' is not one of"):
        pointwise_kernel_policy()
    monkeypatch.setenv('MMFASTVIT_POINTWISE_KERNEL', 'conv')
    assert pointwise_kernel_policy() == 'conv'


@pytest.mark.parametrize('fast', common.TRIAL_KERNELS)
def test_auto_times_whole_passes_and_keeps_the_fastest(policy, monkeypatch, fast):
    """Passes run with the other candidates are made 30 ms slower (beyond the 5 % margin): 'auto' must keep ``fast``,
    per input shape, and give the convolution's outputs (contiguous NCHW) throughout."""
    policy('auto')
    torch.manual_seed(0)
    model = FastViT(arch='t8', deploy=True, out_indices=(0, 3)).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        set_pointwise_kernel('conv')
        expected = model(x)
        set_pointwise_kernel('auto')
        run = common.PointwiseKernelChoice._with
        seen = []

        def slowed(kernel, forward, inputs):
            seen.append(kernel)
            if kernel != fast:
                time.sleep(0.03)
            return run(kernel, forward, inputs)

        monkeypatch.setattr(common.PointwiseKernelChoice, '_with', staticmethod(slowed))
        passes = len(common.TRIAL_KERNELS) * (common.UNTIMED_PASSES + common.TRIAL_PASSES)
        gemm_passes = 0
        for _ in range(passes):
            outputs = []
            gemm_passes += 'aten::baddbmm' in _ops(lambda: outputs.append(model(x)))
            for out, ref in zip(outputs[0], expected):
                assert out.is_contiguous()
                torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
        assert set(seen) == set(common.TRIAL_KERNELS)  # the trial ran every candidate
        assert gemm_passes == common.UNTIMED_PASSES + common.TRIAL_PASSES
    chooser = model.__dict__['_pointwise_kernel']
    assert list(chooser.choices.values()) == [fast] and not chooser.trials
    key = f'FastViT(t8) cpu float32 1x3x64x64 threads{torch.get_num_threads()}'
    assert pointwise_kernel_choices()[key] == fast
    with torch.no_grad():
        seen.clear()
        assert ('aten::baddbmm' in _ops(lambda: model(x))) == (fast == 'gemm')
        assert seen == [fast]
        model(torch.randn(2, 3, 64, 64))  # a new shape opens a new trial; the first stays decided
    assert len(chooser.trials) == 1 and len(chooser.choices) == 1


@pytest.mark.parametrize('ratios, kept', [
    ([0.8, 0.8, 0.8, 0.8, 0.8], 'gemm'),
    ([0.8, 0.8, 1.2, 0.8, 0.8], 'gemm'),  # one round lost to noise
    ([0.8, 1.1, 1.2, 0.8, 0.8], 'conv'),  # two rounds lost: not a clear win
    ([0.97, 0.97, 0.97, 0.97, 0.97], 'conv'),  # a win within the margin
])
def test_the_verdict_needs_a_clear_win(ratios, kept):
    conv = [10.0] * len(ratios)
    timed = {'conv': conv, 'gemm': [r * c for r, c in zip(ratios, conv)], 'channels_last': [11.0] * len(ratios)}
    assert common.PointwiseKernelChoice._verdict(timed) == kept


def test_training_runs_the_convolution_and_checkpointing_recomputes_it(policy):
    policy('auto')
    model = FastViT(arch='t8', deploy=False, with_cp=True).train()
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    model(x)[0].sum().backward()  # a recomputed segment must run the kernel its forward ran
    assert '_pointwise_kernel' not in model.__dict__ or not model.__dict__['_pointwise_kernel'].trials


def test_a_forced_channels_last_policy_returns_nchw(policy):
    policy('channels_last')
    model = FastViT(arch='t8', deploy=True).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out = model(x)[0]
        policy('conv')
        torch.testing.assert_close(out, model(x)[0], rtol=1e-4, atol=1e-4)
    assert out.is_contiguous()


def test_exports_and_compiled_graphs_get_plain_convolutions(policy):
    policy('gemm')
    model = FastViT(arch='t8', deploy=True).eval()
    x = torch.randn(1, 3, 64, 64)
    traced = torch.jit.trace(model, (x,), check_trace=False)
    kinds = {node.kind() for node in traced.inlined_graph.nodes()}
    assert 'aten::_convolution' in kinds and not {'aten::baddbmm', 'aten::bmm'} & kinds
