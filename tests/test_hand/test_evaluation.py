"""FreiHAND's official evaluation: hand-computed cases for the alignment, the errors, the PCK AUC and the F-score,
the submission file, and the metric through mmengine's Evaluator."""
import json
import os

import numpy as np
import pytest
import torch
from mmengine.evaluator import Evaluator
from mmengine.structures import BaseDataElement

from mmfastvit.hand import evaluation
from mmfastvit.hand.evaluation import (METRIC_KEYS, FreiHANDMetric, align_w_scale, aligned_errors, evaluate_freihand,
                                       f_score, nearest_distances, pck_measures, write_pred_json)

STEP = 0.05 / 99  # spacing of eval.py's PCK thresholds, linspace(0, 0.05, 100)


def rotation(rng):
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


# Joint positions (metres) of an open right hand, wrist at the origin, in FreiHAND's order:
# wrist, then MCP -> tip for thumb, index, middle, ring, pinky; fingers bent by different amounts (not planar).
FINGER_BASES = np.array([[-0.025, 0.025, 0.0], [-0.022, 0.085, 0.0], [0.0, 0.09, 0.0], [0.02, 0.085, 0.0],
                         [0.037, 0.075, 0.0]])
FINGER_DIRS = np.array([[-0.6, 0.8, 0.4], [-0.1, 1.0, -0.1], [0.0, 1.0, -0.3], [0.1, 1.0, -0.5], [0.25, 1.0, -0.7]])
SEGMENTS = np.array([[0.035, 0.03, 0.025], [0.04, 0.025, 0.02], [0.045, 0.028, 0.022], [0.042, 0.026, 0.02],
                     [0.033, 0.02, 0.018]])


def hand_shape(rng):
    """A hand-sized sample: 21 joints and 778 'vertices' scattered within 8 mm of the bones, randomly rotated."""
    joints = [np.zeros(3)]
    for base, direction, lengths in zip(FINGER_BASES, FINGER_DIRS, SEGMENTS):
        direction = direction / np.linalg.norm(direction)
        joints += [base + direction * length for length in np.concatenate([[0.0], np.cumsum(lengths)])[:4]]
    joints = np.array(joints)
    parents = [0, 0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11, 0, 13, 14, 15, 0, 17, 18, 19]
    bones = rng.integers(1, 21, size=778)
    along = rng.random((778, 1))
    verts = joints[parents][bones] * (1 - along) + joints[bones] * along + rng.normal(0, 0.008 / np.sqrt(3), (778, 3))
    R = rotation(rng)
    return joints @ R.T, verts @ R.T


# --------------------------------------------------------------------------------------------------------------------
# Alignment
# --------------------------------------------------------------------------------------------------------------------
def test_identity_aligns_to_itself_up_to_eval_py_epsilon():
    rng = np.random.default_rng(0)
    gt, _ = hand_shape(rng)
    aligned = align_w_scale(gt, gt)
    assert np.abs(aligned - gt).max() < 1e-8
    # eval.py's + 1e-8 on both norms scales the copy by (n / (n + 1e-8))^2: reproduced, not "fixed".
    centred = gt - gt.mean(0)
    n = np.linalg.norm(centred)
    np.testing.assert_allclose(aligned - gt.mean(0), centred * (n / (n + 1e-8))**2, rtol=0, atol=1e-15)
    errors = aligned_errors(gt[None], gt[None])
    assert 0 < errors.max() < 1e-8
    # ... which the PCK's first threshold, 0, does not count: a perfect prediction scores 98.5 / 99 as on the server
    assert pck_measures(errors).auc == pytest.approx(98.5 / 99, abs=1e-12)


def test_rotated_scaled_translated_copy_aligns_to_zero():
    rng = np.random.default_rng(1)
    gt, _ = hand_shape(rng)
    Q = rotation(rng)
    pred = 1.7 * gt @ Q.T + np.array([0.1, -0.3, 0.6])
    gt_before, pred_before = gt.copy(), pred.copy()
    assert np.abs(align_w_scale(gt, pred) - gt).max() < 1e-6
    np.testing.assert_array_equal(gt, gt_before)  # inputs are not modified
    np.testing.assert_array_equal(pred, pred_before)
    R, s, s1, t = align_w_scale(gt, pred, return_trafo=True)
    np.testing.assert_allclose(R, Q.T, atol=1e-9)  # R maps gt_n onto pred_n
    assert abs(s - 1) < 1e-6 and abs(s1 - np.linalg.norm(gt - gt.mean(0))) < 1e-7
    np.testing.assert_allclose(t, gt.mean(0) - pred.mean(0), atol=1e-15)


def test_mirrored_prediction_aligns_to_zero_but_a_distortion_does_not():
    rng = np.random.default_rng(2)
    gt = rng.normal(0, 0.05, (21, 3))
    mirrored = 0.8 * (gt * np.array([-1.0, 1.0, 1.0])) @ rotation(rng).T + 0.2
    assert np.abs(align_w_scale(gt, mirrored) - gt).max() < 1e-6
    R = align_w_scale(gt, mirrored, return_trafo=True)[0]
    assert np.linalg.det(R) == pytest.approx(-1)  # a reflection, which eval.py allows
    sheared = gt @ np.array([[1.0, 0.6, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert aligned_errors(gt[None], sheared[None]).mean() > 0.005


def test_known_offset_after_alignment():
    # gt: an octahedron of radius u. pred: its axes stretched by 1, 2, 3 and moved. gt_c.T @ pred_c is diagonal and
    # positive, so R = I; the optimal scale is tr(D) / tr(D^2) = 6 / 14 = 3/7, which puts the points at 3u/7, 6u/7,
    # 9u/7 from the centre: errors 4u/7, u/7, 2u/7 (each twice), mean u/3.
    u = 0.014
    gt = u * np.concatenate([np.eye(3), -np.eye(3)])
    pred = gt @ np.diag([1.0, 2.0, 3.0]) + np.array([0.5, 0.2, -0.1])
    R, s, s1, _ = align_w_scale(gt, pred, return_trafo=True)
    np.testing.assert_allclose(R, np.eye(3), atol=1e-12)
    errors = aligned_errors(gt[None], pred[None])[0]
    np.testing.assert_allclose(errors, u * np.array([4, 1, 2, 4, 1, 2]) / 7, rtol=0, atol=1e-8)
    assert pck_measures(errors[None]).mean == pytest.approx(u / 3, abs=1e-8)
    # exactly, with eval.py's 1e-8 on the norms: the scale is tr(gt_c.T pred_c) / (|pred_c| + 1e-8)^2 = 12u^2 / (...)^2
    k = 12 * u**2 / (np.sqrt(28) * u + 1e-8)**2
    np.testing.assert_allclose(errors, u * np.abs(k * np.array([1, 2, 3, 1, 2, 3]) - 1), rtol=0, atol=1e-15)


def test_zero_prediction_aligns_to_the_ground_truth_centroid():
    rng = np.random.default_rng(3)
    gt, _ = hand_shape(rng)
    np.testing.assert_allclose(align_w_scale(gt, np.zeros_like(gt)), np.broadcast_to(gt.mean(0), gt.shape), atol=1e-15)


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match=r'mtx2 \(prediction\) must have shape \(K x 3\), got \(21, 2\)'):
        align_w_scale(np.zeros((21, 3)), np.zeros((21, 2)))
    with pytest.raises(ValueError, match='same shape'):
        align_w_scale(np.zeros((21, 3)), np.zeros((20, 3)))
    with pytest.raises(ValueError, match='mtx1 .* NaN'):
        align_w_scale(np.full((21, 3), np.nan), np.zeros((21, 3)))


# --------------------------------------------------------------------------------------------------------------------
# PCK AUC
# --------------------------------------------------------------------------------------------------------------------
def single_auc(d):
    """Hand-worked trapezoid AUC of one error d over linspace(0, 0.05, 100), for d strictly between grid points j and
    j + 1: PCK is 0 up to point j and 1 from j + 1, so 98 - j whole steps and one half step, over 99 steps."""
    j = int(d // STEP)
    assert j * STEP < d < (j + 1) * STEP
    return (98.5 - j) / 99


def test_auc_of_known_errors():
    # errors[sample, point]: point 0 sees 0 and 6 mm, point 1 sees 3 mm and 10 cm.
    errors = np.array([[0.0, 0.003], [0.006, 0.1]])
    measures = pck_measures(errors)
    # 0 counts at the first threshold (<=), so its AUC is exactly 1; 10 cm never counts.
    expected = np.mean([(1.0 + single_auc(0.006)) / 2, (single_auc(0.003) + 0.0) / 2])
    assert measures.auc == pytest.approx(expected, abs=1e-12)
    assert single_auc(0.003) == 93.5 / 99 and single_auc(0.006) == 87.5 / 99
    assert measures.mean == pytest.approx((0.003 + 0.0515) / 2, abs=1e-15)
    assert measures.thresholds[0] == 0 and measures.thresholds[-1] == 0.05 and len(measures.curve) == 100
    np.testing.assert_allclose(measures.curve[[0, 5, 6, 11, 12, 99]], [0.25, 0.25, 0.5, 0.5, 0.75, 0.75])


def test_pck_counts_an_error_equal_to_a_threshold():
    k = 10
    t_k = np.linspace(0, 0.05, 100)[k]
    # with `<=` PCK jumps to 1 at t_k: half a step before it, 99 - k steps after; with `<` it would be (98.5 - k) / 99
    assert pck_measures(np.array([[t_k]])).auc == pytest.approx((99.5 - k) / 99, abs=1e-12)


# --------------------------------------------------------------------------------------------------------------------
# F-score
# --------------------------------------------------------------------------------------------------------------------
def test_f_score_is_strict_at_the_threshold():
    gt, pred = np.zeros((1, 3)), np.array([[0.005, 0.0, 0.0]])
    assert nearest_distances(gt, pred)[0][0] == 0.005  # exactly 5 mm in float64
    assert f_score(gt, pred, 0.005) == (0.0, 0.0, 0.0)
    assert f_score(gt, pred, 0.015) == (1.0, 1.0, 1.0)


def test_f_score_at_known_distances():
    gt = np.array([[0.0, 0, 0], [0.1, 0, 0], [0.2, 0, 0], [0.3, 0, 0]])
    pred = np.array([[0.0, 0, 0], [0.1, 0.003, 0], [0.2, 0.05, 0]])
    # predicted points: 0, 3 mm, 5 cm from the gt; gt points: 0, 3 mm, 5 cm, 11.2 cm from the prediction
    f, precision, recall = f_score(gt, pred, 0.005)
    assert (precision, recall) == (2 / 3, 2 / 4) and f == pytest.approx(4 / 7)
    f, precision, recall = f_score(gt, pred, 0.06)
    assert (precision, recall) == (1.0, 3 / 4) and f == pytest.approx(6 / 7)
    assert f_score(gt, pred + 1.0, 0.015) == (0.0, 0.0, 0.0)  # P + R = 0 -> 0


# --------------------------------------------------------------------------------------------------------------------
# The set-level scores
# --------------------------------------------------------------------------------------------------------------------
def test_zero_predictor_on_hand_shaped_samples():
    # FreiHAND quotes 4.73 cm / 5.07 cm / F@5 0.001 / F@15 0.031 for the zero predictor on the real set; without the
    # data we check the same mechanism: every prediction collapses to the gt centroid, so the errors are the distances
    # to it and the F-score follows from them.
    rng = np.random.default_rng(4)
    gt_j, gt_v = map(np.stack, zip(*[hand_shape(rng) for _ in range(4)]))
    scores = evaluate_freihand(gt_j, gt_v, np.zeros_like(gt_j), np.zeros_like(gt_v))
    assert set(scores) == set(METRIC_KEYS)
    to_centroid_j = np.linalg.norm(gt_j - gt_j.mean(1, keepdims=True), axis=-1)
    to_centroid_v = np.linalg.norm(gt_v - gt_v.mean(1, keepdims=True), axis=-1)
    assert scores['PA-MPJPE'] == pytest.approx(1000 * to_centroid_j.mean(), rel=1e-6)
    assert scores['PA-MPVPE'] == pytest.approx(1000 * to_centroid_v.mean(), rel=1e-6)
    for key, t in (('F@5', 0.005), ('F@15', 0.015)):
        precision = (to_centroid_v.min(1) < t).astype(float)  # 778 copies of one point: all near gt, or none
        recall = (to_centroid_v < t).mean(1)
        f = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-300), 0)
        assert scores[key] == pytest.approx(f.mean(), abs=1e-12)
    # plausible, in the range of the real set's numbers
    assert 30 < scores['PA-MPJPE'] < 70 and 30 < scores['PA-MPVPE'] < 70
    assert scores['AUC_J'] < 0.5 and scores['AUC_V'] < 0.5
    assert scores['F@5'] < 0.05 and scores['F@15'] < 0.2


def test_evaluate_freihand_checks_inputs():
    gt_j, gt_v = np.zeros((2, 21, 3)), np.zeros((2, 778, 3))
    with pytest.raises(ValueError, match=r'pred_vertices must have shape \(N x 778 x 3\), got \(2, 779, 3\)'):
        evaluate_freihand(gt_j, gt_v, gt_j, np.zeros((2, 779, 3)))
    with pytest.raises(ValueError, match='same number N > 0'):
        evaluate_freihand(gt_j, gt_v, gt_j[:1], gt_v[:1])


# --------------------------------------------------------------------------------------------------------------------
# pred.json
# --------------------------------------------------------------------------------------------------------------------
def test_write_pred_json_round_trip(tmp_path):
    rng = np.random.default_rng(5)
    xyz, verts = rng.normal(0, 0.05, (3, 21, 3)), rng.normal(0, 0.05, (3, 778, 3))
    path = tmp_path / 'out' / 'pred.json'
    write_pred_json(str(path), torch.from_numpy(xyz), verts.astype(np.float32))
    with open(path) as f:
        data = json.load(f)
    assert len(data) == 2 and np.array(data[0]).shape == (3, 21, 3) and np.array(data[1]).shape == (3, 778, 3)
    np.testing.assert_array_equal(np.array(data[0]), xyz)  # float64 survives JSON exactly
    np.testing.assert_array_equal(np.array(data[1]), verts.astype(np.float32).astype(np.float64))
    assert os.listdir(path.parent) == ['pred.json']


def test_write_pred_json_validates(tmp_path):
    path = str(tmp_path / 'pred.json')
    with pytest.raises(ValueError, match=r'xyz \(predicted joints\) must have shape \(N x 21 x 3\), got \(2, 20, 3\)'):
        write_pred_json(path, np.zeros((2, 20, 3)), np.zeros((2, 778, 3)))
    with pytest.raises(ValueError, match='same number of samples, got 2 and 3'):
        write_pred_json(path, np.zeros((2, 21, 3)), np.zeros((3, 778, 3)))
    with pytest.raises(ValueError, match=r'verts \(predicted vertices\) holds NaN'):
        write_pred_json(path, np.zeros((1, 21, 3)), np.full((1, 778, 3), np.nan))
    assert os.listdir(tmp_path) == []


def test_write_pred_json_is_all_or_nothing(tmp_path, monkeypatch):
    path = tmp_path / 'pred.json'

    def fail_halfway(obj, f, **kwargs):
        f.write('[[[0.1, 0.2')
        raise OSError('disk full')

    monkeypatch.setattr(evaluation.json, 'dump', fail_halfway)
    with pytest.raises(OSError, match='disk full'):
        write_pred_json(str(path), np.zeros((1, 21, 3)), np.zeros((1, 778, 3)))
    assert os.listdir(tmp_path) == []  # neither pred.json nor the temporary file
    path.write_text('previous')
    with pytest.raises(OSError, match='disk full'):
        write_pred_json(str(path), np.zeros((1, 21, 3)), np.zeros((1, 778, 3)))
    assert os.listdir(tmp_path) == ['pred.json'] and path.read_text() == 'previous'


# --------------------------------------------------------------------------------------------------------------------
# FreiHANDMetric
# --------------------------------------------------------------------------------------------------------------------
def make_samples(num, with_gt=True, seed=6):
    rng = np.random.default_rng(seed)
    samples, arrays = [], dict(gt_joints=[], gt_vertices=[], pred_joints=[], pred_vertices=[])
    for idx in range(num):
        gt_j, gt_v = hand_shape(rng)
        R = rotation(rng)  # a prediction in another frame, a little off
        fields = dict(pred_joints=(gt_j + rng.normal(0, 0.004, gt_j.shape)) @ R.T,
                      pred_vertices=(gt_v + rng.normal(0, 0.004, gt_v.shape)) @ R.T, gt_joints=gt_j, gt_vertices=gt_v)
        fields = {k: torch.from_numpy(v).float() for k, v in fields.items()}
        for k, v in fields.items():
            arrays[k].append(v.numpy())
        if not with_gt:
            del fields['gt_joints'], fields['gt_vertices']
        samples.append(BaseDataElement(metainfo=dict(sample_idx=idx, img_path=f'{idx:08d}.jpg'), **fields))
    return samples, {k: np.stack(v) for k, v in arrays.items()}


def test_metric_through_evaluator_equals_the_functions(tmp_path):
    samples, arrays = make_samples(6)
    pred_json = tmp_path / 'pred.json'
    evaluator = Evaluator(dict(type='mmfastvit.FreiHANDMetric', pred_json=str(pred_json)))
    for batch in ([4, 1], [5, 0], [3, 2]):  # out of order, as a distributed sampler may return them
        evaluator.process(data_samples=[samples[i] for i in batch], data_batch=None)
    scores = evaluator.evaluate(6)

    expected = evaluate_freihand(arrays['gt_joints'], arrays['gt_vertices'], arrays['pred_joints'],
                                 arrays['pred_vertices'])
    assert scores == {f'freihand/{k}': v for k, v in expected.items()}
    assert list(scores) == [f'freihand/{k}' for k in METRIC_KEYS]
    assert 0 < scores['freihand/PA-MPJPE'] < 20 and 0 < scores['freihand/F@5'] < scores['freihand/F@15'] <= 1
    with open(pred_json) as f:
        xyz, verts = json.load(f)
    np.testing.assert_array_equal(np.array(xyz), arrays['pred_joints'])  # ordered by sample_idx
    np.testing.assert_array_equal(np.array(verts), arrays['pred_vertices'])


def test_metric_format_only_writes_pred_json(tmp_path):
    samples, arrays = make_samples(3, with_gt=False)
    pred_json = tmp_path / 'sub' / 'pred.json'
    evaluator = Evaluator(FreiHANDMetric(pred_json=str(pred_json), format_only=True))
    evaluator.process(data_samples=samples[::-1])
    assert evaluator.evaluate(3) == {}
    with open(pred_json) as f:
        xyz, verts = json.load(f)
    np.testing.assert_array_equal(np.array(xyz), arrays['pred_joints'])
    np.testing.assert_array_equal(np.array(verts), arrays['pred_vertices'])


def test_metric_errors():
    samples, _ = make_samples(1, with_gt=False)
    with pytest.raises(ValueError, match='sample 0 has no gt_joints / gt_vertices: this split has no 3D annotations'
                                         '.*format_only=True'):
        FreiHANDMetric().process(None, [samples[0].to_dict()])
    with pytest.raises(ValueError, match='format_only=True.*pred_json'):
        FreiHANDMetric(format_only=True)
    bad = samples[0].to_dict()
    bad['pred_vertices'] = bad['pred_vertices'][:777]
    with pytest.raises(ValueError, match=r'sample 0 "pred_vertices" must have shape \(778, 3\), got \(777, 3\)'):
        FreiHANDMetric(pred_json='unused.json', format_only=True).process(None, [bad])
    bad['pred_vertices'] = torch.full((778, 3), float('nan'))
    with pytest.raises(ValueError, match='sample 0 "pred_vertices" holds NaN'):
        FreiHANDMetric(pred_json='unused.json', format_only=True).process(None, [bad])
    with pytest.raises(ValueError, match='no "sample_idx"'):
        FreiHANDMetric().process(None, [dict(pred_joints=np.zeros((21, 3)))])
    metric = FreiHANDMetric(pred_json='unused.json', format_only=True)
    metric.process(None, samples + samples)
    with pytest.raises(ValueError, match=r'sample_idx \[0\] received more than once'):
        metric.compute_metrics(metric.results)
