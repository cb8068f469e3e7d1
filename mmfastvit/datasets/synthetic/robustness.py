"""Tiny ImageNet-C, -A, -R and -Sketch sets in their released layouts, for tests and smoke runs of the robustness tool.

The images are the coloured shapes of :mod:`.imagenet` (class ``k`` is ``SHAPES[k % 6]`` in hue ``class_hue(k)``),
with each set's look: ImageNet-C adds a corruption whose strength grows with the severity (noise for the noise group,
blur for blur, a white veil for weather, pixelation for digital), ImageNet-R posterizes, ImageNet-Sketch draws dark
edges on white. Class folders are named ``n%08d`` by ImageNet-1k index (``n00000005`` is class 5), and
``meta/wnids.txt`` lists the 1000 such names, so the loaders label them with those indices::

    root/
      meta/wnids.txt                                     n00000000 ... n00000999 (the datasets' wnids_file)
      imagenet-c/<corruption>/<severity>/<wnid>/*.JPEG   or imagenet-c/<group>/<corruption>/... with nested=True
      imagenet-a/<wnid>/*.JPEG                           a few of the 1000 classes (the released set: 200)
      imagenet-r/<wnid>/*.JPEG                           the same
      imagenet-sketch/sketch/<wnid>/*.JPEG
      imagenet/                                          with clean=True: make_tiny_imagenet's layout (train, val)

Output is a function of the arguments only. Needs numpy and Pillow.
"""
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from .imagenet import make_tiny_imagenet, render_image, wnid

NUM_CLASSES = 1000
DEFAULT_C_CLASSES = (0, 1)
DEFAULT_A_CLASSES = (1, 5, 7)
DEFAULT_R_CLASSES = (2, 5, 9)
DEFAULT_SKETCH_CLASSES = (0, 1, 2, 3)
MIN_SIZE = 16


def _check(name: str, classes: Sequence[int], per_class: int, size: int) -> List[int]:
    if isinstance(classes, (str, bytes)) or not classes or any(
            not isinstance(c, int) or not 0 <= c < NUM_CLASSES for c in classes):
        raise ValueError(f'{name}: classes must be ImageNet-1k indices in 0..{NUM_CLASSES - 1}, got {classes!r}')
    if len(set(classes)) != len(classes):
        raise ValueError(f'{name}: classes {list(classes)!r} repeat an index')
    if not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f'{name}: per_class must be a positive int, got {per_class!r}')
    if not isinstance(size, int) or size < MIN_SIZE:
        raise ValueError(f'{name}: size must be an int of at least {MIN_SIZE}, got {size!r}')
    return sorted(classes)


def write_wnids(path: str) -> str:
    """Writes the 1000 class-folder names of these sets (``n00000000`` ... ``n00000999``), one a line."""
    os.makedirs(osp.dirname(path) or '.', exist_ok=True)
    with open(path, 'w') as f:
        f.write('\n'.join(wnid(i) for i in range(NUM_CLASSES)) + '\n')
    return path


def _save(image: np.ndarray, path: str) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    Image.fromarray(image).save(path, format='JPEG', quality=90)


def corrupt(image: np.ndarray, corruption: str, severity: int, rng: np.random.Generator) -> np.ndarray:
    """A stand-in for ImageNet-C's corruption of ``image``, stronger at higher ``severity`` (1..5)."""
    from ...evaluation.robustness import CORRUPTION_GROUPS  # mmengine + torch; only when writing ImageNet-C
    group = next((g for g, members in CORRUPTION_GROUPS.items() if corruption in members), 'extra')
    pixels = image.astype(np.float32) / 255.0
    if group in ('noise', 'extra'):
        pixels = pixels + rng.normal(0.0, 0.04 * severity, size=pixels.shape)
    elif group == 'blur':
        blurred = Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius=0.4 * severity))
        pixels = np.asarray(blurred).astype(np.float32) / 255.0
    elif group == 'weather':
        pixels = pixels * (1.0 - 0.12 * severity) + 0.12 * severity
    else:  # digital: pixelate
        side = image.shape[0]
        small = Image.fromarray(image).resize((max(2, side // (severity + 1)),) * 2, Image.NEAREST)
        pixels = np.asarray(small.resize((side, side), Image.NEAREST)).astype(np.float32) / 255.0
    return (np.clip(pixels, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def make_tiny_imagenet_c(root: str,
                         corruptions: Optional[Sequence[str]] = None,
                         severities: Sequence[int] = (1, 2, 3, 4, 5),
                         classes: Sequence[int] = DEFAULT_C_CLASSES,
                         per_class: int = 1,
                         size: int = 32,
                         nested: bool = False,
                         seed: int = 0) -> Dict:
    """Writes ``root/<corruption>/<severity>/<wnid>/*.JPEG`` (``root/<group>/<corruption>/...`` with ``nested``).

    Args:
        corruptions (Sequence[str], optional): ImageNet-C corruption names. Defaults to the 15 of mCE.
        severities (Sequence[int]): Among 1..5. Defaults to all five.
        classes (Sequence[int]): ImageNet-1k indices of the class folders. Defaults to ``(0, 1)``.
        per_class (int): Images per class folder. Defaults to 1.
        size (int): Image side (ImageNet-C's is 224). Defaults to 32.
        nested (bool): Put each corruption in its group folder (``noise``, ``blur``, ``weather``, ``digital``,
            ``extra``), as some mirrors do. Defaults to False.

    Returns:
        dict: ``root``, ``corruptions``, ``severities``, ``labels`` and ``num_images``.
    """
    from ...evaluation.robustness import CORRUPTION_GROUPS, CORRUPTIONS, EXTRA_CORRUPTIONS, SEVERITIES
    corruptions = list(CORRUPTIONS if corruptions is None else corruptions)
    unknown = [c for c in corruptions if c not in CORRUPTIONS + EXTRA_CORRUPTIONS]
    if unknown or not corruptions:
        raise ValueError(f'corruptions {unknown or corruptions} are not among '
                         f'{list(CORRUPTIONS + EXTRA_CORRUPTIONS)}')
    bad = [s for s in severities if s not in SEVERITIES]
    if bad or not severities:
        raise ValueError(f'severities {bad or list(severities)} are not among {list(SEVERITIES)}')
    labels = _check('imagenet-c', classes, per_class, size)
    group_of = {c: g for g, members in CORRUPTION_GROUPS.items() for c in members}
    count = 0
    for c_id, corruption in enumerate(corruptions):
        base = osp.join(root, group_of.get(corruption, 'extra'), corruption) if nested else osp.join(root, corruption)
        for severity in severities:
            for label in labels:
                for index in range(per_class):
                    rng = np.random.default_rng([seed, 1, label, index])  # the same clean image at every pair
                    clean = render_image(label, size, rng)
                    rng = np.random.default_rng([seed, 2, c_id, severity, label, index])
                    name = f'ILSVRC2012_val_{label:05d}{index:03d}.JPEG'
                    _save(corrupt(clean, corruption, severity, rng), osp.join(base, str(severity), wnid(label), name))
                    count += 1
    return dict(root=osp.abspath(root), corruptions=corruptions, severities=sorted(severities), labels=labels,
                num_images=count)


def _make_class_folders(root: str, name: str, classes: Sequence[int], per_class: int, size: int, seed: int,
                        style) -> Dict:
    labels = _check(name, classes, per_class, size)
    for label in labels:
        for index in range(per_class):
            rng = np.random.default_rng([seed, 3, label, index])
            _save(style(render_image(label, size, rng)), osp.join(root, wnid(label), f'{name}_{index:04d}.JPEG'))
    return dict(root=osp.abspath(root), labels=labels, num_images=len(labels) * per_class)


def _posterize(image: np.ndarray) -> np.ndarray:
    return np.asarray(ImageOps.posterize(Image.fromarray(image), 2))


def _sketch(image: np.ndarray) -> np.ndarray:
    edges = Image.fromarray(image).convert('L').filter(ImageFilter.FIND_EDGES)
    lines = ImageOps.invert(ImageOps.autocontrast(edges))
    return np.asarray(lines.convert('RGB'))


def make_tiny_imagenet_a(root: str, classes: Sequence[int] = DEFAULT_A_CLASSES, per_class: int = 1, size: int = 32,
                         seed: int = 0) -> Dict:
    """Writes ``root/<wnid>/*.JPEG`` for ``classes`` (ImageNet-1k indices; the released set has 200 classes)."""
    return _make_class_folders(root, 'imagenet-a', classes, per_class, size, seed, lambda image: image)


def make_tiny_imagenet_r(root: str, classes: Sequence[int] = DEFAULT_R_CLASSES, per_class: int = 1, size: int = 32,
                         seed: int = 0) -> Dict:
    """Writes ``root/<wnid>/*.JPEG`` of posterized renderings for ``classes`` (the released set has 200)."""
    return _make_class_folders(root, 'imagenet-r', classes, per_class, size, seed, _posterize)


def make_tiny_imagenet_sketch(root: str, classes: Sequence[int] = DEFAULT_SKETCH_CLASSES, per_class: int = 1,
                              size: int = 32, seed: int = 0) -> Dict:
    """Writes ``root/sketch/<wnid>/*.JPEG`` of edge drawings for ``classes`` (the released set has all 1000)."""
    summary = _make_class_folders(osp.join(root, 'sketch'), 'imagenet-sketch', classes, per_class, size, seed,
                                  _sketch)
    summary['root'] = osp.abspath(root)
    return summary


def make_tiny_robustness(root: str,
                         corruptions: Optional[Sequence[str]] = None,
                         severities: Sequence[int] = (1, 2, 3, 4, 5),
                         per_class: int = 1,
                         size: int = 32,
                         nested: bool = False,
                         clean: bool = False,
                         seed: int = 0) -> Dict:
    """Writes the four sets (and with ``clean`` a tiny ImageNet) under ``root`` as the robustness tool reads them.

    Args:
        root (str): The tool's ``--data-root``.
        corruptions (Sequence[str], optional): ImageNet-C corruptions. Defaults to the 15 of mCE.
        severities (Sequence[int]): ImageNet-C severities. Defaults to 1..5.
        per_class (int): Images per class folder. Defaults to 1.
        size (int): Image side. Defaults to 32.
        nested (bool): ImageNet-C in group folders. Defaults to False.
        clean (bool): Also write ``root/imagenet`` (:func:`make_tiny_imagenet`, 2 classes, 2 validation images
            each). Defaults to False.
        seed (int): Seed. Defaults to 0.

    Returns:
        dict: ``root``, ``wnids_file`` and one summary per set (``imagenet-c``, ``imagenet-a``, ``imagenet-r``,
        ``imagenet-sketch``, and ``imagenet`` with ``clean``).

    Example:
        >>> summary = make_tiny_robustness('/tmp/tiny_robustness', corruptions=['fog'], severities=[1])
        >>> summary['imagenet-a']['labels'], summary['imagenet-c']['num_images']
        ([1, 5, 7], 2)
    """
    summary = dict(root=osp.abspath(root), wnids_file=osp.abspath(write_wnids(osp.join(root, 'meta', 'wnids.txt'))))
    summary['imagenet-c'] = make_tiny_imagenet_c(osp.join(root, 'imagenet-c'), corruptions, severities,
                                                 per_class=per_class, size=size, nested=nested, seed=seed)
    summary['imagenet-a'] = make_tiny_imagenet_a(osp.join(root, 'imagenet-a'), per_class=per_class, size=size,
                                                 seed=seed)
    summary['imagenet-r'] = make_tiny_imagenet_r(osp.join(root, 'imagenet-r'), per_class=per_class, size=size,
                                                 seed=seed)
    summary['imagenet-sketch'] = make_tiny_imagenet_sketch(osp.join(root, 'imagenet-sketch'), per_class=per_class,
                                                           size=size, seed=seed)
    if clean:
        summary['imagenet'] = make_tiny_imagenet(osp.join(root, 'imagenet'), num_classes=2, train_per_class=1,
                                                 val_per_class=2, size=size, seed=seed)
    return summary
