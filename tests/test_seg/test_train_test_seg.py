"""tools/train.py, tools/test.py and the reparameterize tool end to end on a generated tiny ADE20K, with the real
FastViT-SA12 Semantic FPN config.

The runs go through the tools' ``main(argv)`` in this interpreter (helpers.run_in_process: argv, cwd, environment and
one thread as in a new process, the output captured, the interpreter's state put back afterwards), which saves each
run's imports; tests/test_tools and tests/test_engine run the tools in their own processes. The config is shrunk with
--cfg-options only (64x64 crops, batches of 2, a few iterations, no worker processes, no pretrained file), so the file
stays within the CI budget on 2 CPU cores, busy or not.
"""
import os.path as osp
import pickle
import re

import numpy as np
import pytest
import torch
from PIL import Image

from mmfastvit.datasets import make_tiny_ade20k
from mmfastvit.engine import load_runner_checkpoint

from helpers import check_ok as check
from helpers import run_in_process as run

pytest.importorskip('mmseg')

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(REPO, 'configs', 'sem_fpn_fastvit_sa12_ade20k_40k.py')
TRAIN = osp.join(REPO, 'tools', 'train.py')
TEST = osp.join(REPO, 'tools', 'test.py')
REPARAMETERIZE = osp.join(REPO, 'tools', 'model_converters', 'reparameterize.py')
SIZE = (64, 80)  # generated images, (H, W)
NUM_VAL = 2
METRICS = re.compile(r'aAcc: ([0-9.]+)\s+mIoU: ([0-9.]+)\s+mAcc: ([0-9.]+)')


def shrink(data_root, max_iters):
    """--cfg-options for a CPU-sized run of the ADE20K config on the tiny dataset."""
    options = [f'train_cfg.max_iters={max_iters}', f'train_cfg.val_interval={max_iters}',
               'param_scheduler.0.end=3', 'default_hooks.checkpoint.interval=2', 'default_hooks.logger.interval=1',
               'randomness.seed=0', 'model.backbone.init_cfg=None', 'train_dataloader.batch_size=2',
               'model.data_preprocessor.size=(64,64)',
               # RandomResize to a shorter edge of 32-128 around 64, RandomCrop 64x64
               'train_dataloader.dataset.pipeline.2.scale=(256,64)',
               'train_dataloader.dataset.pipeline.3.crop_size=(64,64)']
    for split in ('train', 'val', 'test'):
        options += [f'{split}_dataloader.dataset.data_root={data_root}', f'{split}_dataloader.num_workers=0',
                    f'{split}_dataloader.persistent_workers=False']
    for split in ('val', 'test'):  # Resize keeps the generated size (shorter edge 64), then a multiple of 32
        options.append(f'{split}_dataloader.dataset.pipeline.1.scale=(256,64)')
    return ['--cfg-options'] + options


def metrics(log):
    """(aAcc, mIoU, mAcc) of the last evaluation in a log, in percent."""
    found = METRICS.findall(log)
    assert found, f'no "aAcc: .. mIoU: .. mAcc: .." line in the log:\n{log[-3000:]}'
    return tuple(float(v) for v in found[-1])


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """Two iterations of training, then validation: the checkpoint the other tests resume."""
    tmp = tmp_path_factory.mktemp('seg')
    data = make_tiny_ade20k(str(tmp / 'data'), num_train=4, num_val=NUM_VAL, size=SIZE)
    work_dir = tmp / 'work_dir'
    result = check(run(TRAIN, CONFIG, '--work-dir', work_dir, *shrink(data['root'], max_iters=2), cwd=tmp))
    return dict(tmp=tmp, data=data, work_dir=work_dir, log=result.stdout + result.stderr)


@pytest.fixture(scope='module')
def resumed(trained):
    """`--resume` without a value: the work dir's last checkpoint (iteration 2), trained on to iteration 3."""
    result = check(run(TRAIN, CONFIG, '--work-dir', trained['work_dir'], '--resume',
                       *shrink(trained['data']['root'], max_iters=3), cwd=trained['tmp']))
    return result.stdout + result.stderr


@pytest.fixture(scope='module')
def tested(trained, resumed):
    """tools/test.py on the resumed run's checkpoint, dumping predictions and drawing them."""
    tmp = trained['tmp']
    result = check(run(TEST, CONFIG, trained['work_dir'] / 'iter_3.pth', '--work-dir', tmp / 'test_dir',
                       '--out', tmp / 'preds.pkl', '--show-dir', tmp / 'vis', *shrink(trained['data']['root'], 3),
                       f'test_evaluator.output_dir={tmp / "label_maps"}', cwd=tmp))
    with open(tmp / 'preds.pkl', 'rb') as f:
        predictions = pickle.load(f)
    return dict(log=result.stdout + result.stderr, predictions=predictions, vis=tmp / 'vis',
                label_maps=tmp / 'label_maps')


def test_train_checkpoints_and_validates(trained):
    work_dir, log = trained['work_dir'], trained['log']
    assert (work_dir / 'iter_2.pth').is_file()
    assert (work_dir / 'last_checkpoint').read_text().strip().endswith('iter_2.pth')
    assert 'Iter(train) [1/2]' in log and 'Iter(train) [2/2]' in log
    assert 'decode.loss_ce' in log
    a_acc, miou, m_acc = metrics(log)  # validation after the last iteration
    assert 0.0 <= miou <= 100.0 and 0.0 <= a_acc <= 100.0 and 0.0 <= m_acc <= 100.0


def test_resume_continues_the_iteration_count(trained, resumed):
    assert 'mmengine_checkpoint_globals' in resumed  # the safe-load path was used
    assert re.search(r'resumed epoch: \d+, iter: 2', resumed)
    assert 'Iter(train) [3/3]' in resumed
    assert 'Iter(train) [1/3]' not in resumed and 'Iter(train) [2/3]' not in resumed
    assert (trained['work_dir'] / 'iter_3.pth').is_file()
    assert (trained['work_dir'] / 'last_checkpoint').read_text().strip().endswith('iter_3.pth')
    checkpoint = load_runner_checkpoint(str(trained['work_dir'] / 'iter_3.pth'))
    assert checkpoint['meta']['iter'] == 3


def test_test_reports_miou_and_dumps_predictions(tested):
    a_acc, miou, m_acc = metrics(tested['log'])
    assert 0.0 <= miou <= 100.0 and 0.0 <= a_acc <= 100.0 and 0.0 <= m_acc <= 100.0
    assert 'per class results' in tested['log']  # IoUMetric's table of the 150 classes
    predictions = tested['predictions']
    assert len(predictions) == NUM_VAL
    for prediction in predictions:
        assert tuple(prediction['pred_sem_seg']['data'].shape) == (1, *SIZE)  # the original resolution
        assert 'seg_logits' not in prediction  # 150 score maps per image: dropped from --out (the label map stays)
        assert int(prediction['pred_sem_seg']['data'].max()) < 150


def test_output_dir_writes_ade20k_label_maps(tested):
    """IoUMetric's output_dir (what docs/segmentation.md suggests for full-size runs): one PNG per image in ADE20K's
    own convention, the predicted class index + 1."""
    written = sorted(tested['label_maps'].glob('*.png'))
    assert [p.name for p in written] == [f'ADE_val_{i:08d}.png' for i in range(1, NUM_VAL + 1)]
    for path, prediction in zip(written, tested['predictions']):
        stored = np.asarray(Image.open(path))
        np.testing.assert_array_equal(stored, prediction['pred_sem_seg']['data'][0].numpy() + 1)


def test_show_dir_writes_coloured_predictions(tested):
    """SegVisualizationHook through --show-dir: one image per test image, ground truth beside the prediction, both
    painted in ADE20K's palette over the input."""
    drawn = sorted(tested['vis'].rglob('*.png'))
    assert len(drawn) == NUM_VAL, drawn
    for path in drawn:
        image = np.asarray(Image.open(path).convert('RGB'))
        assert image.shape == (SIZE[0], 2 * SIZE[1], 3)  # ground truth | prediction
        assert len(np.unique(image.reshape(-1, 3), axis=0)) > 16  # drawn over the photo, not a blank canvas
        assert not np.array_equal(image[:, :SIZE[1]], image[:, SIZE[1]:])


def test_reparameterized_checkpoint_gives_the_same_miou_under_deploy_true(trained, tested):
    """tools/model_converters/reparameterize.py on the Runner's checkpoint, then tools/test.py with
    model.backbone.deploy=True: same predictions and the same mIoU as the unfused checkpoint."""
    tmp = trained['tmp']
    deployed = tmp / 'iter_3_deploy.pth'
    check(run(REPARAMETERIZE, CONFIG, trained['work_dir'] / 'iter_3.pth', deployed, '--shape', *SIZE, cwd=tmp))
    result = check(run(TEST, CONFIG, deployed, '--work-dir', tmp / 'deploy_test', '--out', tmp / 'deploy.pkl',
                       *shrink(trained['data']['root'], 3), 'model.backbone.deploy=True', cwd=tmp))
    assert metrics(result.stdout) == metrics(tested['log'])
    with open(tmp / 'deploy.pkl', 'rb') as f:
        deploy_predictions = pickle.load(f)
    assert len(deploy_predictions) == NUM_VAL
    for fused, unfused in zip(deploy_predictions, tested['predictions']):
        assert torch.equal(fused['pred_sem_seg']['data'], unfused['pred_sem_seg']['data'])
