"""Image loading that says which file is broken, and can skip it: ``type='mmfastvit.LoadImageFromFile'``.

mmcv's ``LoadImageFromFile`` stops a run on an undecodable file with ``AssertionError: failed to load image`` (or a
decoder exception), from inside a dataloader worker. This subclass takes the same arguments plus ``on_corrupt``:

- ``'error'`` (default): :class:`CorruptImageError` naming the file, its size and what to do.
- ``'skip'``: a warning naming the file, and ``None`` for the sample, which mmengine's ``BaseDataset`` replaces by
  another random sample in training (up to ``max_refetch`` times). In evaluation (``test_mode=True``) mmengine refuses
  ``None``: skipping would change what the metric is computed over, so keep ``'error'`` in test pipelines.

The shipped classification, detection and segmentation configs name this loader in their training pipelines only:
their test pipelines name mmcv's plain ``LoadImageFromFile``, the type the OpenMMLab Inferencers look for, and
``tools/test.py`` / ``tools/train.py`` swap this one in there (:func:`mmfastvit.engine.cli.use_checked_image_loader`).

"Corrupt" means the decoder returns nothing: an empty file, bytes that are not an image, a header it cannot parse.
A JPEG cut short after a valid header decodes (libjpeg fills the rest in grey) and is not detected.
A missing file stays a FileNotFoundError naming it (or ``None`` with mmcv's ``ignore_empty=True``).
"""
import mmcv
import numpy as np
from mmcv.transforms import LoadImageFromFile as MMCVLoadImageFromFile
from mmengine import fileio
from mmengine.logging import print_log

from ..registry import TRANSFORMS

ON_CORRUPT = ('error', 'skip')


class CorruptImageError(ValueError):
    """An image file that exists but cannot be decoded."""


@TRANSFORMS.register_module()
class LoadImageFromFile(MMCVLoadImageFromFile):
    """mmcv's ``LoadImageFromFile`` with ``on_corrupt='error' | 'skip'`` (see the module docstring)."""

    def __init__(self, on_corrupt: str = 'error', **kwargs) -> None:
        if on_corrupt not in ON_CORRUPT:
            raise ValueError(f'LoadImageFromFile on_corrupt="{on_corrupt}" is not one of {list(ON_CORRUPT)}')
        super().__init__(**kwargs)
        self.on_corrupt = on_corrupt

    def transform(self, results: dict):
        filename = results['img_path']
        try:
            img_bytes = fileio.get(filename, backend_args=self.backend_args)
        except FileNotFoundError:
            if self.ignore_empty:
                return None
            raise FileNotFoundError(f'image "{filename}" does not exist') from None
        try:
            img = mmcv.imfrombytes(img_bytes, flag=self.color_type, backend=self.imdecode_backend)
            reason = f'{self.imdecode_backend} cannot decode its {len(img_bytes)} bytes'
        except Exception as e:  # Pillow / turbojpeg raise where cv2 returns None
            img, reason = None, f'{self.imdecode_backend}: {type(e).__name__}: {e}'
        if img is None or img.size == 0:
            message = f'image "{filename}" is corrupt or not an image ({reason})'
            if self.on_corrupt == 'skip':
                print_log(f'{message}; skipped (on_corrupt="skip")', logger='current', level=30)
                return None
            raise CorruptImageError(f'{message}. Replace or remove the file, or skip such files in training with '
                                    'on_corrupt="skip" in the pipeline\'s mmfastvit.LoadImageFromFile')
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f', on_corrupt={self.on_corrupt!r})'
