"""The hand-mesh model: image -> backbone -> (neck) -> MANO regression head, as an mmengine ``BaseModel``."""
import copy
from typing import Dict, List, Optional, Sequence, Tuple, Union

from mmengine.model import BaseModel
from mmengine.structures import BaseDataElement
from torch import Tensor, nn

from ..models.utils.reparam import DeployArg, ReparameterizeMixin, reparameterize_model
from ..registry import MODELS
from .head import MANORegressionHead

# ImageNet statistics in RGB order, 0-255 (the FreiHAND pipeline packs RGB uint8 images)
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
DEFAULT_DATA_PREPROCESSOR = dict(type='ImgDataPreprocessor', mean=IMAGENET_MEAN, std=IMAGENET_STD, bgr_to_rgb=False)


def _build(cfg: Union[dict, nn.Module], name: str) -> nn.Module:
    if isinstance(cfg, nn.Module):
        return cfg
    if not isinstance(cfg, dict):
        raise TypeError(f'{name} must be a config dict or an nn.Module, got {type(cfg).__name__}')
    return MODELS.build(cfg)


@MODELS.register_module()
class HandMeshEstimator(ReparameterizeMixin, BaseModel):
    """3D hand mesh from one RGB crop: backbone -> optional neck -> :class:`~mmfastvit.hand.head.MANORegressionHead`.

    Without a neck the head takes the backbone's last output and averages it over space itself. When the head config
    has no ``in_channels`` and there is no neck, it is taken from the backbone's ``out_channels`` (the last entry).

    ``reparameterize()`` / ``switch_to_deploy()`` (or :func:`~mmfastvit.models.reparameterize_model` on the whole
    model) fuse the backbone in place; the fused model predicts the same mesh.

    Args:
        backbone (dict | nn.Module): e.g. ``dict(type='mmfastvit.FastViT', arch='ma36', out_indices=(4,))``.
        head (dict | nn.Module): e.g. ``dict(type='mmfastvit.MANORegressionHead', mano_path='MANO_RIGHT.pkl')``
            (the type defaults to :class:`MANORegressionHead`).
        neck (dict | nn.Module, optional): Between backbone and head, e.g. ``dict(type='mmpretrain.
            GlobalAveragePooling')`` where mmpretrain is installed. Defaults to None.
        data_preprocessor (dict | nn.Module, optional): Defaults to mmengine's ``ImgDataPreprocessor`` with the
            ImageNet mean / std in RGB order (inputs are RGB uint8, no channel swap).
        init_cfg (dict | list[dict], optional): mmengine initialization config. Defaults to None.

    Example:
        >>> import torch
        >>> from mmfastvit.hand import make_synthetic_mano
        >>> path = make_synthetic_mano('/tmp/MANO_SYNTH.pkl')
        >>> model = HandMeshEstimator(backbone=dict(type='mmfastvit.FastViT', arch='t8', out_indices=(4,)),
        ...                           head=dict(type='mmfastvit.MANORegressionHead', mano_path=path))
        >>> sample, = model.eval()(torch.rand(1, 3, 64, 64), mode='predict')
        >>> tuple(sample.pred_vertices.shape), tuple(sample.pred_joints.shape)
        ((778, 3), (21, 3))
    """

    def __init__(self,
                 backbone: Union[dict, nn.Module],
                 head: Union[dict, nn.Module],
                 neck: Optional[Union[dict, nn.Module]] = None,
                 data_preprocessor: Optional[Union[dict, nn.Module]] = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        if data_preprocessor is None:
            data_preprocessor = copy.deepcopy(DEFAULT_DATA_PREPROCESSOR)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = _build(backbone, 'backbone')
        self.neck = None if neck is None else _build(neck, 'neck')
        if isinstance(head, dict):
            head = dict(head)
            head.setdefault('type', MANORegressionHead)
            if 'in_channels' not in head and self.neck is None:
                channels = getattr(self.backbone, 'out_channels', None)
                if not channels:
                    raise ValueError('head has no in_channels and the backbone has no out_channels to take it from')
                head['in_channels'] = channels[-1]
        self.head = _build(head, 'head')

    def extract_feat(self, inputs: Tensor) -> Tuple[Tensor, ...]:
        """Backbone (and neck) features of normalized images (B, 3, H, W)."""
        feats = self.backbone(inputs)
        if self.neck is not None:
            feats = self.neck(feats)
        return feats

    def forward(self,
                inputs: Tensor,
                data_samples: Optional[Sequence[BaseDataElement]] = None,
                mode: str = 'tensor') -> Union[Dict[str, Tensor], List[BaseDataElement]]:
        """``'tensor'``: the head's outputs (a dict of tensors, see :meth:`MANORegressionHead.forward`);
        ``'loss'``: a dict of losses (needs ``data_samples`` with targets); ``'predict'``: the data samples (new ones
        when None) with ``pred_joints``, ``pred_vertices``, ``pred_camera``, ``pred_pose``, ``pred_betas`` added."""
        if mode == 'tensor':
            return self.head(self.extract_feat(inputs))
        if mode == 'loss':
            if data_samples is None:
                raise ValueError('mode="loss" needs data_samples with gt_vertices, gt_joints and gt_joints_2d')
            return self.head.loss(self.extract_feat(inputs), data_samples)
        if mode == 'predict':
            return self.head.predict(self.extract_feat(inputs), data_samples)
        raise ValueError(f'mode "{mode}" is not one of [\'tensor\', \'loss\', \'predict\']')

    def reparameterize(self, level: DeployArg = 'full') -> 'HandMeshEstimator':
        """Fuses the backbone (and anything fusable in neck / head) in place. Idempotent."""
        if hasattr(self.backbone, 'reparameterize'):
            self.backbone.reparameterize(level)  # the backbone's own method keeps its frozen stages frozen
        reparameterize_model(self, level)
        return self
