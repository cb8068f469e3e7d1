"""tools/analysis_tools/robustness.py end to end on generated tiny sets, with the FastViT-T8 config and random weights.

The runs go through the tool's ``main(argv)`` in this interpreter (helpers.run_in_process: argv, cwd, environment and
one thread as in a new process, the output captured, the interpreter's state put back afterwards), which saves each
run's imports. The config's test pipeline is shrunk with --cfg-options (40-pixel resize, 32-pixel crop) and ImageNet-C
is cut to 2 corruptions x 2 severities for the runs that score; the full set is only listed, to check that mCE refuses
a partial one.
"""
import json
import os.path as osp
import re

import pytest

pytest.importorskip('mmpretrain')

from helpers import check_ok as check  # noqa: E402
from helpers import run_in_process as run  # noqa: E402
from mmfastvit.datasets.synthetic.robustness import make_tiny_robustness  # noqa: E402
from mmfastvit.evaluation.robustness import CORRUPTIONS  # noqa: E402
from weights_server import apple_site_dir, apple_weights_mirror  # noqa: E402,F401

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(REPO, 'configs', 'fastvit_t8_in1k.py')
TOOL = osp.join(REPO, 'tools', 'analysis_tools', 'robustness.py')
IMG = 32
SHRINK = ['--batch-size', '4', '--num-workers', '0', '--log-interval', '1', '--cfg-options',
          f'test_dataloader.dataset.pipeline.1.scale={IMG + IMG // 4}',
          f'test_dataloader.dataset.pipeline.2.crop_size={IMG}', 'test_dataloader.pin_memory=False']
SUBSET = ['--corruptions', 'gaussian_noise', 'fog', '--severities', '1', '2']

def error_line(result) -> str:
    """The tool's one error line (``robustness.py: error: ...``), the last of stderr; warnings may precede it."""
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if 'robustness.py: error: ' in line]
    assert len(errors) == 1 and lines[-1] == errors[0], lines[-5:]
    assert 'Traceback' not in result.stderr
    return errors[0]


pytestmark = pytest.mark.skipif(not osp.isfile(CONFIG), reason=f'{CONFIG} not in the tree')


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """Tiny sets (ImageNet-C at 2 x 2, clean ImageNet too) and a random-weight T8 classifier checkpoint."""
    import torch
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS

    tmp = tmp_path_factory.mktemp('robustness')
    data = make_tiny_robustness(str(tmp / 'data'), corruptions=['gaussian_noise', 'fog'], severities=[1, 2],
                                size=IMG, clean=True)
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(CONFIG).model)
    checkpoint = tmp / 't8_random.pth'
    torch.save({'state_dict': model.state_dict()}, checkpoint)
    return dict(tmp=tmp, data=data, checkpoint=str(checkpoint))


def test_all_benchmarks_end_to_end(setup):
    tmp, data = setup['tmp'], setup['data']
    out = tmp / 'table.json'
    result = check(run(TOOL, CONFIG, setup['checkpoint'], '--data-root', data['root'], '--benchmarks', 'clean', 'c',
                       'a', 'r', 'sketch', '--wnids', data['wnids_file'], *SUBSET, '--out', out,
                       '--work-dir', tmp / 'work', *SHRINK, cwd=tmp))
    log = result.stdout + result.stderr
    # progress: one line per benchmark and the test loop's per-batch log
    for step, name in enumerate(['clean', 'IN-C mCE', 'IN-A', 'IN-R', 'IN-SK'], 1):
        assert f'[robustness {step}/5] {name}' in log
    assert re.search(r'Epoch\(test\) \[1/\d+\]', log)
    report = json.loads(out.read_text())
    results = report['results']
    # ImageNet-C: 2 corruptions x 2 severities x 2 classes, a partial mCE named as such
    c = results['c']
    assert 'imagenet_c/mCE' not in c and report['partial_imagenet_c'] is True
    assert set(k for k in c if k.startswith('imagenet_c/error/') and k.count('/') == 3) == {
        'imagenet_c/error/gaussian_noise/1', 'imagenet_c/error/gaussian_noise/2', 'imagenet_c/error/fog/1',
        'imagenet_c/error/fog/2'}
    for value in (v for k, v in c.items() if k.count('/') == 3):
        assert value in (0.0, 50.0, 100.0)  # two images per pair
    ce = [c[f'imagenet_c/CE/{name}'] for name in ('gaussian_noise', 'fog')]
    assert c['imagenet_c/partial_mCE'] == pytest.approx(sum(ce) / 2)
    # ImageNet-A / -R read over their classes (3 each); Sketch and clean over all 1000
    for name, n in (('a', 3), ('r', 3)):
        assert results[name][f'imagenet_{name}/num_classes'] == n
        assert results[name][f'imagenet_{name}/top1'] in (0.0, 100 / 3, 200 / 3, 100.0)
    assert 'imagenet_sketch/top1' in results['sketch'] and 'accuracy/top1' in results['clean']
    table = report['table']
    assert table['IN-C mCE'] == c['imagenet_c/partial_mCE'] and table['IN-A'] == results['a']['imagenet_a/top1']
    # the printed table: the paper's FastViT rows (T8 has none, so all four) and this checkpoint's
    assert re.search(r'paper FastViT-SA12\s+80\.6\s+62\.2\s+17\.2\s+42\.6\s+29\.7', log)
    assert re.search(r'paper FastViT-MA36\s+83\.9\s+49\.9\s+34\.6\s+49\.5\s+36\.6', log)
    row = re.search(r'this checkpoint \(t8\)((?:\s+[-0-9.]+){5})', log)
    assert row is not None
    assert [float(v) for v in row.group(1).split()] == pytest.approx(
        [round(table[k], 1) for k in ('clean', 'IN-C mCE', 'IN-A', 'IN-R', 'IN-SK')], abs=0.051)
    assert 'partial mCE' in log
    print(log[log.index('model '):])  # what the tiny sets printed (pytest -s shows it)


def test_full_mce_needs_all_15_corruptions(setup):
    """Without --corruptions the tool asks for all 15 x 5 folders and refuses the 2 x 2 set before any run."""
    tmp, data = setup['tmp'], setup['data']
    result = run(TOOL, CONFIG, setup['checkpoint'], '--data-root', data['root'], '--benchmarks', 'c',
                 '--wnids', data['wnids_file'], '--out', tmp / 'full.json', *SHRINK, cwd=tmp)
    assert result.returncode == 2
    assert 'lacks 71 of the 75 requested corruption/severity folders' in error_line(result)
    assert not (tmp / 'full.json').exists()
    assert len(CORRUPTIONS) == 15


def test_full_imagenet_c_gives_mce(setup, tmp_path):
    """All 15 corruptions x 5 severities (2 images each): the paper's mCE, and the mean error beside it."""
    from mmfastvit.datasets.synthetic.robustness import make_tiny_imagenet_c
    make_tiny_imagenet_c(str(tmp_path / 'data' / 'imagenet-c'), size=IMG, nested=True)
    out = tmp_path / 'c.json'
    result = check(run(TOOL, CONFIG, setup['checkpoint'], '--data-root', tmp_path / 'data', '--benchmarks', 'c',
                       '--wnids', setup['data']['wnids_file'], '--out', out, *SHRINK[:1], '30', *SHRINK[2:],
                       cwd=tmp_path))
    c = json.loads(out.read_text())['results']['c']
    ces = [c[f'imagenet_c/CE/{name}'] for name in CORRUPTIONS]
    assert c['imagenet_c/mCE'] == pytest.approx(sum(ces) / 15)
    errors = [c[f'imagenet_c/error/{name}/{s}'] for name in CORRUPTIONS for s in range(1, 6)]
    assert c['imagenet_c/mean_error'] == pytest.approx(sum(errors) / 75)
    assert 'partial' not in json.dumps(c)
    assert re.search(r'this checkpoint \(t8\)\s+-\s+[0-9.]+\s+-\s+-\s+-', result.stdout)
    assert 'IN-C mCE' in result.stdout and 'pmCE' not in result.stdout


@pytest.mark.parametrize('args, message', [
    (['--data-root', 'missing_root'], r'--data-root "missing_root" does not exist'),
    (['--benchmarks', 'a', '--out', 'table.txt'], r'--out must name a \.json file'),
    (['--wnids', 'no_such_wnids.txt'], r'--wnids "no_such_wnids.txt" does not exist'),
])
def test_bad_input_is_one_line_and_exit_2(setup, args, message):
    tmp, data = setup['tmp'], setup['data']
    base = ['--data-root', data['root']]
    result = run(TOOL, CONFIG, setup['checkpoint'], *base, *args, cwd=tmp)
    assert result.returncode == 2, result.stderr[-2000:]
    assert re.search(message, error_line(result))


def test_missing_benchmark_folder_and_checkpoint(setup, tmp_path):
    empty = tmp_path / 'data'
    empty.mkdir()
    result = run(TOOL, CONFIG, setup['checkpoint'], '--data-root', empty, '--benchmarks', 'a', 'sketch', cwd=tmp_path)
    assert result.returncode == 2
    assert re.search(r'data/imagenet-a, .*data/imagenet-sketch not found under --data-root', error_line(result))
    result = run(TOOL, CONFIG, tmp_path / 'none.pth', '--data-root', empty, cwd=tmp_path)
    assert result.returncode == 2 and re.search(r'checkpoint ".*none\.pth" does not exist', error_line(result))


def test_corrupt_image_is_named(setup, tmp_path):
    """A benchmark image that does not decode stops the run in one line naming it (mmfastvit's checked loader, as in
    tools/test.py), and no table is written."""
    import shutil

    data = tmp_path / 'data'
    shutil.copytree(osp.join(setup['data']['root'], 'imagenet-a'), data / 'imagenet-a')
    victim = sorted((data / 'imagenet-a').rglob('*.JPEG'))[0]
    victim.write_bytes(b'not a jpeg')
    out = tmp_path / 'table.json'
    result = run(TOOL, CONFIG, setup['checkpoint'], '--data-root', data, '--benchmarks', 'a', '--wnids',
                 setup['data']['wnids_file'], '--out', out, *SHRINK, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f'image "{victim}" is corrupt' in error_line(result)
    assert not out.exists()


def test_apple_weights_by_url(setup, apple_weights_mirror, tmp_path):
    """The documented route to Table 7: Apple's URL as the checkpoint (served from 127.0.0.1 here) is downloaded,
    converted and cached through mmfastvit's loader, then evaluated."""
    from mmfastvit.convert.download import apple_weights_url

    out = tmp_path / 'table.json'
    result = check(run(TOOL, CONFIG, apple_weights_url('t8'), '--data-root', setup['data']['root'], '--benchmarks',
                       'a', '--wnids', setup['data']['wnids_file'], '--out', out, *SHRINK, cwd=tmp_path))
    assert len(apple_weights_mirror.requests) == 1 and apple_weights_mirror.requests[0].endswith('fastvit_t8.pth.tar')
    assert list((tmp_path / 'torch_home').rglob('fastvit_t8_mmfastvit.pth'))  # the conversion was cached
    report = json.loads(out.read_text())
    assert report['checkpoint'] == apple_weights_url('t8')
    assert 0.0 <= report['results']['a']['imagenet_a/top1'] <= 100.0, result.stdout[-2000:]
