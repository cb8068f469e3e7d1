"""Training checkpoints, as timm's CheckpointSaver, DeiT's main.py and mmengine's Runner (with EMAHook) write them,
load with torch.load(weights_only=True) plus the harmless types they carry, and convert, with their EMA weights on
request; a pickle that would run code is still refused before it runs."""
import argparse
import os
import os.path as osp
import tempfile

import numpy as np
import pytest
import torch
from helpers import run_in_process
from weights_server import REPO, apple_state_dict

from mmfastvit.convert import fastvit_to_mmfastvit
from mmfastvit.fileio import CheckpointError, extract_state_dict, load_weights

TOOL = osp.join(REPO, 'tools', 'model_converters', 'fastvit_to_mmfastvit.py')


def run_args() -> argparse.Namespace:
    """Command-line arguments as a timm / DeiT training run keeps them: strings, ints, floats, bools, None, tuples,
    lists and dicts."""
    return argparse.Namespace(
        model='fastvit_t8', data_dir='/data/imagenet', dataset='', train_split='train', num_classes=1000,
        img_size=256, input_size=None, crop_pct=0.875, mean=None, std=None, interpolation='', batch_size=128,
        opt='adamw', opt_eps=1e-8, opt_betas=None, betas=(0.9, 0.999), momentum=0.9, weight_decay=0.05,
        clip_grad=None, sched='cosine', lr=1e-3, lr_noise=None, warmup_lr=1e-6, min_lr=1e-5, epochs=300,
        decay_epochs=[30, 60, 90], warmup_epochs=5, smoothing=0.1, aa='rand-m9-mstd0.5-inc1', reprob=0.25,
        mixup=0.8, cutmix=1.0, cutmix_minmax=None, drop_path=0.0, model_ema=True, model_ema_decay=0.9995, amp=True,
        channels_last=False, seed=42, output='./output', experiment='fastvit_t8', eval_metric='top1',
        model_kwargs={'inference_mode': False}, device='cuda:0', distributed=True, world_size=8, rank=0,
        local_rank=0, prefetcher=True, pin_mem=False)


def optimizer_state() -> dict:
    """A real AdamW state dict after one step (tensors, ints, floats, tuples, bools, None)."""
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05)
    model(torch.ones(1, 4)).sum().backward()
    optimizer.step()
    return optimizer.state_dict()


SCALER = {'scale': 65536.0, 'growth_factor': 2.0, 'backoff_factor': 0.5, 'growth_interval': 2000, '_growth_tracker': 3}


def timm_checkpoint(model, ema) -> dict:
    """timm's CheckpointSaver._save (as Apple's training script, built on timm, used it)."""
    return {'epoch': 299, 'arch': 'fastvit_t8', 'state_dict': model, 'optimizer': optimizer_state(), 'version': 2,
            'args': run_args(), 'amp_scaler': dict(SCALER), 'state_dict_ema': ema, 'metric': 75.6}


def deit_checkpoint(model, ema) -> dict:
    """DeiT's main.py: model, optimizer, timm's scheduler state, epoch, EMA, loss scaler, args."""
    scheduler = {'param_group_field': 'lr', 'base_values': [1e-3], 'metric': None, 't_in_epochs': True,
                 'noise_range_t': None, 'noise_pct': 0.67, 'noise_std': 1.0, 'noise_seed': 42, 't_initial': 300,
                 'lr_min': 1e-5, 'cycle_mul': 1.0, 'warmup_t': 5, 'warmup_lr_init': 1e-6, 'warmup_steps': [2e-4]}
    return {'model': model, 'optimizer': optimizer_state(), 'lr_scheduler': scheduler, 'epoch': 299,
            'model_ema': ema, 'scaler': dict(SCALER), 'args': run_args()}


def mmengine_checkpoint(model, ema) -> dict:
    """mmengine's Runner.save_checkpoint with EMAHook: the message hub holds HistoryBuffers and numpy values, and
    EMAHook swaps the averaged weights into 'state_dict' and the raw ones into 'ema_state_dict' (as 'module.*')."""
    from mmengine.logging import MessageHub
    hub = MessageHub.get_instance('test_training_layouts')
    for loss in (2.5, 2.25):
        hub.update_scalar('train/loss', loss)
    hub.update_scalar('train/lr', np.float64(1e-3))
    hub.update_info('epoch', 2)
    raw = {f'module.{k}': v for k, v in model.items()}
    return {'meta': {'epoch': 2, 'iter': 8, 'cfg': "model = dict(type='ImageClassifier')", 'seed': 0,
                     'experiment_name': 'fastvit_t8_in1k', 'mmengine_version': '0.10.7',
                     'dataset_meta': {'classes': ('cat', 'dog')}},
            'state_dict': ema, 'ema_state_dict': dict(raw, steps=torch.tensor(8)),
            'message_hub': hub.state_dict(), 'optimizer': optimizer_state(),
            'param_schedulers': [{'by_epoch': True, 'base_lrs': [1e-3], 'last_step': 8, 'verbose': False}]}


LAYOUTS = {'timm': (timm_checkpoint, 'state_dict', 'state_dict_ema'),
           'deit': (deit_checkpoint, 'model', 'model_ema'),
           'mmengine': (mmengine_checkpoint, 'state_dict', 'ema_state_dict')}


@pytest.fixture(scope='module')
def weights():
    """Two different sets of FastViT-T8 weights (the model's, its EMA), in Apple's names and in mmfastvit's."""
    model, ema = apple_state_dict('t8', seed=11), apple_state_dict('t8', seed=12)
    assert not torch.equal(model['head.weight'], ema['head.weight'])
    ours = {}
    for name, state in (('model', model), ('ema', ema)):
        ours[name] = fastvit_to_mmfastvit_state(state)
    return dict(apple=dict(model=model, ema=ema), ours=ours)


def fastvit_to_mmfastvit_state(apple_state):
    with tempfile.TemporaryDirectory() as folder:
        path = osp.join(folder, 'bare.pth')
        torch.save(apple_state, path)
        return fastvit_to_mmfastvit(path).state_dict


def write_layout(layout, weights, path):
    make, _, _ = LAYOUTS[layout]
    form = 'ours' if layout == 'mmengine' else 'apple'  # mmengine checkpoints hold the classifier's own names
    torch.save(make(weights[form]['model'], weights[form]['ema']), path)
    return path


def assert_equal_state(got, want):
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert torch.equal(got[key], value), key


@pytest.mark.parametrize('layout', list(LAYOUTS))
def test_training_checkpoint_loads_and_converts(layout, weights, tmp_path):
    path = write_layout(layout, weights, tmp_path / f'{layout}.pth.tar')
    loaded = load_weights(str(path))
    if layout != 'mmengine':
        assert isinstance(loaded['args'], argparse.Namespace)
        assert loaded['args'] == run_args()  # every value, tuples and None included, comes back as saved
    else:
        buffer = loaded['message_hub']['log_scalars']['train/loss']
        assert buffer.current() == 2.25 and buffer.mean() == pytest.approx(2.375)
    assert loaded['optimizer']['param_groups'][0]['betas'] == (0.9, 0.999)

    _, primary, ema_key = LAYOUTS[layout]
    # mmengine's EMAHook keeps the averaged weights in 'state_dict'; timm and DeiT keep the model's there
    default = 'ema' if layout == 'mmengine' else 'model'
    for ema, which in ((None, default), (True, 'ema'), (False, 'model')):
        result = fastvit_to_mmfastvit(str(path), str(tmp_path / 'out.pth'), arch='t8', ema=ema)
        assert_equal_state(result.state_dict, weights['ours'][which])
        assert_equal_state(torch.load(tmp_path / 'out.pth', weights_only=True)['state_dict'], weights['ours'][which])
        assert result.ema_key == ema_key
        if ema is None:
            assert result.container_key == primary
            assert f'EMA weights under "{ema_key}": --ema converts those' in result.describe()


def test_ema_asked_for_where_there_is_none(weights, tmp_path):
    path = tmp_path / 'plain.pth'
    torch.save({'state_dict': weights['apple']['model'], 'epoch': 3}, path)
    with pytest.raises(CheckpointError, match=r'EMA weights were asked for, but the checkpoint has none: expected '
                       r"them under 'state_dict_ema' / 'model_ema' / 'ema_state_dict'; found keys \['state_dict', "):
        extract_state_dict(load_weights(str(path)), str(path), ema=True)
    state, where = extract_state_dict(load_weights(str(path)), str(path), ema=False)
    assert where == 'state_dict' and state.keys() == weights['apple']['model'].keys()


def test_converter_command_line_ema(weights, tmp_path):
    path = write_layout('timm', weights, tmp_path / 'fastvit_t8_timm.pth.tar')
    for flag, which in (('--ema', 'ema'), ('--no-ema', 'model'), (None, 'model')):
        out = tmp_path / f'{flag}.pth'
        done = run_in_process(TOOL, path, out, *([flag] if flag else []), cwd=REPO)  # main(argv), as in a new process
        assert done.returncode == 0, done.stderr
        assert_equal_state(torch.load(out, weights_only=True)['state_dict'], weights['ours'][which])
        where = 'state_dict_ema' if which == 'ema' else 'state_dict'
        assert f'apple_unfused checkpoint under "{where}": FastViT-T8' in done.stdout


class _RunsCode:

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, 'w'))


@pytest.mark.parametrize('where', ['args', 'top'])
def test_a_pickle_that_would_run_code_is_still_refused(weights, tmp_path, where):
    marker = tmp_path / 'code_ran'
    checkpoint = timm_checkpoint(weights['apple']['model'], weights['apple']['ema'])
    if where == 'args':
        checkpoint['args'].payload = _RunsCode(str(marker))  # hidden inside the allowed Namespace
    else:
        checkpoint['payload'] = _RunsCode(str(marker))
    path = tmp_path / 'evil.pth.tar'
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match='holds Python objects .*beyond tensors.*weights_only=True'):
        load_weights(str(path))
    with pytest.raises(CheckpointError, match='weights_only=True'):
        fastvit_to_mmfastvit(str(path), str(tmp_path / 'out.pth'))
    assert not marker.exists()
    assert sorted(os.listdir(tmp_path)) == ['evil.pth.tar']
