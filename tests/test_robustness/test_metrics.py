"""The robustness metrics against hand-computed cases: mCE and mean error, the 200-class masking, partial sets."""
import pytest
import torch

from mmfastvit.evaluation.robustness import (ALEXNET_ERRORS, CORRUPTIONS, EXTRA_CORRUPTIONS, SEVERITIES,
                                             CorruptionError, SubsetAccuracy, corruption_summary, subset_predictions,
                                             subset_top1)


def _full(error=50.0):
    return {(c, s): error for c in CORRUPTIONS for s in SEVERITIES}


def test_alexnet_constants_are_keyed_by_the_15_names():
    assert set(ALEXNET_ERRORS) == set(CORRUPTIONS) and len(CORRUPTIONS) == 15
    # spot checks against the published values (Hendrycks' robustness repository), by name, not by position
    assert ALEXNET_ERRORS['gaussian_noise'] == 0.886428
    assert ALEXNET_ERRORS['snow'] == 0.866816
    assert ALEXNET_ERRORS['brightness'] == 0.564592
    assert ALEXNET_ERRORS['jpeg_compression'] == 0.606500
    assert not set(EXTRA_CORRUPTIONS) & set(CORRUPTIONS)


def test_mce_of_a_hand_computed_table():
    errors = _full(50.0)
    # gaussian noise: 10, 20, 30, 40, 50 -> E = 150; AlexNet's E = 5 x 88.6428 = 443.214 -> CE = 33.8437...%
    for s, e in zip(SEVERITIES, (10.0, 20.0, 30.0, 40.0, 50.0)):
        errors[('gaussian_noise', s)] = e
    # brightness: all 0 -> CE 0
    for s in SEVERITIES:
        errors[('brightness', s)] = 0.0
    out = corruption_summary(errors)
    ce_gauss = 150.0 / (5 * 88.6428)
    assert out['CE/gaussian_noise'] == pytest.approx(100 * ce_gauss)
    assert out['CE/brightness'] == 0.0
    assert out['CE/snow'] == pytest.approx(100 * 50.0 / 86.6816)
    others = [50.0 / (100 * ALEXNET_ERRORS[c]) for c in CORRUPTIONS if c not in ('gaussian_noise', 'brightness')]
    assert out['mCE'] == pytest.approx(100 * (ce_gauss + 0.0 + sum(others)) / 15)
    # mean error: 13 corruptions at 50, gaussian noise averaging 30, brightness 0, over 75 entries
    assert out['mean_error'] == pytest.approx((13 * 5 * 50.0 + 150.0 + 0.0) / 75)
    assert out['error/gaussian_noise'] == pytest.approx(30.0)
    assert out['error/gaussian_noise/4'] == 40.0
    assert 'partial_mCE' not in out


def test_an_alexnet_level_model_has_mce_100():
    errors = {(c, s): 100 * ALEXNET_ERRORS[c] for c in CORRUPTIONS for s in SEVERITIES}
    out = corruption_summary(errors)
    assert out['mCE'] == pytest.approx(100.0)
    assert out['mean_error'] == pytest.approx(100 * sum(ALEXNET_ERRORS.values()) / 15)


def test_full_mce_needs_all_15_corruptions_at_5_severities():
    errors = _full()
    del errors[('snow', 4)], errors[('snow', 5)]
    for s in SEVERITIES:
        del errors[('fog', s)]
    with pytest.raises(ValueError, match=r'all 15 corruptions.*missing: snow \(severities 4, 5\); fog \(all '
                                         r'severities\)'):
        corruption_summary(errors)
    out = corruption_summary(errors, allow_partial=True)
    assert 'mCE' not in out and 'mean_error' not in out
    # snow over its 3 severities, fog left out: 14 corruptions in the partial mean
    assert out['CE/snow'] == pytest.approx(100 * 150.0 / (3 * 86.6816))
    expected = [50.0 / (100 * ALEXNET_ERRORS[c]) for c in CORRUPTIONS if c != 'fog']
    assert out['partial_mCE'] == pytest.approx(100 * sum(expected) / 14)
    assert 'CE/fog' not in out


def test_extra_corruptions_are_reported_but_not_in_mce():
    errors = _full(50.0)
    errors.update({('spatter', s): 90.0 for s in SEVERITIES})
    out = corruption_summary(errors)
    assert out['error/spatter'] == 90.0 and 'CE/spatter' not in out
    assert out['mean_error'] == pytest.approx(50.0)


@pytest.mark.parametrize('bad, message', [
    ({('rain', 1): 10.0}, r"\['rain'\] are not ImageNet-C's"),
    ({('fog', 6): 10.0}, r'severities of \[\(\'fog\', 6\)\]'),
    ({('fog', 1): 0.7, ('fog', 2): 170.0}, r'percentages in \[0, 100\]'),
    ({('spatter', 1): 10.0}, r'no error of any of the 15'),
])
def test_bad_tables_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        corruption_summary(bad, allow_partial=True)


def test_subset_masking_reads_the_argmax_inside_the_subset():
    # class 2 scores highest overall, but is not in the subset {0, 5, 7}; inside it, class 5 wins: right for label 5
    scores = torch.full((3, 10), -1.0)
    scores[0, 2], scores[0, 5], scores[0, 7] = 9.0, 3.0, 1.0   # global argmax 2 (wrong), subset argmax 5 (right)
    scores[1, 7], scores[1, 0] = 2.0, 1.0                      # argmax 7 everywhere (label 0: wrong)
    scores[2, 0], scores[2, 9] = 0.5, 4.0                      # global argmax 9, subset argmax 0 (right)
    labels = torch.tensor([5, 0, 0])
    subset = [0, 5, 7]
    assert subset_predictions(scores, subset).tolist() == [5, 7, 0]
    assert subset_top1(scores, labels, subset) == pytest.approx(200.0 / 3)
    assert (scores.argmax(1) == labels).float().mean().item() == 0.0  # unmasked: none right
    with pytest.raises(ValueError, match=r'labels \[3\] are not in the class subset'):
        subset_top1(scores, torch.tensor([3, 0, 0]), subset)


def _sample(scores, label, index=0):
    return dict(pred_score=torch.as_tensor(scores, dtype=torch.float), gt_label=torch.tensor([label]),
                pred_label=torch.tensor([int(torch.as_tensor(scores).argmax())]), sample_idx=index)


def test_subset_accuracy_metric_uses_the_dataset_subset():
    metric = SubsetAccuracy()
    metric.dataset_meta = dict(label_subset=(0, 5, 7))
    metric.process({}, [_sample([-1, -1, 9, -1, -1, 3, -1, 1, -1, -1], 5),
                        _sample([1, -1, -1, -1, -1, -1, -1, 2, -1, -1], 0)])
    out = metric.evaluate(2)
    assert out['subset_accuracy/top1'] == pytest.approx(50.0)
    assert out['subset_accuracy/top1_unmasked'] == 0.0
    assert out['subset_accuracy/num_classes'] == 3
    metric = SubsetAccuracy()
    metric.dataset_meta = dict(classes=('a', 'b'))
    with pytest.raises(ValueError, match='needs the class subset'):
        metric.process({}, [_sample([1.0, 0.0], 0)])


def test_corruption_error_metric_groups_by_sample_index():
    groups = []
    start = 0
    for c in CORRUPTIONS:
        for s in SEVERITIES:
            groups.append((c, s, start, start + 2))
            start += 2
    metric = CorruptionError(prefix='c')
    metric.dataset_meta = dict(corruption_groups=tuple(groups))
    samples = []
    for c, s, begin, _ in groups:
        # two images per pair; the second is wrong at gaussian noise severity 1 only
        wrong = (c, s) == ('gaussian_noise', 1)
        samples += [_sample([0.0, 1.0], 1, begin), _sample([0.0, 1.0], 0 if wrong else 1, begin + 1)]
    metric.process({}, samples)
    out = metric.evaluate(len(samples))
    assert out['c/error/gaussian_noise/1'] == 50.0 and out['c/error/gaussian_noise/2'] == 0.0
    assert out['c/CE/gaussian_noise'] == pytest.approx(100 * 50.0 / (5 * 88.6428))
    assert out['c/mCE'] == pytest.approx(100 * 50.0 / (5 * 88.6428) / 15)
    assert out['c/mean_error'] == pytest.approx(50.0 / 75)

    partial = CorruptionError()
    partial.dataset_meta = dict(corruption_groups=tuple(groups[:4]))
    partial.process({}, samples[:8])
    with pytest.raises(ValueError, match='all 15 corruptions'):
        partial.evaluate(8)
