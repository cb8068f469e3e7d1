"""A tiny ImageNet-layout classification set of generated images, for tests and smoke runs.

Each class is a coloured shape (disk, square, triangle, ring, cross, stripes; colours spread over the hue circle) drawn
at a random position, size, rotation and shade on a noisy background, so a small model can learn it in a few
iterations while no two images are alike. The layout is the one mmpretrain's ``ImageNet`` reads::

    root/
      train/n00000000/n00000000_00000.JPEG ...   class folders
      val/val_00000000.JPEG ...                  flat, classes interleaved
      meta/train.txt                             "n00000000/n00000000_00000.JPEG 0"
      meta/val.txt                               "val_00000000.JPEG 0"

so ``dict(type='ImageNet', data_root=root, ann_file='meta/train.txt', data_prefix='train')`` (or ``split='train'``)
loads it. Labels are 0..num_classes-1 of the 1000 ImageNet classes. Output is a function of the arguments only.
"""
import colorsys
import math
import os
import os.path as osp
from typing import Callable, Dict, List, Tuple

import numpy as np
from PIL import Image

MAX_CLASSES = 1000  # mmpretrain's ImageNet has 1000 categories; labels must stay below that
_SPLITS = ('train', 'val')


def _disk(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u**2 + v**2 <= 1.0


def _square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (np.abs(u) <= 0.75) & (np.abs(v) <= 0.75)


def _triangle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # Equilateral, apex at v = -1, base at v = 0.5.
    return (v <= 0.5) & (np.abs(u) <= (v + 1.0) / math.sqrt(3.0))


def _ring(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    r2 = u**2 + v**2
    return (r2 <= 1.0) & (r2 >= 0.45)


def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return ((np.abs(u) <= 0.28) & (np.abs(v) <= 1.0)) | ((np.abs(v) <= 0.28) & (np.abs(u) <= 1.0))


def _stripes(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (np.abs(u) <= 0.85) & (np.abs(v) <= 0.85) & (np.floor((v + 0.85) / 0.34) % 2 == 0)


# Shapes in unit coordinates (u, v in [-1, 1] span the object's box); class k draws SHAPES[k % len(SHAPES)].
SHAPES: Tuple[Tuple[str, Callable[[np.ndarray, np.ndarray], np.ndarray]], ...] = (
    ('disk', _disk), ('square', _square), ('triangle', _triangle), ('ring', _ring), ('cross', _cross),
    ('stripes', _stripes))


def class_hue(label: int) -> float:
    """Hue in [0, 1) of class ``label``: golden-ratio steps, so neighbouring labels get far-apart colours."""
    return (label * 0.6180339887) % 1.0


def wnid(label: int) -> str:
    """ImageNet-style folder name of class ``label``: ``n00000003``."""
    return f'n{label:08d}'


def render_image(label: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """One ``size`` x ``size`` RGB uint8 image of class ``label`` drawn with ``rng``."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    # Background: a dim random grey-ish tone with pixel noise.
    base = rng.uniform(0.05, 0.35) + rng.uniform(-0.05, 0.05, size=3)
    image = np.broadcast_to(base, (size, size, 3)) + rng.normal(0.0, 0.04, size=(size, size, 3))

    radius = rng.uniform(0.22, 0.36) * size
    cy, cx = rng.uniform(radius * 0.8, size - radius * 0.8, size=2)
    angle = rng.uniform(-0.5, 0.5)  # radians; small, so triangles keep pointing up
    cos, sin = math.cos(angle), math.sin(angle)
    u = ((xx - cx) * cos + (yy - cy) * sin) / radius
    v = (-(xx - cx) * sin + (yy - cy) * cos) / radius
    mask = SHAPES[label % len(SHAPES)][1](u, v)

    hue = (class_hue(label) + rng.uniform(-0.02, 0.02)) % 1.0
    colour = np.array(colorsys.hsv_to_rgb(hue, rng.uniform(0.75, 1.0), rng.uniform(0.75, 1.0)))
    image[mask] = colour + rng.normal(0.0, 0.03, size=(int(mask.sum()), 3))
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _check_positive(name: str, value: int) -> None:
    if not isinstance(value, int) or value < 1:
        raise ValueError(f'{name} must be a positive int, got {value!r}')


def make_tiny_imagenet(root: str,
                       num_classes: int = 4,
                       train_per_class: int = 8,
                       val_per_class: int = 4,
                       size: int = 64,
                       seed: int = 0) -> Dict:
    """Writes a tiny ImageNet-layout dataset under ``root`` (created if needed; files of the same names are replaced).

    Args:
        root (str): Output directory, the ``data_root`` of the dataset config.
        num_classes (int): Number of classes, labels ``0 .. num_classes - 1`` (at most 1000). Defaults to 4.
        train_per_class (int): Training images per class. Defaults to 8.
        val_per_class (int): Validation images per class. Defaults to 4.
        size (int): Image side in pixels (at least 16). Defaults to 64.
        seed (int): Seed; the same arguments give the same images. Defaults to 0.

    Returns:
        dict: ``root``, ``num_classes``, ``classes`` (folder names) and, for ``'train'`` and ``'val'``, the
        ``ann_file`` and ``data_prefix`` (relative to ``root``) and ``num_images``.

    Example:
        >>> summary = make_tiny_imagenet('/tmp/tiny_imagenet', num_classes=2, train_per_class=2, val_per_class=1)
        >>> summary['train']['num_images'], summary['val']['ann_file']
        (4, 'meta/val.txt')
    """
    for name, value in (('num_classes', num_classes), ('train_per_class', train_per_class),
                        ('val_per_class', val_per_class), ('size', size)):
        _check_positive(name, value)
    if num_classes > MAX_CLASSES:
        raise ValueError(f'num_classes must be at most {MAX_CLASSES} (the ImageNet categories), got {num_classes}')
    if size < 16:
        raise ValueError(f'size must be at least 16 pixels, got {size}')

    summary: Dict = dict(root=osp.abspath(root), num_classes=num_classes,
                         classes=[wnid(label) for label in range(num_classes)])
    os.makedirs(osp.join(root, 'meta'), exist_ok=True)
    per_class = dict(train=train_per_class, val=val_per_class)
    for split_id, split in enumerate(_SPLITS):
        lines: List[str] = []
        # Index-major order: val interleaves the classes as ImageNet's val list does.
        for index in range(per_class[split]):
            for label in range(num_classes):
                if split == 'train':
                    rel_path = f'{wnid(label)}/{wnid(label)}_{index:05d}.JPEG'
                else:
                    rel_path = f'val_{index * num_classes + label:08d}.JPEG'
                rng = np.random.default_rng([seed, split_id, label, index])
                path = osp.join(root, split, rel_path)
                os.makedirs(osp.dirname(path), exist_ok=True)
                Image.fromarray(render_image(label, size, rng)).save(path, format='JPEG', quality=95)
                lines.append(f'{rel_path} {label}')
        if split == 'train':
            lines.sort()  # class folders in order, as a directory listing would give
        ann_file = f'meta/{split}.txt'
        with open(osp.join(root, ann_file), 'w') as f:
            f.write('\n'.join(lines) + '\n')
        summary[split] = dict(ann_file=ann_file, data_prefix=split, num_images=len(lines))
    return summary
