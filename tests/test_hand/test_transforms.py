"""FreiHAND transforms: the crop and its rotation agree between the image, the 2D joints, the 3D joints / vertices
and the global orientation; colour noise; packing (fields, dtypes, RGB)."""
import math
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmcv.transforms import LoadImageFromFile
from mmengine.dataset import Compose
from mmengine.structures import BaseDataElement

from mmfastvit.datasets.synthetic.freihand import make_tiny_freihand
from mmfastvit.hand import MANOLayer, make_synthetic_mano
from mmfastvit.hand.conventions import freihand_to_full_pose
from mmfastvit.hand.dataset import FreiHANDDataset
from mmfastvit.hand.rotation import axis_angle_to_matrix
from mmfastvit.hand.transforms import (HandColorNoise, HandCropAffine, HandPoseFromMANO, PackHandInputs,
                                       apply_affine, hand_crop_matrix, project, rotation_about_optical_axis)

FOCAL = 480.0
K = np.array([[FOCAL, 0.0, 112.0], [0.0, FOCAL, 112.0], [0.0, 0.0, 1.0]])
CASES = [(0.0, 1.0), (37.0, 1.0), (-120.0, 0.8), (180.0, 1.25), (75.0, 0.75)]  # (rotation in degrees, scale)


@pytest.fixture(scope='module')
def mano_path(tmp_path_factory):
    return make_synthetic_mano(str(tmp_path_factory.mktemp('mano') / 'MANO_RIGHT.pkl'))


@pytest.fixture(scope='module')
def mano(mano_path):
    return MANOLayer(mano_path).double()


@pytest.fixture(scope='module')
def hand(mano):
    """One annotated sample whose vertices and joints are MANO's for its parameters, ~0.6 m in front of the camera."""
    rng = np.random.default_rng(3)
    params = np.zeros(61)
    params[:3] = rng.normal(0.0, 1.0, 3)
    params[3:48] = rng.normal(0.0, 0.2, 45)
    params[48:58] = rng.normal(0.0, 0.5, 10)
    full_pose = freihand_to_full_pose(torch.from_numpy(params), mano.hands_mean.double())
    with torch.no_grad():
        out = mano(axis_angle_to_matrix(full_pose)[None], torch.from_numpy(params[None, 48:58]))
    vertices, joints = out['vertices'][0].numpy(), out['joints'][0].numpy()
    shift = np.array([0.0, 0.0, 0.6]) - vertices.mean(0)
    return dict(img_path='hand.jpg', sample_idx=0, id=0, version=0, K=K.astype(np.float32),
                joints_3d=(joints + shift).astype(np.float32), vertices=(vertices + shift).astype(np.float32),
                mano=params.astype(np.float32), scale=float(np.linalg.norm(joints[9] - joints[10])))


def _with_image(sample, img):
    sample = {key: value.copy() if isinstance(value, np.ndarray) else value for key, value in sample.items()}
    sample['img'] = img
    return sample


def _blob(uv, size=224, sigma=2.0):
    """A bright Gaussian dot centred at continuous pixel coordinates ``uv``."""
    centres = np.arange(size) + 0.5
    d2 = (centres[None, :] - uv[0]) ** 2 + (centres[:, None] - uv[1]) ** 2
    return np.repeat(np.rint(255 * np.exp(-d2 / (2 * sigma**2)))[..., None], 3, axis=2).astype(np.uint8)


def _centroid(img):
    weight = img[..., 0].astype(np.float64)
    weight[weight < 8] = 0
    v, u = np.mgrid[:img.shape[0], :img.shape[1]] + 0.5
    return np.array([(weight * u).sum(), (weight * v).sum()]) / weight.sum()


def test_crop_matrix_maps_the_box_onto_the_crop():
    np.testing.assert_allclose(hand_crop_matrix((112, 112), 224, 224), np.eye(3), atol=1e-12)
    matrix = hand_crop_matrix((112, 112), 180, 224, rotation=0.0, scale=1.0)
    np.testing.assert_allclose(apply_affine(matrix, np.array([[22.0, 22.0], [202.0, 202.0], [112.0, 112.0]])),
                               [[0, 0], [224, 224], [112, 112]], atol=1e-9)
    # positive angles turn +u (right) towards +v (down); a larger scale is a larger box
    matrix = hand_crop_matrix((112, 112), 180, 224, rotation=90.0, scale=1.25)
    np.testing.assert_allclose(apply_affine(matrix, np.array([[112.0 + 90.0, 112.0]])), [[112.0, 112.0 + 89.6]],
                               atol=1e-9)


@pytest.mark.parametrize('rotation,scale', CASES)
def test_image_dot_lands_on_the_transformed_joint(hand, rotation, scale):
    uv = project(hand['joints_3d'].astype(np.float64), K)
    distance = np.linalg.norm(uv - 112.0, axis=1)
    joint = int(np.argmax(np.where(distance < 60, distance, -1)))  # far from the centre, inside every crop
    assert distance[joint] > 25
    out = HandCropAffine().crop(_with_image(hand, _blob(uv[joint])), rotation, scale)
    assert out['img'].shape == (224, 224, 3) and out['img_shape'] == (224, 224)
    found = _centroid(out['img'])
    assert np.linalg.norm(found - out['joints_2d'][joint]) < 1.5, (found, out['joints_2d'][joint])
    if rotation not in (0.0, 180.0):  # and a crop rotated the other way would put it elsewhere
        mirrored = HandCropAffine().crop(_with_image(hand, _blob(uv[joint])), -rotation, scale)['joints_2d'][joint]
        assert np.linalg.norm(found - mirrored) > 10


@pytest.mark.parametrize('rotation,scale', CASES)
def test_rotated_3d_points_project_onto_the_transformed_2d_points(hand, rotation, scale):
    out = HandCropAffine().crop(_with_image(hand, np.zeros((224, 224, 3), np.uint8)), rotation, scale)
    # the crop's intrinsics: zoom f on the focal length, principal point mapped by the crop, no rotation or skew
    zoom = 224 / (180 * scale)
    principal = apply_affine(out['crop_matrix'].astype(np.float64), K[:2, 2][None])[0]
    crop_K = np.array([[zoom * FOCAL, 0.0, principal[0]], [0.0, zoom * FOCAL, principal[1]], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(project(out['joints_3d'].astype(np.float64), crop_K), out['joints_2d'], atol=2e-3)
    expected_vertices_2d = apply_affine(out['crop_matrix'], project(hand['vertices'].astype(np.float64), K))
    np.testing.assert_allclose(project(out['vertices'].astype(np.float64), crop_K), expected_vertices_2d, atol=2e-3)
    np.testing.assert_allclose(out['hand_rotation'], rotation_about_optical_axis(rotation), atol=1e-12)
    if rotation not in (0.0, 180.0):  # the opposite sign does not match
        wrong = hand['joints_3d'].astype(np.float64) @ rotation_about_optical_axis(rotation)
        assert np.abs(project(wrong, crop_K) - out['joints_2d']).max() > 5


@pytest.mark.parametrize('rotation', [0.0, 100.0, -45.0])
def test_rotated_global_orientation_poses_the_rotated_mesh(hand, mano, mano_path, rotation):
    results = HandPoseFromMANO(mano_path)(_with_image(hand, np.zeros((224, 224, 3), np.uint8)))
    sample = PackHandInputs()(HandCropAffine().crop(results, rotation, 1.1))['data_samples']
    with torch.no_grad():
        out = mano(sample.gt_pose[None].double(), sample.gt_betas[None].double())
    root = out['joints'][0, 0]
    np.testing.assert_allclose((out['vertices'][0] - root).numpy(), sample.gt_vertices.numpy(), atol=2e-6)
    np.testing.assert_allclose((out['joints'][0] - root).numpy(), sample.gt_joints.numpy(), atol=2e-6)
    # the targets are the original root-relative mesh rotated about the optical axis
    rot = rotation_about_optical_axis(rotation)
    original = (hand['vertices'] - hand['joints_3d'][0]).astype(np.float64) @ rot.T
    np.testing.assert_allclose(sample.gt_vertices.numpy(), original, atol=2e-6)


def test_pose_targets_and_step_order(hand, mano_path):
    img = np.zeros((224, 224, 3), np.uint8)
    posed = HandPoseFromMANO(mano_path)(_with_image(hand, img))
    hands_mean = torch.as_tensor(MANOLayer(mano_path).hands_mean, dtype=torch.float64)
    params = torch.from_numpy(hand['mano'].astype(np.float64))
    expected = axis_angle_to_matrix(torch.cat([params[:3], params[3:48] + hands_mean]).reshape(16, 3))
    assert posed['pose'].shape == (16, 3, 3) and posed['pose'].dtype == np.float32
    np.testing.assert_allclose(posed['pose'], expected.numpy(), atol=1e-6)
    np.testing.assert_allclose(posed['betas'], hand['mano'][48:58])
    # pose-then-crop and crop-then-pose give the same targets
    first = HandCropAffine().crop(HandPoseFromMANO(mano_path)(_with_image(hand, img)), 60.0, 1.0)
    second = HandPoseFromMANO(mano_path)(HandCropAffine().crop(_with_image(hand, img), 60.0, 1.0))
    np.testing.assert_allclose(first['pose'], second['pose'], atol=1e-6)
    assert not np.allclose(first['pose'][0], posed['pose'][0], atol=1e-2)
    np.testing.assert_allclose(first['pose'][1:], posed['pose'][1:])
    with pytest.raises(ValueError, match='already cropped'):
        HandCropAffine().crop(first, 0.0, 1.0)


def test_augmentation_draws_follow_the_recipe():
    crop = HandCropAffine(augment=True)
    np.random.seed(0)
    draws = np.array([crop.sample_augmentation() for _ in range(3000)])
    rotation, scale = draws[:, 0], draws[:, 1]
    assert 0.56 < np.mean(rotation == 0) < 0.64
    assert np.abs(rotation).max() == 180.0 and 0.005 < np.mean(np.abs(rotation) == 180.0) < 0.04
    nonzero = rotation[rotation != 0]
    assert 75 < np.std(np.clip(nonzero, -150, 150)) < 95
    assert scale.min() == 0.75 and scale.max() == 1.25 and 0.22 < np.mean((scale == 0.75) | (scale == 1.25)) < 0.4
    assert abs(np.mean(scale) - 1.0) < 0.02


def test_test_mode_is_deterministic(hand):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    first = HandCropAffine()(_with_image(hand, img))
    np.random.seed(1)
    second = HandCropAffine()(_with_image(hand, img))
    reference = HandCropAffine().crop(_with_image(hand, img), 0.0, 1.0)
    for out in (second, reference):
        np.testing.assert_array_equal(first['img'], out['img'])
        for key in ('joints_2d', 'joints_3d', 'vertices', 'crop_matrix'):
            np.testing.assert_array_equal(first[key], out[key])
    np.testing.assert_allclose(first['joints_3d'], hand['joints_3d'])  # no rotation in test mode
    # training mode does change things
    np.random.seed(5)
    outs = [HandCropAffine(augment=True)(_with_image(hand, img))['crop_matrix'] for _ in range(4)]
    assert not all(np.allclose(outs[0], out) for out in outs[1:])


def test_color_noise_is_a_bounded_per_channel_factor():
    img = np.full((8, 8, 3), 100, np.uint8)
    img[0, 0] = 250
    noise = HandColorNoise()
    np.random.seed(0)
    factors = []
    for _ in range(50):
        out = noise(dict(img=img.copy()))['img']
        assert out.dtype == np.uint8 and out.shape == img.shape
        factor = out[1, 1] / 100.0
        assert np.all((factor >= 0.6 - 0.005) & (factor <= 1.4 + 0.005))
        assert np.all(out[1:, 1:] == out[1, 1])  # one factor per channel
        assert np.all(np.abs(out[0, 0] - np.minimum(250 * factor, 255)) <= 2)  # clipped, not wrapped
        factors.append(factor)
    factors = np.array(factors)
    assert factors.std(0).min() > 0.15 and np.abs(factors[:, 0] - factors[:, 1]).max() > 0.1
    with pytest.raises(ValueError, match='factor_range'):
        HandColorNoise((1.4, 0.6))


def test_packed_sample_has_the_contract_fields(hand, mano_path):
    results = HandCropAffine().crop(HandPoseFromMANO(mano_path)(
        _with_image(hand, np.zeros((224, 224, 3), np.uint8))), 30.0, 0.9)
    packed = PackHandInputs()(results)
    assert set(packed) == {'inputs', 'data_samples'}
    inputs, sample = packed['inputs'], packed['data_samples']
    assert isinstance(sample, BaseDataElement)
    assert inputs.dtype == torch.uint8 and inputs.shape == (3, 224, 224)
    shapes = dict(gt_joints=(21, 3), gt_vertices=(778, 3), gt_joints_2d=(21, 2), gt_pose=(16, 3, 3), gt_betas=(10, ))
    assert set(sample.keys()) == set(shapes)
    for name, shape in shapes.items():
        value = sample.get(name)
        assert isinstance(value, torch.Tensor) and value.dtype == torch.float32 and tuple(value.shape) == shape, name
    assert torch.all(sample.gt_joints[0] == 0)
    root = sample.metainfo['root']
    np.testing.assert_allclose(root, results['joints_3d'][0])
    np.testing.assert_allclose(sample.gt_vertices.numpy() + root, results['vertices'], atol=1e-6)
    np.testing.assert_allclose(sample.gt_joints_2d.numpy(), results['joints_2d'] / 112.0 - 1.0, atol=1e-6)
    assert {'sample_idx', 'img_path', 'K', 'root', 'img_shape', 'crop_matrix'} <= set(sample.metainfo)
    assert sample.metainfo['img_shape'] == (224, 224) and sample.metainfo['crop_matrix'].shape == (3, 3)
    assert sample.metainfo['K'].shape == (3, 3) and sample.metainfo['sample_idx'] == 0
    # a missing step is named
    del results['pose']
    with pytest.raises(KeyError, match=r'"pose" \(from HandPoseFromMANO\)'):
        PackHandInputs()(results)


def test_packed_inputs_are_rgb(tmp_path):
    rgb = np.zeros((224, 224, 3), np.uint8)
    rgb[:, :112] = (255, 0, 0)  # red left half, blue right half
    rgb[:, 112:] = (0, 0, 255)
    path = str(tmp_path / 'red_blue.png')
    cv2.imwrite(path, rgb[..., ::-1])  # cv2 writes BGR
    results = LoadImageFromFile()(dict(img_path=path, sample_idx=3))
    packed = PackHandInputs()(HandCropAffine().crop(results, 0.0, 1.0))
    left, right = packed['inputs'][:, 112, 40], packed['inputs'][:, 112, 184]
    assert left.tolist() == [255, 0, 0] and right.tolist() == [0, 0, 255]
    assert not packed['data_samples'].keys()  # no annotations: metainfo only
    assert packed['data_samples'].metainfo['sample_idx'] == 3
    # an image already in RGB is kept as it is
    img = np.ascontiguousarray(rgb)
    assert PackHandInputs(channel_order='rgb')(dict(img=img))['inputs'][:, 0, 0].tolist() == [255, 0, 0]
    with pytest.raises(ValueError, match='channel_order "rgba"'):
        PackHandInputs(channel_order='rgba')


def _pipelines(mano_path):
    train = [
        dict(type='LoadImageFromFile'),
        dict(type='mmfastvit.HandPoseFromMANO', mano_path=mano_path),
        dict(type='mmfastvit.HandCropAffine', augment=True),
        dict(type='mmfastvit.HandColorNoise'),
        dict(type='mmfastvit.PackHandInputs'),
    ]
    test = [train[0], train[1], dict(type='mmfastvit.HandCropAffine'), train[-1]]
    return train, test


def test_dataset_pipelines(tmp_path):
    root = str(tmp_path)
    make_tiny_freihand(root, num_train=2, num_eval=2, eval_annotations=False)
    mano_path = osp.join(root, 'MANO_RIGHT.pkl')
    train, test = _pipelines(mano_path)
    np.random.seed(0)
    dataset = FreiHANDDataset(root, pipeline=train, indices=[0, 5])
    for idx in range(len(dataset)):
        packed = dataset[idx]
        sample = packed['data_samples']
        assert packed['inputs'].shape == (3, 224, 224) and packed['inputs'].dtype == torch.uint8
        assert sample.gt_pose.shape == (16, 3, 3) and sample.metainfo['sample_idx'] == idx
        assert torch.all(sample.gt_joints[0] == 0)
    assert dataset[1]['data_samples'].metainfo['img_path'].endswith('%08d.jpg' % 5)
    # the test pipeline is deterministic
    dataset = FreiHANDDataset(root, pipeline=test, test_mode=True)
    first, second = dataset[3], dataset[3]
    assert torch.equal(first['inputs'], second['inputs'])
    assert torch.equal(first['data_samples'].gt_vertices, second['data_samples'].gt_vertices)
    # the evaluation split without annotations packs the image and metainfo only
    packed = FreiHANDDataset(root, split='evaluation', pipeline=test, test_mode=True)[1]
    assert not packed['data_samples'].keys() and 'root' not in packed['data_samples'].metainfo
    assert packed['data_samples'].metainfo['img_path'].endswith(osp.join('evaluation', 'rgb', '00000001.jpg'))


def test_dataset_annotations_match_mano_after_augmentation(tmp_path):
    """The generated annotations are MANO's, so the packed targets are MANO's for the packed pose and betas."""
    root = str(tmp_path)
    make_tiny_freihand(root, num_train=2, num_eval=1)
    mano_path = osp.join(root, 'MANO_RIGHT.pkl')
    mano = MANOLayer(mano_path).double()
    dataset = FreiHANDDataset(root, versions=(1, ))
    load = Compose([LoadImageFromFile(), HandPoseFromMANO(mano_path)])
    for idx in range(len(dataset)):
        results = HandCropAffine().crop(load(dataset.get_data_info(idx)), rotation=-70.0 + 100 * idx, scale=1.1)
        sample = PackHandInputs()(results)['data_samples']
        with torch.no_grad():
            out = mano(sample.gt_pose[None].double(), sample.gt_betas[None].double())
        root_joint = out['joints'][0, 0]
        np.testing.assert_allclose((out['vertices'][0] - root_joint).numpy(), sample.gt_vertices.numpy(), atol=1e-5)
        np.testing.assert_allclose((out['joints'][0] - root_joint).numpy(), sample.gt_joints.numpy(), atol=1e-5)
        assert math.isfinite(float(sample.gt_joints_2d.abs().max()))
