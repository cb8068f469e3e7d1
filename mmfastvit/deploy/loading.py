"""What gets deployed: the network of a config + checkpoint, or a variant built directly (torch and mmengine only).

A deployable is a plain ``nn.Module`` from one image tensor to tensors. Its backbone is a deployable backbone
(:mod:`mmfastvit.deploy.backbones`: FastViT, FMViT):

* a classifier (mmpretrain's ``ImageClassifier`` with ``GlobalAveragePooling`` + ``LinearClsHead``, the distillation
  classifier, :class:`~mmfastvit.models.FastViTClassifier` or :class:`~mmfastvit.models.FMViTClassifier`) becomes
  :class:`ExportClassifier`: image -> logits;
* any other model whose ``backbone`` is one of them (a detector, a segmentor, a hand model) contributes its backbone:
  image -> one feature map per entry of ``out_indices``.

Variants built directly are named as the deploy tools take them: FastViT's by its arch (``'t8'`` ... ``'ma36'``, or
``'fastvit_t8'``), FMViT's with the family in front (``'fmvit_t'`` ... ``'fmvit_l'``).

The image is the network input after the data preprocessor (mean / std normalization is the caller's, as in Apple's
export). The config's task package (mmpretrain, mmdet, mmseg) is imported through its scope only when a config is
given; :func:`from_variant` needs none.
"""
import os.path as osp
from dataclasses import dataclass, field
from typing import Optional, Sequence, Tuple

import torch
from mmengine.config import Config
from torch import nn

from ..fileio import CheckpointError
from ..models.classifier import PooledLinearClassifier
from ..models.utils.fusion_checks import randomize_fusable_state_
from .backbones import (BackboneFacts, canonical_variant, facts_of, families, is_deployable_backbone, names,
                        parse_variant)
from .export_form import ExportClassifier

CLASSIFIER, BACKBONE = 'classifier', 'backbone'
DENSE_OUT_INDICES = (0, 1, 2, 3)
# The paper's latency protocol (its Section 4, "Benchmarking"): batch 8 at 256x256 for classification, batch 2 at
# 512x512 for the backbones of detection / segmentation models. Classifiers of a family whose paper uses another
# resolution take its ``classifier_input_size`` (FMViT: 224).
PROTOCOL = {CLASSIFIER: dict(batch=8, shape=(256, 256)), BACKBONE: dict(batch=2, shape=(512, 512))}
INPUT_NAME = 'images'  # the input name of Apple's Core ML export (ml-fastvit export_model.py)


@dataclass
class Deployable:
    """A network ready to fuse and export.

    Attributes:
        model (nn.Module): image tensor -> tensor(s), in eval mode (fused or not).
        kind (str): ``'classifier'`` or ``'backbone'``.
        name (str): File stem for exported files, e.g. ``'fastvit_t8_in1k'``.
        output_names (tuple[str]): One name per output: ``('logits',)`` or ``('stage0', ..., 'stage3')``.
        source (dict): Where it came from (config, checkpoint or variant), recorded in reports.
    """

    model: nn.Module
    kind: str
    name: str
    output_names: Tuple[str, ...]
    source: dict = field(default_factory=dict)

    @property
    def backbone(self) -> nn.Module:
        """The deployable backbone inside (FastViT, FMViT)."""
        return self.model.backbone if isinstance(self.model, ExportClassifier) else self.model

    @property
    def facts(self) -> BackboneFacts:
        """Its backbone's deploy facts."""
        return facts_of(self.backbone)

    @property
    def family(self) -> str:
        """``'fastvit'``, ``'fmvit'``."""
        return self.facts.family


def default_shape(deployable: Deployable) -> Tuple[int, int]:
    """The input a deployable is exported and timed at unless told otherwise: 256x256 for a FastViT classifier,
    224x224 for an FMViT classifier (each paper's resolution), 512x512 for a dense backbone (the paper's protocol)."""
    if deployable.kind == CLASSIFIER:
        side = deployable.facts.classifier_input_size
        return side, side
    return tuple(PROTOCOL[BACKBONE]['shape'])


def _output_names(backbone: nn.Module) -> Tuple[str, ...]:
    facts = facts_of(backbone)
    return tuple(facts.output_name(i) for i in backbone.out_indices)


def _is_instance_by_name(obj: object, class_name: str) -> bool:
    """``isinstance`` against a task package's class without importing the package."""
    return any(cls.__name__ == class_name for cls in type(obj).__mro__)


def as_deployable(model: nn.Module, name: str, source: Optional[dict] = None) -> Deployable:
    """The deployable part of a built model (see the module docstring).

    Raises:
        TypeError: the model has no FastViT / FMViT backbone, or is a classifier whose neck / head is not the paper's.
    """
    source = dict(source or {})
    if isinstance(model, PooledLinearClassifier):
        net = ExportClassifier(model.backbone, model.head.fc)
        return Deployable(net.eval(), CLASSIFIER, name, ('logits',), source)
    if is_deployable_backbone(model):
        return Deployable(model.eval(), BACKBONE, name, _output_names(model), source)
    backbone = getattr(model, 'backbone', None)
    if not is_deployable_backbone(backbone):
        raise TypeError(f'{type(model).__name__} has no {names("or")} backbone (found {type(backbone).__name__}); '
                        f'the deploy tools export {names("/")} classifiers and backbones')
    if _is_instance_by_name(model, 'ImageClassifier'):
        neck, head = getattr(model, 'neck', None), getattr(model, 'head', None)
        if not (_is_instance_by_name(neck, 'GlobalAveragePooling') and _is_instance_by_name(head, 'LinearClsHead')):
            raise TypeError(f'classifier with neck {type(neck).__name__} and head {type(head).__name__}: the export '
                            f'covers the paper\'s GlobalAveragePooling + LinearClsHead')
        net = ExportClassifier(backbone, head.fc)
        return Deployable(net.eval(), CLASSIFIER, name, ('logits',), source)
    return Deployable(backbone.eval(), BACKBONE, name, _output_names(backbone),
                      dict(source, task_model=type(model).__name__))


def load_from_config(config: str, checkpoint: Optional[str], cfg_options: Optional[dict] = None) -> Deployable:
    """Builds ``config``'s model, loads ``checkpoint`` into it strictly and returns its deployable part.

    The checkpoint is read with ``torch.load(weights_only=True)`` (mmengine's loader, with the allowlist of
    :func:`mmfastvit.engine.mmengine_checkpoint_globals` for Runner checkpoints). A fused checkpoint needs
    ``cfg_options={'model.backbone.deploy': True}``.

    Raises:
        FileNotFoundError: ``config`` or ``checkpoint`` does not exist.
        CheckpointError: the checkpoint does not fit the model the config builds.
    """
    from mmengine.runner import load_checkpoint

    from ..convert.reparameterize import build_model_from_config
    from ..engine.checkpoint import mmengine_checkpoint_globals

    if not osp.isfile(config):
        raise FileNotFoundError(f'config "{config}" does not exist')
    if checkpoint is not None and not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint "{checkpoint}" does not exist')
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if 'backbone' in cfg.model:
        cfg.model.backbone.pop('init_cfg', None)  # the checkpoint supplies the weights; nothing is downloaded
    model = build_model_from_config(cfg)
    if checkpoint is not None:
        with mmengine_checkpoint_globals():
            try:
                load_checkpoint(model, checkpoint, map_location='cpu', strict=True, logger='silent')
            except (RuntimeError, KeyError) as err:
                lines = str(err).strip().splitlines()
                hint = ''
                if 'reparam' in str(err):
                    hint = (' (it looks fused: add --cfg-options model.backbone.deploy=True)'
                            if not cfg.model.get('backbone', {}).get('deploy') else ' (it looks unfused: drop '
                            'model.backbone.deploy=True)')
                raise CheckpointError(f'checkpoint "{checkpoint}" does not fit the model of config "{config}"{hint}: '
                                      f'{" ".join(lines[:3])[:600]}') from err
    name = osp.splitext(osp.basename(config))[0]
    return as_deployable(model, name, dict(config=config, checkpoint=checkpoint, cfg_options=cfg_options or {}))


def calibrate_batchnorm_(model: nn.Module, seed: int = 0, shape: Tuple[int, int] = (224, 224),
                         min_var: float = 1.0) -> nn.Module:
    """Sets every BatchNorm's running statistics to those it sees on a seeded random batch, with the variance at
    least ``min_var``, in place (affine values stay); returns the model in eval mode.

    FMViT has no layer scales and ReLU throughout, so with the random statistics of
    :func:`~mmfastvit.models.utils.fusion_checks.randomize_fusable_state_` its activations grow block after block
    (FMViT-L's logits reach 1e11, where float32 rounding alone exceeds any absolute tolerance). Batch statistics keep
    every BatchNorm output near its affine scale and are still far from identities. The variance floor keeps a BatchNorm
    from scaling up a channel that barely varies on random images: without it, float32 rounding grows ~1.14x per block
    and FMViT-L's fused and unfused float32 outputs differ by 2e-4 (relative) at 224x224, though in float64 the two
    agree to 5e-13; with it, they differ by 2e-7, as FastViT's do.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    momenta = [m.momentum for m in norms]
    x = torch.rand(2, 3, *shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    model.eval()
    for norm in norms:
        norm.momentum = 1.0  # running statistics := this batch's
        norm.train()
    with torch.no_grad():
        model(x)
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
            norm.running_var.clamp_(min=min_var)
    return model.eval()


def from_variant(variant: str, kind: str = CLASSIFIER, out_indices: Sequence[int] = DENSE_OUT_INDICES,
                 seed: Optional[int] = 0) -> Deployable:
    """A variant of a deployable backbone built directly (no config, no task package): the classifier or the dense
    backbone.

    Args:
        variant (str): One of :func:`variant_names`: ``'t8'`` ... ``'ma36'`` (FastViT; ``'fastvit_t8'`` also works)
            or ``'fmvit_t'`` ... ``'fmvit_l'``.
        kind (str): ``'classifier'`` or ``'backbone'``.
        out_indices (Sequence[int]): The dense backbone's outputs. Defaults to the four stages.
        seed (int, optional): With a seed, BatchNorm statistics and layer scales get seeded random values so that
            fusion is not checked on identities (the BatchNorms of a family declared ``calibrate_batchnorm``, FMViT's,
            then take the statistics of a seeded random batch: :func:`calibrate_batchnorm_`); a benchmark's timings
            do not depend on the values.
    """
    if kind not in PROTOCOL:
        raise ValueError(f'kind "{kind}" is not one of {list(PROTOCOL)}')
    family, arch = parse_variant(variant)
    facts = families()[family]
    if seed is not None:
        torch.manual_seed(seed)
    if kind == CLASSIFIER:
        model: nn.Module = facts.classifier(arch)
    else:
        model = facts.backbone(arch, out_indices=tuple(out_indices))
    if seed is not None:
        randomize_fusable_state_(model, seed)
        if facts.calibrate_batchnorm:
            calibrate_batchnorm_(model, seed)
    name = f'{family}_{arch}' + ('' if kind == CLASSIFIER else '_backbone')
    source = dict(variant=canonical_variant(variant), family=family, arch=arch, seed=seed)
    return as_deployable(model.eval(), name, source)
