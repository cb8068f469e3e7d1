"""The MANO layer: smplx's MANO built from the arrays :func:`~mmfastvit.hand.mano_file.load_mano_file` reads, posed
by rotation matrices, returning the mesh and FreiHAND's 21 official joints
(:func:`~mmfastvit.hand.conventions.official_joints`).

Pose. :class:`MANOLayer` takes the FULL pose as 16 rotation matrices (global orientation + 15 finger joints in MANO's
order) and adds nothing to it (smplx ``MANOLayer``, ``use_pca=False``, ``flat_hand_mean=True``, ``pose2rot=False``).
FreiHAND's ``training_mano.json`` pose is relative to the mean hand:
:func:`~mmfastvit.hand.conventions.freihand_to_full_pose` adds ``hands_mean``.

Example:
    >>> import torch
    >>> from mmfastvit.hand import make_synthetic_mano
    >>> path = make_synthetic_mano('/tmp/MANO_RIGHT.pkl')
    >>> mano = MANOLayer(path)
    >>> out = mano(torch.eye(3).expand(2, 16, 3, 3), torch.zeros(2, 10))
    >>> out['vertices'].shape, out['joints'].shape, mano.faces.shape, mano.hands_mean.shape
    (torch.Size([2, 778, 3]), torch.Size([2, 21, 3]), torch.Size([1538, 3]), torch.Size([45]))
"""
import contextlib
import io
import os
from typing import Dict, Union

import numpy as np
import torch
from torch import Tensor, nn

from .conventions import NUM_BETAS, NUM_MANO_JOINTS, official_joints
from .mano_file import load_mano_file


def _build_smplx_mano(params: Dict[str, np.ndarray], model_path: str, dtype: torch.dtype) -> nn.Module:
    try:
        import smplx
        from smplx.utils import Struct
    except ImportError as err:
        raise ImportError('MANOLayer needs smplx (pip install -r requirements/hand.txt)') from err
    # smplx prints a warning on stdout for every MANO it builds ("only 10 shape coefficients"), which is MANO's size.
    # create_body_pose=False: otherwise smplx's MANOLayer keeps an unused trainable `body_pose` (breaks DDP).
    with contextlib.redirect_stdout(io.StringIO()):
        return smplx.MANOLayer(model_path, data_struct=Struct(**params), use_pca=False, flat_hand_mean=True,
                               num_betas=NUM_BETAS, is_rhand=True, create_body_pose=False, dtype=dtype)


class MANOLayer(nn.Module):
    """MANO posed by rotation matrices, returning the mesh and FreiHAND's 21 official joints.

    smplx's ``MANOLayer`` (``use_pca=False``, ``flat_hand_mean=True``, rotation matrices through ``pose2rot=False``)
    built from the arrays :func:`load_mano_file` reads, so smplx never unpickles the file. The result is in metres in
    MANO's own frame (no translation). The MANO arrays are non-persistent buffers: they follow ``.to()`` and
    ``.double()`` but stay out of checkpoints, which therefore carry none of the licensed model.

    Args:
        model_path (str): ``MANO_RIGHT.pkl``.
        dtype (torch.dtype): dtype of the MANO arrays (converted from the file's float64). Defaults to float32.

    Attributes:
        hands_mean (Tensor): ``[45]`` mean finger pose (axis-angle), for :func:`freihand_to_full_pose`.
        faces (Tensor): ``[1538, 3]`` int64 triangles.
        J_regressor (Tensor): ``[16, 778]``.

    Example:
        >>> import torch
        >>> from mmfastvit.hand import make_synthetic_mano
        >>> mano = MANOLayer(make_synthetic_mano('/tmp/MANO_RIGHT.pkl'))
        >>> out = mano(torch.eye(3).expand(4, 16, 3, 3), torch.zeros(4, 10))
        >>> out['vertices'].shape, out['joints'].shape
        (torch.Size([4, 778, 3]), torch.Size([4, 21, 3]))
    """

    def __init__(self, model_path: Union[str, os.PathLike], dtype: torch.dtype = torch.float32):
        super().__init__()
        self.model_path = os.fspath(model_path)
        params = load_mano_file(self.model_path)
        self.mano = _build_smplx_mano(params, self.model_path, dtype)
        for module in self.mano.modules():
            for name, buffer in list(module.named_buffers(recurse=False)):
                module.register_buffer(name, buffer, persistent=False)
        self.register_buffer('hands_mean', torch.tensor(params['hands_mean'], dtype=dtype), persistent=False)
        self.register_buffer('faces', torch.tensor(params['f'], dtype=torch.long), persistent=False)

    @property
    def J_regressor(self) -> Tensor:
        return self.mano.J_regressor

    def forward(self, pose: Tensor, betas: Tensor) -> Dict[str, Tensor]:
        """Poses the hand.

        Args:
            pose (Tensor): ``[B, 16, 3, 3]`` full pose as rotation matrices: global orientation, then the 15 finger
                joints in MANO's order (``hands_mean`` already included).
            betas (Tensor): ``[B, 10]`` shape coefficients.

        Returns:
            dict: ``vertices`` ``[B, 778, 3]`` and ``joints`` ``[B, 21, 3]`` (FreiHAND order), metres.
        """
        if not isinstance(pose, Tensor) or pose.dim() != 4 or tuple(pose.shape[1:]) != (NUM_MANO_JOINTS, 3, 3):
            shape = list(pose.shape) if isinstance(pose, Tensor) else type(pose).__name__
            raise ValueError(f'MANOLayer: pose must be a [B, {NUM_MANO_JOINTS}, 3, 3] tensor of rotation matrices '
                             f'(global + 15 finger joints), got {shape}')
        batch = pose.shape[0]
        if not isinstance(betas, Tensor) or tuple(betas.shape) != (batch, NUM_BETAS):
            shape = list(betas.shape) if isinstance(betas, Tensor) else type(betas).__name__
            raise ValueError(f'MANOLayer: betas must be a [B, {NUM_BETAS}] tensor with B = {batch} as in pose, '
                             f'got {shape}')
        output = self.mano(betas=betas, global_orient=pose[:, :1], hand_pose=pose[:, 1:])
        vertices = output.vertices
        return dict(vertices=vertices, joints=official_joints(vertices, self.mano.J_regressor))
