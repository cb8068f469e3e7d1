"""DeiT hard distillation for mmpretrain classifiers, as FastViT's distilled models were trained (imports mmpretrain).

One head, no distillation token: the student's logits on the augmented batch are trained against both targets,

    loss = (1 - w) * head_loss(logits, mixed / smoothed labels) + w * CE(logits, argmax(teacher(same batch)))

with ``w = distill_weight`` (0.5 in DeiT and FastViT). A config opts in with::

    custom_imports = dict(imports=['mmfastvit.integrations.distill'], allow_failed_imports=False)
    model = dict(type='mmfastvit.HardDistillationClassifier', teacher=dict(config=..., checkpoint=...), ...)

The teacher is built on the first :meth:`~HardDistillationClassifier.loss` call and is held outside the registered
submodules: it is not in ``state_dict()`` (checkpoints keep the plain classifier's ``backbone.*`` / ``head.*`` keys),
not in ``parameters()`` (the optimizer, DDP and EMA never see it), and ``model.train()`` leaves it in eval mode.
Prediction and testing use the student alone and never build the teacher.
"""
import copy
import os.path as osp
from typing import List, Optional

import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.model import BaseModel
from mmengine.registry import DefaultScope
from mmpretrain.models import ImageClassifier
from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
from mmpretrain.structures import DataSample
from torch import Tensor, nn

from ..fileio import CheckpointError, extract_state_dict, load_weights
from ..registry import MODELS

TEACHER_KEYS = ('config', 'model', 'checkpoint')
_CHECKPOINT_EXPECTED = ('a state dict of the teacher saved with torch.save, bare or under "state_dict" or "model" '
                        '(for the default RegNetY-16GF teacher: DeiT\'s '
                        'https://dl.fbaipublicfiles.com/deit/regnety_160-a5fe301d.pth)')


def load_teacher_state_dict(path: str) -> dict:
    """Reads teacher weights with ``torch.load(weights_only=True)``.

    Accepts a bare state dict or one under ``'state_dict'`` (mmengine) or ``'model'`` (DeiT, timm training
    scripts); a ``module.`` prefix left by DistributedDataParallel is removed.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        CheckpointError: the file is unreadable, holds objects ``weights_only`` refuses (beyond those training
            checkpoints carry, :func:`mmfastvit.fileio.load_weights`), or has no tensor state dict.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'teacher checkpoint "{path}" does not exist; expected {_CHECKPOINT_EXPECTED}')
    try:
        state_dict, _ = extract_state_dict(load_weights(path), path)
    except CheckpointError as error:
        raise CheckpointError(f'teacher checkpoint: {error}. Expected {_CHECKPOINT_EXPECTED}. For a file you trust '
                              f'that holds other objects, keep only the weights: '
                              f'torch.save(torch.load(path, weights_only=False)["state_dict"], new_path)') from error
    return state_dict


def check_teacher_spec(teacher: dict) -> None:
    """Checks the form of a teacher spec (see :func:`build_teacher`) without reading any file."""
    if not isinstance(teacher, dict):
        raise TypeError(f'teacher must be a dict with keys {list(TEACHER_KEYS)}, got {type(teacher).__name__}')
    unknown = sorted(set(teacher) - set(TEACHER_KEYS))
    if unknown:
        raise ValueError(f'teacher keys {unknown} are not among {list(TEACHER_KEYS)}')
    if (teacher.get('config') is None) == (teacher.get('model') is None):
        raise ValueError('teacher needs exactly one of "config" (a config file whose `model` is the teacher) '
                         'and "model" (a model config dict)')
    if not teacher.get('checkpoint'):
        raise ValueError('teacher needs "checkpoint": the path of the teacher\'s weights')


def build_teacher(spec: dict) -> nn.Module:
    """Builds the frozen, eval-mode teacher described by ``spec`` and loads its checkpoint.

    Args:
        spec (dict): ``config`` (a config file whose ``model`` is the teacher; its ``default_scope`` and
            ``custom_imports`` apply) or ``model`` (a model config dict, built in the mmpretrain scope), and
            ``checkpoint`` (see :func:`load_teacher_state_dict`).
    """
    check_teacher_spec(spec)
    if spec.get('config') is not None:
        path = spec['config']
        if not osp.isfile(path):
            raise FileNotFoundError(f'teacher config "{path}" does not exist; expected a config file whose `model` '
                                    'is the teacher (e.g. configs/_base_/models/regnety_16gf_teacher.py)')
        cfg = Config.fromfile(path)  # also imports the config's custom_imports
        if 'model' not in cfg:
            raise KeyError(f'teacher config "{path}" has no `model`')
        model_cfg, scope = cfg.model, cfg.get('default_scope') or 'mmpretrain'
    else:
        model_cfg, scope = spec['model'], 'mmpretrain'
    state_dict = load_teacher_state_dict(spec['checkpoint'])  # before building: a missing file fails fast
    with DefaultScope.overwrite_default_scope(scope):
        teacher = MMPRETRAIN_MODELS.build(copy.deepcopy(model_cfg))
    try:
        missing, unexpected = teacher.load_state_dict(state_dict, strict=False)
    except RuntimeError as error:  # shape mismatches
        raise RuntimeError(f'teacher checkpoint "{spec["checkpoint"]}" does not fit the teacher '
                           f'{type(teacher).__name__}: {error}') from error
    if missing or unexpected:
        raise RuntimeError(f'teacher checkpoint "{spec["checkpoint"]}" does not fit the teacher '
                           f'{type(teacher).__name__}: {len(missing)} missing keys {missing[:5]}, '
                           f'{len(unexpected)} unexpected keys {unexpected[:5]}')
    return teacher.requires_grad_(False).eval()


class _DetachedTeacher:
    """Holds the teacher where ``nn.Module`` does not look: no state_dict, parameters(), train() or ``.to()``.

    A deep copy of the student (mmengine's EMA model) shares the teacher instead of duplicating it.
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def __deepcopy__(self, memo: dict) -> '_DetachedTeacher':
        return self


@MODELS.register_module()
class HardDistillationClassifier(ImageClassifier):
    """An :class:`mmpretrain.models.ImageClassifier` trained with DeiT hard distillation from a frozen teacher.

    Args:
        teacher (dict): ``config=<path of a config whose model is the teacher>`` or ``model=<model config dict>``,
            and ``checkpoint=<path of the teacher's weights>`` (loaded with ``weights_only=True``; see
            :func:`load_teacher_state_dict`). Nothing is read until the first :meth:`loss` call. The teacher gets the
            student's preprocessed batch, so it must expect the same normalization.
        distill_weight (float): Weight ``w`` of the teacher's term; the head's own loss gets ``1 - w``.
            Defaults to 0.5 (DeiT's and FastViT's).
        **kwargs: :class:`ImageClassifier` arguments (``backbone``, ``neck``, ``head``, ``train_cfg``,
            ``data_preprocessor``, ``init_cfg``). The head must compute its loss from class scores
            (``ClsHead._get_loss``), as ``LinearClsHead`` does.

    Example:
        >>> import torch
        >>> from mmfastvit.integrations.distill import HardDistillationClassifier
        >>> model = HardDistillationClassifier(
        ...     teacher=dict(config='configs/_base_/models/regnety_16gf_teacher.py',
        ...                  checkpoint='checkpoints/regnety_160-a5fe301d.pth'),
        ...     backbone=dict(type='mmfastvit.FastViT', arch='t8', out_indices=(4,)),
        ...     neck=dict(type='GlobalAveragePooling'),
        ...     head=dict(type='LinearClsHead', num_classes=1000, in_channels=768)).eval()
        >>> print(model.teacher)  # built by the first loss() call
        None
        >>> model(torch.rand(1, 3, 256, 256)).shape  # inference runs the student alone
        torch.Size([1, 1000])
    """

    def __init__(self, teacher: dict, distill_weight: float = 0.5, **kwargs) -> None:
        check_teacher_spec(teacher)
        if not 0.0 <= distill_weight <= 1.0:
            raise ValueError(f'distill_weight={distill_weight} is not in [0, 1]')
        super().__init__(**kwargs)
        if not hasattr(self.head, '_get_loss'):
            raise TypeError(f'{type(self).__name__} needs a head that computes its loss from class scores '
                            f'(mmpretrain ClsHead._get_loss, e.g. LinearClsHead), got {type(self.head).__name__}')
        self.teacher_cfg = copy.deepcopy(dict(teacher))
        self.distill_weight = distill_weight
        self._teacher: Optional[_DetachedTeacher] = None

    @property
    def teacher(self) -> Optional[nn.Module]:
        """The teacher once built (by :meth:`build_teacher` or the first :meth:`loss` call), else None."""
        return None if self._teacher is None else self._teacher.module

    def build_teacher(self) -> nn.Module:
        """Builds and loads the teacher now (e.g. to fail before training starts); a second call returns it."""
        if self._teacher is None:
            self._teacher = _DetachedTeacher(build_teacher(self.teacher_cfg))
        return self._teacher.module

    @torch.no_grad()
    def teacher_logits(self, inputs: Tensor) -> Tensor:
        """The teacher's class scores on ``inputs`` (moved to their device on first use)."""
        teacher = self.build_teacher()
        weight = next(teacher.parameters(), None)
        if weight is not None and weight.device != inputs.device:
            teacher.to(inputs.device)
        logits = teacher(inputs, mode='tensor') if isinstance(teacher, BaseModel) else teacher(inputs)
        if not isinstance(logits, Tensor) or logits.dim() != 2:
            raise TypeError(f'the teacher {type(teacher).__name__} must return (N, classes) logits in tensor mode, '
                            f'got {type(logits).__name__}')
        return logits

    def loss(self, inputs: Tensor, data_samples: List[DataSample]) -> dict:
        """``loss_cls`` = (1 - w) x the head's loss, ``loss_distill`` = w x CE(logits, teacher's argmax)."""
        cls_score = self.head(self.extract_feat(inputs))
        losses = self.head._get_loss(cls_score, data_samples)
        teacher_logits = self.teacher_logits(inputs)
        if teacher_logits.shape != cls_score.shape:
            raise ValueError(f'teacher logits {tuple(teacher_logits.shape)} and student logits '
                             f'{tuple(cls_score.shape)} differ; both must score the same classes')
        losses['loss_cls'] = (1.0 - self.distill_weight) * losses.pop('loss')
        losses['loss_distill'] = self.distill_weight * F.cross_entropy(cls_score, teacher_logits.argmax(dim=1))
        return losses
