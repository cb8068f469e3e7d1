"""Bad input through the tools, as a user meets it: each case checks the message (one line on stderr, naming the
input and what was expected), a non-zero exit, and that nothing was written (no checkpoint, no predictions).

The tools run in this interpreter, through their ``main(argv)`` (engine_helpers.run_here: argv, cwd, environment
and one thread as in a new process, the output captured, the interpreter's state put back afterwards), on the engine
tests' shared T8 run (conftest.t8_run).

Cases tested elsewhere: unknown variant, bad ``out_indices`` and bad inputs of the backbone itself
(tests/test_models/test_fastvit.py), the converter's refusals (tests/test_convert), a missing TensorRT
(tests/test_deploy), missing configs / checkpoints / options of the tools (tests/test_tools).
"""
import os
import shutil

import pytest
import torch

from mmfastvit.datasets.synthetic import make_tiny_coco

from engine_helpers import CLASSIFIER, REPARAMETERIZE, TEST, TRAIN, check, run_here, train_here, write_config

REPO_CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), 'configs')


class WritesMarker:
    """Unpickling this runs code: it creates ``path``."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (shutil.copyfile, (__file__, self.path))


def files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob('*') if p.is_file())


def assert_refused(result, *messages):
    assert result.returncode == 2, f'exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}'
    last = result.stderr.strip().splitlines()[-1]
    assert ': error: ' in last and 'Traceback' not in result.stderr
    for message in messages:
        assert message in last, last


@pytest.fixture(scope='module')
def setup(tmp_path_factory, t8_run):
    """The tiny ImageNet, T8 / SA12 test configs on it, and a T8 checkpoint trained two epochs."""
    tmp = tmp_path_factory.mktemp('bad_input')
    sa12 = write_config(tmp / 'sa12.py', CLASSIFIER, 'fastvit_sa12_in1k.py', t8_run['data_root'], max_epochs=2)
    return dict(tmp=tmp, data=t8_run['data_root'], t8=t8_run['config'], sa12=sa12,
                checkpoint=t8_run['work_dir'] / 'epoch_2.pth')


def test_checkpoint_of_another_variant(setup, tmp_path):
    result = run_here(TEST, setup['sa12'], setup['checkpoint'], '--work-dir', tmp_path / 'w', '--out',
                      tmp_path / 'p.pkl', cwd=tmp_path)
    assert_refused(result, f'checkpoint "{setup["checkpoint"]}" does not fit the model\'s backbone',
                   'tensors have other shapes: backbone.', 'saved for another variant')
    assert not (tmp_path / 'p.pkl').exists()


def test_fused_checkpoint_without_deploy(setup, tmp_path):
    fused = tmp_path / 'fused.pth'
    check(run_here(REPARAMETERIZE, setup['t8'], setup['checkpoint'], fused, cwd=tmp_path))
    result = run_here(TEST, setup['t8'], fused, '--work-dir', tmp_path / 'w', cwd=tmp_path)
    assert_refused(result, 'of the model\'s tensors are missing', 'are not the model\'s',
                   '--cfg-options model.backbone.deploy=True')
    # and with it, the same checkpoint tests fine
    check(run_here(TEST, setup['t8'], fused, '--work-dir', tmp_path / 'w', '--cfg-options',
                   'model.backbone.deploy=True', cwd=tmp_path))


@pytest.mark.parametrize('kind', ['empty', 'truncated'])
def test_empty_or_truncated_checkpoint(setup, tmp_path, kind):
    bad = tmp_path / f'{kind}.pth'
    data = setup['checkpoint'].read_bytes()
    bad.write_bytes(b'' if kind == 'empty' else data[:len(data) // 2])
    result = run_here(TEST, setup['t8'], bad, '--work-dir', tmp_path / 'w', '--out', tmp_path / 'p.pkl', cwd=tmp_path)
    assert_refused(result, f'checkpoint "{bad}" is ' + ('empty (0 bytes)' if kind == 'empty' else
                                                        'not a readable torch checkpoint (truncated or corrupt?)'))
    assert not (tmp_path / 'p.pkl').exists()


@pytest.mark.parametrize('route', ['load_from', 'resume', 'pretrained'])
def test_checkpoint_that_would_run_code_is_refused_and_runs_nothing(setup, tmp_path, route):
    """Third-party weights (init_cfg Pretrained, load_from) and the user's own resume checkpoints all load with
    torch.load(weights_only=True); a pickle that would run code is refused before any of it runs."""
    marker = tmp_path / 'marker'
    evil = tmp_path / 'evil.pth'
    torch.save(dict(meta=dict(epoch=1, iter=2), state_dict=dict(x=torch.zeros(1)), payload=WritesMarker(str(marker))),
               evil)
    args = {
        'load_from': (TEST, setup['t8'], evil, '--work-dir', tmp_path / 'w'),
        'resume': (TRAIN, setup['t8'], '--work-dir', tmp_path / 'w', '--resume', evil),
        'pretrained': (TRAIN, setup['t8'], '--work-dir', tmp_path / 'w', '--cfg-options',
                       'model.backbone.init_cfg.type=Pretrained', f'model.backbone.init_cfg.checkpoint={evil}',
                       'model.backbone.init_cfg.prefix=backbone.'),
    }[route]
    result = run_here(*args, cwd=tmp_path)
    assert_refused(result, 'torch.load(weights_only=True) found more than tensors', 'Unsupported global')
    assert not marker.exists()
    assert not [name for name in files(tmp_path) if name.endswith('.pth') and name != 'evil.pth']


def test_missing_data_root_and_annotation_file(tmp_path):
    coco = make_tiny_coco(str(tmp_path / 'coco'), num_train=2, num_val=1, size=64)['root']
    config = os.path.join(REPO_CONFIGS, 'mask_rcnn_fastvit_t8_1x.py')
    before = files(tmp_path)
    scratch = 'model.backbone.init_cfg=None'  # else the missing ImageNet checkpoint is reported first
    result = run_here(TRAIN, config, '--cfg-options', scratch,
                      f'train_dataloader.dataset.data_root={tmp_path / "nowhere"}', cwd=tmp_path)
    assert_refused(result, f'train_dataloader.dataset.data_root "{tmp_path / "nowhere"}" does not exist',
                   'expected the dataset\'s folder', '--cfg-options train_dataloader.dataset.data_root=PATH')
    result = run_here(TRAIN, config, '--cfg-options', scratch, f'train_dataloader.dataset.data_root={coco}/',
                      'train_dataloader.dataset.ann_file=annotations/instances_train2014.json', cwd=tmp_path)
    assert_refused(result, f'train_dataloader.dataset.ann_file "{coco}/annotations/instances_train2014.json" does not '
                   'exist', 'expected an annotation file')
    assert files(tmp_path) == before  # not even a work dir


@pytest.fixture(scope='module')
def corrupt(setup):
    """The tiny ImageNet with one training image replaced by bytes that are not an image."""
    root = setup['tmp'] / 'corrupt_data'
    shutil.copytree(setup['data'], root)
    victim = sorted((root / 'train').rglob('*.JPEG'))[0]
    victim.write_bytes(b'this is not a JPEG' * 10)
    config = write_config(setup['tmp'] / 'corrupt.py', CLASSIFIER, 'fastvit_t8_in1k.py', str(root), max_epochs=2)
    return dict(config=config, victim=victim)


def test_corrupt_image_stops_training_with_the_file_named(setup, corrupt, tmp_path):
    result = train_here(corrupt['config'], tmp_path / 'w', cwd=tmp_path)
    assert_refused(result, f'image "{corrupt["victim"]}" is corrupt or not an image', 'on_corrupt="skip"')
    assert not [name for name in files(tmp_path) if name.endswith('.pth')]


def test_corrupt_image_is_skipped_when_configured(setup, corrupt, tmp_path):
    result = check(train_here(corrupt['config'], tmp_path / 'w', '--cfg-options',
                              'train_dataloader.dataset.pipeline.0.on_corrupt=skip', cwd=tmp_path))
    log = result.stdout + result.stderr
    assert f'image "{corrupt["victim"]}" is corrupt or not an image' in log and 'skipped (on_corrupt="skip")' in log
    assert (tmp_path / 'w' / 'epoch_2.pth').is_file()


def test_corrupt_image_stops_testing_with_the_file_named(setup, tmp_path):
    """The shipped test pipelines name mmcv's plain LoadImageFromFile (the Inferencers look for it); tools/test.py
    swaps in mmfastvit's, so a corrupt test image is named in one line instead of an AssertionError traceback."""
    root = tmp_path / 'data'
    shutil.copytree(setup['data'], root)
    victim = sorted((root / 'val').rglob('*.JPEG'))[0]
    victim.write_bytes(b'this is not a JPEG' * 10)
    config = write_config(tmp_path / 'corrupt_test.py', CLASSIFIER, 'fastvit_t8_in1k.py', str(root), max_epochs=2)
    result = run_here(TEST, config, setup['checkpoint'], '--work-dir', tmp_path / 'w', '--out', tmp_path / 'p.pkl',
                      '--cfg-options', 'test_dataloader.dataset.pipeline.0.type=LoadImageFromFile', cwd=tmp_path)
    assert_refused(result, f'image "{victim}" is corrupt or not an image', 'Replace or remove the file')
    assert not (tmp_path / 'p.pkl').exists()
