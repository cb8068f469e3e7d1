"""Robustness metrics of the FastViT paper's Table 7, as RVT (Mao et al., CVPR 2022) evaluates them.

- ImageNet-A and ImageNet-R cover 200 of the 1000 ImageNet classes, and a 1000-class model is scored over those 200
  classes only: the prediction is the highest-scoring class among them (Hendrycks et al., "Natural Adversarial
  Examples", CVPR 2021, and "The Many Faces of Robustness", ICCV 2021). :class:`SubsetAccuracy` does this.
- ImageNet-C (Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
  Perturbations", ICLR 2019): for corruption ``c``, ``E_c = sum over severities 1..5 of the top-1 error``, its
  corruption error ``CE_c = E_c / E_c(AlexNet)``, and the mean corruption error ``mCE = mean of CE_c over the 15
  corruptions``, in percent (lower is better). The unnormalized ``mean_error`` (the mean top-1 error over the 15
  corruptions and 5 severities) is reported beside it. :func:`corruption_summary` computes both from the errors and
  :class:`CorruptionError` measures the errors.

This module needs mmengine and torch only. Its metrics are registered in mmfastvit's ``METRICS`` and, through
:mod:`mmfastvit.integrations.mmpretrain`, in mmpretrain's.
"""
import bisect
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from mmengine.evaluator import BaseMetric
from torch import Tensor

from ..registry import METRICS

# The 15 corruptions of mCE, in the ImageNet-C paper's four groups.
CORRUPTION_GROUPS: Dict[str, Tuple[str, ...]] = OrderedDict(
    noise=('gaussian_noise', 'shot_noise', 'impulse_noise'),
    blur=('defocus_blur', 'glass_blur', 'motion_blur', 'zoom_blur'),
    weather=('snow', 'frost', 'fog', 'brightness'),
    digital=('contrast', 'elastic_transform', 'pixelate', 'jpeg_compression'),
)
CORRUPTIONS: Tuple[str, ...] = tuple(c for group in CORRUPTION_GROUPS.values() for c in group)
# Released with ImageNet-C for validation; not part of mCE (no AlexNet baseline is published for them).
EXTRA_CORRUPTIONS: Tuple[str, ...] = ('speckle_noise', 'gaussian_blur', 'spatter', 'saturate')
SEVERITIES: Tuple[int, ...] = (1, 2, 3, 4, 5)

# AlexNet's top-1 error on each corruption, averaged over the five severities (so E_c(AlexNet) = 5 x the value), keyed
# by name: the baselines of Hendrycks' robustness repository (github.com/hendrycks/robustness, ImageNet-C evaluation)
# for the ImageNet-C paper, used unchanged by AugMix (github.com/google-research/augmix) and RVT. Keyed by name
# because public code often keeps them as a bare list beside a corruption list in another order.
ALEXNET_ERRORS: Dict[str, float] = {
    'gaussian_noise': 0.886428,
    'shot_noise': 0.894468,
    'impulse_noise': 0.922640,
    'defocus_blur': 0.819880,
    'glass_blur': 0.826268,
    'motion_blur': 0.785948,
    'zoom_blur': 0.798360,
    'snow': 0.866816,
    'frost': 0.826572,
    'fog': 0.819324,
    'brightness': 0.564592,
    'contrast': 0.853204,
    'elastic_transform': 0.646056,
    'pixelate': 0.717840,
    'jpeg_compression': 0.606500,
}

ErrorTable = Mapping[Tuple[str, int], float]


def _describe_missing(errors: ErrorTable) -> List[str]:
    missing = []
    for corruption in CORRUPTIONS:
        absent = [s for s in SEVERITIES if (corruption, s) not in errors]
        if len(absent) == len(SEVERITIES):
            missing.append(f'{corruption} (all severities)')
        elif absent:
            missing.append(f'{corruption} (severities {", ".join(map(str, absent))})')
    return missing


def corruption_summary(errors: ErrorTable, allow_partial: bool = False) -> Dict[str, float]:
    """ImageNet-C's mCE and mean error from per-(corruption, severity) top-1 errors.

    Args:
        errors (Mapping[tuple[str, int], float]): ``{(corruption, severity): top-1 error in percent}``. Corruptions
            are ImageNet-C's names (:data:`CORRUPTIONS`, or :data:`EXTRA_CORRUPTIONS`, which are reported but take no
            part in mCE), severities 1..5.
        allow_partial (bool): Without it, a table that lacks any of the 15 corruptions x 5 severities is refused.
            With it, each corruption present is normalized over its severities present (``CE_c = sum of its errors /
            (AlexNet's average x their number)``) and the results are named ``partial_mCE`` /
            ``partial_mean_error``: they are not the paper's numbers. Defaults to False.

    Returns:
        dict: ``mCE`` (or ``partial_mCE``) and ``mean_error`` (or ``partial_mean_error``) in percent, then
        ``CE/<corruption>`` (percent), ``error/<corruption>`` (mean over its severities) and
        ``error/<corruption>/<severity>``.

    Raises:
        ValueError: unknown corruption names or severities, errors outside [0, 100], no corruption of the 15, or
            (without ``allow_partial``) any of the 75 entries missing, all named.

    Example:
        >>> table = {(c, s): 50.0 for c in CORRUPTIONS for s in SEVERITIES}
        >>> round(corruption_summary(table)['CE/brightness'], 2)  # 50 / 56.4592
        88.56
    """
    unknown = sorted({c for c, _ in errors} - set(CORRUPTIONS) - set(EXTRA_CORRUPTIONS))
    if unknown:
        raise ValueError(f'corruptions {unknown} are not ImageNet-C\'s; expected names among '
                         f'{list(CORRUPTIONS) + list(EXTRA_CORRUPTIONS)}')
    bad = sorted((c, s) for c, s in errors if s not in SEVERITIES)
    if bad:
        raise ValueError(f'severities of {bad} are not in {list(SEVERITIES)}')
    out_of_range = sorted(key for key, value in errors.items() if not 0.0 <= float(value) <= 100.0)
    if out_of_range:
        raise ValueError(f'top-1 errors must be percentages in [0, 100]; {out_of_range} are not')
    missing = _describe_missing(errors)
    if not any(c in ALEXNET_ERRORS for c, _ in errors):
        raise ValueError(f'no error of any of the 15 mCE corruptions {list(CORRUPTIONS)} was given')
    if missing and not allow_partial:
        raise ValueError(f'ImageNet-C mCE needs the top-1 error of all {len(CORRUPTIONS)} corruptions at severities '
                         f'1-5; missing: {"; ".join(missing)}. Evaluate the full set, or allow a partial result '
                         f'(reported as partial_mCE, which is not the paper\'s mCE)')
    prefix = 'partial_' if missing else ''
    corruption_errors, per_corruption, per_entry = [], OrderedDict(), OrderedDict()
    present_errors = []
    for corruption in CORRUPTIONS + EXTRA_CORRUPTIONS:
        values = [float(errors[(corruption, s)]) for s in SEVERITIES if (corruption, s) in errors]
        if not values:
            continue
        for severity in SEVERITIES:
            if (corruption, severity) in errors:
                per_entry[f'error/{corruption}/{severity}'] = float(errors[(corruption, severity)])
        per_corruption[f'error/{corruption}'] = sum(values) / len(values)
        if corruption in ALEXNET_ERRORS:
            ce = sum(values) / (len(values) * 100.0 * ALEXNET_ERRORS[corruption])
            per_corruption[f'CE/{corruption}'] = 100.0 * ce
            corruption_errors.append(ce)
            present_errors.extend(values)
    summary = OrderedDict()
    summary[f'{prefix}mCE'] = 100.0 * sum(corruption_errors) / len(corruption_errors)
    summary[f'{prefix}mean_error'] = sum(present_errors) / len(present_errors)
    summary.update(per_corruption)
    summary.update(per_entry)
    return summary


def _scores(sample: Mapping) -> Optional[Tensor]:
    score = sample.get('pred_score')
    return None if score is None else torch.as_tensor(score).flatten()


def _label(value) -> int:
    return int(torch.as_tensor(value).flatten()[0])


def subset_predictions(scores: Tensor, subset: Sequence[int]) -> Tensor:
    """The class (an index into the scores' classes) with the highest score among ``subset``, per row of ``scores``.

    Example:
        >>> scores = torch.tensor([[0.0, 5.0, 1.0, 2.0]])
        >>> subset_predictions(scores, [0, 2, 3])  # class 1 scores highest, but is outside the subset
        tensor([3])
    """
    index = torch.as_tensor(list(subset), dtype=torch.long)
    return index[scores[..., index].argmax(dim=-1)]


def subset_top1(scores: Tensor, labels: Tensor, subset: Sequence[int]) -> float:
    """Top-1 accuracy (percent) with the predictions read over ``subset`` only (see :func:`subset_predictions`).

    Raises:
        ValueError: a label is not in ``subset`` (the sample could never be right).
    """
    labels = torch.as_tensor(labels).flatten()
    outside = sorted(set(labels.tolist()) - set(int(i) for i in subset))
    if outside:
        raise ValueError(f'labels {outside[:5]} are not in the class subset of {len(subset)} classes')
    return 100.0 * (subset_predictions(scores, subset) == labels).float().mean().item()


@METRICS.register_module()
class SubsetAccuracy(BaseMetric):
    """Top-1 accuracy with a 1000-class model's scores read over a subset of the classes (ImageNet-A / -R).

    Args:
        subset (Sequence[int], optional): Class indices the prediction is chosen among. Defaults to None: the
            dataset's ``label_subset`` (the ImageNet-1k indices of its class folders, see
            :mod:`mmfastvit.datasets.robustness`).
        collect_device (str): ``'cpu'`` or ``'gpu'``, for collecting results across processes. Defaults to 'cpu'.
        prefix (str, optional): Prefix of the metric names. Defaults to ``'subset_accuracy'``.

    Results: ``top1`` (the masked accuracy the papers report) and ``top1_unmasked`` (argmax over all the scores, for
    comparison), in percent, and ``num_classes`` (the subset's size).
    """

    default_prefix = 'subset_accuracy'

    def __init__(self, subset: Optional[Sequence[int]] = None, collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.subset = None if subset is None else [int(i) for i in subset]

    def _subset(self) -> List[int]:
        if self.subset is not None:
            return self.subset
        subset = (self.dataset_meta or {}).get('label_subset')
        if not subset:
            raise ValueError('SubsetAccuracy needs the class subset: pass subset=[...] or use a dataset whose '
                             'metainfo has "label_subset" (ImageNetA, ImageNetR)')
        return [int(i) for i in subset]

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        subset = self._subset()
        for sample in data_samples:
            scores = _scores(sample)
            if scores is None:
                raise KeyError('SubsetAccuracy needs each prediction\'s "pred_score" (all class scores) to read them '
                               'over the subset; the model gave only labels')
            if scores.numel() <= max(subset):
                raise ValueError(f'the model scores {scores.numel()} classes, but the subset has class index '
                                 f'{max(subset)}: expected a 1000-class ImageNet model')
            label = _label(sample['gt_label'])
            if label not in subset:
                raise ValueError(f'ground-truth label {label} is not in the class subset ({len(subset)} classes)')
            masked = int(subset_predictions(scores[None], subset)[0])
            self.results.append((masked == label, int(scores.argmax()) == label))

    def compute_metrics(self, results: list) -> Dict[str, float]:
        if not results:
            raise ValueError('SubsetAccuracy got no predictions')
        return dict(top1=100.0 * sum(r[0] for r in results) / len(results),
                    top1_unmasked=100.0 * sum(r[1] for r in results) / len(results),
                    num_classes=float(len(self._subset())))


@METRICS.register_module()
class CorruptionError(BaseMetric):
    """ImageNet-C's mean corruption error: top-1 error per (corruption, severity), then :func:`corruption_summary`.

    Each prediction is placed by its ``sample_idx`` (packed by mmpretrain's ``PackInputs`` by default) in the
    dataset's ``corruption_groups`` (``(corruption, severity, start, stop)`` index ranges, see
    :class:`mmfastvit.datasets.robustness.ImageNetC`).

    Args:
        allow_partial (bool): Report ``partial_mCE`` when some of the 15 corruptions x 5 severities were not evaluated
            instead of refusing (see :func:`corruption_summary`). Defaults to False.
        collect_device (str): ``'cpu'`` or ``'gpu'``. Defaults to 'cpu'.
        prefix (str, optional): Prefix of the metric names. Defaults to ``'imagenet_c'``.
    """

    default_prefix = 'imagenet_c'

    def __init__(self, allow_partial: bool = False, collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.allow_partial = allow_partial

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            if 'sample_idx' not in sample:
                raise KeyError('CorruptionError needs each prediction\'s "sample_idx" to know its corruption and '
                               'severity; keep it in PackInputs\' meta_keys (mmpretrain\'s default has it)')
            scores = _scores(sample)
            predicted = int(scores.argmax()) if scores is not None else _label(sample['pred_label'])
            self.results.append((int(sample['sample_idx']), predicted == _label(sample['gt_label'])))

    def compute_metrics(self, results: list) -> Dict[str, float]:
        groups = (self.dataset_meta or {}).get('corruption_groups')
        if not groups:
            raise ValueError('CorruptionError needs the dataset\'s "corruption_groups" (use the ImageNetC dataset)')
        starts = sorted((int(start), int(stop), corruption, int(severity))
                        for corruption, severity, start, stop in groups)
        counts = {(c, s): [0, 0] for _, _, c, s in starts}
        first = [start for start, _, _, _ in starts]
        for index, correct in results:
            position = bisect.bisect_right(first, index) - 1
            if position < 0 or index >= starts[position][1]:
                raise ValueError(f'sample_idx {index} is in none of the dataset\'s corruption groups')
            entry = counts[starts[position][2:]]
            entry[0] += int(correct)
            entry[1] += 1
        empty = [key for key, (_, total) in counts.items() if total == 0]
        if empty:
            raise ValueError(f'no predictions for {empty}')
        errors = {key: 100.0 * (1.0 - right / total) for key, (right, total) in counts.items()}
        return dict(corruption_summary(errors, allow_partial=self.allow_partial))
