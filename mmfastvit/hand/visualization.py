"""Drawing a predicted hand mesh: its projection through the predicted weak-perspective camera, as shaded triangles
and the 21-joint skeleton over the crop or the original image (cv2), and the test-time hook that does it for
``tools/test.py --show-dir``.

Coordinates follow :mod:`mmfastvit.hand.transforms`: 2D points are continuous pixel coordinates (pixel (i, j) covers
[i, i + 1) x [j, j + 1)). The head's camera maps a root-relative 3D point X to ``x = s * (X[:2] + (tx, ty))`` in
[-1, 1] crop units, i.e. crop pixel ``u = (x + 1) * S / 2`` for a crop of side S; the inverse of the sample's
``crop_matrix`` takes crop pixels back to the original image.
"""
import os
import os.path as osp
from typing import Optional, Sequence, Tuple, Union

import cv2
import numpy as np
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmfastvit.datasets.synthetic.freihand import FINGER_COLOURS, FREIHAND_PARENTS
from mmfastvit.fileio import atomic_write
from mmfastvit.registry import HOOKS

from .mesh_io import save_obj
from .transforms import apply_affine

MESH_COLOR = (178, 200, 235)  # BGR: a light skin tone, shaded per triangle
EDGE_DARKEN = 0.55  # triangle edges: the face colour times this
AMBIENT = 0.35  # shading = AMBIENT + (1 - AMBIENT) * |cos(normal, optical axis)|
COORD_LIMIT = 1e5  # triangles with a vertex further out than this (pixels) are not drawn (cv2's fixed-point range)
SUBPIXEL_BITS = 4  # cv2 drawing with 1/16 px precision


def _numpy(value) -> np.ndarray:
    if hasattr(value, 'detach'):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def project_to_crop(points, camera, crop_size: Union[int, Tuple[int, int]]) -> np.ndarray:
    """Crop pixels (N, 2) of root-relative 3D points (N, 3) through the weak-perspective camera (s, tx, ty).

    Args:
        points (array-like): (N, 3) points, e.g. a prediction's ``pred_vertices`` or ``pred_joints``.
        camera (array-like): (3,) ``(s, tx, ty)``, the prediction's ``pred_camera``.
        crop_size (int | tuple[int, int]): The crop's side S, or its (width, height).
    """
    points, camera = _numpy(points).astype(np.float64), _numpy(camera).astype(np.float64).reshape(-1)
    width, height = (crop_size, crop_size) if np.isscalar(crop_size) else crop_size
    unit = camera[0] * (points[:, :2] + camera[1:3])  # [-1, 1] crop coordinates, as the head's joints_2d
    return (unit + 1.0) * np.array([width / 2.0, height / 2.0])


def crop_to_image(points, crop_matrix) -> np.ndarray:
    """Maps crop pixels (N, 2) back to the original image through the inverse of the 3 x 3 ``crop_matrix``."""
    return apply_affine(np.linalg.inv(_numpy(crop_matrix).astype(np.float64)), _numpy(points).astype(np.float64))


def _to_cv(points: np.ndarray) -> np.ndarray:
    """Continuous coordinates -> cv2's fixed-point coordinates (pixel centres at integers, ``SUBPIXEL_BITS``)."""
    return np.round((points - 0.5) * (1 << SUBPIXEL_BITS)).astype(np.int32)


def _check_image(image) -> np.ndarray:
    image = _numpy(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'draw_hand_mesh: image must be an H x W x 3 uint8 (BGR) array, got {image.dtype} '
                         f'{image.shape}')
    return np.ascontiguousarray(image)


def draw_hand_mesh(image,
                   vertices_2d,
                   faces,
                   vertices_3d=None,
                   joints_2d=None,
                   alpha: float = 0.6,
                   color: Sequence[int] = MESH_COLOR,
                   draw_edges: bool = True) -> np.ndarray:
    """Draws a projected triangle mesh (and the skeleton) over a copy of ``image``.

    Triangles are filled back to front (painter's order by mean depth when ``vertices_3d`` is given) with light
    Lambert shading from the camera's direction (two-sided, so any winding order looks the same), outlined in a
    darker tone and blended with the image by ``alpha``; pixels the mesh does not cover are left exactly as they
    were. Joints are drawn opaque on top: bones coloured per finger (thumb, index, middle, ring, pinky), white wrist.

    Args:
        image (np.ndarray): H x W x 3 uint8 BGR image (not modified).
        vertices_2d (array-like): (N, 2) vertex positions in the image's continuous pixel coordinates.
        faces (array-like): (M, 3) 0-based vertex indices (MANO's 1538 triangles).
        vertices_3d (array-like, optional): (N, 3) camera-frame vertices (x right, y down, z forward) for depth
            order and shading. Defaults to None (flat colour, the given face order).
        joints_2d (array-like, optional): (21, 2) joints in FreiHAND's order, pixel coordinates. Defaults to None.
        alpha (float): Opacity of the mesh in [0, 1]. Defaults to 0.6.
        color (Sequence[int]): BGR colour of a triangle facing the camera. Defaults to ``MESH_COLOR``.
        draw_edges (bool): Outline each triangle. Defaults to True.

    Returns:
        np.ndarray: The drawing, the same shape as ``image``.
    """
    image = _check_image(image)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f'draw_hand_mesh: alpha must lie in [0, 1], got {alpha}')
    vertices_2d = _numpy(vertices_2d).astype(np.float64)
    faces = _numpy(faces).astype(np.int64)
    if vertices_2d.ndim != 2 or vertices_2d.shape[1] != 2:
        raise ValueError(f'draw_hand_mesh: vertices_2d must be (N, 2), got {vertices_2d.shape}')
    if faces.ndim != 2 or faces.shape[1] != 3 or (faces.size and (faces.min() < 0
                                                                   or faces.max() >= len(vertices_2d))):
        raise ValueError(f'draw_hand_mesh: faces must be (M, 3) indices into the {len(vertices_2d)} vertices, got '
                         f'shape {faces.shape}')
    triangles = vertices_2d[faces]  # (M, 3, 2)
    visible = np.isfinite(triangles).all(axis=(1, 2)) & (np.abs(triangles) < COORD_LIMIT).all(axis=(1, 2))
    shade = np.ones(len(faces))
    order = np.arange(len(faces))
    if vertices_3d is not None:
        vertices_3d = _numpy(vertices_3d).astype(np.float64)
        if vertices_3d.shape != (len(vertices_2d), 3):
            raise ValueError(f'draw_hand_mesh: vertices_3d must be ({len(vertices_2d)}, 3), got {vertices_3d.shape}')
        corners = vertices_3d[faces]
        normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        lengths = np.linalg.norm(normals, axis=1)
        facing = np.divide(np.abs(normals[:, 2]), lengths, out=np.ones(len(faces)), where=lengths > 0)
        shade = AMBIENT + (1.0 - AMBIENT) * facing
        order = np.argsort(-corners[:, :, 2].mean(axis=1), kind='stable')  # far (large z) first
    base = np.asarray(color, dtype=np.float64)

    overlay = image.copy()
    for index in order:
        if not visible[index]:
            continue
        polygon = _to_cv(triangles[index])
        fill = tuple(float(c) for c in np.clip(base * shade[index], 0, 255))
        cv2.fillConvexPoly(overlay, polygon, fill, lineType=cv2.LINE_AA, shift=SUBPIXEL_BITS)
        if draw_edges:
            edge = tuple(float(c) * EDGE_DARKEN for c in fill)
            cv2.polylines(overlay, [polygon], True, edge, 1, lineType=cv2.LINE_AA, shift=SUBPIXEL_BITS)
    drawn = np.any(overlay != image, axis=2)
    result = image.copy()
    blended = cv2.addWeighted(overlay, alpha, image, 1.0 - alpha, 0.0)
    result[drawn] = blended[drawn]
    if joints_2d is not None:
        draw_skeleton(result, joints_2d)
    return result


def draw_skeleton(image: np.ndarray, joints_2d) -> np.ndarray:
    """Draws FreiHAND's 21-joint skeleton on ``image`` in place (BGR uint8) and returns it."""
    joints = _numpy(joints_2d).astype(np.float64)
    if joints.shape != (len(FREIHAND_PARENTS), 2):
        raise ValueError(f'draw_skeleton: joints_2d must be ({len(FREIHAND_PARENTS)}, 2), got {joints.shape}')
    if not (np.isfinite(joints).all() and (np.abs(joints) < COORD_LIMIT).all()):
        return image
    side = min(image.shape[:2])
    width = max(1, int(round(side / 150)))
    radius = max(2, int(round(side / 100)))
    points = [tuple(int(c) for c in point) for point in _to_cv(joints)]
    colors = [(255, 255, 255)] + [tuple(FINGER_COLOURS[(j - 1) // 4][::-1]) for j in range(1, len(joints))]
    for joint, parent in enumerate(FREIHAND_PARENTS):
        if parent >= 0:
            cv2.line(image, points[parent], points[joint], colors[joint], width, cv2.LINE_AA,
                     SUBPIXEL_BITS)
    for joint, point in enumerate(points):
        cv2.circle(image, point, radius << SUBPIXEL_BITS, colors[joint], -1, cv2.LINE_AA, SUBPIXEL_BITS)
    return image


def write_image(path: Union[str, os.PathLike], image: np.ndarray) -> str:
    """Writes a BGR uint8 image (format from the extension, e.g. ``.png``) atomically; returns ``path``."""
    path = os.fspath(path)
    ext = osp.splitext(path)[1] or '.png'
    ok, encoded = cv2.imencode(ext, image)
    if not ok:
        raise ValueError(f'cannot encode an image of shape {image.shape} as "{ext}" for "{path}"')
    atomic_write(path, lambda f: f.write(encoded.tobytes()))
    return path


def mano_faces(model) -> np.ndarray:
    """The (1538, 3) MANO triangles of a hand-mesh model (``model.head.mano.faces``), unwrapped from DDP & co."""
    if is_model_wrapper(model):
        model = model.module
    faces = getattr(getattr(getattr(model, 'head', None), 'mano', None), 'faces', None)
    if faces is None:
        raise TypeError(f'{type(model).__name__} is not a hand-mesh model: it has no head.mano.faces '
                        f'(expected a mmfastvit.HandMeshEstimator)')
    return _numpy(faces)


def _sample_name(sample, default: str) -> str:
    img_path = sample.metainfo.get('img_path')
    if img_path:
        return osp.splitext(osp.basename(img_path))[0]
    if 'sample_idx' in sample.metainfo:
        return f'{int(sample.metainfo["sample_idx"]):08d}'
    return default


@HOOKS.register_module()
class HandMeshVisualizationHook(Hook):
    """Draws each test prediction's mesh, projected through its predicted camera, over the crop the model saw.

    Off by default (``draw=False``), as mmdet's ``DetVisualizationHook``: ``tools/test.py CONFIG CKPT --show-dir DIR``
    turns it on and writes ``DIR/<image name>.png`` (the crop, the shaded mesh and the skeleton) per test image, and
    with ``save_mesh=True`` also ``DIR/<image name>.obj`` (the predicted root-relative mesh in metres, MANO's faces).
    In a config::

        default_hooks = dict(visualization=dict(type='mmfastvit.HandMeshVisualizationHook', draw=False))

    Args:
        draw (bool): Draw at all. Defaults to False.
        out_dir (str, optional): Where the pictures go. Defaults to None: ``<work_dir>/<timestamp>/vis``.
        save_mesh (bool): Also write each predicted mesh as ``.obj``. Defaults to False.
        draw_joints (bool): Draw the skeleton over the mesh. Defaults to True.
        alpha (float): Opacity of the mesh. Defaults to 0.6.
    """

    priority = 'NORMAL'

    def __init__(self,
                 draw: bool = False,
                 out_dir: Optional[str] = None,
                 save_mesh: bool = False,
                 draw_joints: bool = True,
                 alpha: float = 0.6) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f'HandMeshVisualizationHook alpha must lie in [0, 1], got {alpha}')
        self.draw = draw
        self.out_dir = out_dir
        self.save_mesh = save_mesh
        self.draw_joints = draw_joints
        self.alpha = alpha

    def after_test_iter(self, runner, batch_idx: int, data_batch=None, outputs: Optional[Sequence] = None) -> None:
        if not self.draw or not outputs:
            return
        out_dir = self.out_dir or osp.join(runner.work_dir, runner.timestamp, 'vis')
        faces = mano_faces(runner.model)
        inputs = data_batch['inputs']
        for i, sample in enumerate(outputs):
            crop = _numpy(inputs[i]).transpose(1, 2, 0)[..., ::-1]  # packed RGB CHW -> BGR HWC
            crop = np.ascontiguousarray(crop, dtype=np.uint8)
            height, width = crop.shape[:2]
            vertices = _numpy(sample.pred_vertices)
            camera = sample.pred_camera
            joints_2d = project_to_crop(sample.pred_joints, camera, (width, height)) if self.draw_joints else None
            drawing = draw_hand_mesh(crop, project_to_crop(vertices, camera, (width, height)), faces, vertices,
                                     joints_2d, alpha=self.alpha)
            name = _sample_name(sample, f'{batch_idx:06d}_{i:03d}')
            write_image(osp.join(out_dir, f'{name}.png'), drawing)
            if self.save_mesh:
                save_obj(osp.join(out_dir, f'{name}.obj'), vertices, faces)
