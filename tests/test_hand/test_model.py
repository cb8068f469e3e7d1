"""HandMeshEstimator with a small FastViT: the three modes, the data preprocessor, gradients into the backbone, the
fused model predicting the same mesh, and overfitting one batch."""
import pytest
import torch
from mmengine.optim import OptimWrapper
from mmengine.structures import BaseDataElement

from helpers import randomize_, relative_error
from mmfastvit.hand import MANOLayer, make_synthetic_mano
from mmfastvit.hand.head import MANORegressionHead
from mmfastvit.hand.model import IMAGENET_MEAN, IMAGENET_STD, HandMeshEstimator
from mmfastvit.hand.rotation import axis_angle_to_matrix
from mmfastvit.models import FastViT, reparameterize_model
from mmfastvit.registry import MODELS

SIZE = 64  # T8 at 64 x 64 keeps every test fast; final_conv is then 768 x 2 x 2
# A one-block-per-stage FastViT for the optimization test (eight T8 steps take seconds on a shared CPU)
TINY_ARCH = dict(layers=(1, 1, 1, 1), embed_dims=(16, 32, 64, 128), mlp_ratios=2, token_mixers=('repmixer',) * 4,
                 pos_embs=(False,) * 4)


@pytest.fixture(scope='module')
def mano_path(tmp_path_factory):
    path = tmp_path_factory.mktemp('mano') / 'MANO_RIGHT.pkl'
    make_synthetic_mano(str(path), seed=0)
    return str(path)


def _model(mano_path, arch='t8', **head_kwargs):
    return HandMeshEstimator(backbone=dict(type='mmfastvit.FastViT', arch=arch, out_indices=(4,)),
                             head=dict(type='mmfastvit.MANORegressionHead', mano_path=mano_path, **head_kwargs))


def _batch(mano_path, batch=2, seed=0):
    """``dict(inputs, data_samples)`` as the dataloader gives it: RGB uint8 images and root-relative targets."""
    gen = torch.Generator().manual_seed(seed)
    mano = MANOLayer(mano_path)
    pose = axis_angle_to_matrix(torch.randn(batch, 16, 3, generator=gen) * 0.3)
    out = mano(pose, torch.randn(batch, 10, generator=gen) * 0.5)
    root = out['joints'][:, :1]
    joints, vertices = out['joints'] - root, out['vertices'] - root
    camera = torch.tensor([9.0, 0.01, -0.02])
    joints_2d = camera[0] * (joints[..., :2] + camera[1:])
    inputs = [torch.randint(0, 256, (3, SIZE, SIZE), dtype=torch.uint8, generator=gen) for _ in range(batch)]
    samples = [BaseDataElement(gt_joints=joints[i], gt_vertices=vertices[i], gt_joints_2d=joints_2d[i],
                               metainfo=dict(sample_idx=i)) for i in range(batch)]
    return dict(inputs=inputs, data_samples=samples)


def test_built_from_config_with_in_channels_from_the_backbone(mano_path):
    model = MODELS.build(dict(type='mmfastvit.HandMeshEstimator',
                              backbone=dict(type='mmfastvit.FastViT', arch='t8', out_indices=(4,)),
                              head=dict(mano_path=mano_path)))
    assert isinstance(model.backbone, FastViT) and isinstance(model.head, MANORegressionHead)
    assert model.head.in_channels == 768 and model.neck is None


def test_default_data_preprocessor_normalizes_rgb_with_imagenet_statistics(mano_path):
    model = _model(mano_path)
    image = torch.stack([torch.full((SIZE, SIZE), v, dtype=torch.uint8) for v in (10, 120, 250)])
    data = model.data_preprocessor(dict(inputs=[image], data_samples=None), False)
    expected = [(v - m) / s for v, m, s in zip((10, 120, 250), IMAGENET_MEAN, IMAGENET_STD)]
    assert data['inputs'].shape == (1, 3, SIZE, SIZE)
    assert data['inputs'][0, :, 0, 0].tolist() == pytest.approx(expected, rel=1e-5)  # no channel swap


def test_tensor_loss_and_predict_modes(mano_path):
    model = _model(mano_path)
    data = model.data_preprocessor(_batch(mano_path), True)
    losses = model(**data, mode='loss')
    assert set(losses) == {'loss_vertices', 'loss_joints', 'loss_joints_2d'}
    assert all(v.dim() == 0 and torch.isfinite(v) and v > 0 for v in losses.values())

    model.eval()
    with torch.no_grad():
        out = model(data['inputs'])
        results = model(**data, mode='predict')
    assert out['vertices'].shape == (2, 778, 3) and out['joints_2d'].shape == (2, 21, 2)
    assert len(results) == 2 and results[1].sample_idx == 1
    assert results[1].pred_vertices.shape == (778, 3) and results[1].pred_pose.shape == (16, 3, 3)
    assert torch.allclose(results[1].pred_joints, out['joints'][1])
    assert {'pred_camera', 'pred_betas', 'gt_joints'} <= set(results[0].keys())
    with pytest.raises(ValueError, match='mode "train"'):
        model(data['inputs'], mode='train')
    with pytest.raises(ValueError, match='needs data_samples'):
        model(data['inputs'], mode='loss')


def test_gradients_reach_the_backbone(mano_path):
    model = _model(mano_path)
    data = model.data_preprocessor(_batch(mano_path), True)
    sum(model(**data, mode='loss').values()).backward()
    for name in ('stem', 'stages', 'final_conv'):
        grads = [p.grad for p in getattr(model.backbone, name).parameters() if p.grad is not None]
        assert grads and sum(g.abs().sum() for g in grads) > 0, name


def test_fused_model_predicts_the_same_mesh(mano_path):
    torch.manual_seed(0)
    model = _model(mano_path, init_gain=1.0)  # large head weights: the mesh depends on the features
    randomize_(model.backbone)
    model.eval()
    data = model.data_preprocessor(_batch(mano_path), False)
    with torch.no_grad():
        before = model(data['inputs'])
        model.reparameterize()
        assert model.backbone.fused_level == 'full'
        after = model(data['inputs'])
        # idempotent, and the generic entry point and mmpretrain's name reach the same model
        assert reparameterize_model(model) is model and model.switch_to_deploy() is model
        again = model(**data, mode='predict')
    for key in ('camera', 'pose_6d', 'betas', 'vertices', 'joints'):
        assert relative_error(after[key], before[key]) < 1e-4, key
    assert relative_error(again[0].pred_vertices, before['vertices'][0]) < 1e-4
    assert relative_error(before['vertices'], before['vertices'].flip(0)) > 1e-2  # samples differ: a real check


def test_fused_checkpoint_loads_into_a_model_built_fused(mano_path):
    model = _model(mano_path, init_gain=1.0)
    randomize_(model.backbone)
    model.eval().reparameterize()
    fused = HandMeshEstimator(backbone=dict(type='mmfastvit.FastViT', arch='t8', out_indices=(4,), deploy=True),
                              head=dict(mano_path=mano_path)).eval()
    fused.load_state_dict(model.state_dict())
    assert not any('mano' in key for key in model.state_dict())
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.allclose(fused(x)['vertices'], model(x)['vertices'], atol=1e-6)


def test_a_few_train_steps_overfit_one_batch(mano_path):
    torch.manual_seed(0)
    model = _model(mano_path, arch=TINY_ARCH)
    optim = OptimWrapper(torch.optim.Adam(model.parameters(), lr=1e-3))
    batch = _batch(mano_path)
    logs = [model.train_step(batch, optim) for _ in range(12)]
    assert set(logs[0]) == {'loss', 'loss_vertices', 'loss_joints', 'loss_joints_2d'}
    total = [log['loss'].item() for log in logs]
    vertices = [log['loss_vertices'].item() for log in logs]
    assert total[-1] < 0.5 * total[0], total
    assert vertices[-1] < 0.6 * vertices[0], vertices
