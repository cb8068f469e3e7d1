"""A tiny ADE20K-layout semantic segmentation set of generated scenes, for tests, smoke runs and the learning check.

Every image is a textured background of one class with one to ``max_objects`` coloured shapes on it (each object
class has its own shape and hue, as in :mod:`.imagenet`) and one patch of noise that belongs to no class; the label
map is drawn from the same geometry, so it is known exactly. The layout and label convention are ADE20K's
(``ADEChallengeData2016``), which mmseg's ``ADE20KDataset`` reads::

    root/
      images/training/ADE_train_00000001.jpg ...        RGB
      images/validation/ADE_val_00000001.jpg ...
      annotations/training/ADE_train_00000001.png ...   8-bit, one value per pixel:
      annotations/validation/ADE_val_00000001.png ...   0 = "other" (unlabelled), k = ADE20K class k (1..150)

With ``reduce_zero_label=True`` (the ADE20K configs' setting) mmseg turns stored ``k`` into class index ``k - 1`` of
its 150 classes and ``0`` into the ignore value 255. Output is a function of the arguments only.
"""
import colorsys
import math
import os
import os.path as osp
from typing import Dict, Sequence, Tuple

import numpy as np
from PIL import Image

from .imagenet import SHAPES, class_hue

NUM_CLASSES = 150  # ADE20K's SceneParsing classes, stored as 1..150
IGNORE_LABEL = 0  # stored value of "other" / unlabelled pixels
DEFAULT_CLASSES = (2, 3, 4, 5)  # building, sky, floor, tree: the object classes
DEFAULT_BACKGROUND = 1  # wall
MIN_SIDE = 32
# split name in the directory layout -> file-name stem prefix
SPLITS = (('training', 'ADE_train'), ('validation', 'ADE_val'))


def file_stem(split: str, index: int) -> str:
    """ADE20K's file name (no suffix) of image ``index`` (0-based) of ``split``: ``ADE_train_00000001``."""
    prefix = dict(SPLITS)[split]
    return f'{prefix}_{index + 1:08d}'


def _object_colour(rank: int, rng: np.random.Generator) -> np.ndarray:
    hue = (class_hue(rank) + rng.uniform(-0.02, 0.02)) % 1.0
    return np.array(colorsys.hsv_to_rgb(hue, rng.uniform(0.75, 1.0), rng.uniform(0.75, 1.0)))


def render_sample(height: int,
                  width: int,
                  classes: Sequence[int],
                  background: int,
                  max_objects: int,
                  rng: np.random.Generator,
                  first_class: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """One scene drawn with ``rng``: ``(image, label)``, an ``(H, W, 3)`` RGB uint8 image and its ``(H, W)`` uint8 map.

    Args:
        height (int): Image height.
        width (int): Image width.
        classes (Sequence[int]): ADE20K class ids (1..150) of the objects; ``classes[r]`` is drawn as
            ``SHAPES[r % len(SHAPES)]`` in hue ``class_hue(r)``.
        background (int): ADE20K class id of the background.
        max_objects (int): Objects per image are 1..max_objects.
        rng (np.random.Generator): The only source of randomness.
        first_class (int): Rank in ``classes`` of the first object, so that a split cycles through every class.

    Returns:
        tuple: the image and the label map; later objects cover earlier ones in both.
    """
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    # Background: a dim grey-ish tone with low-frequency stripes and pixel noise.
    base = rng.uniform(0.05, 0.3) + rng.uniform(-0.04, 0.04, size=3)
    period, phase = rng.uniform(12.0, 24.0), rng.uniform(0.0, 2 * math.pi)
    texture = 0.04 * np.sin(2 * math.pi * (xx + yy) / period + phase)[..., None]
    image = base + texture + rng.normal(0.0, 0.03, size=(height, width, 3))
    label = np.full((height, width), background, dtype=np.uint8)

    # The unlabelled patch: bright noise over a rectangle, stored as 0 ("other").
    ph, pw = (int(rng.integers(max(4, s // 8), max(5, s // 4) + 1)) for s in (height, width))
    py, px = int(rng.integers(0, height - ph + 1)), int(rng.integers(0, width - pw + 1))
    image[py:py + ph, px:px + pw] = rng.uniform(0.0, 1.0, size=(ph, pw, 3))
    label[py:py + ph, px:px + pw] = IGNORE_LABEL

    num_objects = int(rng.integers(1, max_objects + 1))
    side = min(height, width)
    for k in range(num_objects):
        rank = (first_class if k == 0 else int(rng.integers(0, len(classes)))) % len(classes)
        radius = rng.uniform(0.18, 0.32) * side
        cy = rng.uniform(radius * 0.8, height - radius * 0.8)
        cx = rng.uniform(radius * 0.8, width - radius * 0.8)
        angle = rng.uniform(-0.5, 0.5)
        cos, sin = math.cos(angle), math.sin(angle)
        u = ((xx - cx) * cos + (yy - cy) * sin) / radius
        v = (-(xx - cx) * sin + (yy - cy) * cos) / radius
        mask = SHAPES[rank % len(SHAPES)][1](u, v)
        image[mask] = _object_colour(rank, rng) + rng.normal(0.0, 0.03, size=(int(mask.sum()), 3))
        label[mask] = classes[rank]
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), label


def _check_args(num_train, num_val, size, classes, background, max_objects) -> Tuple[int, int]:
    for name, value in (('num_train', num_train), ('num_val', num_val), ('max_objects', max_objects)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f'{name} must be a positive int, got {value!r}')
    sides = (size, size) if isinstance(size, int) else size
    if (not isinstance(sides, (tuple, list)) or len(sides) != 2
            or not all(isinstance(s, int) and s >= MIN_SIDE for s in sides)):
        raise ValueError(f'size must be an int or (height, width) of ints >= {MIN_SIDE}, got {size!r}')
    valid = range(1, NUM_CLASSES + 1)
    if isinstance(classes, (str, bytes)) or not isinstance(classes, Sequence) or not classes:
        raise ValueError(f'classes must be a non-empty sequence of ADE20K class ids in 1..{NUM_CLASSES}, '
                         f'got {classes!r}')
    bad = [c for c in classes if not isinstance(c, int) or c not in valid]
    if bad:
        raise ValueError(f'classes {list(classes)!r}: {bad} not ADE20K class ids in 1..{NUM_CLASSES} '
                         f'(0 is "other", stored for unlabelled pixels)')
    if len(set(classes)) != len(classes):
        raise ValueError(f'classes {list(classes)!r} repeats a class id')
    if not isinstance(background, int) or background not in valid:
        raise ValueError(f'background must be an ADE20K class id in 1..{NUM_CLASSES}, got {background!r}')
    if background in classes:
        raise ValueError(f'background class {background} is also in classes {list(classes)!r}')
    return int(sides[0]), int(sides[1])


def make_tiny_ade20k(root: str,
                     num_train: int = 8,
                     num_val: int = 4,
                     size=(96, 128),
                     classes: Sequence[int] = DEFAULT_CLASSES,
                     background: int = DEFAULT_BACKGROUND,
                     max_objects: int = 3,
                     seed: int = 0) -> Dict:
    """Writes a tiny ADE20K-layout dataset under ``root`` (created if needed; files of the same names are replaced).

    Args:
        root (str): Output directory, the ``data_root`` of the dataset config.
        num_train (int): Training images. Defaults to 8.
        num_val (int): Validation images. Defaults to 4.
        size (int | tuple[int, int]): Image ``(height, width)``, each at least 32 (an int: square). Defaults to
            ``(96, 128)``.
        classes (Sequence[int]): ADE20K class ids (1..150) of the objects. Image ``i`` of a split has an object of
            ``classes[i % len(classes)]``, so every class occurs once a split has ``len(classes)`` images.
            Defaults to ``(2, 3, 4, 5)``.
        background (int): ADE20K class id of the background. Defaults to 1.
        max_objects (int): Objects per image are 1..max_objects. Defaults to 3.
        seed (int): Seed; the same arguments give the same files. Defaults to 0.

    Returns:
        dict: ``root``, ``size`` (H, W), ``labels`` (the stored class ids, background first), ``reduced_labels``
        (the same after ``reduce_zero_label``: mmseg's class indices), and for ``'training'`` and ``'validation'``:
        ``img_dir``, ``ann_dir`` (relative to ``root``) and ``num_images``.

    Example:
        >>> summary = make_tiny_ade20k('/tmp/tiny_ade', num_train=2, num_val=1, size=64)
        >>> summary['training']['img_dir'], summary['labels'], summary['reduced_labels']
        ('images/training', [1, 2, 3, 4, 5], [0, 1, 2, 3, 4])
    """
    height, width = _check_args(num_train, num_val, size, classes, background, max_objects)
    classes = [int(c) for c in classes]
    labels = [background] + classes
    summary: Dict = dict(root=osp.abspath(root), size=[height, width], labels=labels,
                         reduced_labels=[c - 1 for c in labels])
    counts = dict(training=num_train, validation=num_val)
    for split_id, (split, _) in enumerate(SPLITS):
        img_dir, ann_dir = f'images/{split}', f'annotations/{split}'
        os.makedirs(osp.join(root, img_dir), exist_ok=True)
        os.makedirs(osp.join(root, ann_dir), exist_ok=True)
        for index in range(counts[split]):
            rng = np.random.default_rng([seed, split_id, index])
            image, label = render_sample(height, width, classes, background, max_objects, rng,
                                         first_class=index % len(classes))
            stem = file_stem(split, index)
            Image.fromarray(image).save(osp.join(root, img_dir, stem + '.jpg'), format='JPEG', quality=95)
            Image.fromarray(label).save(  # 2-D uint8: mode 'L'
                osp.join(root, ann_dir, stem + '.png'), format='PNG')
        summary[split] = dict(img_dir=img_dir, ann_dir=ann_dir, num_images=counts[split])
    return summary

