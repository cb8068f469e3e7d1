"""Images from a dataset config, for int8 calibration and for accuracy checks of reduced-precision exports.

:func:`dataset_batches` builds the config's dataset of one split (``train`` for calibration, ``val`` for checks) with
the config's test pipeline (deterministic resizing and cropping, no augmentation), normalizes the images as the
model's data preprocessor does, and returns them, with their labels where the dataset has them. It imports the task
package the config names in ``default_scope`` (mmpretrain, mmdet, mmseg), so it is imported only when used.
"""
import importlib
import random
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

SPLITS = ('train', 'val', 'test')


@dataclass
class ImageSet:
    """Normalized images of one split (``images``: ``(N, 3, H, W)`` float32) and their labels (None without)."""

    images: Tensor
    labels: Optional[Tensor]
    source: dict

    def batches(self, batch: int) -> List[Tensor]:
        """The images in whole batches of ``batch`` (a last partial batch is dropped: exported graphs have a static
        batch)."""
        return [self.images[i:i + batch] for i in range(0, len(self.images) - batch + 1, batch)]


def _normalizer(cfg) -> Callable[[Tensor], Tensor]:
    """uint8 CHW (BGR or RGB as loaded) -> the float tensor the model sees, as the config's data preprocessor."""
    pre = cfg.get('model', {}).get('data_preprocessor') or cfg.get('data_preprocessor') or {}
    mean = torch.tensor(pre.get('mean', (0.0, 0.0, 0.0)), dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(pre.get('std', (1.0, 1.0, 1.0)), dtype=torch.float32).view(3, 1, 1)
    to_rgb = bool(pre.get('to_rgb', pre.get('bgr_to_rgb', False)))

    def normalize(image: Tensor) -> Tensor:
        image = image.float()
        if to_rgb:
            image = image.flip(0)
        return (image - mean) / std

    return normalize


def _dataset_config(cfg, split: str):
    key = f'{split}_dataloader'
    if key not in cfg or not cfg[key] or 'dataset' not in cfg[key]:
        raise ValueError(f'the config has no {key}.dataset to take {split} images from')
    dataset = cfg[key].dataset.copy()
    for source in ('test_dataloader', 'val_dataloader'):
        loader = cfg.get(source)
        if loader and loader.get('dataset', {}).get('pipeline'):
            dataset.pipeline = loader.dataset.pipeline  # deterministic: no random crops or flips
            break
    return dataset


def dataset_batches(config: str, split: str = 'train', count: int = 300, shape: Optional[Sequence[int]] = None,
                    cfg_options: Optional[dict] = None, seed: int = 0,
                    log: Callable[[str], None] = print) -> ImageSet:
    """Up to ``count`` images of ``split`` of ``config``'s dataset, chosen evenly at random (``seed``).

    Args:
        config (str): A training config with ``{split}_dataloader.dataset`` (mmpretrain's ``ImageNet``, ...).
        split (str): ``'train'``, ``'val'`` or ``'test'``.
        count (int): How many images.
        shape (Sequence[int], optional): ``(H, W)`` to resize to when the pipeline gives another size.
        cfg_options (dict, optional): Overrides, as ``--cfg-options`` (``{'train_dataloader.dataset.data_root':
            ...}``).

    Raises:
        FileNotFoundError: the config is missing.
        ValueError: a bad split or count, a config without that dataset, or an empty dataset.
    """
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    if split not in SPLITS:
        raise ValueError(f'split "{split}" is not one of {list(SPLITS)}')
    if not isinstance(count, int) or count < 1:
        raise ValueError(f'count {count!r} must be a positive integer')
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    scope = cfg.get('default_scope', 'mmpretrain')
    init_default_scope(scope)
    registry = importlib.import_module(f'{scope}.registry')
    dataset = registry.DATASETS.build(_dataset_config(cfg, split))
    if len(dataset) == 0:
        raise ValueError(f'the {split} dataset of {config} is empty')
    picks = sorted(random.Random(seed).sample(range(len(dataset)), min(count, len(dataset))))
    normalize = _normalizer(cfg)
    images, labels = [], []
    for index in picks:
        item = dataset[index]
        image = normalize(item['inputs'])
        if shape is not None and tuple(image.shape[-2:]) != tuple(shape):
            image = F.interpolate(image[None], size=tuple(shape), mode='bilinear', align_corners=False)[0]
        images.append(image)
        sample = item.get('data_samples')
        label = getattr(sample, 'gt_label', None)
        labels.append(int(label[0]) if label is not None and len(label) else None)
    known = all(label is not None for label in labels)
    log(f'{len(images)} {split} images from {config} ({type(dataset).__name__}, {len(dataset)} in all)'
        + ('' if known else ', no labels'))
    return ImageSet(torch.stack(images), torch.tensor(labels) if known else None,
                    dict(config=str(config), split=split, count=len(images), dataset=type(dataset).__name__,
                         dataset_size=len(dataset), seed=seed))


def agreement(actual: Tensor, expected: Tensor, labels: Optional[Tensor] = None) -> dict:
    """How a reduced-precision model's logits ``actual`` compare with the fp32 ones ``expected`` (``(N, classes)``):
    top-1 agreement, max and mean relative logit error (over ``max |expected|``), and with ``labels`` the top-1
    accuracy of both."""
    actual, expected = actual.float(), expected.float()
    scale = expected.abs().max().clamp_min(1e-12)
    top1, top1_ref = actual.argmax(1), expected.argmax(1)
    result = dict(images=len(actual), top1_agreement=float((top1 == top1_ref).float().mean()),
                  max_abs_error=float((actual - expected).abs().max()),
                  max_rel_error=float((actual - expected).abs().max() / scale),
                  mean_rel_error=float((actual - expected).abs().mean() / scale))
    if labels is not None:
        result.update(accuracy=float((top1 == labels).float().mean()),
                      fp32_accuracy=float((top1_ref == labels).float().mean()))
    return result

