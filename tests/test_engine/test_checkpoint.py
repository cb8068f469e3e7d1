"""Resuming from a checkpoint mmengine's Runner saved, under torch's weights_only load, and refusing code in pickles."""
import copy
import os.path as osp
import pickle

import numpy as np
import pytest
import torch
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn

from mmfastvit.engine import (history_buffer_statistic, load_runner_checkpoint, mmengine_checkpoint_allowlist,
                              mmengine_checkpoint_globals)


class TinyRegressor(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 1)

    def forward(self, inputs, targets=None, mode='loss'):
        outputs = self.linear(inputs).squeeze(-1)
        if mode == 'loss':
            return dict(loss=((outputs - targets)**2).mean())
        return list(outputs)


class RandomRegression(torch.utils.data.Dataset):

    def __init__(self, length=8):
        gen = torch.Generator().manual_seed(0)
        self.inputs = torch.randn(length, 3, generator=gen)
        self.targets = self.inputs.sum(-1)

    def __len__(self):
        return len(self.inputs)

    def __getitem__(self, index):
        return dict(inputs=self.inputs[index], targets=self.targets[index])


class RecordBeforeTrain(Hook):
    """Records the state a resumed run starts from (before_train runs after load_or_resume)."""

    def before_train(self, runner):
        self.iter, self.epoch = runner.iter, runner.epoch
        self.model_state = {k: v.clone() for k, v in runner.model.state_dict().items()}
        # Copies: training goes on after this hook and updates the live state in place.
        self.optimizer_state = copy.deepcopy(runner.optim_wrapper.state_dict())
        self.scheduler_states = copy.deepcopy([s.state_dict() for s in runner.param_schedulers])
        self.loss_history = runner.message_hub.get_scalar('train/loss').data[0].copy()


def build_runner(work_dir, name, max_epochs, **kwargs):
    dataloader = dict(dataset=RandomRegression(), sampler=dict(type='DefaultSampler', shuffle=True), batch_size=2,
                      collate_fn=dict(type='default_collate'), num_workers=0)
    return Runner(
        model=TinyRegressor(),
        work_dir=str(work_dir),
        experiment_name=name,  # distinct message hubs / loggers for the two runners of a test
        train_dataloader=dataloader,
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.01, weight_decay=0.05)),
        param_scheduler=[
            dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=1, convert_to_iter_based=True),
            dict(type='CosineAnnealingLR', by_epoch=True, begin=1, end=3, convert_to_iter_based=True),
        ],
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1), logger=dict(type='LoggerHook',
                                                                                           interval=1)),
        randomness=dict(seed=0),
        log_level='WARNING',
        **kwargs)


@pytest.fixture(scope='module')
def runner_checkpoint(tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('first_run')
    build_runner(work_dir, 'first_run', max_epochs=1).train()
    return osp.join(work_dir, 'epoch_1.pth')


def test_plain_weights_only_load_fails(runner_checkpoint):
    """The problem being fixed: torch's default load refuses mmengine's own checkpoint."""
    with pytest.raises(pickle.UnpicklingError, match='HistoryBuffer|numpy|getattr'):
        torch.load(runner_checkpoint)


def test_allowlist_covers_exactly_what_the_checkpoint_names(runner_checkpoint):
    named = set(torch.serialization.get_unsafe_globals_in_checkpoint(runner_checkpoint))
    allowed = {entry[1] for entry in mmengine_checkpoint_allowlist() if isinstance(entry, tuple)}
    assert named <= allowed
    assert 'builtins.getattr' in named  # HistoryBuffer's statistic methods, pickled by reference
    allowed_objects = [entry[0] if isinstance(entry, tuple) else entry for entry in mmengine_checkpoint_allowlist()]
    assert getattr not in allowed_objects and eval not in allowed_objects and exec not in allowed_objects


def test_load_runner_checkpoint(runner_checkpoint):
    checkpoint = load_runner_checkpoint(runner_checkpoint)
    assert checkpoint['meta']['epoch'] == 1 and checkpoint['meta']['iter'] == 4
    buffer = checkpoint['message_hub']['log_scalars']['train/loss']
    assert isinstance(buffer, HistoryBuffer) and len(buffer.data[0]) == 4
    assert buffer.statistics('mean') == pytest.approx(float(np.mean(buffer.data[0])))
    # The allowlist only lives inside the block.
    with pytest.raises(pickle.UnpicklingError):
        torch.load(runner_checkpoint)
    assert not any(entry in torch.serialization.get_safe_globals() for entry in mmengine_checkpoint_allowlist())


def test_runner_resumes(runner_checkpoint, tmp_path):
    saved = load_runner_checkpoint(runner_checkpoint)
    recorder = RecordBeforeTrain()
    runner = build_runner(tmp_path, 'resumed_run', max_epochs=2, resume=True, load_from=runner_checkpoint)
    runner.register_hook(recorder)
    with mmengine_checkpoint_globals():
        runner.train()

    assert (recorder.epoch, recorder.iter) == (1, 4)
    for key, value in saved['state_dict'].items():
        torch.testing.assert_close(recorder.model_state[key], value)
    saved_optimizer = saved['optimizer']['state']
    assert saved_optimizer and set(recorder.optimizer_state['state']) == set(saved_optimizer)
    for index, state in saved_optimizer.items():
        torch.testing.assert_close(recorder.optimizer_state['state'][index]['exp_avg'], state['exp_avg'])
    assert recorder.scheduler_states == saved['param_schedulers']
    assert recorder.scheduler_states[0]['last_step'] > 0  # the warm-up had stepped
    np.testing.assert_array_equal(recorder.loss_history, saved['message_hub']['log_scalars']['train/loss'].data[0])
    # ... and training went on to the end of epoch 2 rather than starting over.
    assert (runner.epoch, runner.iter) == (2, 8)
    assert osp.isfile(osp.join(tmp_path, 'epoch_2.pth')) and not osp.isfile(osp.join(tmp_path, 'epoch_1.pth'))


class WritesMarker:
    """Unpickling this runs code: it writes ``path``."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return exec, (f'open({self.path!r}, "w").write("code ran")', )


class FetchesAttribute:
    """Unpickling this asks ``getattr`` for something other than a HistoryBuffer statistic."""

    def __reduce__(self):
        return getattr, (HistoryBuffer, 'register_statistics')


def _malicious_checkpoint(path, payload):
    torch.save(dict(meta=dict(epoch=1, iter=4), state_dict=dict(weight=torch.zeros(2)), message_hub=payload), path)


def test_code_in_a_checkpoint_is_refused(tmp_path):
    marker = tmp_path / 'marker'
    checkpoint = tmp_path / 'evil.pth'
    _malicious_checkpoint(checkpoint, WritesMarker(str(marker)))

    with pytest.raises(pickle.UnpicklingError, match='exec'):
        load_runner_checkpoint(str(checkpoint))
    assert not marker.exists()

    # The same refusal through mmengine's resume path, as tools/train.py runs it.
    runner = build_runner(tmp_path / 'work_dir', 'evil_resume', max_epochs=2, resume=True, load_from=str(checkpoint))
    with pytest.raises(pickle.UnpicklingError), mmengine_checkpoint_globals():
        runner.train()
    assert not marker.exists()

    # The payload is live: an unrestricted load does run it (which is what weights_only=False would allow).
    live_marker = tmp_path / 'live_marker'
    _malicious_checkpoint(checkpoint, WritesMarker(str(live_marker)))
    torch.load(checkpoint, weights_only=False)
    assert live_marker.read_text() == 'code ran'


def test_getattr_stand_in_is_narrow(tmp_path):
    checkpoint = tmp_path / 'getattr.pth'
    _malicious_checkpoint(checkpoint, FetchesAttribute())
    with pytest.raises(pickle.UnpicklingError, match='register_statistics'):
        load_runner_checkpoint(str(checkpoint))

    assert history_buffer_statistic(HistoryBuffer, 'mean') is HistoryBuffer.mean
    for owner, name in [(HistoryBuffer, '__init__'), (np.ndarray, 'min'), (torch, 'load')]:
        with pytest.raises(pickle.UnpicklingError, match='only the HistoryBuffer statistics'):
            history_buffer_statistic(owner, name)
