"""Crash and resume: a training run killed with SIGKILL mid-epoch, resumed with ``--resume``, continues exactly as an
uninterrupted run; and a checkpoint write that is interrupted never leaves a file that looks valid."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from mmfastvit.engine import load_runner_checkpoint

from engine_helpers import T8_EPOCHS, TRAIN, check, environment, losses, train

EPOCHS, ITERS_PER_EPOCH = 3, 2
KILLED_AFTER = 4  # the first iteration of epoch 3: the last checkpoint is epoch_2.pth (iteration 4)


def _assert_same_tensors(got, want, what):
    assert got.keys() == want.keys(), what
    for name, value in want.items():
        if isinstance(value, dict):
            _assert_same_tensors(got[name], value, f'{what}.{name}')
        elif isinstance(value, torch.Tensor):
            assert torch.equal(got[name], value), f'{what}.{name}'
        else:
            assert got[name] == value, f'{what}.{name}'


@pytest.fixture(scope='module')
def runs(tmp_path_factory, t8_run):
    """The session's uninterrupted T8 run (``whole``), and the same config killed after iteration 4, then resumed."""
    assert T8_EPOCHS == EPOCHS
    tmp = tmp_path_factory.mktemp('crash')
    config = t8_run['config']

    crashed = tmp / 'crashed'
    env = dict(environment(), LOSS_RECORDER_HANG_AFTER=str(KILLED_AFTER))
    process = subprocess.Popen([sys.executable, TRAIN, config, '--work-dir', str(crashed)], cwd=tmp, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while time.time() < deadline and process.poll() is None:
        records = losses(crashed).get(0, []) if (crashed / 'losses.jsonl').is_file() else []
        if records and records[-1]['iter'] == KILLED_AFTER:
            break
        time.sleep(0.2)
    assert process.poll() is None, f'the run ended (exit {process.returncode}) before it could be killed'
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    files_after_kill = sorted(p.name for p in crashed.iterdir())
    before_resume = len(losses(crashed)[0])

    resumed = check(train(config, crashed, '--resume', cwd=tmp))
    return dict(whole=t8_run['work_dir'], crashed=crashed, killed_returncode=process.returncode,
                files_after_kill=files_after_kill, before_resume=before_resume,
                resumed_log=resumed.stdout + resumed.stderr)


def test_the_run_was_killed_mid_epoch(runs):
    assert runs['killed_returncode'] == -signal.SIGKILL
    checkpoints = [name for name in runs['files_after_kill'] if name.endswith('.pth')]
    assert checkpoints == ['epoch_1.pth', 'epoch_2.pth']
    assert runs['before_resume'] == KILLED_AFTER + 1  # iterations 0..4 had run


def test_resume_continues_from_the_last_checkpoint_with_the_same_losses(runs):
    log = runs['resumed_log']
    assert 'resumed epoch: 2, iter: 4' in log
    assert 'mmengine_checkpoint_globals' in log  # loaded with weights_only=True and the allow-list
    whole = losses(runs['whole'])[0]
    after = losses(runs['crashed'])[0][runs['before_resume']:]
    assert [r['iter'] for r in after] == [4, 5]  # iteration 4 runs again: its first run was lost with the kill
    assert [r['loss'] for r in after] == [r['loss'] for r in whole[4:]]  # bit for bit
    assert [r['lr'] for r in after] == [r['lr'] for r in whole[4:]]  # the scheduler resumed where it was
    killed = losses(runs['crashed'])[0][:runs['before_resume']]
    assert [r['loss'] for r in killed] == [r['loss'] for r in whole[:KILLED_AFTER + 1]]


def test_resumed_state_equals_the_uninterrupted_run(runs):
    """Weights, EMA weights, AdamW's moments and step counts, the schedulers and the message hub after the last
    epoch: all as if the run had never stopped."""
    got = load_runner_checkpoint(str(runs['crashed'] / f'epoch_{EPOCHS}.pth'))
    want = load_runner_checkpoint(str(runs['whole'] / f'epoch_{EPOCHS}.pth'))
    for key in ('state_dict', 'ema_state_dict', 'optimizer'):
        _assert_same_tensors(got[key], want[key], key)
    assert got['param_schedulers'] == want['param_schedulers']
    assert got['meta']['iter'] == want['meta']['iter'] == EPOCHS * ITERS_PER_EPOCH
    assert got['message_hub']['runtime_info']['iter'] == want['message_hub']['runtime_info']['iter']
    got_loss, want_loss = (hub['log_scalars']['train/loss'].data for hub in (got['message_hub'], want['message_hub']))
    np.testing.assert_array_equal(got_loss[0], want_loss[0])  # the loss history: restored, then continued


def _save_interrupted(runner_class, work_dir, kill):
    """Saves one checkpoint with ``runner_class`` in a child process that dies (SIGKILL) half-way through writing
    the file, or raises there. Returns the files it left behind."""
    script = f'''
import os, signal, sys
import torch
from mmengine.fileio.backends import LocalBackend
sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
from engine_helpers import toy_runner
runner = toy_runner({runner_class!r}, {str(work_dir)!r})

def interrupted_put(self, obj, filepath):
    with open(filepath, 'wb') as f:
        f.write(obj[:len(obj) // 2])
        f.flush()
    if {kill!r}:
        os.kill(os.getpid(), signal.SIGKILL)
    raise OSError('disk full')

runner.save_checkpoint(str({str(work_dir)!r}), 'epoch_1.pth')  # a complete one first
LocalBackend.put = interrupted_put
runner.save_checkpoint(str({str(work_dir)!r}), 'epoch_2.pth')
'''
    result = subprocess.run([sys.executable, '-c', script], env=environment(), capture_output=True, text=True,
                            timeout=300)
    return result, sorted(p.name for p in work_dir.iterdir() if p.is_file())


@pytest.mark.parametrize('kill', [True, False], ids=['sigkill', 'exception'])
def test_interrupted_checkpoint_write_leaves_no_valid_looking_file(tmp_path, kill):
    result, files = _save_interrupted('mmfastvit', tmp_path / 'ours', kill)
    assert result.returncode == (-signal.SIGKILL if kill else 1), result.stderr[-2000:]
    checkpoints = [name for name in files if name.endswith('.pth')]
    assert checkpoints == ['epoch_1.pth']
    # besides checkpoints, the work dir holds the Runner's config dump (<timestamp>.py)
    leftovers = [name for name in files if name not in checkpoints and not name.endswith('.py')]
    if kill:  # nothing can clean up after SIGKILL: a hidden temporary remains, which no tool takes for a checkpoint
        assert len(leftovers) == 1 and leftovers[0].startswith('.epoch_2.pth.') and leftovers[0].endswith('.tmp')
    else:
        assert leftovers == []
    assert load_runner_checkpoint(str(tmp_path / 'ours' / 'epoch_1.pth'))['meta'] is not None


def test_mmengine_alone_leaves_a_truncated_checkpoint(tmp_path):
    """What the atomic write prevents: mmengine's own Runner, killed the same way, leaves epoch_2.pth half-written."""
    result, files = _save_interrupted('mmengine', tmp_path / 'plain', kill=True)
    assert result.returncode == -signal.SIGKILL
    assert 'epoch_2.pth' in files
    with pytest.raises(Exception):
        load_runner_checkpoint(str(tmp_path / 'plain' / 'epoch_2.pth'))
