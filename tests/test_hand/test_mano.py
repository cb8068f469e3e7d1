"""MANO: the synthetic file is valid and readable by smplx, the chumpy-free reader (chumpy and old-scipy structures,
bad files with errors naming file and key, refused globals), the layer against an independent numpy linear blend
skinning, FreiHAND's official joints, the FreiHAND parameter helpers, and the MANO-free state dict."""
import contextlib
import io
import os
import pickle
import pickletools
import sys
import types

import numpy as np
import pytest
import torch

from mmfastvit.datasets.synthetic.mano import make_synthetic_mano, synthetic_mano_params
from mmfastvit.hand.conventions import (MANO_PARENTS, MANO_TIP_VERTICES, MANO_TO_FREIHAND, freihand_to_full_pose,
                                        official_joints, split_freihand_mano)
from mmfastvit.hand.mano import MANOLayer
from mmfastvit.hand.mano_file import MANO_SHAPES, load_mano_file
from mmfastvit.hand.rotation import axis_angle_to_matrix

from .mano_files import save_chumpy_style_mano

F64 = torch.float64
# FreiHAND joint -> its source, written out from the joint orders (not from MANO_TO_FREIHAND): ('J', i) is MANO joint i
# regressed from the posed mesh, ('V', v) is mesh vertex v.
FREIHAND_SOURCES = (
    ('J', 0),  # wrist
    ('J', 13), ('J', 14), ('J', 15), ('V', 744),  # thumb
    ('J', 1), ('J', 2), ('J', 3), ('V', 320),  # index
    ('J', 4), ('J', 5), ('J', 6), ('V', 443),  # middle
    ('J', 10), ('J', 11), ('J', 12), ('V', 555),  # ring
    ('J', 7), ('J', 8), ('J', 9), ('V', 672),  # pinky
)


@pytest.fixture(scope='module')
def mano_path(tmp_path_factory):
    return make_synthetic_mano(str(tmp_path_factory.mktemp('mano') / 'MANO_RIGHT.pkl'), seed=0)


@pytest.fixture(scope='module')
def params(mano_path):
    return load_mano_file(mano_path)


@pytest.fixture(scope='module')
def layer(mano_path):
    return MANOLayer(mano_path, dtype=F64)


def _random_pose(batch, seed, scale=0.6):
    gen = torch.Generator().manual_seed(seed)
    aa = torch.randn(batch, 16, 3, generator=gen, dtype=F64) * scale
    betas = torch.randn(batch, 10, generator=gen, dtype=F64)
    return axis_angle_to_matrix(aa), betas


def _numpy_mano(p, R, betas):
    """Linear blend skinning written out: shape blend, pose blend on (R - I) of joints 1..15, joints regressed from
    the shaped template, the kinematic chain, skinning; then FreiHAND's 21 joints from FREIHAND_SOURCES."""
    v_shaped = p['v_template'] + p['shapedirs'] @ betas
    J = p['J_regressor'] @ v_shaped
    features = (R[1:] - np.eye(3)).reshape(-1)
    v_posed = v_shaped + p['posedirs'] @ features
    parents = p['kintree_table'][0]
    world = [None] * 16
    for i in range(16):
        local = np.eye(4)
        local[:3, :3] = R[i]
        local[:3, 3] = J[i] - (J[parents[i]] if i else 0.0)
        world[i] = local if i == 0 else world[parents[i]] @ local
    skinning = []
    for i in range(16):  # the transform that takes the rest pose to the posed one
        A = world[i].copy()
        A[:3, 3] -= world[i][:3, :3] @ J[i]
        skinning.append(A)
    T = np.einsum('vj,jab->vab', p['weights'], np.stack(skinning))
    verts = np.einsum('vab,vb->va', T[:, :3, :3], v_posed) + T[:, :3, 3]
    regressed = p['J_regressor'] @ verts
    joints = np.stack([regressed[i] if kind == 'J' else verts[i] for kind, i in FREIHAND_SOURCES])
    return verts, joints


# ---------------------------------------------------------------------------------------------------------------------
# The synthetic file


def test_synthetic_mano_is_valid(params):
    assert set(params) == set(MANO_SHAPES)
    for key, shape in MANO_SHAPES.items():
        assert params[key].shape == shape, key
    assert params['kintree_table'][0].tolist() == list(MANO_PARENTS) == [-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0,
                                                                         13, 14]
    assert params['kintree_table'][1].tolist() == list(range(16))
    weights, regressor = params['weights'], params['J_regressor']
    assert (weights > 0).all() and np.allclose(weights.sum(1), 1.0)
    assert (regressor >= 0).all() and np.allclose(regressor.sum(1), 1.0)
    assert ((regressor > 0).sum(1) <= 20).all()  # concentrated on a few vertices
    v = params['v_template']
    extent = v.max(0) - v.min(0)
    assert 0.12 < extent.max() < 0.25 and extent.min() > 0.01  # hand-sized, in metres
    joints = regressor @ v
    bones = np.linalg.norm(joints[1:] - joints[np.array(MANO_PARENTS[1:])], axis=1)
    assert (bones > 0.01).all() and (bones < 0.1).all()
    # each regressed joint is near the vertices it is regressed from
    for j in range(16):
        support = v[regressor[j] > 0]
        assert np.linalg.norm(support - joints[j], axis=1).max() < 0.025
    # the fingertip vertices are the farthest points of their fingers from the wrist
    wrist = joints[0]
    for tip, joint in zip(MANO_TIP_VERTICES, (15, 3, 6, 12, 9)):
        assert np.linalg.norm(v[tip] - wrist) > np.linalg.norm(joints[joint] - wrist)
    assert params['f'].min() >= 0 and params['f'].max() < 778
    assert (np.diff(np.sort(params['f'], axis=1), axis=1) > 0).all()  # no degenerate triangle
    np.testing.assert_allclose(params['hands_components'] @ params['hands_components'].T, np.eye(45), atol=1e-12)


def test_synthetic_mano_is_deterministic_and_plain_numpy(tmp_path, mano_path):
    again = make_synthetic_mano(str(tmp_path / 'again.pkl'), seed=0)
    other = make_synthetic_mano(str(tmp_path / 'sub' / 'other.pkl'), seed=1)
    with open(mano_path, 'rb') as a, open(again, 'rb') as b:
        assert a.read() == b.read()
    assert not np.allclose(load_mano_file(other)['v_template'], load_mano_file(mano_path)['v_template'])
    with open(mano_path, 'rb') as f:
        plain = pickle.load(f)
    assert all(type(value) is np.ndarray for value in plain.values())


def test_smplx_reads_the_synthetic_file_itself(mano_path, layer):
    import smplx
    with contextlib.redirect_stdout(io.StringIO()):
        model = smplx.MANO(mano_path, use_pca=False, flat_hand_mean=True)
    pose, betas = _random_pose(1, 0)
    from mmfastvit.hand.rotation import matrix_to_axis_angle
    aa = matrix_to_axis_angle(pose).float()
    out = model(betas=betas.float(), global_orient=aa[:, 0], hand_pose=aa[:, 1:].reshape(1, 45))
    torch.testing.assert_close(out.vertices.double(), layer(pose, betas)['vertices'], atol=2e-6, rtol=0)


# ---------------------------------------------------------------------------------------------------------------------
# Reading


def test_chumpy_style_file_equals_the_plain_one(tmp_path, mano_path, params):
    path = save_chumpy_style_mano(str(tmp_path / 'MANO_RIGHT.pkl'), synthetic_mano_params(0))
    with open(path, 'rb') as f:
        names = {arg for op, arg, _ in pickletools.genops(f.read()) if op.name == 'GLOBAL'}
    # the structure of the official file: chumpy objects, an old-scipy sparse regressor, Python 2 builtins
    assert {'chumpy.ch Ch', 'scipy.sparse.csc csc_matrix', '__builtin__ set'} <= names
    assert 'chumpy' not in sys.modules and 'chumpy.ch' not in sys.modules  # the writer put back sys.modules
    loaded = load_mano_file(path)
    assert set(loaded) == set(params)
    for key in params:
        assert loaded[key].dtype == params[key].dtype, key
        np.testing.assert_array_equal(loaded[key], params[key], err_msg=key)
    # and smplx gets the same model from it
    out = MANOLayer(path, dtype=F64)(*_random_pose(2, 1))
    ref = MANOLayer(mano_path, dtype=F64)(*_random_pose(2, 1))
    torch.testing.assert_close(out['vertices'], ref['vertices'], atol=0, rtol=0)


def test_modern_scipy_sparse_regressor_is_densified(tmp_path, params):
    scipy_sparse = pytest.importorskip('scipy.sparse')
    content = dict(params)
    for key, fmt in (('J_regressor', 'csr'), ):
        content[key] = getattr(scipy_sparse, f'{fmt}_matrix')(params[key])
    path = tmp_path / 'sparse.pkl'
    path.write_bytes(pickle.dumps(content))
    np.testing.assert_array_equal(load_mano_file(str(path))['J_regressor'], params['J_regressor'])


def test_chumpy_object_without_an_array_is_a_clear_error(tmp_path, monkeypatch, params):
    Ch = type('Ch', (), {'__module__': 'chumpy.ch', '__qualname__': 'Ch',
                         '__getstate__': lambda self: {'a': 1, '_dirty_vars': set()}})
    module = types.ModuleType('chumpy.ch')
    module.Ch = Ch
    content = dict(params, shapedirs=Ch())
    monkeypatch.setitem(sys.modules, 'chumpy', types.ModuleType('chumpy'))
    monkeypatch.setitem(sys.modules, 'chumpy.ch', module)
    data = pickle.dumps(content, protocol=2)
    monkeypatch.undo()
    path = tmp_path / 'noarray.pkl'
    path.write_bytes(data)
    with pytest.raises(ValueError, match=r"noarray\.pkl: key 'shapedirs' holds a chumpy chumpy\.ch\.Ch object "
                       r"without an array: its pickled state has no \"x\" \(keys: \['_dirty_vars', 'a'\]\)"):
        load_mano_file(str(path))


def test_missing_file_says_where_to_get_mano(tmp_path):
    missing = str(tmp_path / 'nowhere' / 'MANO_RIGHT.pkl')
    for load in (load_mano_file, MANOLayer):
        with pytest.raises(FileNotFoundError) as info:
            load(missing)
        assert missing in str(info.value) and 'https://mano.is.tue.mpg.de' in str(info.value)
        assert 'licence' in str(info.value) and 'mano_path' in str(info.value)


def _write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(pickle.dumps(content))
    return str(path)


@pytest.mark.parametrize('key,bad,message', [
    ('shapedirs', np.zeros((778, 3, 9)), r"key 'shapedirs' has shape \(778, 3, 9\), expected \(778, 3, 10\)"),
    ('J_regressor', np.zeros((21, 778)), r"key 'J_regressor' has shape \(21, 778\), expected \(16, 778\)"),
    ('f', np.zeros((1538, 4), dtype=np.int64), r"key 'f' has shape \(1538, 4\), expected \(1538, 3\)"),
    ('f', np.full((1538, 3), 778), r"key 'f' has vertex ids outside \[0, 778\)"),
    ('f', np.full((1538, 3), 0.5), r"key 'f' must hold integers"),
    ('v_template', np.full((778, 3), np.nan), r"key 'v_template' holds NaN"),
    ('hands_mean', 'mean', r"key 'hands_mean' has shape \(\), expected \(45,\)"),
    ('kintree_table', np.stack([np.arange(-1, 15), np.arange(16)]), r"key 'kintree_table' has parents \[-1, 0, 1, 2, "
     r"3, .*expected MANO's \[-1, 0, 1, 2, 0"),
])
def test_bad_arrays_are_named(tmp_path, params, key, bad, message):
    path = _write(tmp_path, 'bad.pkl', dict(params, **{key: bad}))
    with pytest.raises(ValueError, match='bad.pkl: ' + message):
        load_mano_file(path)


def test_bad_files(tmp_path, params):
    content = {k: v for k, v in params.items() if k not in ('posedirs', 'weights')}
    with pytest.raises(ValueError, match=r"missing\.pkl: missing MANO key\(s\) \['posedirs', 'weights'\]"):
        load_mano_file(_write(tmp_path, 'missing.pkl', content))
    with pytest.raises(ValueError, match=r'list\.pkl: a MANO file holds a dict of arrays, got list'):
        load_mano_file(_write(tmp_path, 'list.pkl', [1, 2]))
    whole = pickle.dumps(params)
    (tmp_path / 'cut.pkl').write_bytes(whole[:len(whole) // 2])
    with pytest.raises(ValueError, match=r'cut\.pkl: not a readable MANO pickle'):
        load_mano_file(str(tmp_path / 'cut.pkl'))


class _Sneaky:

    def __reduce__(self):
        return (os.getcwd, ())


def test_globals_a_mano_file_never_holds_are_refused(tmp_path, params):
    path = _write(tmp_path, 'sneaky.pkl', dict(params, extra=_Sneaky()))
    with pytest.raises(pickle.UnpicklingError, match=r'sneaky\.pkl: refusing to load the global (posix|os|nt)\.getcwd'):
        load_mano_file(path)


# ---------------------------------------------------------------------------------------------------------------------
# The layer


def test_layer_matches_numpy_linear_blend_skinning(layer, params):
    # smplx stores the arrays through float32 (smplx.utils.to_np); the reference uses the same rounded values.
    rounded = {k: v.astype(np.float32).astype(np.float64) if v.dtype == np.float64 else v for k, v in params.items()}
    pose, betas = _random_pose(3, seed=10, scale=0.8)
    out = layer(pose, betas)
    assert out['vertices'].shape == (3, 778, 3) and out['joints'].shape == (3, 21, 3)
    assert out['vertices'].dtype == F64
    for b in range(3):
        verts, joints = _numpy_mano(rounded, pose[b].numpy(), betas[b].numpy())
        np.testing.assert_allclose(out['vertices'][b].numpy(), verts, atol=1e-12, rtol=0)
        np.testing.assert_allclose(out['joints'][b].numpy(), joints, atol=1e-12, rtol=0)
    # and against the file's own float64 values, to float32 precision
    verts, _ = _numpy_mano(params, pose[0].numpy(), betas[0].numpy())
    np.testing.assert_allclose(out['vertices'][0].numpy(), verts, atol=1e-6, rtol=0)


def test_identity_pose_gives_the_flat_template_and_hands_mean_is_not_added(layer, params):
    out = layer(torch.eye(3, dtype=F64).expand(2, 16, 3, 3), torch.zeros(2, 10, dtype=F64))
    np.testing.assert_allclose(out['vertices'][1].numpy(), params['v_template'], atol=1e-7, rtol=0)
    np.testing.assert_allclose(layer.hands_mean.numpy(), params['hands_mean'], atol=0, rtol=0)
    assert torch.equal(layer.faces, torch.from_numpy(params['f'])) and layer.faces.dtype == torch.long


def test_official_joints_are_regressor_rows_and_tips_in_freihand_order(layer, params):
    assert list(MANO_TO_FREIHAND) == [0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20]
    assert MANO_TIP_VERTICES == (744, 320, 443, 555, 672)
    verts = torch.randn(2, 778, 3, dtype=F64, generator=torch.Generator().manual_seed(3))
    regressor = torch.from_numpy(params['J_regressor'])
    joints = official_joints(verts, regressor)
    regressed = regressor @ verts
    for index, (kind, source) in enumerate(FREIHAND_SOURCES):
        expected = regressed[:, source] if kind == 'J' else verts[:, source]
        torch.testing.assert_close(joints[:, index], expected, atol=1e-15, rtol=0)
    pose, betas = _random_pose(2, seed=11)
    out = layer(pose, betas)
    torch.testing.assert_close(out['joints'], official_joints(out['vertices'], layer.J_regressor), atol=0, rtol=0)
    with pytest.raises(ValueError, match=r'vertices must be \[\.\.\., 778, 3\], got \[2, 777, 3\]'):
        official_joints(verts[:, :777], regressor)


def test_gradients_reach_pose_and_betas(mano_path):
    layer = MANOLayer(mano_path)  # float32, as in training
    pose, betas = _random_pose(2, seed=12)
    pose, betas = pose.float().requires_grad_(), betas.float().requires_grad_()
    out = layer(pose, betas)
    (out['vertices'].square().sum() + out['joints'].sum()).backward()
    for grad in (pose.grad, betas.grad):
        assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_no_parameters_and_no_mano_arrays_in_the_state_dict(layer):
    assert list(layer.parameters()) == []
    assert list(layer.state_dict()) == []
    assert layer.hands_mean.shape == (45, ) and layer.faces.shape == (1538, 3)
    moved = MANOLayer(layer.model_path).double()
    assert moved.mano.v_template.dtype == F64 and moved.hands_mean.dtype == F64 and moved.faces.dtype == torch.long


def test_layer_rejects_bad_inputs(layer):
    with pytest.raises(ValueError, match=r'pose must be a \[B, 16, 3, 3\] tensor of rotation matrices.*'
                       r'got \[2, 16, 3\]'):
        layer(torch.zeros(2, 16, 3, dtype=F64), torch.zeros(2, 10, dtype=F64))
    with pytest.raises(ValueError, match=r'betas must be a \[B, 10\] tensor with B = 2 as in pose, got \[1, 10\]'):
        layer(torch.eye(3, dtype=F64).expand(2, 16, 3, 3), torch.zeros(1, 10, dtype=F64))


# ---------------------------------------------------------------------------------------------------------------------
# FreiHAND's parameters


def test_freihand_to_full_pose_adds_the_mean_to_the_fingers_only():
    gen = torch.Generator().manual_seed(5)
    params61 = torch.randn(2, 3, 61, generator=gen, dtype=F64)
    mean = torch.randn(45, generator=gen, dtype=F64)
    full = freihand_to_full_pose(params61, mean)
    assert full.shape == (2, 3, 16, 3)
    torch.testing.assert_close(full[..., 0, :], params61[..., 0:3], atol=0, rtol=0)
    torch.testing.assert_close(full[..., 1:, :].reshape(2, 3, 45), params61[..., 3:48] + mean, atol=0, rtol=0)
    torch.testing.assert_close(freihand_to_full_pose(params61[..., :48], mean), full, atol=0, rtol=0)
    with pytest.raises(ValueError, match=r'\[\.\.\., 61\] or \[\.\.\., 48\] tensor, got \[3, 58\]'):
        freihand_to_full_pose(params61[0, :, :58], mean)
    with pytest.raises(ValueError, match=r'hands_mean must be a \[45\] tensor, got \[15, 3\]'):
        freihand_to_full_pose(params61, mean.view(15, 3))


def test_split_freihand_mano():
    values = torch.arange(61.0).expand(2, 61)
    parts = split_freihand_mano(values)
    assert {k: v.shape[-1] for k, v in parts.items()} == dict(pose=48, betas=10, uv_root=2, scale=1)
    assert parts['betas'][0, 0] == 48 and parts['uv_root'][0].tolist() == [58, 59] and parts['scale'][0, 0] == 60
    with pytest.raises(ValueError, match=r'\[\.\.\., 61\] tensor, got \[48\]'):
        split_freihand_mano(torch.zeros(48))
