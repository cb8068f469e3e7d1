"""Running the hand-mesh model on your own images: :func:`init_hand_model` / :func:`inference_hand` (as mmdet's
``init_detector`` / ``inference_detector``) and :class:`HandMeshInferencer` (an mmengine ``BaseInferencer``, as
mmpretrain's and mmdet's Inferencers), plus :func:`hand_demo`, what ``demo/hand_demo.py`` runs.

The hand box. The model was trained on FreiHAND's 224 x 224 images, each framing one hand, of which the test pipeline's
``HandCropAffine`` takes the central 180 px box (``box_size``) and resizes it to 224 (``out_size``). A hand box given
here plays the role of such an image: the crop is the square about the box's centre whose side is
``box_size / 224 * max(box width, box height) * bbox_scale`` (the 224 being twice the pipeline's ``center``), warped by
the same transform (:meth:`HandCropAffine.crop`). So a FreiHAND image with the default box (the whole image) gets
exactly the test pipeline's crop. Frame the hand with a margin as FreiHAND's images do; for a tight detector box use a
``bbox_scale`` of about 1.2-1.5. A box may reach past the image border (the crop is black there) but must overlap it.

Outputs, per image (numpy): ``vertices`` (778, 3) and ``joints`` (21, 3), root-relative (wrist at the origin), in
metres, in the camera frame (x right, y down, z forward) as the model predicts them; ``camera`` (3,) = (s, tx, ty),
the weak-perspective camera that maps them to [-1, 1] crop coordinates, ``x = s * (X[:2] + (tx, ty))``;
``joints_2d`` (21, 2) and ``vertices_2d`` (778, 2), their projections in ORIGINAL image pixels (continuous
coordinates: pixel (i, j) covers [i, i + 1) x [j, j + 1)); ``pose`` (16, 3, 3), ``betas`` (10,), ``bbox`` (4,) the box
used and ``crop_matrix`` (3, 3) the map from image to crop pixels.

Example:
    >>> from mmfastvit.hand.apis import init_hand_model, inference_hand
    >>> model = init_hand_model('configs/hand_mesh_fastvit_sa12_freihand.py', 'hand_sa12.pth',
    ...                         cfg_options={'model.head.mano_path': 'MANO_RIGHT.pkl'})  # doctest: +SKIP
    >>> result = inference_hand(model, 'hand.jpg', bbox=(40, 30, 260, 250))  # doctest: +SKIP
    >>> result['vertices'].shape, result['joints_2d'].shape  # doctest: +SKIP
    ((778, 3), (21, 2))
"""
import copy
import numbers
import os
import os.path as osp
import warnings
from typing import Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
from mmengine.config import Config, ConfigDict
from mmengine.dataset import pseudo_collate
from mmengine.infer import BaseInferencer
from mmengine.registry import DefaultScope
from mmengine.runner import load_checkpoint
from mmengine.structures import BaseDataElement

from mmfastvit.engine.checkpoint import mmengine_checkpoint_globals
from mmfastvit.engine.cli import config_type_name
from mmfastvit.registry import MODELS, TRANSFORMS

from .mesh_io import save_obj
from .model import HandMeshEstimator
from .transforms import HandCropAffine, PackHandInputs
from .visualization import crop_to_image, draw_hand_mesh, mano_faces, project_to_crop, write_image

ImageInput = Union[str, os.PathLike, np.ndarray]
Box = Optional[Sequence[float]]
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
_EXPECTED_IMAGE = 'an image path (str) or an H x W x 3 (or H x W) uint8 BGR numpy array, as cv2.imread returns'


def load_hand_config(config: Union[str, os.PathLike, Config], cfg_options: Optional[dict] = None) -> Config:
    """The config (a path or a :class:`Config`, copied) with ``cfg_options`` (``{'model.head.mano_path': ...}``)
    merged in."""
    if isinstance(config, (str, os.PathLike)):
        path = os.fspath(config)
        if not osp.isfile(path):
            raise FileNotFoundError(f'config "{path}" does not exist')
        cfg = Config.fromfile(path)
    elif isinstance(config, Config):
        cfg = copy.deepcopy(config)
    else:
        raise TypeError(f'config must be a config file path or an mmengine Config, got {type(config).__name__}')
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if not isinstance(cfg.get('model'), dict):
        raise ValueError(f'config {getattr(cfg, "filename", "")!r} has no model')
    return cfg


def _build_model(cfg: Config, checkpoint: Optional[str], device: Union[str, torch.device]) -> HandMeshEstimator:
    """The config's hand-mesh model with the checkpoint's weights (random ones, with a warning, when None), in eval
    mode on ``device``; the config is kept as ``model.cfg`` for :func:`inference_hand`."""
    model_cfg = copy.deepcopy(cfg.model)
    if isinstance(model_cfg.get('backbone'), dict):
        model_cfg.backbone.init_cfg = None  # the checkpoint (or nothing) gives the weights, not an ImageNet file
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'mmfastvit')):
        model = MODELS.build(model_cfg)
    if not isinstance(model, HandMeshEstimator):
        raise TypeError(f'config {getattr(cfg, "filename", "")!r} builds a {type(model).__name__}, not a '
                        f'mmfastvit.HandMeshEstimator (use a configs/hand_mesh_*.py config)')
    if checkpoint is None:
        warnings.warn('init_hand_model: no checkpoint given, the hand-mesh model has random weights')
    else:
        checkpoint = os.fspath(checkpoint)
        if '://' not in checkpoint and not osp.isfile(checkpoint):
            raise FileNotFoundError(f'checkpoint "{checkpoint}" does not exist')
        with mmengine_checkpoint_globals():  # a Runner checkpoint (message hub and all) under weights_only=True
            load_checkpoint(model, checkpoint, map_location='cpu')
    model.cfg = cfg
    return model.to(device).eval()


def init_hand_model(config: Union[str, os.PathLike, Config],
                    checkpoint: Optional[str] = None,
                    device: Union[str, torch.device] = 'cpu',
                    cfg_options: Optional[dict] = None) -> HandMeshEstimator:
    """Builds the hand-mesh model of a config for inference.

    Args:
        config (str | Config): A ``configs/hand_mesh_*.py`` file or its loaded :class:`Config`.
        checkpoint (str, optional): Weights: a Runner checkpoint (``work_dirs/.../epoch_200.pth``), a fused one (with
            ``cfg_options={'model.backbone.deploy': True}``) or a plain state dict. Defaults to None (random weights,
            with a warning).
        device (str | torch.device): Defaults to 'cpu'.
        cfg_options (dict, optional): Config overrides, e.g. ``{'model.head.mano_path': 'MANO_RIGHT.pkl'}``.
            Defaults to None.

    Returns:
        HandMeshEstimator: in eval mode, with its config as ``model.cfg``.
    """
    return _build_model(load_hand_config(config, cfg_options), checkpoint, device)


def _test_pipeline(cfg: Config) -> List[dict]:
    dataloader = cfg.get('test_dataloader') or {}
    dataset = dataloader.get('dataset') or {}
    while isinstance(dataset.get('dataset'), dict):  # RepeatDataset & co. hold the real one
        dataset = dataset['dataset']
    pipeline = dataset.get('pipeline') or cfg.get('test_pipeline')
    if not pipeline:
        raise ValueError(f'config {getattr(cfg, "filename", "")!r} has no test pipeline '
                         f'(test_dataloader.dataset.pipeline or test_pipeline) to take the hand crop from')
    return [dict(step) for step in pipeline]


def _check_image(img: ImageInput, index: Optional[int] = None) -> Union[str, np.ndarray]:
    where = 'img' if index is None else f'inputs[{index}]'
    if isinstance(img, (str, os.PathLike)):
        return os.fspath(img)
    if not isinstance(img, np.ndarray):
        raise TypeError(f'{where} must be {_EXPECTED_IMAGE}; got {type(img).__name__}')
    if img.dtype != np.uint8 or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3) or img.size == 0:
        raise ValueError(f'{where} must be {_EXPECTED_IMAGE}; got a {img.dtype} array of shape {img.shape}')
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(img)


def _check_box(bbox: Box, width: int, height: int, where: str) -> np.ndarray:
    """The box as float64 (x1, y1, x2, y2), the whole image when None; errors name the box and the image size."""
    if bbox is None:
        return np.array([0.0, 0.0, width, height])
    if isinstance(bbox, torch.Tensor):
        bbox = bbox.detach().cpu().numpy()
    values = np.asarray(bbox, dtype=object).reshape(-1)
    if values.size != 4 or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
        raise ValueError(f'{where} must be 4 numbers (x1, y1, x2, y2) in pixels, got {bbox!r}')
    box = values.astype(np.float64)
    if not np.isfinite(box).all():
        raise ValueError(f'{where} {box.tolist()} holds a non-finite value')
    x1, y1, x2, y2 = box
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f'{where} {box.tolist()} is empty: it needs x2 > x1 and y2 > y1 (x1, y1, x2, y2 in pixels)')
    if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
        raise ValueError(f'{where} {box.tolist()} lies outside the {width} x {height} image (x in [0, {width}], '
                         f'y in [0, {height}])')
    return box


class HandInferencePipeline:
    """An image (path or BGR array) and a hand box -> the model's input, through the config's test-time steps.

    The config's test pipeline gives the loader (``mmfastvit.LoadImageFromFile``: a corrupt file is named), the crop
    (its ``HandCropAffine``, re-centred and re-sized per box as the module docstring says) and the packing
    (``PackHandInputs``). The training-only steps (``HandPoseFromMANO``) are left out: there are no labels.

    Args:
        cfg (Config): A hand-mesh config.
    """

    def __init__(self, cfg: Config) -> None:
        pipeline = _test_pipeline(cfg)
        crops = [step for step in pipeline if config_type_name(step) == 'HandCropAffine']
        if len(crops) != 1:
            raise ValueError(f'the test pipeline of config {getattr(cfg, "filename", "")!r} has {len(crops)} '
                             f'HandCropAffine steps, expected one (the test-time hand crop)')
        self.crop_cfg = dict(crops[0], augment=False)
        crop = TRANSFORMS.build(self.crop_cfg)
        if not isinstance(crop, HandCropAffine):
            raise TypeError(f'the test pipeline\'s HandCropAffine step builds a {type(crop).__name__}')
        if crop.center[0] != crop.center[1]:
            raise ValueError(f'the test pipeline\'s HandCropAffine center {crop.center} is not the centre of a square '
                             f'image, which the inference crop assumes (its side: twice the centre)')
        self.out_size = crop.out_size
        self.box_ratio = crop.box_size / (2.0 * crop.center[0])  # FreiHAND: 180 / 224
        loaders = [step for step in pipeline if config_type_name(step) == 'LoadImageFromFile']
        self.loader = TRANSFORMS.build(loaders[0] if loaders else dict(type='mmfastvit.LoadImageFromFile'))
        packs = [step for step in pipeline if config_type_name(step) == 'PackHandInputs']
        pack_cfg = dict(packs[0]) if packs else dict(type='mmfastvit.PackHandInputs')
        meta_keys = tuple(pack_cfg.get('meta_keys', PackHandInputs().meta_keys))
        pack_cfg['meta_keys'] = meta_keys + tuple(k for k in ('ori_shape', 'hand_bbox') if k not in meta_keys)
        self.pack = TRANSFORMS.build(pack_cfg)

    def crop_geometry(self, box: np.ndarray, bbox_scale: float = 1.0) -> Tuple[Tuple[float, float], float]:
        """(centre, side) in image pixels of the square crop for a box (x1, y1, x2, y2)."""
        x1, y1, x2, y2 = (float(v) for v in box)
        side = self.box_ratio * max(x2 - x1, y2 - y1) * bbox_scale
        return ((x1 + x2) / 2.0, (y1 + y2) / 2.0), side

    def load(self, img: ImageInput, index: Optional[int] = None) -> Dict:
        """``dict(img=BGR uint8, ...)`` of a path (read by the config's loader) or an array."""
        img = _check_image(img, index)
        if isinstance(img, str):
            results = self.loader(dict(img_path=img))
            if results is None:
                raise ValueError(f'image "{img}" could not be read')
            return results
        return dict(img=img, img_shape=img.shape[:2], ori_shape=img.shape[:2])

    def __call__(self, img: ImageInput, bbox: Box = None, bbox_scale: float = 1.0, index: Optional[int] = None) -> Dict:
        if not isinstance(bbox_scale, numbers.Real) or not bbox_scale > 0:
            raise ValueError(f'bbox_scale must be a positive number, got {bbox_scale!r}')
        results = self.load(img, index)
        height, width = results['img'].shape[:2]
        box = _check_box(bbox, width, height, 'bbox' if index is None else f'bboxes[{index}]')
        center, side = self.crop_geometry(box, bbox_scale)
        crop = TRANSFORMS.build(dict(self.crop_cfg, center=center, box_size=side))
        results = crop.crop(results)
        results['hand_bbox'] = box.astype(np.float32)
        return self.pack(results)


def prediction_to_dict(sample: BaseDataElement) -> Dict[str, np.ndarray]:
    """A predicted data sample (from the model and :class:`HandInferencePipeline`) -> the numpy outputs of the module
    docstring."""
    camera = sample.pred_camera.detach().cpu().numpy()
    vertices = sample.pred_vertices.detach().cpu().numpy()
    joints = sample.pred_joints.detach().cpu().numpy()
    height, width = sample.img_shape[:2]
    crop_matrix = np.asarray(sample.crop_matrix, dtype=np.float64)

    def to_image(points: np.ndarray) -> np.ndarray:
        return crop_to_image(project_to_crop(points, camera, (width, height)), crop_matrix)

    return dict(
        vertices=vertices,
        joints=joints,
        camera=camera,
        joints_2d=to_image(joints).astype(np.float32),
        vertices_2d=to_image(vertices).astype(np.float32),
        pose=sample.pred_pose.detach().cpu().numpy(),
        betas=sample.pred_betas.detach().cpu().numpy(),
        bbox=np.asarray(sample.hand_bbox, dtype=np.float32),
        crop_matrix=crop_matrix.astype(np.float32))


def _pipeline_of(model: HandMeshEstimator) -> HandInferencePipeline:
    cfg = getattr(model, 'cfg', None)
    if not isinstance(cfg, (Config, ConfigDict)):
        raise TypeError(f'model must come from init_hand_model (which keeps its config as model.cfg); this '
                        f'{type(model).__name__} has no cfg')
    return HandInferencePipeline(cfg)


@torch.no_grad()
def inference_hand(model: HandMeshEstimator,
                   img: Union[ImageInput, Sequence[ImageInput]],
                   bbox: Union[Box, Sequence[Box]] = None,
                   bbox_scale: float = 1.0) -> Union[Dict[str, np.ndarray], List[Dict[str, np.ndarray]]]:
    """The mesh, joints, camera and 2D projections of the hand in ``img``.

    Args:
        model (HandMeshEstimator): From :func:`init_hand_model`.
        img (str | np.ndarray | list): An image path or a BGR uint8 array (as ``cv2.imread`` returns), or a list of
            them.
        bbox (Sequence[float], optional): The hand box (x1, y1, x2, y2) in pixels; for a list of images, a list of
            boxes (None items allowed). Defaults to None: the whole image.
        bbox_scale (float): Scales the box about its centre first. Defaults to 1.0.

    Returns:
        dict | list[dict]: the outputs of the module docstring (a list for a list of images).

    Raises:
        TypeError: ``img`` is neither a path nor an array.
        ValueError: the array is not uint8 H x W x 3 / H x W, or the box is malformed, empty or outside the image.
        FileNotFoundError: the image path does not exist.
    """
    pipeline = _pipeline_of(model)
    if isinstance(img, (list, tuple)):
        boxes = _boxes_per_input(bbox, len(img))
        data = [pipeline(item, box, bbox_scale, index=i) for i, (item, box) in enumerate(zip(img, boxes))]
    else:
        data = [pipeline(img, bbox, bbox_scale)]
    samples = model.test_step(pseudo_collate(data))
    results = [prediction_to_dict(sample) for sample in samples]
    return results if isinstance(img, (list, tuple)) else results[0]


def _is_one_box(bbox) -> bool:
    if isinstance(bbox, (np.ndarray, torch.Tensor)):
        return bbox.ndim == 1
    return isinstance(bbox, (list, tuple)) and len(bbox) > 0 and all(isinstance(v, numbers.Real) for v in bbox)


def _boxes_per_input(bboxes, count: int) -> List[Box]:
    if bboxes is None:
        return [None] * count
    if _is_one_box(bboxes):
        if count != 1:
            raise ValueError(f'one box {list(bboxes)} for {count} images: give one box (or None) per image')
        return [bboxes]
    bboxes = list(bboxes)
    if len(bboxes) != count:
        raise ValueError(f'{len(bboxes)} boxes for {count} images: give one box (or None) per image')
    return bboxes


class HandMeshInferencer(BaseInferencer):
    """The hand-mesh model as an mmengine Inferencer: images (paths, arrays, or a folder) and hand boxes in, meshes,
    joints, cameras and 2D projections out, with overlays and ``.obj`` meshes written on request.

    Args:
        model (str | Config): A ``configs/hand_mesh_*.py`` file or its :class:`Config`.
        weights (str, optional): The checkpoint (see :func:`init_hand_model`). Defaults to None: random weights.
        device (str, optional): Defaults to None: CUDA when available, else CPU.
        cfg_options (dict, optional): Config overrides, e.g. ``{'model.head.mano_path': 'MANO_RIGHT.pkl'}``.
        show_progress (bool): A progress bar over the batches. Defaults to False.

    Example:
        >>> inferencer = HandMeshInferencer('configs/hand_mesh_fastvit_sa12_freihand.py', 'hand_sa12.pth',
        ...                                 cfg_options={'model.head.mano_path': 'MANO_RIGHT.pkl'})  # doctest: +SKIP
        >>> out = inferencer('hand.jpg', bboxes=[(40, 30, 260, 250)], out_dir='outputs')  # doctest: +SKIP
        >>> out['predictions'][0]['vertices'].shape, out['predictions'][0]['vis_path']  # doctest: +SKIP
        ((778, 3), 'outputs/vis/hand.png')
    """

    preprocess_kwargs: set = {'bboxes', 'bbox_scale'}
    forward_kwargs: set = set()
    visualize_kwargs: set = {'out_dir', 'save_mesh', 'draw_joints', 'alpha', 'return_vis'}
    postprocess_kwargs: set = {'return_datasamples'}

    def __init__(self,
                 model: Union[str, os.PathLike, Config],
                 weights: Optional[str] = None,
                 device: Optional[str] = None,
                 cfg_options: Optional[dict] = None,
                 show_progress: bool = False) -> None:
        cfg = load_hand_config(model, cfg_options)
        super().__init__(model=cfg, weights=weights, device=device, scope=cfg.get('default_scope', 'mmfastvit'),
                         show_progress=show_progress)
        self.faces = mano_faces(self.model)

    def _init_model(self, cfg: Config, weights: Optional[str], device: str = 'cpu') -> HandMeshEstimator:
        return _build_model(cfg, weights, device)

    def _init_pipeline(self, cfg: Config) -> HandInferencePipeline:
        return HandInferencePipeline(cfg)

    def _init_collate(self, cfg: Config):
        return pseudo_collate  # what the hand configs' dataloaders use (they name no collate_fn)

    def _init_visualizer(self, cfg: Config) -> None:
        return None  # drawing is draw_hand_mesh's; no global Visualizer instance is needed

    def _inputs_to_list(self, inputs) -> list:
        """A folder becomes its image files (sorted by name); one input becomes a list of one."""
        if isinstance(inputs, (str, os.PathLike)) and osp.isdir(inputs):
            folder = os.fspath(inputs)
            return [osp.join(folder, name) for name in sorted(os.listdir(folder))
                    if name.lower().endswith(IMAGE_EXTENSIONS)]
        return list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]

    def preprocess(self, inputs: list, batch_size: int = 1, bboxes=None, bbox_scale: float = 1.0):
        """Batches of the model's inputs; every input is checked (and its box) before the first batch runs."""
        boxes = _boxes_per_input(bboxes, len(inputs))
        data = [self.pipeline(img, box, bbox_scale, index=i) for i, (img, box) in enumerate(zip(inputs, boxes))]
        yield from map(self.collate_fn, self._get_chunk_data(data, batch_size))

    def __call__(self,
                 inputs: Union[ImageInput, Sequence[ImageInput]],
                 bboxes=None,
                 bbox_scale: float = 1.0,
                 batch_size: int = 1,
                 out_dir: str = '',
                 save_mesh: bool = True,
                 draw_joints: bool = True,
                 alpha: float = 0.6,
                 return_vis: bool = False,
                 return_datasamples: bool = False) -> dict:
        """Runs the model on ``inputs``.

        Args:
            inputs (str | np.ndarray | list): Image paths, BGR uint8 arrays, a list of them, or a folder of images.
            bboxes (optional): One hand box (x1, y1, x2, y2) per input (None items: the whole image); one box for a
                single input. Defaults to None: the whole images.
            bbox_scale (float): Scales every box about its centre. Defaults to 1.0.
            batch_size (int): Defaults to 1.
            out_dir (str): When given, writes ``out_dir/vis/<name>.png`` (the mesh and skeleton over the original
                image) and, with ``save_mesh``, ``out_dir/meshes/<name>.obj``; ``<name>`` is the image file's name
                without extension, or the input's index (``%08d``) for arrays. Defaults to '' (nothing written).
            save_mesh (bool): Write the ``.obj`` meshes (with ``out_dir``). Defaults to True.
            draw_joints (bool): Draw the skeleton. Defaults to True.
            alpha (float): Opacity of the mesh. Defaults to 0.6.
            return_vis (bool): Return the overlays (BGR arrays of each input's size). Defaults to False.
            return_datasamples (bool): Return the model's data samples instead of dicts. Defaults to False.

        Returns:
            dict: ``predictions``, one per input: dicts of the module docstring's outputs, plus ``vis_path`` and
            ``obj_path`` where files were written; ``visualization``: the overlays (empty unless ``return_vis``).
        """
        ori_inputs = self._inputs_to_list(inputs)
        preds = []
        for data in self.preprocess(ori_inputs, batch_size=batch_size, bboxes=bboxes, bbox_scale=bbox_scale):
            preds.extend(self.forward(data))
        visualization = self.visualize(ori_inputs, preds, out_dir=out_dir, save_mesh=save_mesh,
                                       draw_joints=draw_joints, alpha=alpha, return_vis=return_vis)
        return self.postprocess(preds, visualization, return_datasamples=return_datasamples)

    def visualize(self,
                  inputs: list,
                  preds: List[BaseDataElement],
                  out_dir: str = '',
                  save_mesh: bool = True,
                  draw_joints: bool = True,
                  alpha: float = 0.6,
                  return_vis: bool = False) -> List[np.ndarray]:
        """Draws each prediction over its original image; writes the files when ``out_dir`` is given."""
        if not out_dir and not return_vis:
            return []
        names = _output_names(inputs)
        drawings = []
        for name, img, pred in zip(names, inputs, preds):
            result = prediction_to_dict(pred)
            image = self.pipeline.load(img)['img']
            drawing = draw_hand_mesh(image, result['vertices_2d'], self.faces, result['vertices'],
                                     result['joints_2d'] if draw_joints else None, alpha=alpha)
            if out_dir:
                pred.set_metainfo(dict(vis_path=write_image(osp.join(out_dir, 'vis', f'{name}.png'), drawing)))
                if save_mesh:
                    pred.set_metainfo(dict(obj_path=save_obj(osp.join(out_dir, 'meshes', f'{name}.obj'),
                                                             result['vertices'], self.faces)))
            if return_vis:
                drawings.append(drawing)
        return drawings

    def postprocess(self, preds: List[BaseDataElement], visualization: List[np.ndarray],
                    return_datasamples: bool = False) -> dict:
        if return_datasamples:
            return dict(predictions=preds, visualization=visualization)
        predictions = []
        for pred in preds:
            result = prediction_to_dict(pred)
            result.update({key: pred.metainfo[key] for key in ('vis_path', 'obj_path') if key in pred.metainfo})
            predictions.append(result)
        return dict(predictions=predictions, visualization=visualization)


def _output_names(inputs: list) -> List[str]:
    """File stems of the inputs (``%08d`` of the index for arrays), made unique with ``_<index>``."""
    names = [osp.splitext(osp.basename(os.fspath(img)))[0] if isinstance(img, (str, os.PathLike)) else f'{i:08d}'
             for i, img in enumerate(inputs)]
    return [f'{name}_{i}' if names.count(name) > 1 else name for i, name in enumerate(names)]


def hand_demo(image: ImageInput,
              config: Union[str, os.PathLike, Config],
              checkpoint: Optional[str] = None,
              bbox: Box = None,
              out_dir: str = 'work_dirs/demo',
              device: str = 'cpu',
              bbox_scale: float = 1.0,
              cfg_options: Optional[dict] = None) -> Dict:
    """One image through :class:`HandMeshInferencer`: writes ``out_dir/vis/<name>.png`` (the mesh and skeleton over
    the image) and ``out_dir/meshes/<name>.obj``, and returns the prediction (with ``vis_path`` and ``obj_path``).
    What ``demo/hand_demo.py`` runs; the arguments are :class:`HandMeshInferencer`'s and its ``__call__``'s."""
    inferencer = HandMeshInferencer(config, weights=checkpoint, device=device, cfg_options=cfg_options)
    return inferencer(image, bboxes=[bbox], bbox_scale=bbox_scale, out_dir=out_dir, save_mesh=True)['predictions'][0]
