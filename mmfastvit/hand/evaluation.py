"""FreiHAND's official evaluation (``eval.py`` of the FreiHAND toolbox, lmb-freiburg/freihand), reproduced in numpy,
and the mmengine metric built on it.

What the server computes, and where each piece lives here:

* :func:`align_w_scale`: the per-sample Procrustes alignment of a prediction to its ground truth, reflections allowed.
* :func:`aligned_errors`: the per-point Euclidean errors after that alignment (joints and vertices aligned separately).
* :func:`pck_measures`: the mean error and the area under the PCK curve over 0-5 cm, as ``EvalUtil.get_measures``.
* :func:`f_score`: the F-score of two point sets at a distance threshold (the paper's F@5 / F@15 on aligned vertices).
* :func:`evaluate_freihand`: all of the above over a set, in the units papers report (mm for the errors).
* :func:`write_pred_json`: the submission file ``pred.json`` for the evaluation server, written atomically.
* :class:`FreiHANDMetric`: the mmengine metric (``type='mmfastvit.FreiHANDMetric'``).

Everything is in metres, as FreiHAND releases its annotations, and computed in float64 (``eval.py`` reads JSON, so it
works in Python floats). Only the aligned ("PA") numbers are reported: predictions are root-relative, so the unaligned
ones would measure the missing translation.
"""
import json
import logging
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log
from scipy.linalg import orthogonal_procrustes
from scipy.spatial import cKDTree

from mmfastvit.fileio import atomic_write
from mmfastvit.registry import METRICS

from .conventions import NUM_JOINTS, NUM_VERTICES

# eval.py's PCK thresholds: get_measures(0.0, 0.05, 100), in metres.
PCK_MIN, PCK_MAX, PCK_STEPS = 0.0, 0.05, 100
# eval.py's F-score thresholds (f_threshs), in metres.
F_THRESHOLDS = (0.005, 0.015)
# eval.py adds this to both Frobenius norms before dividing by them.
NORM_EPS = 1e-8
METRIC_KEYS = ('PA-MPJPE', 'PA-MPVPE', 'AUC_J', 'AUC_V', 'F@5', 'F@15')

# numpy 2 renamed trapz to trapezoid (same arithmetic); numpy 1.x only has trapz.
_trapezoid = getattr(np, 'trapezoid', None) or np.trapz

ArrayLike = Any  # numpy array, torch tensor, or nested lists


def _to_numpy(x: ArrayLike) -> np.ndarray:
    if hasattr(x, 'detach'):  # torch.Tensor, on any device
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _points(x: ArrayLike, name: str, num_points: Optional[int] = None, batched: bool = False) -> np.ndarray:
    """``x`` as a float64 array of shape ``(K, 3)`` (``(N, K, 3)`` when ``batched``), finite; errors name ``name``."""
    try:
        arr = _to_numpy(x)
    except (TypeError, ValueError) as err:
        raise ValueError(f'{name} is not an array of numbers: {err}') from err
    ndim = 3 if batched else 2
    want = ('N x ' if batched else '') + f'{num_points if num_points else "K"} x 3'
    if arr.ndim != ndim or arr.shape[-1] != 3 or (num_points is not None and arr.shape[-2] != num_points):
        raise ValueError(f'{name} must have shape ({want}), got {tuple(arr.shape)}')
    if not np.isfinite(arr).all():
        raise ValueError(f'{name} holds NaN or infinite values')
    return arr


# --------------------------------------------------------------------------------------------------------------------
# The official measures
# --------------------------------------------------------------------------------------------------------------------
def align_w_scale(mtx1: ArrayLike, mtx2: ArrayLike, return_trafo: bool = False):
    """Aligns ``mtx2`` (the prediction) to ``mtx1`` (the ground truth) as ``eval.py``'s function of the same name.

    Both are ``(K, 3)``. Each is centred on its mean and divided by its Frobenius norm plus 1e-8; scipy's
    ``orthogonal_procrustes(gt_n, pred_n)`` gives the orthogonal ``R`` and the scale ``s`` (the sum of the singular
    values of ``gt_n.T @ pred_n``); the prediction becomes ``(pred_n @ R.T) * s * s1 + t1``, with ``s1, t1`` the
    ground truth's norm and mean. ``R`` may be a reflection (``det(R) = -1``): a mirrored prediction aligns exactly,
    unlike the reflection-corrected alignment of HMR / SPIN / mmpose. A prediction that is one point (all zeros)
    aligns to the ground truth's mean. Because of the 1e-8, an exact copy comes back scaled by
    ``(n / (n + 1e-8))^2`` (``n``: its centred norm): errors of ~1e-9 m, not 0, which the PCK's first threshold (0)
    does not count, so a perfect prediction scores AUC 98.5 / 99 = 0.995, as on the server.

    Args:
        mtx1: ground truth points, ``(K, 3)``.
        mtx2: predicted points, ``(K, 3)``.
        return_trafo: return eval.py's transform tuple ``(R, s, s1, t1 - t2)`` instead of the aligned points
            (``t2``: the prediction's mean). eval.py uses it only for predictions that are not MANO meshes.

    Returns:
        The aligned prediction, ``(K, 3)`` float64, or the transform tuple.
    """
    gt = _points(mtx1, 'mtx1 (ground truth)')
    pred = _points(mtx2, 'mtx2 (prediction)')
    if gt.shape != pred.shape:
        raise ValueError(f'mtx1 (ground truth) and mtx2 (prediction) must have the same shape, got {gt.shape} and '
                         f'{pred.shape}')
    t1, t2 = gt.mean(0), pred.mean(0)
    gt_n, pred_n = gt - t1, pred - t2
    s1 = np.linalg.norm(gt_n) + NORM_EPS
    s2 = np.linalg.norm(pred_n) + NORM_EPS
    gt_n, pred_n = gt_n / s1, pred_n / s2
    R, s = orthogonal_procrustes(gt_n, pred_n)  # argmin ||gt_n @ R - pred_n||, so pred_n @ R.T comes back to gt_n
    if return_trafo:
        return R, s, s1, t1 - t2
    # eval.py's order of operations: rotate, times s, times s1, plus t1.
    return (pred_n @ R.T) * s * s1 + t1


def aligned_errors(gt: ArrayLike, pred: ArrayLike) -> np.ndarray:
    """Per-point Euclidean distances (metres) after :func:`align_w_scale`, each sample aligned on its own.

    ``gt`` and ``pred`` are ``(N, K, 3)``; returns ``(N, K)``. The distance is eval.py's ``EvalUtil.feed``:
    the square root of the summed squared coordinate differences.
    """
    gt = _points(gt, 'gt', batched=True)
    pred = _points(pred, 'pred', batched=True)
    if gt.shape != pred.shape:
        raise ValueError(f'gt and pred must have the same shape, got {gt.shape} and {pred.shape}')
    aligned = np.stack([align_w_scale(g, p) for g, p in zip(gt, pred)]) if len(gt) else pred
    return np.sqrt(np.sum(np.square(gt - aligned), axis=-1))


class PCKMeasures(NamedTuple):
    """What eval.py's ``EvalUtil.get_measures`` reports (its median is left out: the server does not score it)."""
    mean: float  # mean error, metres
    auc: float  # area under the PCK curve over the thresholds, normalised to [0, 1]
    curve: np.ndarray  # PCK at each threshold, averaged over points, (steps,)
    thresholds: np.ndarray  # metres, (steps,)


def pck_measures(errors: ArrayLike, val_min: float = PCK_MIN, val_max: float = PCK_MAX,
                 steps: int = PCK_STEPS) -> PCKMeasures:
    """Mean error and PCK area under the curve of ``errors`` ``(N, K)`` (N samples, K points), as eval.py.

    eval.py keeps one list of errors per point (joint or vertex) and, per point: the mean over samples; the PCK
    ``mean(error <= t)`` (inclusive) at ``t`` in ``linspace(val_min, val_max, steps)``; the AUC
    ``trapz(pck, t) / trapz(ones, t)``. The reported numbers are the means of those over points. (With every point
    visible, as in FreiHAND, the means equal the plain means over all errors, up to the order of float summation.)
    """
    errors = _to_numpy(errors)
    if errors.ndim != 2 or errors.size == 0:
        raise ValueError(f'errors must have shape (N samples x K points), both > 0, got {tuple(errors.shape)}')
    thresholds = np.linspace(val_min, val_max, steps)
    norm_factor = _trapezoid(np.ones_like(thresholds), thresholds)
    per_point_pck = np.stack([(errors <= t).mean(axis=0) for t in thresholds], axis=1)  # (K, steps)
    per_point_auc = _trapezoid(per_point_pck, thresholds, axis=1) / norm_factor
    return PCKMeasures(
        mean=float(errors.mean(axis=0).mean()),
        auc=float(per_point_auc.mean()),
        curve=per_point_pck.mean(axis=0),
        thresholds=thresholds)


def nearest_distances(gt: ArrayLike, pred: ArrayLike) -> Tuple[np.ndarray, np.ndarray]:
    """For each ground-truth point the distance to its nearest predicted point, and for each predicted point the
    distance to its nearest ground-truth point (metres).

    eval.py asks open3d's ``compute_point_cloud_to_point_cloud_distance`` both ways; an exact KD-tree
    (``scipy.spatial.cKDTree``, Euclidean) gives the same distances.
    """
    gt = _points(gt, 'gt')
    pred = _points(pred, 'pred')
    gt_to_pred = cKDTree(pred).query(gt, k=1)[0]
    pred_to_gt = cKDTree(gt).query(pred, k=1)[0]
    return gt_to_pred, pred_to_gt


def _f_from_distances(gt_to_pred: np.ndarray, pred_to_gt: np.ndarray, threshold: float) -> Tuple[float, float, float]:
    # Strict `<`, as eval.py. Its variable names are swapped (its "recall" is the share of predicted points near the
    # ground truth); F is symmetric in the two, so the score is the same.
    precision = float(np.mean(pred_to_gt < threshold))
    recall = float(np.mean(gt_to_pred < threshold))
    f = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return f, precision, recall


def f_score(gt: ArrayLike, pred: ArrayLike, threshold: float) -> Tuple[float, float, float]:
    """``(F, precision, recall)`` of the point set ``pred`` against ``gt`` (both ``(K, 3)``, metres), as eval.py's
    ``calculate_fscore``.

    precision: share of predicted points closer than ``threshold`` (strictly) to some ground-truth point; recall: share
    of ground-truth points closer than ``threshold`` to some predicted point; ``F = 2PR / (P + R)``, 0 when both are 0.
    """
    return _f_from_distances(*nearest_distances(gt, pred), threshold)


def evaluate_freihand(gt_joints: ArrayLike, gt_vertices: ArrayLike, pred_joints: ArrayLike,
                      pred_vertices: ArrayLike) -> Dict[str, float]:
    """The server's aligned scores over a set of N samples.

    Args:
        gt_joints, pred_joints: ``(N, 21, 3)``, metres.
        gt_vertices, pred_vertices: ``(N, 778, 3)``, metres.

    Returns:
        ``PA-MPJPE`` / ``PA-MPVPE``: mean aligned joint / vertex error in mm (eval.py prints cm);
        ``AUC_J`` / ``AUC_V``: area under the aligned PCK curve over 0-50 mm, in [0, 1];
        ``F@5`` / ``F@15``: F-score of the aligned mesh at 5 mm / 15 mm, averaged over samples (eval.py's
        ``F_aligned``, the number papers report).
    """
    gt_j = _points(gt_joints, 'gt_joints', NUM_JOINTS, batched=True)
    pred_j = _points(pred_joints, 'pred_joints', NUM_JOINTS, batched=True)
    gt_v = _points(gt_vertices, 'gt_vertices', NUM_VERTICES, batched=True)
    pred_v = _points(pred_vertices, 'pred_vertices', NUM_VERTICES, batched=True)
    sizes = {'gt_joints': len(gt_j), 'pred_joints': len(pred_j), 'gt_vertices': len(gt_v),
             'pred_vertices': len(pred_v)}
    if len(set(sizes.values())) != 1 or not len(gt_j):
        raise ValueError(f'need the same number N > 0 of samples in every input, got {sizes}')

    # eval.py aligns joints and vertices separately when the prediction has all 778 vertices (it always does here).
    joint_err = aligned_errors(gt_j, pred_j)
    vert_err = np.empty(gt_v.shape[:2])
    f_scores = np.empty((len(gt_v), len(F_THRESHOLDS)))
    for i, (gt, pred) in enumerate(zip(gt_v, pred_v)):
        aligned = align_w_scale(gt, pred)
        vert_err[i] = np.sqrt(np.sum(np.square(gt - aligned), axis=-1))
        distances = nearest_distances(gt, aligned)
        f_scores[i] = [_f_from_distances(*distances, t)[0] for t in F_THRESHOLDS]

    joints, vertices = pck_measures(joint_err), pck_measures(vert_err)
    f_means = f_scores.mean(axis=0)
    return {
        'PA-MPJPE': joints.mean * 1000.0,
        'PA-MPVPE': vertices.mean * 1000.0,
        'AUC_J': joints.auc,
        'AUC_V': vertices.auc,
        'F@5': float(f_means[0]),
        'F@15': float(f_means[1]),
    }


# --------------------------------------------------------------------------------------------------------------------
# The submission file
# --------------------------------------------------------------------------------------------------------------------
def write_pred_json(path: str, xyz: ArrayLike, verts: ArrayLike) -> None:
    """Writes the evaluation server's ``pred.json``: ``[xyz (N x 21 x 3), verts (N x 778 x 3)]`` in metres, as nested
    lists, sample ``i`` being evaluation image ``i``.

    All or nothing: the JSON goes to a temporary file in the destination folder, which is renamed into place once
    complete; on any failure it is removed and an existing ``path`` is left as it was.

    Raises:
        ValueError: a shape is not as above, the two counts differ, or a value is NaN / infinite.
    """
    xyz = _points(xyz, 'xyz (predicted joints)', NUM_JOINTS, batched=True)
    verts = _points(verts, 'verts (predicted vertices)', NUM_VERTICES, batched=True)
    if len(xyz) != len(verts):
        raise ValueError(f'xyz and verts must hold the same number of samples, got {len(xyz)} and {len(verts)}')
    atomic_write(path, lambda f: json.dump([xyz.tolist(), verts.tolist()], f), mode='w')


# --------------------------------------------------------------------------------------------------------------------
# The mmengine metric
# --------------------------------------------------------------------------------------------------------------------
def _format_table(metrics: Dict[str, float], num_samples: int) -> str:
    header = [f'{k} (mm)' if k.startswith('PA-') else k for k in METRIC_KEYS]
    values = [f'{metrics[k]:.2f}' if k.startswith('PA-') else f'{metrics[k]:.3f}' for k in METRIC_KEYS]
    widths = [max(len(h), len(v)) for h, v in zip(header, values)]
    rule = '+' + '+'.join('-' * (w + 2) for w in widths) + '+'

    def row(cells: List[str]) -> str:
        return '| ' + ' | '.join(c.rjust(w) for c, w in zip(cells, widths)) + ' |'

    return '\n'.join([f'FreiHAND, {num_samples} samples, Procrustes-aligned as the official eval.py:', rule,
                      row(header), rule, row(values), rule])


@METRICS.register_module()
class FreiHANDMetric(BaseMetric):
    """FreiHAND's official 3D hand-mesh scores (see :func:`evaluate_freihand`) and its submission file.

    Each prediction (a data sample, as a dict) must hold ``pred_joints`` ``(21, 3)`` and ``pred_vertices``
    ``(778, 3)`` in metres (tensors or arrays; root-relative is fine, the scores are aligned per sample),
    ``sample_idx``, and, unless ``format_only``, ``gt_joints`` ``(21, 3)`` and ``gt_vertices`` ``(778, 3)``.
    Samples are ordered by ``sample_idx`` before anything is computed or written.

    Keys returned (with the default prefix): ``freihand/PA-MPJPE`` and ``freihand/PA-MPVPE`` (mm, lower is better),
    ``freihand/AUC_J``, ``freihand/AUC_V``, ``freihand/F@5``, ``freihand/F@15`` (in [0, 1], higher is better).

    Args:
        pred_json: also write the server's ``pred.json`` here (:func:`write_pred_json`). Note that the server's
            unaligned scores need absolute (camera-frame) predictions; its aligned ones do not.
        format_only: only write ``pred_json`` and return no scores, for the evaluation split without annotations.
        collect_device, prefix, collect_dir: as :class:`mmengine.evaluator.BaseMetric`.

    Example:
        >>> # the annotated split (training hold-out, or the evaluation set with FreiHAND_pub_v2_eval)
        >>> val_evaluator = dict(type='mmfastvit.FreiHANDMetric')
        >>> # the evaluation set without annotations: only the file for the server
        >>> test_evaluator = dict(type='mmfastvit.FreiHANDMetric', format_only=True,
        ...                       pred_json='work_dirs/freihand/pred.json')
    """
    default_prefix = 'freihand'

    def __init__(self, pred_json: Optional[str] = None, format_only: bool = False, collect_device: str = 'cpu',
                 prefix: Optional[str] = None, collect_dir: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix, collect_dir=collect_dir)
        if format_only and not pred_json:
            raise ValueError('FreiHANDMetric(format_only=True) writes the submission file and nothing else: give its '
                             "path as pred_json (e.g. pred_json='work_dirs/freihand/pred.json')")
        self.pred_json = pred_json
        self.format_only = format_only

    def process(self, data_batch: Any, data_samples: Sequence[Union[dict, Any]]) -> None:
        """Keeps the predictions (and ground truth unless ``format_only``) of each sample, as numpy arrays."""
        for sample in data_samples:
            if hasattr(sample, 'to_dict'):  # a BaseDataElement handed in directly rather than through the Evaluator
                sample = sample.to_dict()
            if sample.get('sample_idx') is None:
                raise ValueError(f'FreiHANDMetric: a prediction has no "sample_idx" (keys: {sorted(sample)}); '
                                 f'the dataset puts it in each data sample\'s metainfo')
            idx = int(sample['sample_idx'])
            result = dict(sample_idx=idx)
            keys = [('pred_joints', NUM_JOINTS), ('pred_vertices', NUM_VERTICES)]
            if not self.format_only:
                missing = [k for k in ('gt_joints', 'gt_vertices') if sample.get(k) is None]
                if missing:
                    raise ValueError(
                        f'FreiHANDMetric: sample {idx} has no {" / ".join(missing)}: this split has no 3D annotations '
                        f'(e.g. FreiHAND\'s evaluation set without FreiHAND_pub_v2_eval). To write the submission '
                        f'file instead, use FreiHANDMetric(format_only=True, pred_json=...)')
                keys += [('gt_joints', NUM_JOINTS), ('gt_vertices', NUM_VERTICES)]
            for key, num_points in keys:
                if sample.get(key) is None:
                    raise ValueError(f'FreiHANDMetric: sample {idx} has no "{key}" (keys: {sorted(sample)})')
                value = sample[key]
                if hasattr(value, 'detach'):
                    value = value.detach().cpu().numpy()
                # keep the dtype the model gave (float32 halves the memory); float64 when computing
                value = np.asarray(value)
                if value.shape != (num_points, 3):
                    raise ValueError(f'FreiHANDMetric: sample {idx} "{key}" must have shape ({num_points}, 3), got '
                                     f'{tuple(value.shape)}')
                if not np.isfinite(value).all():
                    raise ValueError(f'FreiHANDMetric: sample {idx} "{key}" holds NaN or infinite values')
                result[key] = value
            self.results.append(result)

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        """Orders the results by ``sample_idx``, writes ``pred_json`` if asked, and scores them unless
        ``format_only``."""
        results = sorted(results, key=lambda r: r['sample_idx'])
        indices = np.array([r['sample_idx'] for r in results])
        duplicated = np.unique(indices[1:][indices[1:] == indices[:-1]])
        if len(duplicated):
            raise ValueError(f'FreiHANDMetric: sample_idx {duplicated[:10].tolist()} received more than once')
        pred_joints = np.stack([r['pred_joints'] for r in results])
        pred_vertices = np.stack([r['pred_vertices'] for r in results])

        if self.pred_json:
            write_pred_json(self.pred_json, pred_joints, pred_vertices)
            print_log(f'FreiHAND: wrote the predictions of {len(results)} samples (ordered by sample_idx) to '
                      f'{self.pred_json}', logger='current')
            if self.format_only and not np.array_equal(indices, np.arange(len(indices))):
                print_log(f'FreiHAND: the predictions are for sample_idx {indices.min()}..{indices.max()} with gaps '
                          f'or an offset; the evaluation server expects one per evaluation image, in order',
                          logger='current', level=logging.WARNING)
        if self.format_only:
            print_log('FreiHAND: format_only=True, so no scores were computed; submit the file to the FreiHAND '
                      'evaluation server (CodaLab) to score it', logger='current')
            return {}

        metrics = evaluate_freihand(np.stack([r['gt_joints'] for r in results]),
                                    np.stack([r['gt_vertices'] for r in results]), pred_joints, pred_vertices)
        print_log('\n' + _format_table(metrics, len(results)), logger='current')
        return metrics
