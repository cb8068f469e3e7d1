"""FreiHAND pipeline steps, following METRO's recipe: a 180 px box at the image centre resized to 224, random rotation
and scale, per-channel pixel noise, no flip. A training pipeline::

    dict(type='LoadImageFromFile'),                                 # mmcv: BGR uint8
    dict(type='mmfastvit.HandPoseFromMANO', mano_path=mano_path),  # 'mano' (61,) -> 'pose' (16, 3, 3), 'betas' (10,)
    dict(type='mmfastvit.HandCropAffine', augment=True),            # image, 2D / 3D joints, vertices, global orient
    dict(type='mmfastvit.HandColorNoise'),
    dict(type='mmfastvit.PackHandInputs'),                          # RGB uint8 CHW + BaseDataElement

and the test pipeline the same without ``augment`` and ``HandColorNoise``.

Coordinates. 2D points (the projections ``uv`` of ``K @ xyz``, ``joints_2d``, ``crop_matrix``) are continuous pixel
coordinates: pixel (i, j) covers [i, i + 1) x [j, j + 1), so a W x H image spans [0, W] x [0, H] and FreiHAND's 224 x
224 images have their centre at (112, 112), where their principal points lie. ``crop_matrix`` (3 x 3) maps source to
crop coordinates; a crop of side S spans [0, S], which ``x = 2 u / S - 1`` maps onto [-1, 1].

Rotation. An angle ``a`` (degrees) rotates the image content about the crop centre by the 2D matrix
``[[cos a, -sin a], [sin a, cos a]]`` acting on (u, v) (u right, v down: clockwise on screen for a > 0), and the 3D
points about the optical axis by ``Rz(a) = [[cos a, -sin a, 0], [sin a, cos a, 0], [0, 0, 1]]`` in the camera frame
(x right, y down, z forward). With ``fx == fy`` the rotated 3D points project, through the crop's intrinsics
``[[f fx, 0, p'u], [0, f fy, p'v], [0, 0, 1]]`` (f the crop's zoom, p' the principal point mapped by the crop), onto
the rotated 2D points; with ``fx != fy`` only approximately (as in METRO). The global orientation (the first of MANO's
16 rotations) is pre-multiplied by ``Rz(a)``, which rotates the root-relative MANO mesh by ``Rz(a)``.
"""
import math
from typing import Dict, Sequence, Tuple

import cv2
import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness
from mmengine.structures import BaseDataElement

from mmfastvit.hand.conventions import NUM_MANO_PARAMS, freihand_to_full_pose
from mmfastvit.hand.mano_file import load_mano_file
from mmfastvit.hand.rotation import axis_angle_to_matrix
from mmfastvit.registry import TRANSFORMS

# The results key of the 3D rotation applied to a sample so far (HandCropAffine writes it, HandPoseFromMANO reads it).
ROTATION_KEY = 'hand_rotation'


def rotation_about_optical_axis(angle: float) -> np.ndarray:
    """``Rz(angle)`` (angle in degrees), the 3D rotation that matches the image rotation of :func:`hand_crop_matrix`."""
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def hand_crop_matrix(center: Sequence[float], box_size: float, out_size: int, rotation: float = 0.0,
                     scale: float = 1.0) -> np.ndarray:
    """The 3 x 3 affine map from source to crop pixel coordinates (continuous, see the module docstring).

    The square box of side ``box_size * scale`` centred at ``center`` is rotated by ``rotation`` degrees about its
    centre and resized onto ``[0, out_size]^2``: ``p' = f R (p - center) + out_size / 2`` with
    ``f = out_size / (box_size * scale)``.
    """
    zoom = out_size / (box_size * scale)
    linear = zoom * rotation_about_optical_axis(rotation)[:2, :2]
    matrix = np.eye(3)
    matrix[:2, :2] = linear
    matrix[:2, 2] = out_size / 2.0 - linear @ np.asarray(center, dtype=np.float64)
    return matrix


def project(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    """FreiHAND's projection ``uv = (K @ xyz.T).T; uv = uv[:, :2] / uv[:, 2:]`` of (n, 3) camera-frame points."""
    uv = points @ K.T
    return uv[:, :2] / uv[:, 2:]


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Applies a 3 x 3 (or 2 x 3) affine map to (n, 2) points."""
    return points @ matrix[:2, :2].T + matrix[:2, 2]


def warp_image(img: np.ndarray, matrix: np.ndarray, out_size: int, border_value: float = 0) -> np.ndarray:
    """Warps ``img`` by the continuous-coordinate affine ``matrix`` onto an ``out_size`` square (bilinear).

    OpenCV places pixel centres at integers, half a pixel off the continuous coordinates: ``T(-0.5) M T(0.5)``.
    """
    shift = np.eye(3)
    shift[:2, 2] = 0.5
    cv_matrix = np.linalg.inv(shift) @ matrix @ shift
    return cv2.warpAffine(img, cv_matrix[:2], (out_size, out_size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=border_value)


@TRANSFORMS.register_module()
class HandPoseFromMANO(BaseTransform):
    """FreiHAND's MANO parameters -> full-pose rotation matrices and shape: the targets of the MANO head.

    ``mano`` (61,) = pose 48 | betas 10 | uv_root 2 | scale 1, where pose[3:48] is relative to MANO's mean hand. The
    full pose adds ``hands_mean``, which is read from the MANO file (so this transform, not the dataset, takes
    ``mano_path``). If the sample was already rotated (``HandCropAffine`` ran before), the global orientation gets
    the same rotation, so the order of the two steps does not matter. Samples without ``mano`` (the evaluation split
    without annotations) pass unchanged.

    Required keys: ``mano``. Added keys: ``pose`` (16, 3, 3) float32 (global orientation first, then MANO's 15 joints
    in MANO's order), ``betas`` (10,) float32.

    Args:
        mano_path (str): ``MANO_RIGHT.pkl``, the config's ``mano_path`` (see
            :func:`mmfastvit.hand.mano_file.load_mano_file`).
    """

    def __init__(self, mano_path: str) -> None:
        self.mano_path = mano_path
        self.hands_mean = torch.as_tensor(np.asarray(load_mano_file(mano_path)['hands_mean']), dtype=torch.float64)

    def transform(self, results: Dict) -> Dict:
        if 'mano' not in results:
            return results
        mano = np.asarray(results['mano'], dtype=np.float64).reshape(-1)
        if mano.shape != (NUM_MANO_PARAMS, ):
            raise ValueError(f'HandPoseFromMANO: "mano" of {results.get("img_path", "the sample")} has '
                             f'{mano.size} values, expected FreiHAND\'s 61 (pose 48 | betas 10 | uv_root 2 | scale 1)')
        full_pose = freihand_to_full_pose(torch.from_numpy(mano), self.hands_mean)
        pose = axis_angle_to_matrix(full_pose).numpy()
        if ROTATION_KEY in results:
            pose[0] = results[ROTATION_KEY] @ pose[0]
        results['pose'] = pose.astype(np.float32)
        results['betas'] = mano[48:58].astype(np.float32)
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(mano_path={self.mano_path!r})'


@TRANSFORMS.register_module()
class HandCropAffine(BaseTransform):
    """Crops the hand box with one affine map that also rotates and scales, and transforms the labels with it.

    The image is warped (bilinear, black outside); ``joints_2d`` are the projections of ``joints_3d`` through ``K``
    mapped by the same affine; ``joints_3d`` and ``vertices`` are rotated about the optical axis and ``pose[0]`` (the
    global orientation) is pre-multiplied by the same rotation (see the module docstring for the sign). Scale changes
    only the box (a larger box shows a smaller hand); the 3D labels are unchanged by it.

    With ``augment=True`` each call draws (METRO): rotation ~ N(0, ``rot_std``) degrees clipped to +-``rot_max`` and
    set to 0 with probability ``rot_zero_prob``; scale ~ N(1, ``scale_std``) clipped to ``scale_range``. Draws use
    numpy's global generator (seeded per dataloader worker by mmengine); :meth:`crop` applies given values.

    Required keys: ``img``; with ``joints_3d`` also ``K``. Modified keys: ``img``, ``img_shape``, ``joints_3d``,
    ``vertices``, ``pose``. Added keys: ``joints_2d`` (21, 2) float32 crop pixels, ``crop_matrix`` (3, 3) float32,
    ``hand_rotation`` (3, 3) (the 3D rotation applied), ``crop_rotation`` (degrees), ``crop_scale``.

    Args:
        center (Sequence[float]): Box centre in source pixels. Defaults to (112, 112), FreiHAND's image centre.
        box_size (float): Box side in source pixels at scale 1. Defaults to 180.
        out_size (int): Output side. Defaults to 224.
        augment (bool): Draw a random rotation and scale per call (training). Defaults to False.
        rot_std (float): Defaults to 90.
        rot_max (float): Defaults to 180.
        rot_zero_prob (float): Defaults to 0.6.
        scale_std (float): Defaults to 0.25.
        scale_range (Sequence[float]): Defaults to (0.75, 1.25).
        border_value (float): Fill outside the source image. Defaults to 0.

    Example:
        >>> import numpy as np
        >>> out = HandCropAffine().crop(dict(img=np.zeros((224, 224, 3), np.uint8)), rotation=30.0, scale=1.0)
        >>> out['img'].shape, out['crop_matrix'].shape
        ((224, 224, 3), (3, 3))
    """

    def __init__(self,
                 center: Sequence[float] = (112.0, 112.0),
                 box_size: float = 180.0,
                 out_size: int = 224,
                 augment: bool = False,
                 rot_std: float = 90.0,
                 rot_max: float = 180.0,
                 rot_zero_prob: float = 0.6,
                 scale_std: float = 0.25,
                 scale_range: Sequence[float] = (0.75, 1.25),
                 border_value: float = 0) -> None:
        if len(center) != 2:
            raise ValueError(f'HandCropAffine center must be (u, v), got {center!r}')
        if box_size <= 0 or out_size <= 0:
            raise ValueError(f'HandCropAffine box_size and out_size must be positive, got {box_size}, {out_size}')
        if not 0.0 <= rot_zero_prob <= 1.0:
            raise ValueError(f'HandCropAffine rot_zero_prob must lie in [0, 1], got {rot_zero_prob}')
        if len(scale_range) != 2 or not 0.0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f'HandCropAffine scale_range must be (low, high) with 0 < low <= high, '
                             f'got {scale_range!r}')
        self.center = tuple(float(c) for c in center)
        self.box_size = float(box_size)
        self.out_size = int(out_size)
        self.augment = augment
        self.rot_std = float(rot_std)
        self.rot_max = float(rot_max)
        self.rot_zero_prob = float(rot_zero_prob)
        self.scale_std = float(scale_std)
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.border_value = border_value

    @cache_randomness
    def sample_augmentation(self) -> Tuple[float, float]:
        """One (rotation in degrees, scale) draw; always three draws from numpy's generator, whatever the outcome."""
        rotation = float(np.clip(np.random.randn() * self.rot_std, -self.rot_max, self.rot_max))
        if np.random.rand() < self.rot_zero_prob:
            rotation = 0.0
        scale = float(np.clip(1.0 + np.random.randn() * self.scale_std, *self.scale_range))
        return rotation, scale

    def transform(self, results: Dict) -> Dict:
        rotation, scale = self.sample_augmentation() if self.augment else (0.0, 1.0)
        return self.crop(results, rotation, scale)

    def crop(self, results: Dict, rotation: float = 0.0, scale: float = 1.0) -> Dict:
        """The deterministic part: crops ``results`` with a given rotation (degrees) and scale."""
        if 'crop_matrix' in results:
            raise ValueError(f'HandCropAffine: {results.get("img_path", "the sample")} was already cropped '
                             f'(it has "crop_matrix"); use one HandCropAffine per pipeline')
        matrix = hand_crop_matrix(self.center, self.box_size, self.out_size, rotation, scale)
        rot3d = rotation_about_optical_axis(rotation)
        results['img'] = warp_image(results['img'], matrix, self.out_size, self.border_value)
        results['img_shape'] = (self.out_size, self.out_size)
        if 'joints_3d' in results:
            if 'K' not in results:
                raise KeyError(f'HandCropAffine: {results.get("img_path", "the sample")} has "joints_3d" but no "K" '
                               f'to project them with')
            joints = np.asarray(results['joints_3d'], dtype=np.float64)
            uv = project(joints, np.asarray(results['K'], dtype=np.float64))
            results['joints_2d'] = apply_affine(matrix, uv).astype(np.float32)
            results['joints_3d'] = (joints @ rot3d.T).astype(np.float32)
        if 'vertices' in results:
            results['vertices'] = (np.asarray(results['vertices'], dtype=np.float64) @ rot3d.T).astype(np.float32)
        if 'pose' in results:
            pose = np.array(results['pose'], dtype=np.float64)
            pose[0] = rot3d @ pose[0]
            results['pose'] = pose.astype(np.float32)
        results[ROTATION_KEY] = rot3d @ results.get(ROTATION_KEY, np.eye(3))
        results['crop_matrix'] = matrix.astype(np.float32)
        results['crop_rotation'] = float(rotation)
        results['crop_scale'] = float(scale)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(center={self.center}, box_size={self.box_size}, '
                f'out_size={self.out_size}, augment={self.augment}, rot_std={self.rot_std}, rot_max={self.rot_max}, '
                f'rot_zero_prob={self.rot_zero_prob}, scale_std={self.scale_std}, scale_range={self.scale_range})')


@TRANSFORMS.register_module()
class HandColorNoise(BaseTransform):
    """Multiplies each colour channel by its own factor ~ U[``factor_range``] (METRO: U[0.6, 1.4]), then clips.

    A uint8 image stays uint8 (rounded, clipped to [0, 255]); a float image is clipped to [0, 255] too. The same
    draw for every channel order, so it may run before or after a BGR -> RGB conversion.

    Args:
        factor_range (Sequence[float]): Defaults to (0.6, 1.4).
    """

    def __init__(self, factor_range: Sequence[float] = (0.6, 1.4)) -> None:
        if len(factor_range) != 2 or not 0.0 <= factor_range[0] <= factor_range[1]:
            raise ValueError(f'HandColorNoise factor_range must be (low, high) with 0 <= low <= high, '
                             f'got {factor_range!r}')
        self.factor_range = (float(factor_range[0]), float(factor_range[1]))

    @cache_randomness
    def sample_factors(self, num_channels: int) -> np.ndarray:
        return np.random.uniform(self.factor_range[0], self.factor_range[1], size=num_channels)

    def transform(self, results: Dict) -> Dict:
        img = results['img']
        if img.ndim != 3:
            raise ValueError(f'HandColorNoise expects an H x W x C image, got shape {img.shape}')
        factors = self.sample_factors(img.shape[2]).astype(np.float32)
        noisy = np.clip(img.astype(np.float32) * factors, 0, 255)
        results['img'] = np.rint(noisy).astype(np.uint8) if img.dtype == np.uint8 else noisy.astype(img.dtype)
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(factor_range={self.factor_range})'


@TRANSFORMS.register_module()
class PackHandInputs(BaseTransform):
    """Packs a sample as the hand model reads it.

    ``inputs``: uint8 tensor (3, S, S), RGB. ``data_samples``: a :class:`BaseDataElement` whose data fields (float32
    tensors, only for annotated samples) are ``gt_joints`` (21, 3) and ``gt_vertices`` (778, 3) relative to the wrist
    (FreiHAND joint 0), ``gt_joints_2d`` (21, 2) in [-1, 1] crop coordinates (``2 u / S - 1``), ``gt_pose``
    (16, 3, 3) and ``gt_betas`` (10,); its metainfo holds those of ``meta_keys`` the sample has, with ``root`` (3,)
    the absolute wrist position in the (rotated) camera frame.

    Args:
        channel_order (str): Channel order of ``results['img']``: 'bgr' (mmcv's ``LoadImageFromFile``) or 'rgb'.
            The packed inputs are RGB either way. Defaults to 'bgr'.
        meta_keys (Sequence[str]): Defaults to ('sample_idx', 'img_path', 'K', 'root', 'img_shape', 'crop_matrix',
            'id', 'version').
    """

    # results key -> data-sample field, for annotated samples
    FIELDS = (('joints_3d', 'gt_joints'), ('vertices', 'gt_vertices'), ('joints_2d', 'gt_joints_2d'),
              ('pose', 'gt_pose'), ('betas', 'gt_betas'))
    # where each of them comes from, for the error message
    PRODUCERS = dict(joints_3d='FreiHANDDataset', vertices='FreiHANDDataset', joints_2d='HandCropAffine',
                     pose='HandPoseFromMANO', betas='HandPoseFromMANO')

    def __init__(self,
                 channel_order: str = 'bgr',
                 meta_keys: Sequence[str] = ('sample_idx', 'img_path', 'K', 'root', 'img_shape', 'crop_matrix', 'id',
                                             'version')) -> None:
        if channel_order not in ('bgr', 'rgb'):
            raise ValueError(f'PackHandInputs channel_order "{channel_order}" is not one of [\'bgr\', \'rgb\']')
        self.channel_order = channel_order
        self.meta_keys = tuple(meta_keys)

    def transform(self, results: Dict) -> Dict:
        img = results['img']
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f'PackHandInputs expects an H x W x 3 uint8 image, got {img.dtype} {img.shape} for '
                             f'{results.get("img_path", "the sample")}')
        if self.channel_order == 'bgr':
            img = img[..., ::-1]
        inputs = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))

        sample = BaseDataElement()
        extra_meta: Dict[str, object] = {}
        if 'joints_3d' in results:
            missing = [key for key, _ in self.FIELDS if key not in results]
            if missing:
                raise KeyError(f'PackHandInputs: annotated sample {results.get("img_path", "")} lacks '
                               + ', '.join(f'"{key}" (from {self.PRODUCERS[key]})' for key in missing))
            root = np.asarray(results['joints_3d'], dtype=np.float32)[0].copy()
            height, width = img.shape[:2]
            to_unit = np.float32([2.0 / width, 2.0 / height])  # crop pixels [0, S] -> [-1, 1]
            values = dict(
                joints_3d=np.asarray(results['joints_3d'], dtype=np.float32) - root,
                vertices=np.asarray(results['vertices'], dtype=np.float32) - root,
                joints_2d=np.asarray(results['joints_2d'], dtype=np.float32) * to_unit - 1.0,
                pose=np.asarray(results['pose'], dtype=np.float32),
                betas=np.asarray(results['betas'], dtype=np.float32))
            for key, field in self.FIELDS:
                sample.set_field(torch.from_numpy(np.ascontiguousarray(values[key])), field)
            extra_meta['root'] = root
        meta = {key: results[key] for key in self.meta_keys if key in results}
        meta.update({key: value for key, value in extra_meta.items() if key in self.meta_keys})
        sample.set_metainfo(meta)
        return dict(inputs=inputs, data_samples=sample)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(channel_order={self.channel_order!r}, meta_keys={self.meta_keys})'
