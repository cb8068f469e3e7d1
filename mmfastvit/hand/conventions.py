"""MANO's and FreiHAND's conventions: sizes, joint orders, FreiHAND's 61 MANO numbers, and the conversions between
them. Every other module of the hand task takes these numbers from here.

Joints. MANO's own 16 joints are ordered 0 wrist, 1-3 index, 4-6 middle, 7-9 pinky, 10-12 ring, 13-15 thumb. FreiHAND's
21 official joints (its toolbox) are the ``J_regressor`` rows applied to the **posed** mesh, then the fingertip vertices
``MANO_TIP_VERTICES`` (thumb, index, middle, ring, pinky), reordered by ``MANO_TO_FREIHAND`` to 0 wrist, 1-4 thumb,
5-8 index, 9-12 middle, 13-16 ring, 17-20 pinky (each MCP -> tip). That is :func:`official_joints`.

Pose. :class:`~mmfastvit.hand.mano.MANOLayer` takes the FULL pose as 16 rotation matrices (global orientation + 15
finger joints in MANO's order). FreiHAND's ``training_mano.json`` pose is relative to the mean hand:
:func:`freihand_to_full_pose` adds ``hands_mean``.
"""
from typing import Dict

import torch
from torch import Tensor

NUM_VERTICES = 778
NUM_FACES = 1538
NUM_MANO_JOINTS = 16  # MANO's global orientation + 15 finger joints
NUM_JOINTS = 21  # FreiHAND's joints
NUM_BETAS = 10
NUM_MANO_PARAMS = 61  # FreiHAND's MANO numbers per sample: pose 48 | betas 10 | uv_root 2 | scale 1
# MANO's kinematic tree: parent of each of the 16 joints (wrist; index, middle, pinky, ring, thumb chains of 3).
MANO_PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)
# Fingertip vertices of FreiHAND's toolbox: thumb, index, middle, ring, pinky.
MANO_TIP_VERTICES = (744, 320, 443, 555, 672)
# [16 MANO joints, 5 tips] -> FreiHAND's 21 joints.
MANO_TO_FREIHAND = [0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20]
# FreiHAND's 61 numbers per sample in ``*_mano.json``: name -> (start, stop).
FREIHAND_MANO_SLICES = dict(pose=(0, 48), betas=(48, 58), uv_root=(58, 60), scale=(60, 61))


def official_joints(vertices: Tensor, J_regressor: Tensor) -> Tensor:
    """FreiHAND's 21 joints ``[..., 21, 3]`` (FreiHAND order) of MANO meshes ``[..., 778, 3]``: ``J_regressor``
    ``[16, 778]`` rows applied to the mesh, plus the fingertip vertices, reordered by ``MANO_TO_FREIHAND``."""
    if vertices.shape[-2:] != (NUM_VERTICES, 3):
        raise ValueError(f'official_joints: vertices must be [..., {NUM_VERTICES}, 3], got {list(vertices.shape)}')
    if tuple(J_regressor.shape) != (NUM_MANO_JOINTS, NUM_VERTICES):
        raise ValueError(f'official_joints: J_regressor must be [{NUM_MANO_JOINTS}, {NUM_VERTICES}], '
                         f'got {list(J_regressor.shape)}')
    regressed = torch.einsum('jv,...vc->...jc', J_regressor.to(vertices.dtype), vertices)
    tips = vertices[..., list(MANO_TIP_VERTICES), :]
    return torch.cat((regressed, tips), dim=-2)[..., MANO_TO_FREIHAND, :]


def split_freihand_mano(mano_params: Tensor) -> Dict[str, Tensor]:
    """Splits FreiHAND's 61 numbers ``[..., 61]`` into ``pose`` ``[..., 48]`` (axis-angle, fingers relative to the
    mean hand), ``betas`` ``[..., 10]``, ``uv_root`` ``[..., 2]`` (pixel projection of the wrist) and ``scale``
    ``[..., 1]`` (focal / wrist depth: FreiHAND's toolbox recovers ``xyz[0] = (uv_root - pp, focal) / scale``)."""
    if not isinstance(mano_params, Tensor) or mano_params.dim() < 1 or mano_params.shape[-1] != NUM_MANO_PARAMS:
        shape = list(mano_params.shape) if isinstance(mano_params, Tensor) else type(mano_params).__name__
        raise ValueError(f'split_freihand_mano: mano_params must be a [..., 61] tensor, got {shape}')
    return {name: mano_params[..., start:stop] for name, (start, stop) in FREIHAND_MANO_SLICES.items()}


def freihand_to_full_pose(mano_params: Tensor, hands_mean: Tensor) -> Tensor:
    """MANO's full axis-angle pose ``[..., 16, 3]`` from FreiHAND's parameters: ``[..., 61]`` (or just the pose,
    ``[..., 48]``), whose finger part is relative to the mean hand: full = ``hands_mean`` + pose[3:48]; the global
    orientation pose[0:3] is kept."""
    if not isinstance(mano_params, Tensor) or mano_params.dim() < 1 or mano_params.shape[-1] not in (48, 61):
        shape = list(mano_params.shape) if isinstance(mano_params, Tensor) else type(mano_params).__name__
        raise ValueError(f'freihand_to_full_pose: mano_params must be a [..., 61] or [..., 48] tensor, got {shape}')
    if not isinstance(hands_mean, Tensor) or tuple(hands_mean.shape) != (45, ):
        shape = list(hands_mean.shape) if isinstance(hands_mean, Tensor) else type(hands_mean).__name__
        raise ValueError(f'freihand_to_full_pose: hands_mean must be a [45] tensor, got {shape}')
    pose = mano_params[..., :48]
    fingers = pose[..., 3:] + hands_mean.to(pose)
    return torch.cat((pose[..., :3], fingers), dim=-1).reshape(pose.shape[:-1] + (NUM_MANO_JOINTS, 3))
