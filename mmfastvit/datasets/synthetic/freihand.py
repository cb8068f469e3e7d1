"""A tiny FreiHAND-layout 3D hand set of generated images and MANO annotations, for tests, smoke runs and learning
checks.

Each sample is a MANO hand (a random global orientation, fingers posed around the mean hand, random shape) placed
0.5-0.8 m in front of a pinhole camera (focal length 500-600 px for a 224 px image, principal point at the image
centre) so that the whole mesh projects inside the image. The image shows that hand: its projected mesh vertices as
skin-coloured dots and its skeleton as thick lines coloured per finger, over a background that tells the version
apart. The layout and formats are FreiHAND's (``FreiHAND_pub_v2`` plus the ``_eval`` annotations)::

    root/
      MANO_RIGHT.pkl                     a synthetic MANO model, unless ``mano_path`` is given
      training/rgb/%08d.jpg              num_train x 4 versions; file index = id + num_train * k
      training/mask/%08d.jpg             one hand mask per id (white hand on black)
      training_K.json                    per id: 3x3 intrinsics
      training_mano.json                 per id: 1x61 = pose 48 | betas 10 | uv_root 2 | scale 1
      training_xyz.json                  per id: 21x3 joints (metres, camera frame, FreiHAND order)
      training_verts.json                per id: 778x3 MANO mesh (metres, camera frame)
      training_scale.json                per id: |xyz[9] - xyz[10]| (metres)
      evaluation/rgb/%08d.jpg            num_eval (green screen only)
      evaluation_K.json, evaluation_scale.json
      evaluation_xyz.json, evaluation_verts.json, evaluation_mano.json     only with ``eval_annotations``

Reading rules (the same for the released data, where N = 32560 unique training samples):

- Training image of unique id ``i`` in version ``k`` is ``training/rgb/%08d.jpg % (i + N * k)`` with
  ``N = len(training_xyz.json)`` (here ``num_train``), ``k`` = 0 green screen, 1 homogenized, 2 sample, 3 auto; its
  annotations are entry ``i`` of every ``training_*.json`` and its mask is ``training/mask/%08d.jpg % i``.
- ``*_mano.json`` entries are 1x61 (a list holding one list of 61 numbers), as released. ``pose[0:3]`` is the global
  orientation and ``pose[3:48]`` the finger pose relative to MANO's mean hand: the full pose is
  ``hands_mean + pose[3:48]`` (:func:`mmfastvit.hand.conventions.freihand_to_full_pose`). ``uv_root`` is the pixel
  projection of ``xyz[0]`` and ``scale`` is ``focal / xyz[0][2]`` with ``focal = (fx + fy) / 2``, so that, as in
  FreiHAND's toolbox, ``xyz[0] = (uv_root - (cx, cy), focal) / scale``.
- ``verts = MANO(full pose, betas) + t`` for a translation ``t``, and ``xyz`` are the official joints of ``verts``
  (:func:`mmfastvit.hand.conventions.official_joints`); projection ``uv = (K @ xyz.T).T; uv = uv[:, :2] / uv[:, 2:]``.

Output is a function of the arguments only (and of the MANO file). Needs numpy, Pillow, torch and smplx (the last two
imported when used, so importing ``mmfastvit.datasets`` does not need them).
"""
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Tuple

import numpy as np
from PIL import Image, ImageDraw

NUM_VERSIONS = 4
VERSIONS = ('green screen', 'homogenized', 'sample', 'auto')  # k = 0..3 in the file index id + N * k
RELEASED_NUM_TRAIN = 32560  # unique training samples of the released FreiHAND (130,240 images / 4 versions)
MIN_SIZE = 64
DEPTH_RANGE = (0.5, 0.8)  # metres from the camera to the hand's centre (a hand that would not fit is moved back)
FOCAL_RANGE = (500.0, 600.0)  # pixels, for a 224 px image (scaled with ``size``)
MARGIN = 0.06  # projected vertices stay this fraction of the image side away from its border
FINGER_POSE_STD = 0.2  # rad, finger pose around the mean hand
SKIN = (224, 172, 138)
GREEN_SCREEN = (20, 170, 60)
HOMOGENIZED = (120, 112, 104)
# Colour of each finger's bones and joints (thumb, index, middle, ring, pinky); the wrist is white.
FINGER_COLOURS = ((230, 40, 40), (240, 200, 20), (40, 200, 230), (60, 90, 240), (220, 60, 220))
# FreiHAND skeleton: each joint's parent (wrist -> MCP -> PIP -> DIP -> tip per finger).
FREIHAND_PARENTS = (-1, 0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11, 0, 13, 14, 15, 0, 17, 18, 19)


def _check_int(name: str, value: int, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f'{name} must be an int >= {minimum}, got {value!r}')


def project(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    """FreiHAND's projection of camera-frame points ``[N, 3]`` to pixels ``[N, 2]``."""
    uv = points @ np.asarray(K).T
    return uv[:, :2] / uv[:, 2:]


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """Axis-angle of a uniformly random rotation."""
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    if q[0] < 0:
        q = -q
    sin_half = np.linalg.norm(q[1:])
    angle = 2.0 * np.arctan2(sin_half, q[0])
    return q[1:] / max(sin_half, 1e-12) * angle


def _background(version: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Float RGB background of one version: flat green, flat grey, smooth colour gradient, or coloured stripes."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    if version == 0:
        image = np.broadcast_to(np.array(GREEN_SCREEN, dtype=np.float64), (size, size, 3)).copy()
    elif version == 1:
        image = np.broadcast_to(np.array(HOMOGENIZED, dtype=np.float64), (size, size, 3)).copy()
    elif version == 2:
        c0, c1 = rng.uniform(40, 220, size=3), rng.uniform(40, 220, size=3)
        weight = (0.5 * (xx + yy))[..., None]
        image = (1.0 - weight) * c0 + weight * c1
    else:
        c0, c1 = rng.uniform(40, 220, size=3), rng.uniform(40, 220, size=3)
        stripes = (np.sin(2.0 * np.pi * (xx * rng.uniform(3, 6) + yy * rng.uniform(1, 3))) > 0)[..., None]
        image = np.where(stripes, c0, c1)
    return image + rng.normal(0.0, 3.0, size=image.shape)


def _draw_hand(draw: ImageDraw.ImageDraw, uv_verts: np.ndarray, uv_joints: np.ndarray, size: int,
               mask: bool) -> None:
    """The hand: mesh vertices as dots, then the skeleton's bones and joints (all white when drawing the mask)."""
    dot = max(1.5, size / 100.0)
    for u, v in uv_verts:
        draw.ellipse((u - dot, v - dot, u + dot, v + dot), fill=255 if mask else SKIN)
    width = max(2, int(round(size / 40.0)))
    radius = max(2.0, size / 60.0)
    for joint, parent in enumerate(FREIHAND_PARENTS):
        colour = (255, 255, 255) if joint == 0 else FINGER_COLOURS[(joint - 1) // 4]
        if parent >= 0:
            draw.line([tuple(uv_joints[parent]), tuple(uv_joints[joint])], fill=255 if mask else colour, width=width)
    for joint, (u, v) in enumerate(uv_joints):
        colour = (255, 255, 255) if joint == 0 else FINGER_COLOURS[(joint - 1) // 4]
        draw.ellipse((u - radius, v - radius, u + radius, v + radius), fill=255 if mask else colour)


def _render(version: int, size: int, uv_verts: np.ndarray, uv_joints: np.ndarray,
            rng: np.random.Generator) -> Image.Image:
    image = Image.fromarray((np.clip(_background(version, size, rng), 0, 255) + 0.5).astype(np.uint8))
    _draw_hand(ImageDraw.Draw(image), uv_verts, uv_joints, size, mask=False)
    return image


def _render_mask(size: int, uv_verts: np.ndarray, uv_joints: np.ndarray) -> Image.Image:
    mask = Image.new('L', (size, size), 0)
    _draw_hand(ImageDraw.Draw(mask), uv_verts, uv_joints, size, mask=True)
    return mask


class _HandSampler:
    """Poses MANO (float64) and places the hand in front of the camera."""

    def __init__(self, mano_path: str):
        import torch

        from mmfastvit.hand.conventions import official_joints
        from mmfastvit.hand.mano import MANOLayer
        from mmfastvit.hand.mano_file import load_mano_file
        from mmfastvit.hand.rotation import axis_angle_to_matrix
        self.torch = torch
        self.layer = MANOLayer(mano_path, dtype=torch.float64)
        params = load_mano_file(mano_path)
        self.hands_mean = params['hands_mean']
        self.J_regressor = torch.from_numpy(params['J_regressor'])
        self.official_joints = official_joints
        self.axis_angle_to_matrix = axis_angle_to_matrix

    def joints(self, verts: np.ndarray) -> np.ndarray:
        return self.official_joints(self.torch.from_numpy(verts), self.J_regressor).numpy()

    def sample(self, rng: np.random.Generator, size: int) -> Dict[str, np.ndarray]:
        torch = self.torch
        pose = np.concatenate((_random_rotation(rng), rng.normal(0.0, FINGER_POSE_STD, size=45)))  # relative
        betas = np.clip(rng.normal(0.0, 1.0, size=10), -2.5, 2.5)
        full = np.concatenate((pose[:3], pose[3:] + self.hands_mean)).reshape(16, 3)
        with torch.no_grad():
            rotations = self.axis_angle_to_matrix(torch.from_numpy(full))[None]
            verts = self.layer(rotations, torch.from_numpy(betas)[None])['vertices'][0].numpy()
        focal = rng.uniform(*FOCAL_RANGE) * size / 224.0
        K = np.array([[focal, 0.0, size / 2.0], [0.0, focal, size / 2.0], [0.0, 0.0, 1.0]])
        centre = 0.5 * (verts.min(axis=0) + verts.max(axis=0))
        depth = rng.uniform(*DEPTH_RANGE)
        offset = rng.uniform(-0.05, 0.05, size=2)  # of the depth: the hand a little off the optical axis
        low, high = MARGIN * size, (1.0 - MARGIN) * size
        for _ in range(100):
            target = np.array([offset[0] * depth, offset[1] * depth, depth])
            placed = verts + (target - centre)
            uv = project(placed, K)
            if placed[:, 2].min() > 0.1 and uv.min() >= low and uv.max() <= high:
                break
            depth *= 1.05  # too big for the image: move it back
        else:  # unreachable: at 100x the depth any hand fits
            raise RuntimeError('could not place the hand inside the image')
        xyz = self.joints(placed)
        uv_root = project(xyz[:1], K)[0]
        scale = 0.5 * (K[0, 0] + K[1, 1]) / xyz[0, 2]
        mano = np.concatenate((pose, betas, uv_root, [scale]))
        return dict(K=K, xyz=xyz, verts=placed, mano=mano, scale=float(np.linalg.norm(xyz[9] - xyz[10])))


def _dump(root: str, name: str, entries: List) -> str:
    with open(osp.join(root, name), 'w') as f:
        json.dump(entries, f)
    return name


def _annotations(samples: List[Dict[str, np.ndarray]]) -> Dict[str, List]:
    return dict(K=[s['K'].tolist() for s in samples], mano=[[s['mano'].tolist()] for s in samples],
                xyz=[s['xyz'].tolist() for s in samples], verts=[s['verts'].tolist() for s in samples],
                scale=[s['scale'] for s in samples])


def make_tiny_freihand(root: str,
                       num_train: int = 8,
                       num_eval: int = 4,
                       eval_annotations: bool = True,
                       mano_path: Optional[str] = None,
                       size: int = 224,
                       seed: int = 0) -> Dict:
    """Writes a tiny FreiHAND-layout dataset under ``root`` (created if needed; files of the same names are
    replaced). The layout, formats and reading rules are in the module docstring.

    Args:
        root (str): Output directory, the ``data_root`` of the dataset config.
        num_train (int): Unique training samples (each written in 4 versions). Defaults to 8.
        num_eval (int): Evaluation samples. Defaults to 4.
        eval_annotations (bool): Also write ``evaluation_{xyz,verts,mano}.json`` (released later by FreiHAND as
            ``FreiHAND_pub_v2_eval``). Defaults to True.
        mano_path (str, optional): MANO model to pose the hands with. Defaults to None: a synthetic one
            (:func:`mmfastvit.datasets.synthetic.mano.make_synthetic_mano`, seeded with ``seed``) written to
            ``root/MANO_RIGHT.pkl``; configs trained on the set must use the same file.
        size (int): Image side in pixels (at least 64; FreiHAND's is 224). Defaults to 224.
        seed (int): Seed; the same arguments give the same files. Defaults to 0.

    Returns:
        dict: ``root``, ``mano_path``, ``size``, and for ``'training'``: ``num_unique``, ``num_versions``,
        ``num_images``, ``ann_files``; for ``'evaluation'``: ``num_images``, ``annotated``, ``ann_files``
        (file names relative to ``root``).

    Example:
        >>> summary = make_tiny_freihand('/tmp/tiny_freihand', num_train=2, num_eval=1, size=64)
        >>> summary['training']['num_images'], sorted(os.listdir('/tmp/tiny_freihand/training'))
        (8, ['mask', 'rgb'])
    """
    _check_int('num_train', num_train, 1)
    _check_int('num_eval', num_eval, 1)
    _check_int('size', size, MIN_SIZE)
    if not isinstance(eval_annotations, bool):
        raise ValueError(f'eval_annotations must be a bool, got {eval_annotations!r}')
    os.makedirs(root, exist_ok=True)
    if mano_path is None:
        from .mano import make_synthetic_mano
        mano_path = make_synthetic_mano(osp.join(root, 'MANO_RIGHT.pkl'), seed=seed)
    elif not osp.isfile(mano_path):
        raise ValueError(f'mano_path {mano_path!r} is not a file (leave it None for a synthetic MANO model)')
    sampler = _HandSampler(mano_path)
    summary: Dict = dict(root=osp.abspath(root), mano_path=osp.abspath(mano_path), size=size)

    splits: Tuple[Tuple[str, int, int], ...] = (('training', num_train, NUM_VERSIONS), ('evaluation', num_eval, 1))
    for split_id, (split, count, versions) in enumerate(splits):
        os.makedirs(osp.join(root, split, 'rgb'), exist_ok=True)
        if split == 'training':
            os.makedirs(osp.join(root, split, 'mask'), exist_ok=True)
        samples = []
        for index in range(count):
            rng = np.random.default_rng([seed, split_id, index])
            sample = sampler.sample(rng, size)
            samples.append(sample)
            uv_verts, uv_joints = project(sample['verts'], sample['K']), project(sample['xyz'], sample['K'])
            for k in range(versions):
                image = _render(k, size, uv_verts, uv_joints, np.random.default_rng([seed, split_id, index, k]))
                image.save(osp.join(root, split, 'rgb', f'{index + count * k:08d}.jpg'), quality=95)
            if split == 'training':
                _render_mask(size, uv_verts, uv_joints).save(osp.join(root, split, 'mask', f'{index:08d}.jpg'),
                                                             quality=95)
        annotations = _annotations(samples)
        keys = ('K', 'mano', 'xyz', 'verts', 'scale') if split == 'training' or eval_annotations else ('K', 'scale')
        ann_files = {key: _dump(root, f'{split}_{key}.json', annotations[key]) for key in keys}
        summary[split] = dict(num_images=count * versions, ann_files=ann_files)
        if split == 'training':
            summary[split].update(num_unique=count, num_versions=versions)
        else:
            summary[split]['annotated'] = eval_annotations
    return summary
