"""The FastViT paper's hand-mesh head (Sec. 4.3): single fully connected layers regress a weak-perspective camera,
the 16 MANO joint rotations as 6D vectors and 10 shape coefficients; MANO turns them into a root-relative mesh."""
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmengine.structures import BaseDataElement
from torch import Tensor, nn

from ..registry import MODELS
from .conventions import NUM_BETAS, NUM_JOINTS, NUM_MANO_JOINTS, NUM_VERTICES
from .mano import MANOLayer
from .rotation import IDENTITY_6D, axis_angle_to_matrix, matrix_to_rot6d, rot6d_to_matrix

# Initial weak-perspective scale: METRO's FreiHAND crop is a 180 px box; a hand ~0.6 m from a camera of focal length
# ~500 px shows one root-relative metre as f / Z = 833 px, i.e. 2 * 833 / 180 = 9.26 units of [-1, 1] crop coordinates.
DEFAULT_CAMERA_SCALE = 2 * 500 / (180 * 0.6)

LOSS_TERMS = ('vertices', 'joints', 'joints_2d')
LOSS_FUNCTIONS = {'l1': F.l1_loss, 'mse': F.mse_loss}
# data_samples field each loss term compares against, and its shape per sample
TARGETS = {'vertices': ('gt_vertices', (NUM_VERTICES, 3)), 'joints': ('gt_joints', (NUM_JOINTS, 3)),
           'joints_2d': ('gt_joints_2d', (NUM_JOINTS, 2))}


def weak_perspective_project(points: Tensor, camera: Tensor) -> Tensor:
    """``x2d = s * (X[..., :2] + [tx, ty])``: points (B, N, 3) and cameras (B, 3) = (s, tx, ty) -> (B, N, 2)."""
    scale, shift = camera[:, None, :1], camera[:, None, 1:]
    return scale * (points[..., :2] + shift)


def _per_term(value: Union[float, str, Dict[str, Union[float, str]], None], default, name: str) -> dict:
    """Expands one value, or a dict over some of ``LOSS_TERMS``, into one value per term."""
    if isinstance(value, dict):
        unknown = set(value) - set(LOSS_TERMS)
        if unknown:
            raise ValueError(f'{name} has unknown terms {sorted(unknown)}; the terms are {list(LOSS_TERMS)}')
        return {term: value.get(term, default) for term in LOSS_TERMS}
    return {term: default if value is None else value for term in LOSS_TERMS}


@MODELS.register_module()
class MANORegressionHead(BaseModule):
    """Weak-perspective camera, MANO pose (16 x 6D) and shape (10) from one linear layer each, decoded through MANO.

    The pose is decoded with :func:`~mmfastvit.hand.rotation.rot6d_to_matrix` (the 6 numbers are the first two columns
    of the rotation) into the full MANO pose (global orientation + 15 finger joints, mean hand included), which the
    MANO layer turns into 778 vertices and FreiHAND's 21 joints. Both are made root-relative by subtracting joint 0
    (the wrist), and the joints are projected with ``x2d = s * (X[:, :2] + [tx, ty])`` into [-1, 1] crop coordinates.

    Losses (the paper's, each with weight 1.0 by default): ``loss_vertices`` on the root-relative vertices,
    ``loss_joints`` on the root-relative 3D joints and ``loss_joints_2d`` on the projected joints, against the data
    samples' ``gt_vertices``, ``gt_joints`` and ``gt_joints_2d``. The default L1 (mean over all coordinates) is the
    loss METRO's paper writes for all three; METRO's code uses MSE for the two joint terms (``loss_type=dict(
    joints='mse', joints_2d='mse')`` reproduces that).

    The MANO model data (licence-gated) are not part of the head's state dict (:class:`MANOLayer` keeps them in
    non-persistent buffers): checkpoints never carry them, and the file given as ``mano_path`` is what a loaded model
    uses.

    Args:
        in_channels (int): Channels of the input features.
        mano_path (str): Path of ``MANO_RIGHT.pkl`` (https://mano.is.tue.mpg.de).
        loss_weights (float | dict, optional): One weight for every term, or a dict over some of ``'vertices'``,
            ``'joints'``, ``'joints_2d'`` (the others stay 1.0). Defaults to None (all 1.0).
        loss_type (str | dict): ``'l1'`` or ``'mse'``, for every term or as a dict per term (others stay ``'l1'``).
            Defaults to ``'l1'``.
        init_camera (Sequence[float]): Initial camera bias ``(s, tx, ty)``. Defaults to
            ``(DEFAULT_CAMERA_SCALE, 0, 0)``: the wrist at the crop centre and a hand 0.6 m from a 500 px camera seen
            through a 180 px crop (see ``DEFAULT_CAMERA_SCALE``).
        init_pose (str | Sequence[float]): Initial pose bias: ``'identity'`` (every rotation the identity, i.e. MANO's
            flat hand), ``'mano_mean'`` (identity global orientation, MANO's mean hand fingers), or 96 numbers
            (16 x 6D, e.g. a data mean). Defaults to ``'identity'``.
        init_gain (float): Xavier-uniform gain of the three layers' weights, small so that training starts from the
            biases (HMR / SPIN use 0.01). Defaults to 0.01.
        init_cfg (dict | list[dict], optional): mmengine initialization config; when given it replaces the
            initialization above. Defaults to None.

    Inputs are a (B, C) feature vector, a (B, C, H, W) feature map (averaged over H and W here), or a tuple / list of
    those as backbones and necks return (the last one is used).

    Example:
        >>> import torch
        >>> from mmfastvit.hand import make_synthetic_mano
        >>> path = make_synthetic_mano('/tmp/MANO_SYNTH.pkl')
        >>> head = MANORegressionHead(768, path)
        >>> for key, value in head(torch.rand(2, 768, 2, 2)).items():
        ...     print(key, tuple(value.shape))
        camera (2, 3)
        pose_6d (2, 16, 6)
        pose (2, 16, 3, 3)
        betas (2, 10)
        vertices (2, 778, 3)
        joints (2, 21, 3)
        joints_2d (2, 21, 2)
    """

    def __init__(self,
                 in_channels: int,
                 mano_path: str,
                 loss_weights: Union[float, Dict[str, float], None] = None,
                 loss_type: Union[str, Dict[str, str]] = 'l1',
                 init_camera: Sequence[float] = (DEFAULT_CAMERA_SCALE, 0.0, 0.0),
                 init_pose: Union[str, Sequence[float]] = 'identity',
                 init_gain: float = 0.01,
                 init_cfg: Optional[Union[dict, List[dict]]] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if not isinstance(in_channels, int) or in_channels <= 0:
            raise ValueError(f'in_channels must be a positive int, got {in_channels!r}')
        self.in_channels = in_channels
        self.loss_weights = {term: float(w) for term, w in _per_term(loss_weights, 1.0, 'loss_weights').items()}
        self.loss_types = _per_term(loss_type, 'l1', 'loss_type')
        for term, kind in self.loss_types.items():
            if kind not in LOSS_FUNCTIONS:
                raise ValueError(f'loss_type "{kind}" (term "{term}") is not one of {list(LOSS_FUNCTIONS)}')
        self.init_gain = init_gain

        self.mano = MANOLayer(mano_path)
        self.fc_camera = nn.Linear(in_channels, 3)
        self.fc_pose = nn.Linear(in_channels, NUM_MANO_JOINTS * 6)
        self.fc_betas = nn.Linear(in_channels, NUM_BETAS)
        self.register_buffer('init_camera', self._parse_init_camera(init_camera), persistent=False)
        self.register_buffer('init_pose', self._parse_init_pose(init_pose), persistent=False)
        self._init_layers()

    @staticmethod
    def _parse_init_camera(init_camera: Sequence[float]) -> Tensor:
        camera = torch.as_tensor(init_camera, dtype=torch.float32)
        if camera.shape != (3,):
            raise ValueError(f'init_camera must be 3 numbers (s, tx, ty), got {init_camera!r}')
        return camera

    def _parse_init_pose(self, init_pose: Union[str, Sequence[float]]) -> Tensor:
        if isinstance(init_pose, str):
            if init_pose == 'identity':
                return torch.tensor(IDENTITY_6D).repeat(NUM_MANO_JOINTS)
            if init_pose == 'mano_mean':
                fingers = axis_angle_to_matrix(self.mano.hands_mean.detach().float().cpu().view(15, 3))
                rotations = torch.cat([torch.eye(3)[None], fingers])
                return matrix_to_rot6d(rotations).reshape(-1)
            raise ValueError(f'init_pose "{init_pose}" is not one of [\'identity\', \'mano_mean\'] or 96 numbers')
        pose = torch.as_tensor(init_pose, dtype=torch.float32).reshape(-1)
        if pose.numel() != NUM_MANO_JOINTS * 6:
            raise ValueError(f'init_pose must be \'identity\', \'mano_mean\' or {NUM_MANO_JOINTS} x 6 = '
                             f'{NUM_MANO_JOINTS * 6} numbers (6D rotations), got {pose.numel()} numbers')
        return pose

    @torch.no_grad()
    def _init_layers(self) -> None:
        for fc in (self.fc_camera, self.fc_pose, self.fc_betas):
            nn.init.xavier_uniform_(fc.weight, gain=self.init_gain)
        self.fc_camera.bias.copy_(self.init_camera)
        self.fc_pose.bias.copy_(self.init_pose)
        self.fc_betas.bias.zero_()

    def init_weights(self) -> None:
        if self.init_cfg is not None:
            super().init_weights()
            return
        self._init_layers()
        self._is_init = True

    def _pool(self, feats: Union[Tensor, Sequence[Tensor]]) -> Tensor:
        if isinstance(feats, (tuple, list)):
            if not feats:
                raise ValueError('MANORegressionHead got an empty tuple of features')
            feats = feats[-1]
        if not isinstance(feats, Tensor):
            raise TypeError(f'MANORegressionHead needs a Tensor or a tuple of Tensors, got {type(feats).__name__}')
        if feats.dim() == 4:
            feats = feats.mean((2, 3))
        if feats.dim() != 2 or feats.shape[1] != self.in_channels:
            raise ValueError(f'MANORegressionHead(in_channels={self.in_channels}) needs features of shape (B, '
                             f'{self.in_channels}) or (B, {self.in_channels}, H, W), got {tuple(feats.shape)}')
        return feats

    def forward(self, feats: Union[Tensor, Sequence[Tensor]]) -> Dict[str, Tensor]:
        """Returns ``camera`` (B, 3), ``pose_6d`` (B, 16, 6), ``pose`` (B, 16, 3, 3), ``betas`` (B, 10), root-relative
        ``vertices`` (B, 778, 3) and ``joints`` (B, 21, 3) in metres, and ``joints_2d`` (B, 21, 2) in crop
        coordinates."""
        x = self._pool(feats)
        camera = self.fc_camera(x)
        pose_6d = self.fc_pose(x).view(-1, NUM_MANO_JOINTS, 6)
        betas = self.fc_betas(x)
        pose = rot6d_to_matrix(pose_6d)
        mesh = self.mano(pose, betas)
        root = mesh['joints'][:, :1]
        joints = mesh['joints'] - root
        vertices = mesh['vertices'] - root
        return dict(camera=camera, pose_6d=pose_6d, pose=pose, betas=betas, vertices=vertices, joints=joints,
                    joints_2d=weak_perspective_project(joints, camera))

    def loss(self, feats: Union[Tensor, Sequence[Tensor]],
             data_samples: Sequence[BaseDataElement]) -> Dict[str, Tensor]:
        """``dict(loss_vertices, loss_joints, loss_joints_2d)`` against the data samples' targets."""
        return self.loss_by_outputs(self(feats), data_samples)

    def loss_by_outputs(self, outputs: Dict[str, Tensor],
                        data_samples: Sequence[BaseDataElement]) -> Dict[str, Tensor]:
        """The losses of :meth:`forward`'s ``outputs``."""
        if len(data_samples) != outputs['joints'].shape[0]:
            raise ValueError(f'{len(data_samples)} data_samples for a batch of {outputs["joints"].shape[0]}')
        losses = {}
        for term in LOSS_TERMS:
            pred = outputs[term]
            target = self._stack_targets(data_samples, *TARGETS[term], like=pred)
            losses[f'loss_{term}'] = self.loss_weights[term] * LOSS_FUNCTIONS[self.loss_types[term]](pred, target)
        return losses

    @staticmethod
    def _stack_targets(data_samples: Sequence[BaseDataElement], key: str, shape: Tuple[int, ...],
                       like: Tensor) -> Tensor:
        targets = []
        for i, sample in enumerate(data_samples):
            if key not in sample:
                raise KeyError(f'data_samples[{i}] has no "{key}" (a {shape} target of the hand loss); '
                               f'its fields are {list(sample.keys())}')
            target = torch.as_tensor(sample.get(key), dtype=like.dtype, device=like.device)
            if tuple(target.shape) != shape:
                raise ValueError(f'data_samples[{i}].{key} has shape {tuple(target.shape)}, expected {shape}')
            targets.append(target)
        return torch.stack(targets)

    def predict(self, feats: Union[Tensor, Sequence[Tensor]],
                data_samples: Optional[Sequence[BaseDataElement]] = None) -> List[BaseDataElement]:
        """Adds ``pred_joints`` (21, 3), ``pred_vertices`` (778, 3) (root-relative, metres), ``pred_joints_2d``
        (21, 2), ``pred_camera`` (3,), ``pred_pose`` (16, 3, 3) and ``pred_betas`` (10,) to each data sample (new
        ones when ``data_samples`` is None) and returns them."""
        outputs = {key: value.detach() for key, value in self(feats).items()}
        batch_size = outputs['joints'].shape[0]
        if data_samples is None:
            data_samples = [BaseDataElement() for _ in range(batch_size)]
        elif len(data_samples) != batch_size:
            raise ValueError(f'{len(data_samples)} data_samples for a batch of {batch_size}')
        for i, sample in enumerate(data_samples):
            sample.pred_joints = outputs['joints'][i]
            sample.pred_vertices = outputs['vertices'][i]
            sample.pred_joints_2d = outputs['joints_2d'][i]
            sample.pred_camera = outputs['camera'][i]
            sample.pred_pose = outputs['pose'][i]
            sample.pred_betas = outputs['betas'][i]
        return list(data_samples)
