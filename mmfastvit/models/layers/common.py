"""Small layers shared by the FastViT blocks: conv+BN, layer scale, stochastic depth."""
import os
import statistics
import time
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from ..utils.fusion import KernelBias, Size2, fold_output_scale, fuse_conv_bn, to_pair


class ConvBN(nn.Module):
    """A bias-free convolution followed by BatchNorm (one branch of a reparameterizable block).

    The kernel is centred ("same" padding ``k // 2`` on each side), so ``kernel_size`` is odd; it and ``stride`` are
    an int or an ``(h, w)`` pair.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Size2, stride: Size2 = 1,
                 groups: int = 1) -> None:
        super().__init__()
        kh, kw = to_pair(kernel_size)
        self.conv = nn.Conv2d(in_channels, out_channels, (kh, kw), stride, (kh // 2, kw // 2), groups=groups,
                              bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(x))

    def kernel_bias(self) -> KernelBias:
        """The ``(kernel, bias)`` of the equivalent single convolution (eval-mode BN)."""
        return fuse_conv_bn(self.conv.weight, None, self.bn)

    def to_fused_conv(self) -> nn.Conv2d:
        """A new convolution with bias equal to this branch in eval mode."""
        conv = self.conv
        fused = fused_conv(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.groups)
        set_weight_bias(fused, *self.kernel_bias())
        return fused


def _exporting() -> bool:
    """Whether the forward pass is being traced, exported or compiled rather than run eagerly."""
    return (torch.jit.is_tracing() or torch.compiler.is_exporting() or torch.compiler.is_compiling()
            or torch.onnx.is_in_onnx_export())


POINTWISE_KERNELS = ('auto', 'conv', 'gemm', 'channels_last')
# what a trial pass runs: oneDNN's convolution on NCHW, the batched GEMM for the 1x1 layers, or the whole pass in
# channels_last (the input converted, every convolution in oneDNN's NHWC kernels, the outputs back to NCHW)
TRIAL_KERNELS = ('conv', 'gemm', 'channels_last')
_KERNEL_ENV = 'MMFASTVIT_POINTWISE_KERNEL'
# another kernel replaces the NCHW convolution only when a pass with it takes less than this fraction of a pass with
# the convolution (median of the paired ratios), in all trial rounds but one: a tie keeps what timm's model runs
MIN_GAIN = 0.95
TRIAL_PASSES = 5  # timed forward passes with each kernel per input shape
UNTIMED_PASSES = 1  # passes with each kernel before those (allocation, oneDNN primitive creation)
_kernel_policy: Dict[str, Optional[str]] = {'mode': None}
# what the current backbone pass runs (None outside one: a bare PointwiseConv reads the policy itself)
_pass_kernel: Dict[str, Optional[str]] = {'kernel': None}
_kernel_choices: Dict[str, str] = {}  # every PointwiseKernelChoice's decisions in this process, for the reports


def _checked_policy(mode: str, source: str) -> str:
    if mode not in POINTWISE_KERNELS:
        raise ValueError(f'{source}={mode!r} is not one of {POINTWISE_KERNELS}')
    return mode


def pointwise_kernel_policy() -> str:
    """How a backbone runs on the CPU: ``'auto'`` (the default: measured per network and input shape on this
    machine, see :class:`PointwiseKernelChoice`), or one of ``'conv'``, ``'gemm'`` (the 1x1 kernel of
    :class:`PointwiseConv`) and ``'channels_last'``; set by :func:`set_pointwise_kernel` or the
    ``MMFASTVIT_POINTWISE_KERNEL`` environment variable."""
    if _kernel_policy['mode'] is not None:
        return _kernel_policy['mode']
    return _checked_policy(os.environ.get(_KERNEL_ENV, 'auto'), _KERNEL_ENV)


def set_pointwise_kernel(mode: Optional[str]) -> Optional[str]:
    """Sets the policy of :func:`pointwise_kernel_policy` (``None``: back to the environment / ``'auto'``); returns
    the previous setting."""
    if mode is not None:
        _checked_policy(mode, 'mode')
    previous, _kernel_policy['mode'] = _kernel_policy['mode'], mode
    return previous


def pointwise_kernel_choices() -> Dict[str, str]:
    """The kernels ``'auto'`` has chosen so far in this process, keyed by network and input
    (``'FastViT(t8) cpu float32 1x3x256x256 threads2'``): what a benchmark records beside its timings."""
    return dict(_kernel_choices)


def _eager_cpu(x: Tensor) -> bool:
    return x.device.type == 'cpu' and not _exporting()


class PointwiseKernelChoice:
    """Chooses how one network runs on the CPU by timing its whole forward passes: the 1x1 layers' kernel
    (:class:`PointwiseConv`) and the memory format.

    The candidates (:data:`TRIAL_KERNELS`) are oneDNN's convolution on NCHW (what timm's model runs), the batched GEMM
    for the 1x1 layers, and the whole pass in ``channels_last`` (input converted, oneDNN's NHWC convolutions,
    outputs back to contiguous NCHW). Which wins depends on the CPU and the batch: on an Intel Xeon the GEMM beat the
    NCHW 1x1 convolution by 1.1-6x; on an AMD EPYC the convolution won, and ``channels_last`` ran T8 at batch 8 in
    0.63x timm's time. Timing one layer alone misleads (on the EPYC the GEMM won isolated FastViT shapes that it lost
    inside the network, and mixing kernels per layer was slower than either), so under the policy ``'auto'`` the
    first inference passes (autograd off) a network makes on an input shape (with its dtype and thread count) cycle
    through the candidates; after :data:`UNTIMED_PASSES` + :data:`TRIAL_PASSES` passes of each, the fastest is
    remembered for that shape, replacing the NCHW convolution only when it beat it in all timed rounds but one and
    its median ratio to it is below :data:`MIN_GAIN`. Those first passes cost at most the slowest candidate's time;
    their outputs are the same either way (to float rounding).

    Args:
        label (str): The network's name in :func:`pointwise_kernel_choices`.
    """

    def __init__(self, label: str) -> None:
        self.label = label
        self.trials: Dict[Tuple, Dict[str, List[float]]] = {}
        self.choices: Dict[Tuple, str] = {}

    def run(self, forward, x: Tensor):
        """``forward(x)`` with the kernel chosen for ``x``'s shape (timing it while the choice is open). Only
        inference chooses: with autograd on (training), the layers run the convolution, as timm's model does, and a
        recomputed checkpointed segment runs what its forward ran."""
        if not _eager_cpu(x):
            return forward(x)
        policy = pointwise_kernel_policy()  # read once per pass; the layers read the pass's kernel
        if policy != 'auto':
            return self._with(policy, forward, x)
        if torch.is_grad_enabled():
            return self._with('conv', forward, x)
        key = (str(x.dtype).replace('torch.', ''), 'x'.join(map(str, x.shape)), f'threads{torch.get_num_threads()}')
        kernel = self.choices.get(key)
        if kernel is not None:
            return self._with(kernel, forward, x)
        trial = self.trials.setdefault(key, {k: [] for k in TRIAL_KERNELS})
        kernel = min(trial, key=lambda k: len(trial[k]))
        start = time.perf_counter()
        out = self._with(kernel, forward, x)
        trial[kernel].append(time.perf_counter() - start)
        if all(len(spent) >= UNTIMED_PASSES + TRIAL_PASSES for spent in trial.values()):
            self.choices[key] = self._verdict({k: spent[UNTIMED_PASSES:] for k, spent in trial.items()})
            _kernel_choices[' '.join((self.label, x.device.type) + key)] = self.choices[key]
            del self.trials[key]
        return out

    @staticmethod
    def _verdict(timed: Dict[str, List[float]]) -> str:
        """The candidate kept: one that beat ``conv`` in all rounds but at most one (the candidates run in turn, so
        round ``i`` of each was timed back to back) with a median ratio below :data:`MIN_GAIN`, the lowest such;
        else ``conv``. Both conditions guard against a noisy machine handing the choice to a tie."""
        ratios = {k: [t / c for t, c in zip(spent, timed['conv'])] for k, spent in timed.items() if k != 'conv'}
        winners = {k: statistics.median(r) for k, r in ratios.items()
                   if sum(q < 1 for q in r) >= len(r) - 1 and statistics.median(r) < MIN_GAIN}
        return min(winners, key=winners.get) if winners else 'conv'

    @staticmethod
    def _with(kernel: str, forward, x: Tensor):
        previous, _pass_kernel['kernel'] = _pass_kernel['kernel'], kernel
        try:
            if kernel != 'channels_last':
                return forward(x)
            out = forward(x.contiguous(memory_format=torch.channels_last))
            if isinstance(out, Tensor):
                return out.contiguous()
            return type(out)(o.contiguous() for o in out)
        finally:
            _pass_kernel['kernel'] = previous


class PointwiseConv(nn.Conv2d):
    """A 1x1, stride-1, ungrouped convolution with two kernels: the convolution, or one batched matrix product over
    the NCHW buffer.

    Same parameters and state-dict keys as ``nn.Conv2d(in, out, 1)``; only the kernel differs. Which is faster
    depends on the CPU (``benchmarks/results/backbone_latency_cpu_*.md``), so under the default policy ``'auto'``
    (:func:`pointwise_kernel_policy`) the backbone that holds the layer chooses by timing its own forward passes
    (:class:`PointwiseKernelChoice`); a layer used outside one runs the convolution. Other devices, inputs that are
    not contiguous NCHW (e.g. ``channels_last``), and every export or compilation (``torch.jit.trace``,
    ``torch.export``, ``torch.onnx.export``, ``torch.compile``) take the convolution, so an exported graph gets a
    plain 1x1 ``Conv``.
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, 1, bias=bias)

    def kernel_for(self, x: Tensor) -> str:
        """``'gemm'`` or ``'conv'``: the kernel :meth:`forward` runs on ``x`` now."""
        if x.dim() != 4 or not x.is_contiguous():
            return 'conv'
        kernel = _pass_kernel['kernel']  # set by the backbone's pass, on eager CPU inputs only
        if kernel is None:
            if not _eager_cpu(x):
                return 'conv'
            kernel = pointwise_kernel_policy()
        return 'gemm' if kernel == 'gemm' else 'conv'

    def forward(self, x: Tensor) -> Tensor:
        if self.kernel_for(x) == 'conv':
            return super().forward(x)
        b, c, h, w = x.shape
        weight = self.weight.view(1, self.out_channels, c).expand(b, -1, -1)
        x = x.view(b, c, h * w)
        if self.bias is None:
            out = torch.bmm(weight, x)
        else:
            out = torch.baddbmm(self.bias.view(1, -1, 1), weight, x)
        return out.view(b, self.out_channels, h, w)


def fused_conv(in_channels: int, out_channels: int, kernel_size: Size2, stride: Size2 = 1,
               groups: int = 1) -> nn.Conv2d:
    """The single biased convolution a fused block becomes ("same" padding ``k // 2``, ``kernel_size`` and ``stride``
    an int or an ``(h, w)`` pair); 1x1, stride-1, ungrouped ones are :class:`PointwiseConv`."""
    (kh, kw), stride = to_pair(kernel_size), to_pair(stride)
    if (kh, kw) == (1, 1) and stride == (1, 1) and groups == 1:
        return PointwiseConv(in_channels, out_channels)
    return nn.Conv2d(in_channels, out_channels, (kh, kw), stride, (kh // 2, kw // 2), groups=groups, bias=True)


def set_weight_bias(module: nn.Module, weight: Tensor, bias: Tensor) -> None:
    """Copies fused values into a freshly built layer (kept out of autograd history)."""
    with torch.no_grad():
        module.weight.copy_(weight)
        module.bias.copy_(bias)


class LayerScale2d(nn.Module):
    """Per-channel learnable scale of an NCHW tensor, ``gamma`` shaped ``(C, 1, 1)``."""

    def __init__(self, dim: int, init_value: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim, 1, 1), float(init_value)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


def layer_scale(dim: int, init_value: Optional[float]) -> nn.Module:
    """A :class:`LayerScale2d`, or identity when ``init_value`` is None (no layer scale)."""
    return nn.Identity() if init_value is None else LayerScale2d(dim, init_value)


def fold_layer_scale_into(conv: nn.Conv2d, scale: nn.Module) -> None:
    """Folds a layer scale that follows ``conv`` (or a linear layer) into its weight and bias, in place."""
    if not isinstance(scale, LayerScale2d):
        return
    with torch.no_grad():
        weight, bias = fold_output_scale(conv.weight, conv.bias, scale.gamma)
        conv.weight.copy_(weight)
        if conv.bias is None:
            conv.bias = nn.Parameter(bias)
        else:
            conv.bias.copy_(bias)


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch of a sample with probability ``drop_prob`` in training."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: Tensor) -> Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f'drop_prob={self.drop_prob}'
