"""tools/train.py, tools/test.py and the reparameterize tool end to end on a generated tiny FreiHAND set, with the real
FastViT-SA12 hand-mesh config.

The runs go through the tools' ``main(argv)`` in this interpreter (helpers.run_in_process: argv, cwd, environment and
one thread as in a new process, the output captured, the interpreter's state put back afterwards), which saves each
run's imports; tests/test_tools and tests/test_engine run the tools in their own processes. The config is shrunk with
--cfg-options only: 64 px images with the config's crop scaled to them (the 180 px box of a 224 px image -> 180 * 64 /
224 px, resized to 64), batches of 8, one or two epochs of 4 iterations, no worker processes, no pretrained file, and
the generated set's synthetic MANO file. The pipelines, model, losses and metric are the config's own.
"""
import json
import os
import os.path as osp
import pickle
import re
import shutil
import stat

import numpy as np
import pytest

from mmfastvit.datasets.synthetic import make_tiny_freihand
from mmfastvit.engine import load_runner_checkpoint

from helpers import check_ok as check
from helpers import run_in_process as run

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(REPO, 'configs', 'hand_mesh_fastvit_sa12_freihand.py')
TRAIN = osp.join(REPO, 'tools', 'train.py')
TEST = osp.join(REPO, 'tools', 'test.py')
REPARAMETERIZE = osp.join(REPO, 'tools', 'model_converters', 'reparameterize.py')
SIZE = 64  # generated image side; the crop keeps FreiHAND's proportions (a 180 px box in 224 px, centred)
NUM_TRAIN, NUM_EVAL, BATCH = 8, 4, 8  # 8 ids x 4 versions = 32 images = 4 iterations per epoch
ITERS_PER_EPOCH = NUM_TRAIN * 4 // BATCH
KEYS = ('PA-MPJPE', 'PA-MPVPE', 'AUC_J', 'AUC_V', 'F@5', 'F@15')
# mmengine's metric line, 4 decimals
METRICS = re.compile(r'\s+'.join(rf'freihand/{re.escape(key)}: ([0-9.]+)' for key in KEYS))
# FreiHANDMetric's table: PA-* with 2 decimals, the rest with 3
TABLE = re.compile(r'FreiHAND, (\d+) samples, Procrustes-aligned as the official eval\.py:\n\+[-+]+\+\n'
                   r'\| PA-MPJPE \(mm\) \|[^\n]*\n\+[-+]+\+\n\|([^\n]*)\|')


def shrink(data_root, mano_path, max_epochs):
    """--cfg-options for a CPU-sized run of the FreiHAND config on the tiny set."""
    box = 180.0 * SIZE / 224.0
    options = ['model.backbone.init_cfg=None', f'model.head.mano_path={mano_path}',
               f'train_cfg.max_epochs={max_epochs}', 'train_cfg.val_interval=1', 'default_hooks.logger.interval=1',
               'default_hooks.checkpoint.interval=1', 'randomness.seed=0', f'train_dataloader.batch_size={BATCH}',
               'val_dataloader.batch_size=4', 'test_dataloader.batch_size=4']
    for split in ('train', 'val', 'test'):
        options += [f'{split}_dataloader.dataset.data_root={data_root}', f'{split}_dataloader.num_workers=0',
                    f'{split}_dataloader.persistent_workers=False',
                    f'{split}_dataloader.dataset.pipeline.1.mano_path={mano_path}',  # HandPoseFromMANO
                    f'{split}_dataloader.dataset.pipeline.2.center=({SIZE / 2},{SIZE / 2})',  # HandCropAffine
                    f'{split}_dataloader.dataset.pipeline.2.box_size={box}',
                    f'{split}_dataloader.dataset.pipeline.2.out_size={SIZE}']
    return ['--cfg-options'] + options


def metrics(log):
    """{key: value} of the last ``freihand/...`` metric line in a log."""
    found = METRICS.findall(log)
    assert found, f'no "freihand/PA-MPJPE: .. freihand/F@15: .." line in the log:\n{log[-3000:]}'
    return dict(zip(KEYS, map(float, found[-1])))


def table(log):
    """(number of samples, {key: printed string}) of the last FreiHAND score table in a log."""
    found = TABLE.findall(log)
    assert found, f'no FreiHAND score table in the log:\n{log[-3000:]}'
    num_samples, row = found[-1]
    return int(num_samples), dict(zip(KEYS, (cell.strip() for cell in row.split('|'))))


def assert_in_range(scores):
    for key in ('PA-MPJPE', 'PA-MPVPE'):  # mm; a predictor of zeros scores ~47 / ~51 mm
        assert 0.0 < scores[key] < 60.0, scores
    for key in ('AUC_J', 'AUC_V', 'F@5', 'F@15'):
        assert 0.0 <= scores[key] <= 1.0, scores
    assert scores['F@5'] <= scores['F@15'], scores


def checkpoints(work_dir):
    return sorted(p.name for p in work_dir.glob('*.pth')) if work_dir.exists() else []


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    """The annotated tiny set, and the same evaluation images without their 3D annotations (same seed, same MANO
    file: the evaluation samples are identical, only evaluation_{xyz,verts,mano}.json are left out)."""
    tmp = tmp_path_factory.mktemp('hand')
    annotated = make_tiny_freihand(str(tmp / 'data'), num_train=NUM_TRAIN, num_eval=NUM_EVAL, size=SIZE)
    bare = make_tiny_freihand(str(tmp / 'data_no_eval_annotations'), num_train=1, num_eval=NUM_EVAL,
                              eval_annotations=False, mano_path=annotated['mano_path'], size=SIZE)
    return dict(tmp=tmp, root=annotated['root'], mano=annotated['mano_path'], bare_root=bare['root'])


@pytest.fixture(scope='module')
def trained(data):
    """One epoch (4 iterations) of training, then validation: the checkpoint the other tests resume."""
    work_dir = data['tmp'] / 'work_dir'
    result = check(run(TRAIN, CONFIG, '--work-dir', work_dir, *shrink(data['root'], data['mano'], 1), cwd=data['tmp']))
    return dict(work_dir=work_dir, log=result.stdout + result.stderr,
                checkpoint=load_runner_checkpoint(str(work_dir / 'epoch_1.pth')))


@pytest.fixture(scope='module')
def resumed(data, trained):
    """`--resume` without a value: the work dir's last checkpoint (epoch 1), trained on to epoch 2."""
    result = check(run(TRAIN, CONFIG, '--work-dir', trained['work_dir'], '--resume',
                       *shrink(data['root'], data['mano'], 2), cwd=data['tmp']))
    return result.stdout + result.stderr


@pytest.fixture(scope='module')
def tested(data, trained, resumed):
    """tools/test.py on the resumed run's last checkpoint, dumping the predictions."""
    tmp = data['tmp']
    result = check(run(TEST, CONFIG, trained['work_dir'] / 'epoch_2.pth', '--work-dir', tmp / 'test_dir', '--out',
                       tmp / 'preds.pkl', *shrink(data['root'], data['mano'], 2), cwd=tmp))
    with open(tmp / 'preds.pkl', 'rb') as f:
        predictions = pickle.load(f)
    return dict(log=result.stdout + result.stderr, predictions=predictions)


def test_train_checkpoints_and_validates(trained):
    work_dir, log = trained['work_dir'], trained['log']
    assert (work_dir / 'epoch_1.pth').is_file()
    assert (work_dir / 'last_checkpoint').read_text().strip().endswith('epoch_1.pth')
    for i in range(1, ITERS_PER_EPOCH + 1):
        assert f'Epoch(train) [1][{i}/{ITERS_PER_EPOCH}]' in log
    for loss in ('loss_vertices', 'loss_joints', 'loss_joints_2d'):  # the head's three losses
        assert re.search(rf'\b{loss}: [0-9.]+', log), loss
    assert_in_range(metrics(log))  # validation after the epoch, on the annotated evaluation split
    assert table(log)[0] == NUM_EVAL
    assert trained['checkpoint']['meta']['epoch'] == 1 and trained['checkpoint']['meta']['iter'] == ITERS_PER_EPOCH


def test_resume_continues_the_iteration_count_and_the_loss_history(trained, resumed):
    work_dir, n = trained['work_dir'], ITERS_PER_EPOCH
    assert 'mmengine_checkpoint_globals' in resumed  # the safe-load path was used
    assert re.search(rf'resumed epoch: 1, iter: {n}', resumed)
    assert f'Epoch(train) [2][1/{n}]' in resumed and f'Epoch(train) [2][{n}/{n}]' in resumed
    assert 'Epoch(train) [1]' not in resumed
    assert (work_dir / 'epoch_2.pth').is_file()
    assert (work_dir / 'last_checkpoint').read_text().strip().endswith('epoch_2.pth')

    first, second = trained['checkpoint'], load_runner_checkpoint(str(work_dir / 'epoch_2.pth'))
    assert second['meta']['epoch'] == 2 and second['meta']['iter'] == 2 * n
    steps = {int(state['step']) for state in second['optimizer']['state'].values()}
    assert steps == {2 * n}  # Adam's moments came back with the checkpoint and went on
    # The message hub's loss history: the first epoch's values, then the second's.
    before = first['message_hub']['log_scalars']['train/loss'].data[0]
    after = second['message_hub']['log_scalars']['train/loss'].data[0]
    assert len(before) == n and len(after) == 2 * n
    np.testing.assert_array_equal(after[:n], before)
    # The resumed run's first logged loss is smoothed over that history (LoggerHook's window of 10), so it continues
    # the first run's curve rather than starting a new one.
    runs = sorted(p for p in work_dir.iterdir() if (p / 'vis_data' / 'scalars.json').is_file())
    assert len(runs) == 2, runs
    with open(runs[-1] / 'vis_data' / 'scalars.json') as f:
        logged = [json.loads(line) for line in f if '"loss"' in line]
    assert [entry['iter'] for entry in logged] == list(range(n + 1, 2 * n + 1))
    assert logged[0]['loss'] == pytest.approx(after[:n + 1].mean(), rel=1e-6)


def test_test_prints_the_official_scores(data, tested, resumed):
    scores = metrics(tested['log'])
    assert_in_range(scores)
    num_samples, printed = table(tested['log'])
    assert num_samples == NUM_EVAL
    for key in KEYS:  # the table rounds the same numbers (mm to 0.01, the rest to 0.001)
        assert float(printed[key]) == pytest.approx(scores[key], abs=0.006 if key.startswith('PA-') else 6e-4)
    # the same checkpoint and data as the resumed run's last validation
    assert scores == metrics(resumed)
    predictions = tested['predictions']
    assert [p['sample_idx'] for p in predictions] == list(range(NUM_EVAL))
    for prediction in predictions:
        assert tuple(prediction['pred_joints'].shape) == (21, 3)
        assert tuple(prediction['pred_vertices'].shape) == (778, 3)


def test_format_only_writes_the_submission_file_without_scores(data, trained, tested):
    """The evaluation split as first released (no evaluation_{xyz,verts,mano}.json): with format_only the metric only
    writes pred.json, [xyz (N x 21 x 3), verts (N x 778 x 3)] in metres. The config validates on the annotated
    evaluation split (with_annotations=True, so that a missing annotation file is an error), so the split without
    them is asked for with with_annotations=False."""
    tmp = data['tmp']
    pred_json = tmp / 'submission' / 'pred.json'
    result = check(run(TEST, CONFIG, trained['work_dir'] / 'epoch_2.pth', '--work-dir', tmp / 'format_dir',
                       *shrink(data['root'], data['mano'], 2), f'test_dataloader.dataset.data_root={data["bare_root"]}',
                       'test_dataloader.dataset.with_annotations=False', 'test_evaluator.format_only=True',
                       f'test_evaluator.pred_json={pred_json}', cwd=tmp))
    log = result.stdout + result.stderr
    assert not METRICS.search(log) and not TABLE.search(log), log[-3000:]
    assert f'wrote the predictions of {NUM_EVAL} samples' in log
    with open(pred_json) as f:
        submission = json.load(f)
    assert isinstance(submission, list) and len(submission) == 2
    xyz, verts = np.asarray(submission[0]), np.asarray(submission[1])
    assert xyz.shape == (NUM_EVAL, 21, 3) and verts.shape == (NUM_EVAL, 778, 3)
    assert np.isfinite(xyz).all() and np.isfinite(verts).all()
    assert np.abs(verts).max() < 1.0  # metres: a hand, not millimetres
    # The same images as the annotated split: the same predictions as tools/test.py --out, in evaluation order.
    expected = sorted(tested['predictions'], key=lambda p: p['sample_idx'])
    np.testing.assert_allclose(xyz, np.stack([np.asarray(p['pred_joints']) for p in expected]), atol=1e-6)
    np.testing.assert_allclose(verts, np.stack([np.asarray(p['pred_vertices']) for p in expected]), atol=1e-6)
    # an ordinary file for the server upload, readable like the rest of the work dir (not a private temp file)
    assert stat.S_IMODE(pred_json.stat().st_mode) & 0o444 == 0o444


def test_a_missing_annotation_file_fails_before_training(data):
    tmp = data['tmp']
    broken = tmp / 'data_without_xyz'
    shutil.copytree(data['root'], broken)
    os.remove(broken / 'training_xyz.json')
    work_dir = tmp / 'work_dir_without_xyz'
    result = run(TRAIN, CONFIG, '--work-dir', work_dir, *shrink(broken, data['mano'], 1), cwd=tmp)
    assert result.returncode != 0
    assert str(broken / 'training_xyz.json') in result.stderr, result.stderr[-3000:]
    assert 'Epoch(train)' not in result.stdout + result.stderr
    assert checkpoints(work_dir) == []


@pytest.mark.parametrize('option', ['model.head.mano_path', 'train_dataloader.dataset.pipeline.1.mano_path'])
def test_a_missing_mano_file_says_where_to_get_it(data, option):
    """Either user of the MANO file (the head, the training pipeline's HandPoseFromMANO) reports a missing one with
    its path and where MANO_RIGHT.pkl comes from."""
    tmp = data['tmp']
    missing = tmp / 'no_mano' / 'MANO_RIGHT.pkl'
    work_dir = tmp / f'work_dir_no_mano_{option.split(".")[0]}'
    result = run(TRAIN, CONFIG, '--work-dir', work_dir, *shrink(data['root'], data['mano'], 1), f'{option}={missing}',
                 cwd=tmp)
    assert result.returncode != 0
    assert 'mano.is.tue.mpg.de' in result.stderr, result.stderr[-3000:]
    assert str(missing) in result.stderr
    assert 'Epoch(train)' not in result.stdout + result.stderr
    assert checkpoints(work_dir) == []


def test_reparameterized_checkpoint_gives_the_same_scores_under_deploy_true(data, trained, tested):
    """tools/model_converters/reparameterize.py on the Runner's checkpoint, then tools/test.py with
    model.backbone.deploy=True: the same scores as printed, and the same meshes to float precision."""
    tmp = data['tmp']
    deployed = tmp / 'epoch_2_deploy.pth'
    check(run(REPARAMETERIZE, CONFIG, trained['work_dir'] / 'epoch_2.pth', deployed, '--shape', SIZE,
              '--cfg-options', f'model.head.mano_path={data["mano"]}', cwd=tmp))
    result = check(run(TEST, CONFIG, deployed, '--work-dir', tmp / 'deploy_test', '--out', tmp / 'deploy.pkl',
                       *shrink(data['root'], data['mano'], 2), 'model.backbone.deploy=True', cwd=tmp))
    log = result.stdout + result.stderr
    assert table(log) == table(tested['log'])
    fused_scores, scores = metrics(log), metrics(tested['log'])
    for key in KEYS:  # the 4-decimal line, up to a last-digit rounding flip
        assert fused_scores[key] == pytest.approx(scores[key], abs=1.5e-4)
    with open(tmp / 'deploy.pkl', 'rb') as f:
        fused = pickle.load(f)
    assert len(fused) == NUM_EVAL
    for f_pred, pred in zip(fused, tested['predictions']):
        np.testing.assert_allclose(np.asarray(f_pred['pred_vertices']), np.asarray(pred['pred_vertices']),
                                   atol=1e-5)
        np.testing.assert_allclose(np.asarray(f_pred['pred_joints']), np.asarray(pred['pred_joints']), atol=1e-5)
