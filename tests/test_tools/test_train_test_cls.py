"""tools/train.py and tools/test.py end to end on a generated tiny ImageNet, with the real FastViT-T8 config.

The config is shrunk with --cfg-options only (32-pixel images, batches of 4, 2 iterations per epoch). The test of
tools/test.py's predictions runs it as a user does, in its own process; the other runs go through the tools'
``main(argv)`` in this interpreter (helpers.run_in_process: argv, cwd, environment and one thread as in a new process,
the output captured, the interpreter's state put back afterwards), which saves each run's imports.
"""
import os
import os.path as osp
import pickle
import re
import sys

import pytest

from helpers import TINY_IMAGENET
from helpers import check_ok as check
from helpers import load_tool
from helpers import run_in_process as run_here
from helpers import run_tool as run

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(REPO, 'configs', 'fastvit_t8_in1k.py')
TRAIN = osp.join(REPO, 'tools', 'train.py')
TEST = osp.join(REPO, 'tools', 'test.py')
NUM_CLASSES, TRAIN_PER_CLASS, VAL_PER_CLASS = 4, 2, 1
IMG = 32
ACCURACY = re.compile(r'accuracy/top1: ([-+0-9.eE]+)')

pytestmark = pytest.mark.skipif(not osp.isfile(CONFIG), reason=f'{CONFIG} not in the tree')


def shrink(data_root, max_epochs):
    """--cfg-options for a CPU-sized run of the ImageNet config on the tiny dataset."""
    options = [f'train_cfg.max_epochs={max_epochs}', 'default_hooks.logger.interval=1', 'randomness.seed=0',
               # warm-up over epoch 1, cosine over epoch 2 (the config's 5 + 295 epochs, shrunk)
               'param_scheduler.0.end=1', 'param_scheduler.1.begin=1', 'param_scheduler.1.end=2',
               f'train_dataloader.dataset.pipeline.1.scale={IMG}']
    for split in ('train', 'val', 'test'):
        options += [f'{split}_dataloader.dataset.data_root={data_root}', f'{split}_dataloader.batch_size=4',
                    f'{split}_dataloader.num_workers=0', f'{split}_dataloader.persistent_workers=False',
                    f'{split}_dataloader.pin_memory=False']
    for split in ('val', 'test'):  # ResizeEdge, CenterCrop
        options += [f'{split}_dataloader.dataset.pipeline.1.scale={IMG + IMG // 8}',
                    f'{split}_dataloader.dataset.pipeline.2.crop_size={IMG}']
    return ['--cfg-options'] + options


@pytest.fixture(scope='module')
def trained(tmp_path_factory, tiny_imagenet):
    """One epoch of training on the session's tiny ImageNet, with TensorBoard events on: the checkpoint the other tests
    resume and test."""
    data = tiny_imagenet
    assert TINY_IMAGENET == dict(num_classes=NUM_CLASSES, train_per_class=TRAIN_PER_CLASS,
                                 val_per_class=VAL_PER_CLASS, size=40)
    tmp = tmp_path_factory.mktemp('cls')
    work_dir = tmp / 'work_dir'
    result = check(run_here(TRAIN, CONFIG, '--work-dir', work_dir, '--tensorboard',
                            *shrink(data['root'], max_epochs=1), cwd=tmp))
    return dict(tmp=tmp, data=data, work_dir=work_dir, log=result.stdout + result.stderr)


def test_train_writes_a_checkpoint(trained):
    work_dir = trained['work_dir']
    assert (work_dir / 'epoch_1.pth').is_file()
    assert (work_dir / 'last_checkpoint').read_text().strip().endswith('epoch_1.pth')
    assert 'Epoch(train) [1][2/2]' in trained['log'] and 'Epoch(train) [2]' not in trained['log']
    assert 'accuracy/top1' in trained['log']  # validation ran after the epoch


def test_tensorboard_events_hold_the_logged_scalars(trained):
    """--tensorboard writes the same loss, learning rate and accuracy that the JSON scalars file holds."""
    import json

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    vis_dirs = list(trained['work_dir'].glob('*/vis_data'))
    assert len(vis_dirs) == 1, vis_dirs
    assert list(vis_dirs[0].glob('events.out.tfevents.*')), 'no TensorBoard event file'
    events = EventAccumulator(str(vis_dirs[0]))
    events.Reload()
    logged = [json.loads(line) for line in (vis_dirs[0] / 'scalars.json').read_text().splitlines()]
    for tag in ('loss', 'lr', 'accuracy/top1'):
        assert tag in events.Tags()['scalars'], events.Tags()['scalars']
        expected = {entry['step']: entry[tag] for entry in logged if tag in entry}
        written = {event.step: event.value for event in events.Scalars(tag)}
        assert expected and written.keys() == expected.keys(), (tag, written, expected)
        assert all(abs(written[step] - value) <= 1e-6 * max(1.0, abs(value)) for step, value in expected.items())


def test_tensorboard_refused_when_the_package_is_missing(tmp_path, monkeypatch):
    """Without tensorboard installed, --tensorboard fails at once with what to install, and writes nothing."""
    monkeypatch.setitem(sys.modules, 'tensorboard', None)  # `import tensorboard` raises ImportError
    work_dir = tmp_path / 'work_dir'
    result = run_here(TRAIN, CONFIG, '--work-dir', work_dir, '--tensorboard', cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert 'pip install tensorboard' in result.stderr
    assert not work_dir.exists()


def test_resume_continues(trained):
    """`--resume` without a value picks up the work dir's last checkpoint and trains epoch 2 only."""
    result = check(run_here(TRAIN, CONFIG, '--work-dir', trained['work_dir'], '--resume',
                            *shrink(trained['data']['root'], max_epochs=2), cwd=trained['tmp']))
    log = result.stdout + result.stderr
    assert 'mmengine_checkpoint_globals' in log  # the safe-load path was used
    assert 'resumed epoch: 1, iter: 2' in log
    assert 'Epoch(train) [2][1/2]' in log and 'Epoch(train) [2][2/2]' in log
    assert 'Epoch(train) [1]' not in log
    assert (trained['work_dir'] / 'epoch_2.pth').is_file()


def test_test_prints_accuracy_dumps_and_draws_predictions(trained):
    """tools/test.py in its own process, as a user runs it."""
    out = trained['tmp'] / 'preds.pkl'
    show_dir = trained['tmp'] / 'vis'
    result = check(run(TEST, CONFIG, trained['work_dir'] / 'epoch_1.pth', '--work-dir', trained['tmp'] / 'test_dir',
                       '--out', out, '--show-dir', show_dir, *shrink(trained['data']['root'], max_epochs=1),
                       cwd=trained['tmp']))
    top1 = [float(v) for v in ACCURACY.findall(result.stdout)]
    assert top1 and 0.0 <= top1[-1] <= 100.0
    with open(out, 'rb') as f:
        predictions = pickle.load(f)
    assert len(predictions) == NUM_CLASSES * VAL_PER_CLASS
    assert sorted(int(p['gt_label']) for p in predictions) == list(range(NUM_CLASSES))
    assert all(p['pred_score'].shape == (1000, ) for p in predictions)
    assert len(list(show_dir.glob('*.png'))) == NUM_CLASSES * VAL_PER_CLASS


def test_test_with_tta(trained):
    result = check(run_here(TEST, CONFIG, trained['work_dir'] / 'epoch_1.pth', '--work-dir', trained['tmp'] / 'tta_dir',
                            '--tta', *shrink(trained['data']['root'], max_epochs=1), '--cfg-options',
                            f'tta_pipeline.1.scale={IMG + IMG // 8}', f'tta_pipeline.2.crop_size={IMG}',
                            cwd=trained['tmp']))
    assert 'AverageClsScoreTTA' in result.stdout  # the config's tta_model wraps the classifier
    top1 = [float(v) for v in ACCURACY.findall(result.stdout)]
    assert top1 and 0.0 <= top1[-1] <= 100.0


def test_reparameterized_checkpoint_predicts_the_same_under_deploy_true(trained):
    """tools/model_converters/reparameterize.py on the Runner's checkpoint, then tools/test.py on both."""
    tmp, data_root = trained['tmp'], trained['data']['root']
    deployed = tmp / 'epoch_1_deploy.pth'
    check(run_here(osp.join(REPO, 'tools', 'model_converters', 'reparameterize.py'), CONFIG,
                   trained['work_dir'] / 'epoch_1.pth', deployed, '--shape', IMG, cwd=tmp))
    predictions = {}
    for name, ckpt, extra in (('train', trained['work_dir'] / 'epoch_1.pth', []),
                              ('deploy', deployed, ['model.backbone.deploy=True'])):
        out = tmp / f'{name}_preds.pkl'
        result = check(run_here(TEST, CONFIG, ckpt, '--work-dir', tmp / f'{name}_test', '--out', out,
                                *shrink(data_root, max_epochs=1), *extra, cwd=tmp))
        assert ACCURACY.findall(result.stdout)
        with open(out, 'rb') as f:
            predictions[name] = pickle.load(f)
    assert len(predictions['deploy']) == len(predictions['train']) == NUM_CLASSES * VAL_PER_CLASS
    for train, deploy in zip(predictions['train'], predictions['deploy']):
        assert int(train['pred_label']) == int(deploy['pred_label'])
        assert (train['pred_score'] - deploy['pred_score']).abs().max() < 1e-5


NO_EXTRAS_CONFIG = """
default_scope = 'mmpretrain'
model = dict(type='ImageClassifier', backbone=dict(type='mmfastvit.FastViT', arch='t8'))
test_dataloader = dict(dataset=dict(type='ImageNet', data_root='nowhere'), batch_size=1)
test_evaluator = dict(type='Accuracy')
"""


@pytest.mark.parametrize('case', ['train_missing_config', 'test_missing_config', 'missing_checkpoint',
                                  'missing_resume', 'amp_without_cuda', 'no_tta', 'no_visualization_hook', 'bad_out',
                                  'tta_with_show_dir', 'no_auto_scale_lr'])
def test_bad_input_fails_clearly_and_writes_nothing(tmp_path, case):
    import torch
    if case == 'amp_without_cuda' and torch.cuda.is_available():
        pytest.skip('a CUDA device is present')
    bare = tmp_path / 'bare.py'
    bare.write_text(NO_EXTRAS_CONFIG)
    checkpoint = tmp_path / 'model.pth'
    checkpoint.write_bytes(b'')
    missing = tmp_path / 'configs' / 'no_such_config.py'
    args, message = {
        'train_missing_config': ((TRAIN, missing), f'config file "{missing}" does not exist'),
        'test_missing_config': ((TEST, missing, checkpoint), f'config file "{missing}" does not exist'),
        'missing_checkpoint': ((TEST, bare, tmp_path / 'nope.pth'), 'nope.pth" does not exist'),
        'missing_resume': ((TRAIN, bare, '--resume', tmp_path / 'nope.pth'), 'nope.pth" does not exist'),
        'amp_without_cuda': ((TRAIN, bare, '--amp'), '--amp needs a CUDA device'),
        'no_tta': ((TEST, bare, checkpoint, '--tta'), f'config "{bare}" does not define tta_model and tta_pipeline'),
        'no_visualization_hook': ((TEST, bare, checkpoint, '--show-dir', tmp_path / 'vis'),
                                  f'config "{bare}" has none'),
        'bad_out': ((TEST, bare, checkpoint, '--out', tmp_path / 'preds.json'), 'must name a .pkl'),
        'tta_with_show_dir': ((TEST, CONFIG, checkpoint, '--tta', '--show-dir', tmp_path / 'vis'),
                              'cannot be combined with --tta'),
        'no_auto_scale_lr': ((TRAIN, bare, '--auto-scale-lr'), 'has no auto_scale_lr'),
    }[case]
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run_here(*args, cwd=tmp_path)  # the default work dir would be tmp_path/work_dirs/...
    assert result.returncode != 0
    assert message in result.stderr
    assert 'Traceback' not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before


_load_tool = load_tool


@pytest.mark.parametrize('hook, expected, visualizer', [
    (dict(type='VisualizationHook', enable=False), dict(enable=True, out_dir='vis', interval=1), None),
    (dict(type='mmdet.DetVisualizationHook'), dict(draw=True, test_out_dir='vis'), None),
    (dict(type='SegVisualizationHook', draw=False), dict(draw=True, interval=1), dict(save_dir='vis')),
    (dict(type='SegVisualizationHook', interval=7), dict(draw=True, interval=7), dict(save_dir='vis')),
])
def test_show_dir_turns_on_each_task_hook(hook, expected, visualizer):
    """Each task's hook draws every test image unless the config chose an interval."""
    from mmengine.config import Config
    tool = _load_tool(TEST)
    cfg = Config(dict(default_hooks=dict(visualization=hook), visualizer=dict(type='Visualizer')))
    tool.enable_visualization(cfg, 'vis', 'some_config.py')
    for key, value in expected.items():
        assert cfg.default_hooks.visualization[key] == value
    for key, value in (visualizer or {}).items():
        assert cfg.visualizer[key] == value


def test_tta_wraps_model_and_innermost_dataset():
    from mmengine.config import Config
    tool = _load_tool(TEST)
    cfg = Config(dict(model=dict(type='Detector'), tta_model=dict(type='DetTTAModel'), tta_pipeline=[dict(type='X')],
                      test_dataloader=dict(dataset=dict(type='RepeatDataset', dataset=dict(type='Coco', pipeline=[])))))
    tool.enable_tta(cfg, 'some_config.py')
    assert cfg.model.type == 'DetTTAModel' and cfg.model.module.type == 'Detector'
    assert cfg.test_dataloader.dataset.dataset.pipeline == [dict(type='X')]


def test_train_options_map_to_config(tmp_path, monkeypatch):
    from mmengine.config import Config
    tool = _load_tool(TRAIN)
    monkeypatch.delenv('LOCAL_RANK', raising=False)
    checkpoint = tmp_path / 'epoch_3.pth'
    checkpoint.write_bytes(b'')
    args = tool.parse_args([CONFIG, '--resume', str(checkpoint), '--auto-scale-lr', '--no-validate', '--launcher',
                            'pytorch', '--local_rank', '3', '--cfg-options', 'train_cfg.max_epochs=7'])
    assert os.environ['LOCAL_RANK'] == '3'
    cfg = tool.merge_args(Config.fromfile(CONFIG), args)
    assert cfg.work_dir == osp.join('work_dirs', 'fastvit_t8_in1k')
    assert cfg.resume is True and cfg.load_from == str(checkpoint)
    assert cfg.auto_scale_lr.enable is True and cfg.launcher == 'pytorch' and cfg.train_cfg.max_epochs == 7
    assert cfg.val_dataloader is None and cfg.val_cfg is None and cfg.val_evaluator is None
    auto = tool.merge_args(Config.fromfile(CONFIG), tool.parse_args([CONFIG, '--resume', '--work-dir', 'w']))
    assert auto.resume is True and auto.load_from is None and auto.work_dir == 'w'


def test_missing_pretrained_backbone_checkpoint_fails_early_with_the_fixes(tmp_path):
    config = tmp_path / 'pretrained.py'
    config.write_text(f"_base_ = ['{CONFIG}']\n"
                      "model = dict(backbone=dict(init_cfg=dict(type='Pretrained', checkpoint='ckpts/missing.pth', "
                      "prefix='backbone.')))\n")
    result = run_here(TRAIN, config, '--work-dir', tmp_path / 'work_dir', cwd=tmp_path)
    assert result.returncode == 2
    assert 'model.backbone.init_cfg.checkpoint "ckpts/missing.pth"' in result.stderr
    assert 'fastvit_to_mmfastvit.py' in result.stderr and 'model.backbone.init_cfg=None' in result.stderr
    assert not (tmp_path / 'work_dir').exists()
