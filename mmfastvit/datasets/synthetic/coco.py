"""A tiny COCO-format instance segmentation set of generated images, for tests, smoke runs and learning checks.

Each image holds one to ``max_objects`` flat-coloured shapes on a grey, noisy background; shapes never overlap, so an
object's mask is exactly the set of pixels painted in its colour. The annotation files list COCO's 80 categories with
COCO's ids, so the 80-class COCO configs (mmdet's ``CocoDataset`` and ``CocoMetric``) read the set unchanged; four of
them are drawn, and every annotation encoding of COCO occurs:

==============  ===  =========  ================================================================================
category        id   shape      segmentation
==============  ===  =========  ================================================================================
sports ball     37   disk       polygon (32 vertices), ``iscrowd=0``
kite            38   triangle   polygon, ``iscrowd=0``
donut           60   ring       compressed RLE (``counts`` a string): a polygon cannot hold the hole, ``iscrowd=0``
tv              72   rectangle  polygon, ``iscrowd=0``
sports ball     37   crowd      uncompressed RLE (``counts`` a list) of a cluster of small disks, ``iscrowd=1``,
                                as COCO annotates crowds (ignored in training, matched as crowd in evaluation)
==============  ===  =========  ================================================================================

A polygon's pixels are the ones pycocotools rasterizes it to, and those are the pixels painted; an RLE is encoded
from the painted mask. So decoding any annotation gives the drawn shape exactly (images are PNG, lossless). The
layout is COCO's::

    root/
      annotations/instances_train2017.json, instances_val2017.json
      train2017/000000000001.png ...
      val2017/000000000009.png ...       image ids continue across the splits, as in COCO

Output is a function of the arguments only. Needs numpy, Pillow and pycocotools (imported when used, so importing
``mmfastvit.datasets`` does not need it).
"""
import colorsys
import json
import math
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

# COCO 2017's 80 categories in id order, and the ids 1..90 that COCO leaves unused. The annotation files list all 80 (as
# COCO's own do), so the label <-> category id mapping of mmdet's 80-class configs and CocoMetric is COCO's.
COCO_CLASSES = (
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat', 'traffic light',
    'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat', 'dog', 'horse', 'sheep', 'cow', 'elephant',
    'bear', 'zebra', 'giraffe', 'backpack', 'umbrella', 'handbag', 'tie', 'suitcase', 'frisbee', 'skis', 'snowboard',
    'sports ball', 'kite', 'baseball bat', 'baseball glove', 'skateboard', 'surfboard', 'tennis racket', 'bottle',
    'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple', 'sandwich', 'orange', 'broccoli',
    'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch', 'potted plant', 'bed', 'dining table', 'toilet',
    'tv', 'laptop', 'mouse', 'remote', 'keyboard', 'cell phone', 'microwave', 'oven', 'toaster', 'sink',
    'refrigerator', 'book', 'clock', 'vase', 'scissors', 'teddy bear', 'hair drier', 'toothbrush')
COCO_UNUSED_IDS = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)
COCO_IDS = tuple(i for i in range(1, 91) if i not in COCO_UNUSED_IDS)

# The categories drawn: (COCO id, COCO name, shape, hue). Hues are far apart.
CATEGORIES: Tuple[Tuple[int, str, str, float], ...] = (
    (37, 'sports ball', 'disk', 0.07),
    (38, 'kite', 'triangle', 0.60),
    (60, 'donut', 'ring', 0.88),
    (72, 'tv', 'rectangle', 0.33),
)
CROWD_CATEGORY_ID = 37  # a crowd is a cluster of sports balls
SPLITS = ('train2017', 'val2017')
DISK_VERTICES = 32
RING_INNER = 0.5  # inner radius / outer radius
MIN_SIZE = 48
# Background pixels have HSV saturation below this and object pixels above it (see render_image).
SATURATION_THRESHOLD = 0.4
_GAP = 2  # pixels kept free between the boxes of two objects


def _mask_api():
    """pycocotools' mask module: the same polygon rasterization and RLE encoding that mmdet and COCOeval use."""
    try:
        from pycocotools import mask
    except ImportError as err:
        raise ImportError('the tiny COCO generator needs pycocotools (requirements/optional.txt) to rasterize '
                          'polygons and encode RLE masks') from err
    return mask


def category_names() -> Tuple[str, ...]:
    """The names of the categories drawn, in id order."""
    return tuple(name for _, name, _, _ in CATEGORIES)


def uncompressed_rle(mask: np.ndarray) -> Dict:
    """COCO's uncompressed RLE of a binary ``(H, W)`` mask: run lengths in column-major order, starting with a run
    of zeros (possibly empty), as COCO stores crowd regions."""
    flat = np.asarray(mask, dtype=np.uint8).ravel(order='F')
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    return dict(size=[int(mask.shape[0]), int(mask.shape[1])], counts=counts)


def polygon_mask(polygon: Sequence[float], height: int, width: int) -> np.ndarray:
    """The pixels pycocotools (and so mmdet and COCOeval) rasterize a COCO polygon to, as a bool array."""
    mask_utils = _mask_api()
    rle = mask_utils.merge(mask_utils.frPyObjects([list(polygon)], height, width))
    return mask_utils.decode(rle).astype(bool)


def _regular_polygon(cx: float, cy: float, radius: float, vertices: int, angle: float) -> List[float]:
    points = []
    for k in range(vertices):
        theta = angle + 2.0 * math.pi * k / vertices
        points += [cx + radius * math.cos(theta), cy + radius * math.sin(theta)]
    return points


def _rectangle(cx: float, cy: float, radius: float, aspect: float, angle: float) -> List[float]:
    half_w, half_h = radius / math.sqrt(1.0 + aspect**2), radius * aspect / math.sqrt(1.0 + aspect**2)
    cos, sin = math.cos(angle), math.sin(angle)
    points = []
    for u, v in ((-half_w, -half_h), (half_w, -half_h), (half_w, half_h), (-half_w, half_h)):
        points += [cx + u * cos - v * sin, cy + u * sin + v * cos]
    return points


def _disks(shape: Tuple[int, int], centres: Sequence[Tuple[float, float]], radii: Sequence[float],
           inner: float = 0.0) -> np.ndarray:
    """Union of disks (or rings when ``inner`` > 0) sampled at pixel centres."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64) + 0.5
    mask = np.zeros(shape, dtype=bool)
    for (cx, cy), radius in zip(centres, radii):
        d2 = (xx - cx)**2 + (yy - cy)**2
        mask |= (d2 <= radius**2) & (d2 >= (inner * radius)**2)
    return mask


def _place(rng: np.random.Generator, height: int, width: int, radius: float,
           taken: List[Tuple[float, float, float, float]]) -> Optional[Tuple[float, float]]:
    """A centre whose (2 radius)-box fits the image and keeps ``_GAP`` pixels from every taken box, or None."""
    for _ in range(50):
        cx = rng.uniform(radius + 1, width - radius - 1)
        cy = rng.uniform(radius + 1, height - radius - 1)
        box = (cx - radius, cy - radius, cx + radius, cy + radius)
        if all(box[2] + _GAP <= t[0] or t[2] + _GAP <= box[0] or box[3] + _GAP <= t[1] or t[3] + _GAP <= box[1]
               for t in taken):
            taken.append(box)
            return cx, cy
    return None


def _object(rng: np.random.Generator, category: Tuple[int, str, str, float], cx: float, cy: float, radius: float,
            height: int, width: int) -> Tuple[np.ndarray, object]:
    """Mask and COCO segmentation of one object."""
    _, _, shape, _ = category
    if shape == 'ring':
        mask = _disks((height, width), [(cx, cy)], [radius], inner=RING_INNER)
        rle = _mask_api().encode(np.asfortranarray(mask.astype(np.uint8)))
        return mask, dict(size=[height, width], counts=rle['counts'].decode('ascii'))
    if shape == 'disk':
        polygon = _regular_polygon(cx, cy, radius, DISK_VERTICES, 0.0)
    elif shape == 'triangle':
        polygon = _regular_polygon(cx, cy, radius, 3, rng.uniform(0.0, 2.0 * math.pi))
    else:
        polygon = _rectangle(cx, cy, radius, rng.uniform(0.55, 1.0), rng.uniform(-0.5, 0.5))
    polygon = [round(p, 2) for p in polygon]
    return polygon_mask(polygon, height, width), [polygon]


def _colour(rng: np.random.Generator, hue: float) -> np.ndarray:
    hue = (hue + rng.uniform(-0.02, 0.02)) % 1.0
    return np.array(colorsys.hsv_to_rgb(hue, rng.uniform(0.8, 1.0), rng.uniform(0.75, 1.0)))


def render_image(height: int, width: int, max_objects: int, crowd_prob: float,
                 rng: np.random.Generator) -> Tuple[np.ndarray, List[Dict]]:
    """One RGB uint8 image and its objects (``category_id``, ``mask``, ``segmentation``, ``iscrowd``).

    The background is a dim grey with per-pixel brightness noise (HSV saturation below ``SATURATION_THRESHOLD``);
    objects are saturated colours (above it), with brightness noise only.
    """
    tone = rng.uniform(0.15, 0.45)
    tint = 1.0 + rng.uniform(-0.04, 0.04, size=3)
    image = tone * tint * (1.0 + rng.normal(0.0, 0.08, size=(height, width, 1)))
    short = min(height, width)
    taken: List[Tuple[float, float, float, float]] = []
    objects: List[Dict] = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        category = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
        radius = rng.uniform(0.12, 0.28) * short
        centre = _place(rng, height, width, radius, taken)
        if centre is None:
            continue
        mask, segmentation = _object(rng, category, *centre, radius, height, width)
        objects.append(dict(category_id=category[0], mask=mask, segmentation=segmentation, iscrowd=0,
                            colour=_colour(rng, category[3])))
    if rng.uniform() < crowd_prob:
        cluster = rng.uniform(0.14, 0.2) * short
        centre = _place(rng, height, width, cluster, taken)
        if centre is not None:
            count = int(rng.integers(4, 9))
            radii = rng.uniform(0.035, 0.055, size=count) * short
            angles = rng.uniform(0.0, 2.0 * math.pi, size=count)
            spread = (cluster - radii) * np.sqrt(rng.uniform(0.0, 1.0, size=count))
            centres = [(centre[0] + s * math.cos(a), centre[1] + s * math.sin(a)) for s, a in zip(spread, angles)]
            mask = _disks((height, width), centres, radii)
            hue = next(h for cid, _, _, h in CATEGORIES if cid == CROWD_CATEGORY_ID)
            objects.append(dict(category_id=CROWD_CATEGORY_ID, mask=mask, segmentation=uncompressed_rle(mask),
                                iscrowd=1, colour=_colour(rng, hue)))
    if not objects:  # unreachable in practice: the first object always fits an empty image
        raise RuntimeError('no object could be placed')
    for obj in objects:
        shade = 1.0 + rng.normal(0.0, 0.03, size=(int(obj['mask'].sum()), 1))
        image[obj['mask']] = obj.pop('colour') * shade
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), objects


def _check_int(name: str, value: int, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f'{name} must be an int >= {minimum}, got {value!r}')


def make_tiny_coco(root: str,
                   num_train: int = 8,
                   num_val: int = 4,
                   size: int = 128,
                   max_objects: int = 3,
                   crowd_prob: float = 0.25,
                   seed: int = 0) -> Dict:
    """Writes a tiny COCO-format instance segmentation dataset under ``root`` (created if needed; files of the same
    names are replaced).

    Args:
        root (str): Output directory, the ``data_root`` of the dataset config.
        num_train (int): Training images. Defaults to 8.
        num_val (int): Validation images. Defaults to 4.
        size (int): Longer image side in pixels (at least 48); images alternate landscape and portrait with the
            shorter side ``3 * size // 4``. Defaults to 128.
        max_objects (int): Most (non-crowd) objects per image; each image has at least one. Defaults to 3.
        crowd_prob (float): Chance that an image also holds a crowd region (``iscrowd=1``). Defaults to 0.25.
        seed (int): Seed; the same arguments give the same files. Defaults to 0.

    Returns:
        dict: ``root``, ``classes`` (category names) and, for ``'train'`` and ``'val'``: ``ann_file`` (relative to
        ``root``), ``img_prefix``, ``num_images``, ``num_annotations`` and ``encodings`` (annotations per
        segmentation kind: ``polygon``, ``rle``, ``crowd_rle``).

    Example:
        >>> summary = make_tiny_coco('/tmp/tiny_coco', num_train=2, num_val=1)
        >>> summary['train']['ann_file'], summary['val']['img_prefix']
        ('annotations/instances_train2017.json', 'val2017/')
    """
    _check_int('num_train', num_train, 1)
    _check_int('num_val', num_val, 1)
    _check_int('size', size, MIN_SIZE)
    _check_int('max_objects', max_objects, 1)
    if not isinstance(crowd_prob, (int, float)) or isinstance(crowd_prob, bool) or not 0.0 <= crowd_prob <= 1.0:
        raise ValueError(f'crowd_prob must be a number in [0, 1], got {crowd_prob!r}')

    mask_utils = _mask_api()
    summary: Dict = dict(root=osp.abspath(root), classes=list(category_names()))
    categories = [dict(id=cid, name=name) for cid, name in zip(COCO_IDS, COCO_CLASSES)]
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    image_id = annotation_id = 0
    for split_id, (split, count) in enumerate(zip(SPLITS, (num_train, num_val))):
        os.makedirs(osp.join(root, split), exist_ok=True)
        images, annotations = [], []
        encodings = dict(polygon=0, rle=0, crowd_rle=0)
        for index in range(count):
            image_id += 1
            rng = np.random.default_rng([seed, split_id, index])
            long_side, short_side = size, 3 * size // 4
            height, width = (short_side, long_side) if index % 2 == 0 else (long_side, short_side)
            pixels, objects = render_image(height, width, max_objects, crowd_prob, rng)
            file_name = f'{image_id:012d}.png'
            Image.fromarray(pixels).save(osp.join(root, split, file_name), format='PNG')
            images.append(dict(id=image_id, file_name=file_name, height=height, width=width))
            for obj in objects:
                annotation_id += 1
                rle = mask_utils.encode(np.asfortranarray(obj['mask'].astype(np.uint8)))
                kind = ('crowd_rle' if obj['iscrowd'] else
                        'polygon' if isinstance(obj['segmentation'], list) else 'rle')
                encodings[kind] += 1
                annotations.append(
                    dict(id=annotation_id, image_id=image_id, category_id=obj['category_id'],
                         segmentation=obj['segmentation'], area=float(mask_utils.area(rle)),
                         bbox=[float(v) for v in mask_utils.toBbox(rle)], iscrowd=obj['iscrowd']))
        name = split.replace('2017', '')
        ann_file = f'annotations/instances_{split}.json'
        content = dict(info=dict(description=f'mmfastvit tiny COCO ({name}), seed {seed}', version='1.0', year=2017),
                       licenses=[], images=images, annotations=annotations, categories=categories)
        with open(osp.join(root, ann_file), 'w') as f:
            json.dump(content, f)
        summary[name] = dict(ann_file=ann_file, img_prefix=f'{split}/', num_images=len(images),
                             num_annotations=len(annotations), encodings=encodings)
    return summary
