"""FreiHANDDataset on a generated set in the released layout: sample counts, file indices, annotations, and one
error per kind of broken input, each naming the file and what was expected."""
import io
import json
import os
import os.path as osp
import re
import shutil

import numpy as np
import pytest

from mmfastvit.datasets.synthetic.freihand import make_tiny_freihand
from mmfastvit.hand.dataset import FreiHANDDataset, _JSONListReader, load_freihand_json
from mmfastvit.registry import DATASETS

NUM_TRAIN = 3
NUM_EVAL = 2
TRAIN_JSONS = ('K', 'xyz', 'verts', 'mano', 'scale')


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('freihand'))
    make_tiny_freihand(path, num_train=NUM_TRAIN, num_eval=NUM_EVAL, eval_annotations=True)
    return path


@pytest.fixture(scope='module')
def root_no_eval_annotations(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('freihand_pub'))
    make_tiny_freihand(path, num_train=NUM_TRAIN, num_eval=NUM_EVAL, eval_annotations=False)
    return path


def _read(root, name):
    with open(osp.join(root, f'{name}.json')) as f:
        return json.load(f)


def _copy_layout(root, dst, skip=()):
    """``dst`` with the JSON files of ``root`` copied (except ``skip``) and its image folders linked."""
    os.makedirs(dst)
    for name in os.listdir(root):
        if name.endswith('.json') and name not in skip:
            shutil.copy(osp.join(root, name), dst)
        elif name in ('training', 'evaluation'):
            os.symlink(osp.join(root, name), osp.join(dst, name))
    return str(dst)


def test_sample_counts(root):
    assert len(FreiHANDDataset(root)) == 4 * NUM_TRAIN
    assert len(FreiHANDDataset(root, versions=(0, 3))) == 2 * NUM_TRAIN
    assert len(FreiHANDDataset(root, versions=[2])) == NUM_TRAIN
    assert len(FreiHANDDataset(root, split='evaluation')) == NUM_EVAL
    assert len(FreiHANDDataset(root, indices=5)) == 5
    assert len(FreiHANDDataset(root, indices=[0, 7])) == 2
    dataset = DATASETS.build(dict(type='mmfastvit.FreiHANDDataset', data_root=root, versions=(1, )))
    assert isinstance(dataset, FreiHANDDataset) and dataset.num_ids == NUM_TRAIN and len(dataset) == NUM_TRAIN


@pytest.mark.parametrize('versions', [(0, 1, 2, 3), (1, 3), (3, 0)])
def test_image_path_is_id_plus_n_times_version(root, versions):
    dataset = FreiHANDDataset(root, versions=versions)
    for idx in range(len(dataset)):
        info = dataset.get_data_info(idx)
        version, sample_id = versions[idx // NUM_TRAIN], idx % NUM_TRAIN
        assert (info['sample_idx'], info['id'], info['version']) == (idx, sample_id, version)
        assert info['img_path'] == osp.join(root, 'training', 'rgb', '%08d.jpg' % (sample_id + NUM_TRAIN * version))
        assert osp.isfile(info['img_path'])
    if versions == (0, 1, 2, 3):  # all versions: the running index is the file index
        assert all(dataset.get_data_info(i)['img_path'].endswith('%08d.jpg' % i) for i in range(len(dataset)))


def test_training_annotations(root):
    dataset = FreiHANDDataset(root, versions=(2, ))
    info = dataset.get_data_info(1)
    assert info['id'] == 1 and dataset.annotated
    expected = dict(K=(3, 3), joints_3d=(21, 3), vertices=(778, 3), mano=(61, ))
    for key, shape in expected.items():
        assert info[key].shape == shape and info[key].dtype == np.float32, key
    np.testing.assert_allclose(info['K'], _read(root, 'training_K')[1], rtol=1e-6)
    np.testing.assert_allclose(info['joints_3d'], _read(root, 'training_xyz')[1], rtol=1e-6)
    np.testing.assert_allclose(info['vertices'], _read(root, 'training_verts')[1], rtol=1e-6)
    np.testing.assert_allclose(info['mano'], np.reshape(_read(root, 'training_mano')[1], -1), rtol=1e-6)
    assert isinstance(info['scale'], float) and info['scale'] == pytest.approx(_read(root, 'training_scale')[1])
    # the pipeline gets copies: editing one sample leaves the stored annotations alone
    info['joints_3d'][:] = 0
    assert np.abs(dataset.get_data_info(1)['joints_3d']).sum() > 0


def test_subset_shares_annotations(root):
    dataset = FreiHANDDataset(root)
    subset = dataset.get_subset([5, 2])
    assert len(subset) == 2 and subset._per_id is dataset._per_id
    assert subset.get_data_info(0)['img_path'] == dataset.get_data_info(5)['img_path']


def test_evaluation_split_with_annotations(root):
    dataset = FreiHANDDataset(root, split='evaluation')
    assert dataset.annotated and len(dataset) == NUM_EVAL
    info = dataset.get_data_info(1)
    assert info['img_path'] == osp.join(root, 'evaluation', 'rgb', '00000001.jpg')
    assert info['joints_3d'].shape == (21, 3) and info['vertices'].shape == (778, 3) and info['mano'].shape == (61, )
    np.testing.assert_allclose(info['joints_3d'], _read(root, 'evaluation_xyz')[1], rtol=1e-6)
    # with_annotations=False reads K and scale only
    info = FreiHANDDataset(root, split='evaluation', with_annotations=False).get_data_info(1)
    assert {'K', 'scale'} <= set(info) and not {'joints_3d', 'vertices', 'mano'} & set(info)


def test_evaluation_split_without_annotations(root_no_eval_annotations):
    root = root_no_eval_annotations
    dataset = FreiHANDDataset(root, split='evaluation')
    assert not dataset.annotated and len(dataset) == NUM_EVAL
    info = dataset.get_data_info(0)
    assert info['K'].shape == (3, 3) and not {'joints_3d', 'vertices', 'mano'} & set(info)
    with pytest.raises(FileNotFoundError, match=re.escape(osp.join(root, 'evaluation_xyz.json'))):
        FreiHANDDataset(root, split='evaluation', with_annotations=True)


def test_partial_evaluation_annotations_name_the_missing_file(root, tmp_path):
    broken = _copy_layout(root, tmp_path / 'partial', skip=('evaluation_verts.json', ))
    with pytest.raises(FileNotFoundError, match=r'evaluation_verts\.json" is missing \(expected a list of 2 778x3'):
        FreiHANDDataset(broken, split='evaluation')


@pytest.mark.parametrize('name', TRAIN_JSONS)
def test_missing_json_names_the_file(root, tmp_path, name):
    broken = _copy_layout(root, tmp_path / 'missing', skip=(f'training_{name}.json', ))
    with pytest.raises(FileNotFoundError) as info:
        FreiHANDDataset(broken)
    message = str(info.value)
    assert f'FreiHAND annotation "{osp.join(broken, f"training_{name}.json")}" is missing' in message
    what = dict(K='3x3 camera intrinsics', xyz=f'{NUM_TRAIN} 21x3 joint arrays', verts=f'{NUM_TRAIN} 778x3 vertex',
                mano=f'{NUM_TRAIN} 1x61 MANO parameter', scale=f'{NUM_TRAIN} numbers')[name]
    assert f'expected a list of {what}' in message


def _write(path, text):
    with open(path, 'w') as f:
        f.write(text)


@pytest.mark.parametrize('name,corrupt,pattern', [
    ('xyz', lambda data: data[:-1], r'holds a list of 2 items, expected a list of 3 21x3 joint arrays'),
    ('verts', lambda data: data + data[:1], r'holds a list of 4 items, expected a list of 3 778x3 vertex arrays'),
    ('xyz', lambda data: data[:1] + [data[1][:20]] + data[2:], r'item 1 is a 20x3 array, expected a list of 3 21x3'),
    ('verts', lambda data: data[:2] + [[v[:2] for v in data[2]]],
     r'item 2 is a 778x2 array, expected a list of 3 778x3 vertex arrays'),
    ('mano', lambda data: data[:1] + [[[0.0] * 60]] + data[2:], r'item 1 is a 1x60 array, expected a list of 3 1x61'),
    ('K', lambda data: data[:2] + [[[1, 0], [0, 1]]], r'item 2 is a 2x2 array, expected a list of 3x3 camera'),
    ('scale', lambda data: data[:1] + [[0.1]] + data[2:], r'item 1 is a length-1 list, expected a list of 3 numbers'),
    ('xyz', lambda data: data[:1] + [data[1][:20] + [[0.0, 0.0]]] + data[2:], r'item 1 is a ragged or non-numeric'),
    ('scale', lambda data: data[:2] + ['0.1'], r'item 2 is a string, expected a list of 3 numbers'),
    ('scale', lambda data: data[:2] + [None], r'item 2 is null, expected a list of 3 numbers'),
    ('xyz', lambda data: data[:2] + [[[float('nan')] * 3] + data[2][1:]],
     r'item 2 holds a non-finite value \(NaN or Infinity\), expected a list of 3 21x3 joint arrays'),
    ('xyz', lambda data: {'xyz': data}, r'holds an object, expected a list of 3 21x3 joint arrays'),
])
def test_malformed_json_names_the_file_and_expectation(root, tmp_path, name, corrupt, pattern):
    broken = _copy_layout(root, tmp_path / 'malformed')
    path = osp.join(broken, f'training_{name}.json')
    _write(path, json.dumps(corrupt(_read(root, f'training_{name}'))))
    with pytest.raises(ValueError, match=re.escape(f'FreiHAND annotation "{path}"') + '.*' + pattern):
        FreiHANDDataset(broken)


def test_not_json_names_the_file(root, tmp_path):
    broken = _copy_layout(root, tmp_path / 'truncated')
    path = osp.join(broken, 'training_verts.json')
    with open(osp.join(root, 'training_verts.json')) as f:
        _write(path, f.read()[:1000])
    with pytest.raises(ValueError, match=re.escape(f'"{path}" is not valid JSON') + r'.*expected a list of 3 778x3'):
        FreiHANDDataset(broken)


def test_load_freihand_json_accepts_flat_mano(tmp_path):
    path = str(tmp_path / 'mano.json')
    _write(path, json.dumps([[0.5] * 61, [[0.25] * 61]]))
    array = load_freihand_json(path, 'mano', 2)
    assert array.shape == (2, 61) and array.dtype == np.float32 and not array.flags.writeable
    np.testing.assert_array_equal(array[:, 0], [0.5, 0.25])


def test_missing_image_of_a_version_names_it(root, tmp_path):
    broken = _copy_layout(root, tmp_path / 'images', skip=())
    os.unlink(osp.join(broken, 'training'))
    shutil.copytree(osp.join(root, 'training'), osp.join(broken, 'training'))
    last = osp.join(broken, 'training', 'rgb', '%08d.jpg' % (4 * NUM_TRAIN - 1))
    os.remove(last)
    assert len(FreiHANDDataset(broken, versions=(0, 1, 2))) == 3 * NUM_TRAIN
    with pytest.raises(FileNotFoundError, match=re.escape(f'"{last}" is missing (id {NUM_TRAIN - 1}, version 3')):
        FreiHANDDataset(broken)


def test_bad_arguments(root, tmp_path):
    with pytest.raises(ValueError, match=r'split "train" is not one of \[\'training\', \'evaluation\'\]'):
        FreiHANDDataset(root, split='train')
    with pytest.raises(ValueError, match=r'training versions \(0, 4\) must be distinct values of \[0, 1, 2, 3\]'):
        FreiHANDDataset(root, versions=(0, 4))
    with pytest.raises(ValueError, match=r'versions \(0, 0\)'):
        FreiHANDDataset(root, versions=(0, 0))
    with pytest.raises(ValueError, match=r'evaluation versions \(1,\) must be distinct values of \[0\]'):
        FreiHANDDataset(root, split='evaluation', versions=(1, ))
    with pytest.raises(FileNotFoundError, match='data_root ".*nowhere" is not a folder'):
        FreiHANDDataset(str(tmp_path / 'nowhere'))


@pytest.mark.parametrize('chunk_chars', [1, 2, 3, 7, 64, 1 << 20])
def test_json_list_reader_matches_json_across_chunk_boundaries(chunk_chars):
    rng = np.random.default_rng(chunk_chars)
    data = [rng.normal(0, 1, (4, 3)).tolist(), [[1, 2.5e-7, -3e+2]], 0.125, -17, [], [[[0.5]]]]
    for text in (json.dumps(data), json.dumps(data, indent=2), ' \n' + json.dumps(data).replace(',', ' ,\n\t') + '\n',
                 '[]', ' [ 1 ] '):
        assert list(_JSONListReader(io.StringIO(text), chunk_chars)) == json.loads(text)


@pytest.mark.parametrize('text,message', [
    ('[[1, 2], [3, 4]', 'the file ends after item 1 without closing the list'),
    ('[[1, 2], [3, 4', 'in item 1'),
    ('[[1, 2] [3, 4]]', "expected ',' or ']' after item 0 at character 8"),
    ('[[1, 2], [3, 4]] x', 'extra data after the list at character 17'),
    ('[[1, 2], [3, x]]', "Expecting value at character 13, in item 1"),
    ('[[1, 2],', 'the file ends inside item 1'),
])
def test_json_list_reader_locates_syntax_errors(text, message):
    for chunk_chars in (1, 5, 1 << 20):
        with pytest.raises(ValueError, match=re.escape(message)):
            list(_JSONListReader(io.StringIO(text), chunk_chars))
