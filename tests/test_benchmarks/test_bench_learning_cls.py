"""bench.py learning cls: its options and their checks, the --cfg-options it gives tools/train.py, and a tiny run
whose results name the trained model, its config and the data a later step reads."""
import json
import os.path as osp
import shlex
import sys

import pytest

sys.path.insert(0, osp.join(osp.dirname(__file__), '..', '..', 'benchmarks'))
import bench  # noqa: E402
from suites.learning import cls  # noqa: E402

# the smallest run of the real thing: 5 classes (top-5 needs them), 32 px, 2 epochs of 2 iterations (~15 s)
TINY = dict(num_classes=5, train_per_class=4, val_per_class=2, size=32, batch=10, epochs=2, warmup_epochs=1,
            val_interval=1, log_interval=1)


def _argv(recipe: dict) -> list:
    return [word for name, value in recipe.items() for word in (f"--{name.replace('_', '-')}", str(value))]


def test_the_options_default_to_the_recipe():
    args = bench.build_parser().parse_args(['learning', 'cls'])
    assert {name: getattr(args, name) for name in cls.DEFAULTS} == cls.DEFAULTS
    assert args.work_dir == cls.DEFAULT_WORK_DIR and args.out == cls.DEFAULT_OUT and args.target == 90.0
    args = bench.build_parser().parse_args(['learning', 'cls', *_argv(TINY), '--target', '5', '--lr', '1e-3'])
    assert {name: getattr(args, name) for name in TINY} == TINY and (args.target, args.lr) == (5.0, 1e-3)


@pytest.mark.parametrize('argv, message', [
    (['--num-classes', '4'], '--num-classes must be >= 5 (the config\'s Accuracy reports top-5), got 4'),
    (['--size', '16'], '--size must be >= 32'),
    (['--epochs', '1'], '--epochs must be >= 2'),
    (['--warmup-epochs', '0'], '--warmup-epochs must be in [1, epochs - 1] = [1, 23], got 0'),
    (['--epochs', '4', '--warmup-epochs', '4'], '--warmup-epochs must be in [1, epochs - 1] = [1, 3], got 4'),
    (['--val-interval', '30'], '--val-interval must be <= epochs (24), got 30'),
    (['--lr', '0'], '--lr must be > 0, got 0.0'),
    (['--ema-momentum', '1.5'], '--ema-momentum must be in (0, 1], got 1.5'),
    (['--threads', '0'], '--threads must be >= 1, got 0'),
])
def test_bad_options_are_named(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(['learning', 'cls', *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_bad_recipe_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(TypeError, match=r"unknown recipe setting\(s\) \['epoch'\]"):
        cls.train_tiny_classifier(tmp_path / 'a', epoch=3)
    with pytest.raises(ValueError, match='num_classes must be >= 5'):
        cls.train_tiny_classifier(tmp_path / 'b', num_classes=2)
    with pytest.raises(ValueError, match='threads must be >= 1, got 0'):
        cls.train_tiny_classifier(tmp_path / 'c', threads=0)
    assert list(tmp_path.iterdir()) == []


def test_cfg_options_reach_the_configs_transforms():
    """The options address the config's pipeline by position: each must land on the transform it means."""
    from mmengine.config import Config, DictAction

    parsed = {}
    for option in cls.cfg_options(dict(cls.DEFAULTS, size=48), '/data/root'):
        key, value = option.split('=', 1)
        parsed[key] = DictAction._parse_iterable(value)
    cfg = Config.fromfile(str(cls.CONFIG))
    cfg.merge_from_dict(parsed)
    train = cfg.train_dataloader.dataset.pipeline
    assert (train[1].type, train[1].scale) == ('RandomResizedCrop', 48)
    for split in ('val', 'test'):
        loader = cfg[f'{split}_dataloader']
        pipeline = loader.dataset.pipeline
        assert (pipeline[1].type, pipeline[1].scale) == ('ResizeEdge', int(48 / 0.9))
        assert (pipeline[2].type, pipeline[2].crop_size) == ('CenterCrop', 48)
        assert loader.dataset.data_root == '/data/root' and loader.num_workers == 0
    assert cfg.custom_hooks[0].type == 'EMAHook' and cfg.custom_hooks[0].momentum == cls.DEFAULTS['ema_momentum']
    assert cfg.model.head.num_classes == cfg.data_preprocessor.num_classes == cls.DEFAULTS['num_classes']
    assert [s.end for s in cfg.param_scheduler] == [cls.DEFAULTS['warmup_epochs'], cls.DEFAULTS['epochs']]


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp('cls_learning')
    work, out = root / 'work', root / 'results'
    (work / 'train').mkdir(parents=True)
    for stale in ('epoch_9.pth', 'last_checkpoint'):  # an earlier run's, which must not be taken for this one's
        (work / 'train' / stale).write_text('stale')
    argv = ['learning', 'cls', *_argv(TINY), '--target', '0', '--threads', '1', '--work-dir', str(work),
            '--out', str(out)]
    code = bench.main(argv)
    return dict(code=code, argv=argv, work=work, doc=json.loads((root / 'results.json').read_text()),
                md=(root / 'results.md').read_text())


def test_tiny_run_records_the_curve_and_the_verdict(tiny_run):
    doc, settings, results = tiny_run['doc'], tiny_run['doc']['settings'], tiny_run['doc']['results']
    assert tiny_run['code'] == 0 and results['reached']
    assert [p['epoch'] for p in results['curve']] == [1, 2]
    assert [p['iter'] for p in results['curve']] == [2, 4] and settings['iters_per_epoch'] == 2
    assert all(0 <= p['top1'] <= p['top5'] <= 100 for p in results['curve'])
    assert results['final'] == results['curve'][-1] and results['reached_at'] == results['curve'][0]
    assert [(p['epoch'], p['iter']) for p in results['losses']] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert (settings['train_images'], settings['val_images']) == (20, 10)
    args = bench.build_parser().parse_args(shlex.split(settings['command'])[2:])
    for name in (*cls.DEFAULTS, 'target', 'threads'):
        assert settings[name] == getattr(args, name), name
    assert tiny_run['md'].rstrip().endswith(f"Reproduce: `{settings['command']}`")
    assert '**HOLDS**' in tiny_run['md'] and doc['artifacts']['work_dir'] == str(tiny_run['work'].resolve())


def test_tiny_run_keeps_a_model_that_loads_and_the_data(tiny_run):
    """What a later step reads: the checkpoint and the dumped config build the trained classifier; the data root holds
    both splits."""
    import torch

    from mmfastvit.deploy.loading import load_from_config

    artifacts, work = tiny_run['doc']['artifacts'], tiny_run['work'].resolve()
    assert artifacts['checkpoint'] == str(work / 'train' / 'epoch_2.pth')
    assert artifacts['config'] == str(work / 'train' / 'fastvit_t8_in1k.py')
    assert artifacts['data_root'] == str(work / 'data')
    assert not (work / 'train' / 'epoch_9.pth').exists()
    assert (work / 'train' / 'last_checkpoint').read_text().strip() == artifacts['checkpoint']
    for split, count in (('train', 20), ('val', 10)):
        info = artifacts['data'][split]
        lines = (work / 'data' / info['ann_file']).read_text().splitlines()
        assert len(lines) == info['num_images'] == count
        assert all((work / 'data' / info['data_prefix'] / line.split()[0]).is_file() for line in lines)
    assert (artifacts['input_size'], artifacts['resize_edge'], artifacts['num_classes']) == (32, 35, 5)
    deployable = load_from_config(artifacts['config'], artifacts['checkpoint'])
    assert deployable.kind == 'classifier'
    with torch.no_grad():
        assert deployable.model(torch.zeros(2, 3, 32, 32)).shape == (2, 5)


def test_the_verdict_names_the_first_epoch_at_the_target_or_the_best():
    curve = [dict(epoch=2, iter=20, top1=40.0, top5=90.0), dict(epoch=4, iter=40, top1=92.5, top5=100.0),
             dict(epoch=6, iter=60, top1=91.0, top5=100.0)]
    settings = dict(target=90.0, epochs=6, iters_per_epoch=10)
    held = cls.verdict(dict(curve=curve, reached_at=curve[1], final=curve[-1]), settings)
    assert held == ('Target: validation top-1 >= 90.0% within 6 epochs (60 iterations). **HOLDS**: first at or above '
                    'at epoch 4 (iteration 40, top-1 92.50%); 91.00% after the last epoch.')
    failed = cls.verdict(dict(curve=curve, reached_at=None, final=curve[-1]), dict(settings, target=95.0))
    assert failed.endswith('**FAILS**: best 92.50%, 91.00% after the last epoch.')
