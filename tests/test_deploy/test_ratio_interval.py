"""ratio_interval: the ours / timm ratio of a round-robin timing with a paired bootstrap interval."""
import random

import pytest

from mmfastvit.deploy.latency import ratio_interval


def _drifting_rounds(n, ratio, noise, seed=0):
    """Round-robin timings on a machine whose speed drifts by +-40% from round to round; ``noise`` is the
    independent part of each measurement."""
    rng = random.Random(seed)
    ours, timm = [], []
    for _ in range(n):
        slow = 1 + 0.4 * rng.random()
        timm.append(100 * slow * (1 + noise * rng.gauss(0, 1)))
        ours.append(100 * ratio * slow * (1 + noise * rng.gauss(0, 1)))
    return ours, timm


def test_drift_shared_by_a_round_cancels():
    ours, timm = _drifting_rounds(50, 0.9, noise=0.0)
    result = ratio_interval(ours, timm)
    assert result['ratio'] == pytest.approx(0.9)
    assert result['high'] - result['low'] < 0.03  # the +-40% drift does not widen it
    assert result['rounds'] == 50 and result['level'] == 0.95


def test_interval_covers_the_true_ratio_and_narrows_with_more_rounds():
    widths = {}
    for n in (20, 400):
        ours, timm = _drifting_rounds(n, 0.93, noise=0.05, seed=n)
        result = ratio_interval(ours, timm)
        assert result['low'] <= 0.93 <= result['high']
        assert result['low'] <= result['ratio'] <= result['high']
        widths[n] = result['high'] - result['low']
    assert widths[400] < widths[20] / 2


def test_seeded_and_paired():
    ours, timm = _drifting_rounds(30, 1.1, noise=0.05)
    assert ratio_interval(ours, timm) == ratio_interval(ours, timm)
    assert ratio_interval(ours, timm, seed=1) != ratio_interval(ours, timm, seed=2)
    with pytest.raises(ValueError, match='same, non-zero number of runs; got 3 and 2'):
        ratio_interval([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(ValueError, match='got 0 and 0'):
        ratio_interval([], [])
