"""What FastViT and FMViT share as OpenMMLab backbones: argument checks (``arch``, ``out_indices``,
``frozen_stages``, ``deploy``), input checks, the stage loop, frozen stages, ``norm_eval`` and the fused-form queries.

A subclass builds ``self.stem`` and ``self.stages`` (an ``nn.ModuleList`` whose stages take ``with_cp``) and sets
the class attributes below; its error messages name it by ``display_name``.
"""
import copy
from typing import List, Optional, Sequence, Set, Tuple, Union

import torch
from mmengine.model import BaseModule
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..layers.common import PointwiseKernelChoice
from ..layers.output_norm import OutputNorm
from ..utils.reparam import DeployArg, ReparameterizeMixin, deploy_level, fused_level


class ReparamBackbone(ReparameterizeMixin, BaseModule):
    """Base of the reparameterizable four-stage backbones (no modules, no parameters of its own).

    Class attributes a subclass sets: ``display_name`` (in error messages), ``arch_zoo``, ``num_stages``,
    ``MIN_INPUT_SIZE`` (the total stride), ``max_out_index`` (the largest valid ``out_indices`` entry) and
    ``out_indices_help`` (what the valid entries are, in the error message).
    """

    display_name = 'backbone'
    arch_zoo: dict = {}
    num_stages = 4
    MIN_INPUT_SIZE = 32
    max_out_index = num_stages - 1
    out_indices_help = 'the four stages'

    def _set_backbone_options(self, out_indices: Union[int, Sequence[int]], frozen_stages: int, norm_eval: bool,
                              with_cp: bool, deploy: DeployArg) -> None:
        """Validates and stores the OpenMMLab options, and refuses a bad ``deploy`` before anything is built."""
        self.out_indices = self._parse_out_indices(out_indices)
        if not -1 <= frozen_stages <= self.num_stages:
            raise ValueError(f'frozen_stages={frozen_stages} is not in [-1, {self.num_stages}]')
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        deploy_level(deploy)

    @classmethod
    def _lookup_arch(cls, arch: Union[str, dict], required: Set[str]) -> dict:
        """A copy of ``arch_zoo[arch]`` (case-insensitive) or of the ``arch`` dict, which must have ``required``."""
        if isinstance(arch, str):
            if arch.lower() not in cls.arch_zoo:
                raise ValueError(f'arch "{arch}" is not one of {list(cls.arch_zoo)}')
            arch = cls.arch_zoo[arch.lower()]
        if not isinstance(arch, dict):
            raise TypeError(f'arch must be a str or a dict, not {type(arch).__name__}')
        missing = required - set(arch)
        if missing:
            raise ValueError(f'arch dict lacks {sorted(missing)}; it needs {sorted(required)}')
        return copy.deepcopy(arch)

    @classmethod
    def _parse_out_indices(cls, out_indices: Union[int, Sequence[int]]) -> Tuple[int, ...]:
        if isinstance(out_indices, int):
            out_indices = (out_indices,)
        if not isinstance(out_indices, (list, tuple)) or not out_indices:
            raise TypeError(f'out_indices must be an int or a non-empty sequence of ints, got {out_indices!r}')
        parsed = []
        for index in out_indices:
            if not isinstance(index, int) or not -cls.num_stages <= index <= cls.max_out_index:
                raise ValueError(f'out_indices entry {index!r} is not in [-{cls.num_stages}, {cls.max_out_index}] '
                                 f'({cls.out_indices_help})')
            parsed.append(index % cls.num_stages if index < 0 else index)
        if len(set(parsed)) != len(parsed):
            raise ValueError(f'out_indices {tuple(out_indices)!r} repeats a stage')
        return tuple(sorted(parsed))

    def check_input(self, x: Tensor) -> None:
        """Raises a ValueError for anything but a batch of ``in_channels``-channel images of at least 32x32 (the
        network's total stride: smaller inputs would be reduced to a padded 1x1 map well before the last stage)."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'{self.display_name} expects images of shape (N, {self.in_channels}, H, W), got a '
                             f'tensor of shape {tuple(x.shape)}')
        size = self.MIN_INPUT_SIZE
        if min(x.shape[-2:]) < size:
            raise ValueError(f'{self.display_name} input {x.shape[-2]}x{x.shape[-1]} is smaller than {size}x{size}: '
                             f'the backbone downsamples by {size} (stem 4, then three patch embeddings of stride 2)')

    def _build_out_norms(self, out_norm_cfg: Optional[dict], channels: Sequence[int], deploy: DeployArg) -> None:
        """``self.out_norms``: with ``out_norm_cfg``, an :class:`OutputNorm` per entry of ``out_indices`` (keyed by the
        index as a string; ``channels`` are the outputs' widths in the same order), else None."""
        self.out_norm_cfg = None if out_norm_cfg is None else dict(out_norm_cfg)
        if out_norm_cfg is None:
            self.out_norms = None
            return
        self.out_norms = nn.ModuleDict({
            str(index): OutputNorm(width, out_norm_cfg, deploy=deploy)
            for index, width in zip(self.out_indices, channels)
        })

    def _output(self, index: int, x: Tensor) -> Tensor:
        """Output ``index`` as returned: through its norm when the backbone has per-output norms. The caller keeps
        ``x`` itself for the next stage."""
        norms = getattr(self, 'out_norms', None)
        return x if norms is None else norms[str(index)](x)

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        if not (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()):
            self.check_input(x)  # traced / exported / compiled graphs carry no Python checks
        chooser = self.__dict__.get('_pointwise_kernel')
        if chooser is None:  # created on first use, so checkpoints and models built before it need nothing
            chooser = self.__dict__['_pointwise_kernel'] = PointwiseKernelChoice(
                self._kernel_label())
        return chooser.run(self._forward, x)

    def _forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x, with_cp=self.with_cp and self.training)
            if i in self.out_indices:
                outs.append(self._output(i, x))  # the next stage reads x, not the normed copy
        return tuple(outs) + self._extra_outputs(x)

    def _kernel_label(self) -> str:
        """``FastViT(t8)``: the class and its ``arch_zoo`` name (``custom`` for an arch dict)."""
        settings = getattr(self, 'arch_settings', None)
        def listed(value) -> list:
            return list(value) if isinstance(value, (list, tuple)) else [value] * self.num_stages

        fields = ('layers', 'embed_dims', 'token_mixers', 'mlp_ratios', 'depths', 'channels')
        name = next((k for k, v in self.arch_zoo.items()
                     if all(listed(settings.get(f, ())) == listed(v.get(f, ())) for f in fields)), 'custom') \
            if settings else 'custom'
        return f'{type(self).__name__}({name})'

    def _extra_outputs(self, x: Tensor) -> Tuple[Tensor, ...]:
        """Outputs after the last stage's (``x``) beyond the stages' own, e.g. FastViT's ``final_conv``."""
        return ()

    def _frozen_modules(self) -> List[nn.Module]:
        """The stem and the first ``frozen_stages`` stages, with the norms on those stages' outputs (as mmpretrain's
        Swin freezes the norm of a frozen stage's output: a frozen stage's returned feature stays fixed)."""
        if self.frozen_stages < 0:
            return []
        norms = getattr(self, 'out_norms', None) or {}
        frozen_norms = [norms[str(i)] for i in range(self.frozen_stages) if str(i) in norms]
        return [self.stem] + list(self.stages[:self.frozen_stages]) + frozen_norms

    def _freeze_stages(self) -> None:
        for module in self._frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    @property
    def deploy(self) -> bool:
        """Whether the backbone is in a fused form (see :attr:`fused_level` for which)."""
        return self.fused_level != 'train'

    @property
    def fused_level(self) -> str:
        """``'train'``, ``'reference'`` or ``'full'``: the fused form the backbone is in (``'partial'`` if only
        some parts are fused)."""
        return fused_level(self)

    def train(self, mode: bool = True) -> 'ReparamBackbone':
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    def reparameterize(self, level: DeployArg = 'full') -> 'ReparamBackbone':
        """Fuses every block into its inference form (``'full'`` by default, or ``'reference'``). Idempotent."""
        super().reparameterize(level)
        self._freeze_stages()  # fusion builds new parameters; frozen stages stay frozen
        return self

