"""What gets deployed: the network of a config + checkpoint, or a variant built directly (torch and mmengine only).

A deployable is a plain ``nn.Module`` from one image tensor to tensors:

* a classifier (mmpretrain's ``ImageClassifier`` with ``GlobalAveragePooling`` + ``LinearClsHead``, the distillation
  classifier, or :class:`~mmfastvit.models.FastViTClassifier`) becomes :class:`ExportClassifier`: image -> logits;
* any other model whose ``backbone`` is FastViT (a detector, a segmentor, a hand model) contributes its backbone:
  image -> one feature map per entry of ``out_indices``.

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
from ..models.backbones.fastvit import FastViT
from ..models.classifier import FastViTClassifier
from ..testing import randomize_fusable_state_
from .export_form import ExportClassifier

CLASSIFIER, BACKBONE = 'classifier', 'backbone'
DENSE_OUT_INDICES = (0, 1, 2, 3)
# The paper's latency protocol (FASTVIT.md): batch 8 at 256x256 for classification, batch 2 at 512x512 for the
# backbones of detection / segmentation models.
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
    def backbone(self) -> FastViT:
        """The FastViT inside."""
        return self.model.backbone if isinstance(self.model, ExportClassifier) else self.model


def _output_names(backbone: FastViT) -> Tuple[str, ...]:
    return tuple('final_conv' if i == FastViT.FINAL_CONV_INDEX else f'stage{i}' for i in backbone.out_indices)


def _is_instance_by_name(obj: object, class_name: str) -> bool:
    """``isinstance`` against a task package's class without importing the package."""
    return any(cls.__name__ == class_name for cls in type(obj).__mro__)


def as_deployable(model: nn.Module, name: str, source: Optional[dict] = None) -> Deployable:
    """The deployable part of a built model (see the module docstring).

    Raises:
        TypeError: the model has no FastViT backbone, or is a classifier whose neck / head is not the paper's.
    """
    source = dict(source or {})
    if isinstance(model, FastViTClassifier):
        net = ExportClassifier(model.backbone, model.head.fc)
        return Deployable(net.eval(), CLASSIFIER, name, ('logits',), source)
    if isinstance(model, FastViT):
        return Deployable(model.eval(), BACKBONE, name, _output_names(model), source)
    backbone = getattr(model, 'backbone', None)
    if not isinstance(backbone, FastViT):
        raise TypeError(f'{type(model).__name__} has no FastViT backbone (found {type(backbone).__name__}); '
                        f'the deploy tools export FastViT classifiers and FastViT backbones')
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


def from_variant(variant: str, kind: str = CLASSIFIER, out_indices: Sequence[int] = DENSE_OUT_INDICES,
                 seed: Optional[int] = 0) -> Deployable:
    """A FastViT variant built directly (no config, no task package): the classifier or the dense backbone.

    With ``seed`` set, BatchNorm statistics and layer scales get seeded random values so that fusion is not checked
    on identities (a benchmark's timings do not depend on the values).
    """
    if kind not in PROTOCOL:
        raise ValueError(f'kind "{kind}" is not one of {list(PROTOCOL)}')
    if seed is not None:
        torch.manual_seed(seed)
    if kind == CLASSIFIER:
        model: nn.Module = FastViTClassifier(variant)
    else:
        model = FastViT(variant, out_indices=tuple(out_indices))
    if seed is not None:
        randomize_fusable_state_(model, seed)
    name = f'fastvit_{variant.lower()}' + ('' if kind == CLASSIFIER else '_backbone')
    return as_deployable(model.eval(), name, dict(variant=variant.lower(), seed=seed))
