"""The tiny generated FreiHAND: the released layout and formats, annotations consistent with MANO and the camera
(verts = MANO(hands_mean + pose, betas) + t, xyz = official joints of verts, projections inside the image, uv_root,
the 61st number and the scale file), images showing the hand over per-version backgrounds, masks, determinism, bad
arguments and the CLI."""
import hashlib
import importlib.util
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from mmfastvit.datasets.synthetic import make_tiny_freihand
from mmfastvit.datasets.synthetic.freihand import GREEN_SCREEN, HOMOGENIZED, MARGIN
from mmfastvit.hand import MANOLayer, load_mano_file
from mmfastvit.hand.conventions import MANO_TIP_VERTICES, MANO_TO_FREIHAND
from mmfastvit.hand.rotation import axis_angle_to_matrix

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = os.path.join(REPO, 'tools', 'dataset_converters', 'make_tiny_dataset.py')
NUM_TRAIN, NUM_EVAL, SIZE = 3, 2, 128


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp('tiny_freihand')
    return make_tiny_freihand(str(root), num_train=NUM_TRAIN, num_eval=NUM_EVAL, size=SIZE, seed=3)


def _json(tiny, name):
    with open(os.path.join(tiny['root'], name)) as f:
        return json.load(f)


def _digest(root):
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(root)):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            digest.update(os.path.relpath(path, root).encode())
            with open(path, 'rb') as f:
                digest.update(f.read())
    return digest.hexdigest()


def _project(points, K):
    uv = points @ K.T
    return uv[:, :2] / uv[:, 2:]


def test_every_file_of_the_released_layout(tiny):
    root = tiny['root']
    rgb = sorted(os.listdir(os.path.join(root, 'training', 'rgb')))
    assert rgb == [f'{i:08d}.jpg' for i in range(4 * NUM_TRAIN)]  # id + NUM_TRAIN * k
    assert sorted(os.listdir(os.path.join(root, 'training', 'mask'))) == [f'{i:08d}.jpg' for i in range(NUM_TRAIN)]
    assert sorted(os.listdir(os.path.join(root, 'evaluation', 'rgb'))) == [f'{i:08d}.jpg' for i in range(NUM_EVAL)]
    expected = {f'training_{k}.json' for k in ('K', 'mano', 'xyz', 'verts', 'scale')}
    expected |= {f'evaluation_{k}.json' for k in ('K', 'mano', 'xyz', 'verts', 'scale')}
    assert set(os.listdir(root)) == expected | {'training', 'evaluation', 'MANO_RIGHT.pkl'}
    assert tiny['training'] == dict(num_unique=NUM_TRAIN, num_versions=4, num_images=4 * NUM_TRAIN,
                                    ann_files={k: f'training_{k}.json' for k in ('K', 'mano', 'xyz', 'verts', 'scale')})
    assert tiny['evaluation']['num_images'] == NUM_EVAL and tiny['evaluation']['annotated'] is True
    assert tiny['mano_path'] == os.path.join(root, 'MANO_RIGHT.pkl') and tiny['size'] == SIZE
    for name in rgb:
        with Image.open(os.path.join(root, 'training', 'rgb', name)) as image:
            assert image.size == (SIZE, SIZE) and image.mode == 'RGB' and image.format == 'JPEG'


@pytest.mark.parametrize('split,count', [('training', NUM_TRAIN), ('evaluation', NUM_EVAL)])
def test_json_lengths_and_shapes(tiny, split, count):
    shapes = dict(K=(3, 3), mano=(1, 61), xyz=(21, 3), verts=(778, 3), scale=())
    for key, shape in shapes.items():
        entries = _json(tiny, f'{split}_{key}.json')
        assert len(entries) == count, key
        assert all(np.asarray(e).shape == shape for e in entries), key


@pytest.fixture(scope='module')
def annotations(tiny):
    return {f'{split}_{key}': [np.asarray(e, dtype=np.float64) for e in _json(tiny, f'{split}_{key}.json')]
            for split in ('training', 'evaluation') for key in ('K', 'mano', 'xyz', 'verts', 'scale')}


@pytest.mark.parametrize('split', ['training', 'evaluation'])
def test_xyz_are_the_official_joints_of_verts(tiny, annotations, split):
    mano = load_mano_file(tiny['mano_path'])
    for xyz, verts in zip(annotations[f'{split}_xyz'], annotations[f'{split}_verts']):
        joints = np.concatenate((mano['J_regressor'] @ verts, verts[list(MANO_TIP_VERTICES)]))[MANO_TO_FREIHAND]
        np.testing.assert_allclose(xyz, joints, atol=1e-6, rtol=0)
        assert 0.03 < np.linalg.norm(xyz[9] - xyz[0]) < 0.15  # wrist to middle MCP: a hand


@pytest.mark.parametrize('split', ['training', 'evaluation'])
def test_verts_are_mano_of_the_released_parameters_plus_a_translation(tiny, annotations, split):
    layer = MANOLayer(tiny['mano_path'], dtype=torch.float64)
    mean = torch.from_numpy(load_mano_file(tiny['mano_path'])['hands_mean'])
    for params, verts in zip(annotations[f'{split}_mano'], annotations[f'{split}_verts']):
        params = torch.from_numpy(params[0])
        full = torch.cat((params[:3], params[3:48] + mean)).view(16, 3)  # pose relative to the mean hand
        posed = layer(axis_angle_to_matrix(full)[None], params[None, 48:58])['vertices'][0].numpy()
        offset = verts - posed
        np.testing.assert_allclose(offset, np.broadcast_to(offset.mean(0), offset.shape), atol=1e-9, rtol=0)
        # without the mean the mesh differs: the json pose is relative to it
        flat = layer(axis_angle_to_matrix(params[:48].view(16, 3))[None], params[None, 48:58])['vertices'][0].numpy()
        assert np.abs((verts - flat) - (verts - flat).mean(0)).max() > 1e-3


@pytest.mark.parametrize('split', ['training', 'evaluation'])
def test_camera_projection_root_and_scale(annotations, split):
    for K, xyz, verts, mano, scale in zip(*(annotations[f'{split}_{k}'] for k in ('K', 'xyz', 'verts', 'mano',
                                                                                  'scale'))):
        focal = K[0, 0]
        assert K[1, 1] == focal and 500 * SIZE / 224 <= focal <= 600 * SIZE / 224
        np.testing.assert_array_equal(K[:, 2], [SIZE / 2, SIZE / 2, 1.0])
        assert K[0, 1] == K[1, 0] == K[2, 0] == K[2, 1] == 0
        assert 0.4 < xyz[:, 2].mean() < 1.2 and (verts[:, 2] > 0.2).all()  # about half a metre in front
        for points in (xyz, verts):
            uv = _project(points, K)
            assert uv.min() >= MARGIN * SIZE - 1e-9 and uv.max() <= (1 - MARGIN) * SIZE + 1e-9
        uv_root, root_scale = mano[0, 58:60], mano[0, 60]
        np.testing.assert_allclose(uv_root, _project(xyz[:1], K)[0], atol=1e-9, rtol=0)
        # FreiHAND's toolbox recovers the wrist as (uv_root - pp, focal) / scale
        recovered = np.concatenate((uv_root - K[:2, 2], [focal])) / root_scale
        np.testing.assert_allclose(recovered, xyz[0], atol=1e-9, rtol=0)
        assert scale == pytest.approx(np.linalg.norm(xyz[9] - xyz[10]), abs=1e-12)


def _image(tiny, split, index):
    with Image.open(os.path.join(tiny['root'], split, 'rgb', f'{index:08d}.jpg')) as image:
        return np.asarray(image, dtype=np.float64)


def test_images_show_the_hand_over_each_version_background(tiny, annotations):
    for i in range(NUM_TRAIN):
        with Image.open(os.path.join(tiny['root'], 'training', 'mask', f'{i:08d}.jpg')) as mask_image:
            mask = np.asarray(mask_image.convert('L')) > 128
        K, xyz, verts = (annotations[f'training_{k}'][i] for k in ('K', 'xyz', 'verts'))
        # the mask covers the projected joints and vertices (up to a pixel: JPEG blurs the small dots)
        for u, v in np.round(_project(np.concatenate((xyz, verts)), K)).astype(int):
            assert mask[v - 1:v + 2, u - 1:u + 2].any()
        assert 0.01 < mask.mean() < 0.6
        versions = [_image(tiny, 'training', i + NUM_TRAIN * k) for k in range(4)]
        hand = np.zeros_like(mask)
        hand[2:-2, 2:-2] = mask[2:-2, 2:-2] & mask[:-4, 2:-2] & mask[4:, 2:-2] & mask[2:-2, :-4] & mask[2:-2, 4:]
        background = ~mask
        background[1:-1, 1:-1] &= ~mask[:-2, 1:-1] & ~mask[2:, 1:-1] & ~mask[1:-1, :-2] & ~mask[1:-1, 2:]
        np.testing.assert_allclose(np.median(versions[0][background], axis=0), GREEN_SCREEN, atol=8)
        np.testing.assert_allclose(np.median(versions[1][background], axis=0), HOMOGENIZED, atol=8)
        # the same hand in every version, different backgrounds
        for k in (1, 2, 3):
            assert np.abs(versions[k][hand] - versions[0][hand]).mean() < 12
            assert np.abs(versions[k][background] - versions[0][background]).mean() > 30
    for i in range(NUM_EVAL):  # evaluation images are green screen
        image = _image(tiny, 'evaluation', i)
        assert np.abs(np.median(image.reshape(-1, 3), axis=0) - GREEN_SCREEN).max() < 8


def test_deterministic_without_eval_annotations_and_with_a_given_mano(tmp_path, tiny):
    first = make_tiny_freihand(str(tmp_path / 'a'), num_train=1, num_eval=1, eval_annotations=False, size=64, seed=5)
    make_tiny_freihand(str(tmp_path / 'b'), num_train=1, num_eval=1, eval_annotations=False, size=64, seed=5)
    assert _digest(str(tmp_path / 'a')) == _digest(str(tmp_path / 'b'))
    assert first['evaluation'] == dict(num_images=1, annotated=False,
                                       ann_files=dict(K='evaluation_K.json', scale='evaluation_scale.json'))
    assert not any(os.path.exists(tmp_path / 'a' / f'evaluation_{k}.json') for k in ('xyz', 'verts', 'mano'))
    given = make_tiny_freihand(str(tmp_path / 'c'), num_train=1, num_eval=1, size=64, seed=5,
                               mano_path=tiny['mano_path'])
    assert given['mano_path'] == tiny['mano_path'] and not os.path.exists(tmp_path / 'c' / 'MANO_RIGHT.pkl')
    other = make_tiny_freihand(str(tmp_path / 'd'), num_train=1, num_eval=1, size=64, seed=6)
    assert _json(other, 'training_xyz.json') != _json(first, 'training_xyz.json')


@pytest.mark.parametrize('kwargs,message', [
    (dict(num_train=0), 'num_train must be an int >= 1, got 0'),
    (dict(num_eval=1.5), 'num_eval must be an int >= 1, got 1.5'),
    (dict(size=32), 'size must be an int >= 64, got 32'),
    (dict(eval_annotations='yes'), "eval_annotations must be a bool, got 'yes'"),
    (dict(mano_path='/nonexistent/MANO_RIGHT.pkl'), "mano_path '/nonexistent/MANO_RIGHT.pkl' is not a file"),
])
def test_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message.replace('(', r'\(').replace('.', r'\.')):
        make_tiny_freihand(str(tmp_path / 'bad'), **kwargs)


def test_cli(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location('make_tiny_dataset', CLI)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = tmp_path / 'cli'
    assert tool.main(['freihand', str(out), '--train', '2', '--eval', '1', '--size', '64', '--no-eval-annotations',
                      '--seed', '1']) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary['training']['num_images'] == 8 and summary['evaluation']['annotated'] is False
    assert len(os.listdir(out / 'training' / 'rgb')) == 8 and (out / 'MANO_RIGHT.pkl').is_file()
    assert tool.main(['freihand', str(tmp_path / 'bad'), '--size', '10']) == 2
    assert 'make_tiny_dataset.py freihand: error: size must be an int >= 64, got 10' in capsys.readouterr().err
