"""Distributed training through tools/dist_train.sh (torchrun) on CPU: 2 processes, gloo, loopback only.

Each case trains the same config twice from the same seed: once in one process at batch 4 (for the classifier, the
engine tests' shared T8 run), once in two processes at batch 2 each (the same global batch, split by mmengine's
DefaultSampler). DDP averages the two halves' gradients, so the two runs take the same steps: the mean of the two
ranks' losses must equal the one-process loss, iteration by iteration.
"""
import os.path as osp

import pytest
import torch

from mmfastvit.datasets.synthetic import make_tiny_coco
from mmfastvit.engine import load_runner_checkpoint

from engine_helpers import DETECTOR, T8_EPOCHS, check, dist_train, losses, train, write_config

# Classifier: identical data and BatchNorm statistics (norm_eval) make the runs equal up to float summation order.
CLASSIFIER_RTOL = 1e-5
# Detector: mmdet normalizes its RPN / RoI losses by the number of anchors and RoIs sampled on each rank, and the
# random samplers draw differently when the batch is split, so the ranks' mean is not the global mean exactly. Observed
# differences on this set: 0.05-0.6 % per iteration.
DETECTOR_RTOL = 0.02


def _rank_mean(per_rank):
    assert sorted(per_rank) == [0, 1], f'ranks that logged: {sorted(per_rank)}'
    assert len(per_rank[0]) == len(per_rank[1])
    return [(a['loss'] + b['loss']) / 2 for a, b in zip(per_rank[0], per_rank[1])]


def _checkpoints(work_dir):
    return sorted(name for name in (p.name for p in work_dir.iterdir()) if name.endswith('.pth') or '.tmp' in name)


@pytest.fixture(scope='module')
def classifier_runs(tmp_path_factory, t8_run):
    """The session's one-process T8 run (its config's schedule spans T8_EPOCHS epochs), and the same config in two
    processes, stopped after 2 epochs: the same 4 steps as the one-process run's first 4."""
    tmp = tmp_path_factory.mktemp('dist_cls')
    # sync_bn: what a GPU config would ask for; without CUDA it must fall back with a warning, not fail
    double = check(dist_train(t8_run['config'], tmp / 'double', 2, '--cfg-options', 'train_dataloader.batch_size=2',
                              'sync_bn=torch', 'train_cfg.max_epochs=2', cwd=tmp))
    return dict(single=t8_run['work_dir'], double=tmp / 'double', log=double.stdout + double.stderr,
                single_log=t8_run['log'])


def test_both_ranks_train_and_log_the_same_losses_as_one_process(classifier_runs):
    single = losses(classifier_runs['single'])
    double = losses(classifier_runs['double'])
    assert [r['iter'] for r in single[0]] == list(range(2 * T8_EPOCHS))
    single = {0: single[0][:4]}  # its first 2 epochs, what the two processes ran
    assert [r['iter'] for r in single[0]] == [0, 1, 2, 3]
    assert [r['iter'] for r in double[0]] == [r['iter'] for r in double[1]] == [0, 1, 2, 3]
    expected = [r['loss'] for r in single[0]]
    assert _rank_mean(double) == pytest.approx(expected, rel=CLASSIFIER_RTOL)
    assert [r['loss'] for r in double[0]] != [r['loss'] for r in double[1]]  # the ranks did see different images
    assert [r['lr'] for r in double[0]] == pytest.approx([r['lr'] for r in single[0]])


def test_checkpoint_is_written_once_and_holds_the_one_process_weights(classifier_runs):
    double, single = classifier_runs['double'], classifier_runs['single']
    assert _checkpoints(double) == ['epoch_1.pth', 'epoch_2.pth']  # rank 0 only, no temporary left behind
    assert (double / 'last_checkpoint').read_text().strip().endswith('epoch_2.pth')
    got, want = load_runner_checkpoint(str(double / 'epoch_2.pth')), load_runner_checkpoint(str(single / 'epoch_2.pth'))
    assert got['meta']['iter'] == 4 and got['meta']['epoch'] == 2
    for key in ('state_dict', 'ema_state_dict'):
        assert got[key].keys() == want[key].keys()
        for name, value in want[key].items():
            torch.testing.assert_close(got[key][name], value, rtol=1e-4, atol=1e-5, msg=f'{key}: {name}')
    assert not any(name.startswith('module.') for name in got['state_dict'])  # saved unwrapped from DDP


def test_cpu_launcher_uses_gloo_and_reverts_sync_bn(classifier_runs):
    log = classifier_runs['log']
    assert 'started torch.distributed with gloo (the config asked for nccl, which needs CUDA), rank 0 of 2' in log
    assert 'SyncBatchNorm needs a GPU' in log
    # without a launcher mmengine itself reverts SyncBN (the one-process run had no sync_bn): nothing to warn about
    assert 'SyncBatchNorm needs a GPU' not in classifier_runs['single_log']


def test_detector_trains_on_two_processes(tmp_path):
    data = make_tiny_coco(str(tmp_path / 'coco'), num_train=8, num_val=2, size=128, seed=0)
    config = write_config(tmp_path / 'det.py', DETECTOR, 'mask_rcnn_fastvit_t8_1x.py', data['root'], max_epochs=1)
    check(train(config, tmp_path / 'single', cwd=tmp_path))
    check(dist_train(config, tmp_path / 'double', 2, '--cfg-options', 'train_dataloader.batch_size=2',
                     cwd=tmp_path))
    single, double = losses(tmp_path / 'single'), losses(tmp_path / 'double')
    assert [r['iter'] for r in double[0]] == [r['iter'] for r in single[0]] == [0, 1]
    assert _rank_mean(double) == pytest.approx([r['loss'] for r in single[0]], rel=DETECTOR_RTOL)
    assert _checkpoints(tmp_path / 'double') == ['epoch_1.pth']
    checkpoint = load_runner_checkpoint(str(tmp_path / 'double' / 'epoch_1.pth'))
    assert checkpoint['meta']['iter'] == 2
    assert any(name.startswith('roi_head.mask_head.') for name in checkpoint['state_dict'])
    assert osp.isfile(tmp_path / 'double' / 'last_checkpoint')
