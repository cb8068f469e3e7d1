"""MANORegressionHead: shapes, initialization (identity pose -> MANO's flat template), the weak-perspective
projection, the three losses (zero at the target, weights, types), predict and the MANO-free state dict."""
import pytest
import torch
from mmengine.model import BaseModule
from mmengine.structures import BaseDataElement

from mmfastvit.hand import MANOLayer, load_mano_file, make_synthetic_mano
from mmfastvit.hand.head import DEFAULT_CAMERA_SCALE, MANORegressionHead, weak_perspective_project
from mmfastvit.hand.rotation import axis_angle_to_matrix, matrix_to_rot6d
from mmfastvit.registry import MODELS

C = 16  # feature channels


@pytest.fixture(scope='module')
def mano_path(tmp_path_factory):
    path = tmp_path_factory.mktemp('mano') / 'MANO_RIGHT.pkl'
    make_synthetic_mano(str(path), seed=0)
    return str(path)


@pytest.fixture(scope='module')
def mano(mano_path):
    return MANOLayer(mano_path)


def _zero_weights_(head: MANORegressionHead) -> MANORegressionHead:
    with torch.no_grad():
        for fc in (head.fc_camera, head.fc_pose, head.fc_betas):
            fc.weight.zero_()
    return head


def _targets(mano, pose, betas, camera):
    """Root-relative MANO joints / vertices and their projection: what the head should output for these parameters."""
    out = mano(pose, betas)
    root = out['joints'][:, :1]
    joints, vertices = out['joints'] - root, out['vertices'] - root
    joints_2d = camera[:, None, :1] * (joints[..., :2] + camera[:, None, 1:])
    return joints, vertices, joints_2d


def _samples(joints, vertices, joints_2d):
    return [BaseDataElement(gt_joints=j, gt_vertices=v, gt_joints_2d=j2) for j, v, j2 in zip(joints, vertices,
                                                                                               joints_2d)]


def _known_parameters(batch=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    pose = axis_angle_to_matrix(torch.randn(batch, 16, 3, generator=gen) * 0.4)
    betas = torch.randn(batch, 10, generator=gen) * 0.5
    camera = torch.tensor([[9.0, 0.02, -0.03], [7.5, -0.01, 0.04]])[:batch]
    return pose, betas, camera


def test_output_shapes_for_vectors_maps_and_tuples(mano_path):
    head = MANORegressionHead(C, mano_path).eval()
    vector = torch.rand(3, C)
    expected = dict(camera=(3, 3), pose_6d=(3, 16, 6), pose=(3, 16, 3, 3), betas=(3, 10), vertices=(3, 778, 3),
                    joints=(3, 21, 3), joints_2d=(3, 21, 2))
    out = head(vector)
    assert {k: tuple(v.shape) for k, v in out.items()} == expected
    # a feature map is averaged over space; a tuple (what backbones return) gives its last entry
    feature_map = vector[:, :, None, None].expand(3, C, 2, 5)
    for feats in (feature_map, (torch.rand(3, 4), feature_map), [feature_map]):
        assert torch.allclose(head(feats)['vertices'], out['vertices'], atol=1e-6)


def test_registered_and_built_from_config(mano_path):
    head = MODELS.build(dict(type='mmfastvit.MANORegressionHead', in_channels=C, mano_path=mano_path))
    assert isinstance(head, MANORegressionHead) and isinstance(head, BaseModule)


def test_zero_weights_give_identity_pose_and_root_relative_flat_template(mano_path):
    head = _zero_weights_(MANORegressionHead(C, mano_path))
    out = head(torch.randn(2, C))
    assert torch.allclose(out['pose'], torch.eye(3).expand(2, 16, 3, 3), atol=1e-6)
    assert torch.equal(out['betas'], torch.zeros(2, 10))
    assert torch.allclose(out['camera'], torch.tensor([DEFAULT_CAMERA_SCALE, 0.0, 0.0]).expand(2, 3))
    # identity rotations and zero betas: MANO's template, moved so that the wrist (J_regressor row 0) is the origin
    data = load_mano_file(mano_path)
    template = torch.as_tensor(data['v_template'], dtype=torch.float32)
    wrist = torch.as_tensor(data['J_regressor'], dtype=torch.float32)[0] @ template
    expected = template - wrist
    assert torch.allclose(out['vertices'], expected.expand(2, 778, 3), atol=1e-6)
    assert torch.allclose(out['joints'][:, 0], torch.zeros(2, 3), atol=1e-7)


def test_default_initialization_is_small_weights_around_the_biases(mano_path):
    head = MANORegressionHead(C, mano_path)
    assert torch.equal(head.fc_pose.bias, torch.tensor([1.0, 0, 0, 0, 1, 0]).repeat(16))
    assert torch.equal(head.fc_betas.bias, torch.zeros(10))
    assert head.fc_camera.bias.tolist() == pytest.approx([2 * 500 / (180 * 0.6), 0, 0])
    for fc in (head.fc_camera, head.fc_pose, head.fc_betas):
        assert 0 < fc.weight.abs().max() < 0.01
    # mmengine's init_weights (the runner calls it) redoes the same, not its own defaults
    with torch.no_grad():
        head.fc_pose.bias.zero_()
    head.init_weights()
    assert torch.equal(head.fc_pose.bias, torch.tensor([1.0, 0, 0, 0, 1, 0]).repeat(16))


def test_mano_mean_and_explicit_pose_initialization(mano_path, mano):
    head = _zero_weights_(MANORegressionHead(C, mano_path, init_pose='mano_mean'))
    pose = head(torch.zeros(1, C))['pose'][0]
    assert torch.allclose(pose[0], torch.eye(3), atol=1e-6)
    assert torch.allclose(pose[1:], axis_angle_to_matrix(mano.hands_mean.float().view(15, 3)), atol=1e-5)

    rotations = axis_angle_to_matrix(torch.randn(16, 3) * 0.5)
    head = _zero_weights_(MANORegressionHead(C, mano_path, init_pose=matrix_to_rot6d(rotations).tolist()))
    assert torch.allclose(head(torch.zeros(1, C))['pose'][0], rotations, atol=1e-5)


def test_weak_perspective_projection_hand_computed():
    points = torch.tensor([[[0.1, 0.2, 5.0], [-0.05, 0.0, 1.0]]])
    camera = torch.tensor([[2.0, 0.5, -1.0]])
    # 2 * (0.1 + 0.5) = 1.2, 2 * (0.2 - 1) = -1.6; 2 * (-0.05 + 0.5) = 0.9, 2 * (0 - 1) = -2
    expected = torch.tensor([[[1.2, -1.6], [0.9, -2.0]]])
    assert torch.allclose(weak_perspective_project(points, camera), expected)


def test_head_projects_its_root_relative_joints_with_its_camera(mano_path):
    head = MANORegressionHead(C, mano_path, init_gain=1.0)
    out = head(torch.randn(2, C))
    s, tx, ty = out['camera'][1]
    manual = torch.stack([s * (out['joints'][1, :, 0] + tx), s * (out['joints'][1, :, 1] + ty)], dim=-1)
    assert torch.allclose(out['joints_2d'][1], manual, atol=1e-6)


def _head_producing(mano_path, pose, betas, camera, **kwargs):
    """A head whose zero weights and biases output exactly these parameters (one sample)."""
    head = _zero_weights_(MANORegressionHead(C, mano_path, **kwargs))
    with torch.no_grad():
        head.fc_pose.bias.copy_(matrix_to_rot6d(pose).reshape(-1))
        head.fc_betas.bias.copy_(betas)
        head.fc_camera.bias.copy_(camera)
    return head


def test_loss_is_zero_at_the_target_and_positive_elsewhere(mano_path, mano):
    pose, betas, camera = _known_parameters(batch=1)
    samples = _samples(*_targets(mano, pose, betas, camera))
    head = _head_producing(mano_path, pose[0], betas[0], camera[0])
    losses = head.loss(torch.randn(1, C), samples)
    assert set(losses) == {'loss_vertices', 'loss_joints', 'loss_joints_2d'}
    for value in losses.values():
        assert value.item() < 1e-6

    other_pose, other_betas, other_camera = _known_parameters(batch=1, seed=1)
    for wrong in (_head_producing(mano_path, other_pose[0], betas[0], camera[0]),
                  _head_producing(mano_path, pose[0], other_betas[0], camera[0])):
        losses = wrong.loss(torch.randn(1, C), samples)
        assert all(value.item() > 1e-4 for value in losses.values())
    # a wrong camera moves only the 2D joints
    losses = _head_producing(mano_path, pose[0], betas[0], camera[0] + 0.1).loss(torch.randn(1, C), samples)
    assert losses['loss_joints_2d'].item() > 1e-3 and losses['loss_vertices'].item() < 1e-6


def test_loss_weights_scale_each_term(mano_path, mano):
    pose, betas, camera = _known_parameters()
    samples = _samples(*_targets(mano, pose, betas, camera))
    feats = torch.randn(2, C)
    torch.manual_seed(0)
    base = MANORegressionHead(C, mano_path).loss(feats, samples)
    weights = dict(vertices=2.0, joints=0.5, joints_2d=3.0)
    torch.manual_seed(0)
    weighted = MANORegressionHead(C, mano_path, loss_weights=weights).loss(feats, samples)
    for term, weight in weights.items():
        assert weighted[f'loss_{term}'].item() == pytest.approx(weight * base[f'loss_{term}'].item(), rel=1e-5)
    torch.manual_seed(0)
    partial = MANORegressionHead(C, mano_path, loss_weights=dict(joints=0.0)).loss(feats, samples)
    assert partial['loss_joints'].item() == 0
    assert partial['loss_vertices'].item() == pytest.approx(base['loss_vertices'].item(), rel=1e-6)


def test_loss_types_l1_by_default_and_mse_on_request(mano_path, mano):
    pose, betas, camera = _known_parameters()
    samples = _samples(*_targets(mano, pose, betas, camera))
    feats = torch.randn(2, C)
    head = MANORegressionHead(C, mano_path, init_gain=0.5)
    out = head(feats)
    target = torch.stack([s.gt_joints for s in samples])
    l1 = head.loss_by_outputs(out, samples)
    assert l1['loss_joints'].item() == pytest.approx((out['joints'] - target).abs().mean().item(), rel=1e-5)
    head.loss_types = dict(head.loss_types, joints='mse')  # what loss_type=dict(joints='mse') builds
    mse = head.loss_by_outputs(out, samples)
    assert mse['loss_joints'].item() == pytest.approx((out['joints'] - target).pow(2).mean().item(), rel=1e-5)
    assert mse['loss_vertices'].item() == pytest.approx(l1['loss_vertices'].item())
    assert MANORegressionHead(C, mano_path, loss_type=dict(joints='mse')).loss_types == dict(
        vertices='l1', joints='mse', joints_2d='l1')


def test_loss_gradients_reach_the_features_and_every_layer(mano_path, mano):
    pose, betas, camera = _known_parameters()
    samples = _samples(*_targets(mano, pose, betas, camera))
    head = MANORegressionHead(C, mano_path)
    feats = torch.randn(2, C, requires_grad=True)
    sum(head.loss(feats, samples).values()).backward()
    assert feats.grad.abs().sum() > 0
    for fc in (head.fc_camera, head.fc_pose, head.fc_betas):
        assert fc.weight.grad.abs().sum() > 0 and fc.bias.grad.abs().sum() > 0


def test_predict_adds_the_predictions_to_the_data_samples(mano_path):
    head = MANORegressionHead(C, mano_path).eval()
    samples = [BaseDataElement(metainfo=dict(sample_idx=i)) for i in range(2)]
    results = head.predict(torch.randn(2, C), samples)
    assert results[1] is samples[1] and results[1].sample_idx == 1
    shapes = dict(pred_joints=(21, 3), pred_vertices=(778, 3), pred_joints_2d=(21, 2), pred_camera=(3,),
                  pred_pose=(16, 3, 3), pred_betas=(10,))
    for result in results + head.predict(torch.randn(2, C)):
        assert {key: tuple(result.get(key).shape) for key in shapes} == shapes
        assert not result.pred_vertices.requires_grad


def test_state_dict_leaves_mano_out(mano_path, tmp_path):
    head = MANORegressionHead(C, mano_path, init_gain=1.0)
    state = head.state_dict()
    assert sorted(state) == ['fc_betas.bias', 'fc_betas.weight', 'fc_camera.bias', 'fc_camera.weight',
                             'fc_pose.bias', 'fc_pose.weight']
    other_path = tmp_path / 'other.pkl'
    make_synthetic_mano(str(other_path), seed=1)
    other = MANORegressionHead(C, str(other_path))
    other.load_state_dict(state)  # strict: MANO is neither expected nor read
    assert torch.equal(other.fc_pose.weight, head.fc_pose.weight)
    # the loaded head keeps its own MANO file: same parameters, another mesh
    feats = torch.randn(1, C)
    assert torch.allclose(other(feats)['camera'], head(feats)['camera'])
    assert not torch.allclose(other(feats)['vertices'], head(feats)['vertices'])


def test_bad_arguments_and_inputs_are_named(mano_path):
    with pytest.raises(ValueError, match='in_channels'):
        MANORegressionHead(0, mano_path)
    with pytest.raises(ValueError, match=r"loss_type \"huber\".*\['l1', 'mse'\]"):
        MANORegressionHead(C, mano_path, loss_type='huber')
    with pytest.raises(ValueError, match='loss_weights has unknown terms'):
        MANORegressionHead(C, mano_path, loss_weights=dict(vertex=1.0))
    with pytest.raises(ValueError, match='init_pose'):
        MANORegressionHead(C, mano_path, init_pose=[1.0] * 90)
    with pytest.raises(ValueError, match='init_pose "flat"'):
        MANORegressionHead(C, mano_path, init_pose='flat')
    with pytest.raises(ValueError, match='init_camera'):
        MANORegressionHead(C, mano_path, init_camera=(1.0, 0.0))
    head = MANORegressionHead(C, mano_path)
    with pytest.raises(ValueError, match=r'in_channels=16.*got \(2, 8\)'):
        head(torch.rand(2, 8))
    samples = [BaseDataElement(gt_joints=torch.zeros(21, 3), gt_joints_2d=torch.zeros(21, 2))]
    with pytest.raises(KeyError, match=r'data_samples\[0\] has no "gt_vertices"'):
        head.loss(torch.rand(1, C), samples)
    samples[0].gt_vertices = torch.zeros(21, 3)
    with pytest.raises(ValueError, match=r'gt_vertices has shape \(21, 3\), expected \(778, 3\)'):
        head.loss(torch.rand(1, C), samples)
    with pytest.raises(ValueError, match='1 data_samples for a batch of 2'):
        head.predict(torch.rand(2, C), samples)
