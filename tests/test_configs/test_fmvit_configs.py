"""The FMViT configs: ImageNet-1k for the five variants, Mask R-CNN 1x and Semantic FPN for FMViT-B. Each one loads,
states its recipe (the paper's numbers, and FastViT's where the paper says nothing), builds with its task package,
runs one forward at a small input, and predicts the same once fused (reparameterize_model)."""
import copy
import functools
import glob
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from test_cls_configs import simulate_lr
from torch.nn.modules.batchnorm import _BatchNorm

from mmfastvit.deploy.loading import calibrate_batchnorm_
from mmfastvit.models import FMViT, FMViTClassifier, reparameterize_model
from mmfastvit.models.utils.fusion_checks import randomize_fusable_state_, relative_error

CONFIG_DIR = osp.abspath(osp.join(osp.dirname(__file__), '..', '..', 'configs'))
# variant: (FMB output channels = the head's in_channels, drop path: FastViT's for its variant of similar size)
VARIANTS = {'t': (320, 0.0), 's': (640, 0.0), 'm': (960, 0.1), 'b': (1280, 0.1), 'l': (1280, 0.2)}
CLS_CONFIGS = {v: f'fmvit_{v}_in1k.py' for v in VARIANTS}
DET_CONFIG, SEG_CONFIG = 'mask_rcnn_fmvit_b_1x.py', 'sem_fpn_fmvit_b_ade20k_40k.py'
B_STAGE_CHANNELS = [96, 320, 480, 1280]  # FMViT-B at strides 4, 8, 16, 32
PRETRAINED_B = dict(type='Pretrained', checkpoint='checkpoints/fmvit_b_in1k.pth', prefix='backbone.')


@functools.lru_cache(maxsize=None)
def load(name):
    return Config.fromfile(osp.join(CONFIG_DIR, name))


def build(cfg, **backbone_overrides):
    """``cfg.model`` built in the config's scope as the Runner builds it (SyncBN reverted for one process)."""
    import importlib

    from mmengine.model import revert_sync_batchnorm
    registry = importlib.import_module(f'{cfg.default_scope}.registry').MODELS
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.update(backbone_overrides)
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', copy.deepcopy(cfg.data_preprocessor))
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return revert_sync_batchnorm(registry.build(model_cfg))


def fused_copy(model):
    """A fused deep copy of ``model``, checked to hold no BatchNorm in its backbone."""
    fused = reparameterize_model(copy.deepcopy(model))
    assert fused.backbone.fused_level == 'full' and model.backbone.fused_level == 'train'
    assert not any(isinstance(m, _BatchNorm) for m in fused.backbone.modules())
    return fused


def test_the_configs_exist():
    found = sorted(osp.basename(p) for p in glob.glob(osp.join(CONFIG_DIR, '*fmvit*.py')))
    assert found == sorted([*CLS_CONFIGS.values(), DET_CONFIG, SEG_CONFIG])


# ImageNet-1k

@pytest.mark.parametrize('variant', list(VARIANTS))
def test_classifier_recipe(variant):
    """FMViT's: 224x224, 300 epochs, AdamW wd 0.1, batch 2048 (auto_scale_lr's base), cosine, 20 warm-up epochs.
    FastViT's where the paper is silent: lr 1e-3 per 1024 images, augmentation, label smoothing, EMA, crop 0.9."""
    channels, drop_path = VARIANTS[variant]
    cfg = load(CLS_CONFIGS[variant])
    model = cfg.model
    assert cfg.default_scope == 'mmpretrain' and model.type == 'ImageClassifier'
    assert (model.backbone.type, model.backbone.arch, tuple(model.backbone.out_indices)) == (
        'mmfastvit.FMViT', variant, (3,))
    assert model.backbone.drop_path_rate == drop_path
    assert channels == FMViT.FM_PARTS * FMViT.arch_zoo[variant]['fm_channels']  # the FMB output, pooled directly
    assert model.neck.type == 'GlobalAveragePooling'
    assert (model.head.type, model.head.in_channels, model.head.num_classes) == ('LinearClsHead', channels, 1000)
    assert model.head.loss == dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')
    augments = [dict(a) for a in model.train_cfg.augments]
    assert augments == [dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]

    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.lr, optimizer.weight_decay) == ('AdamW', 2e-3, 0.1)
    assert cfg.optim_wrapper.paramwise_cfg == dict(norm_decay_mult=0.0, bias_decay_mult=0.0)
    assert cfg.auto_scale_lr.base_batch_size == 2048 == 8 * cfg.train_dataloader.batch_size
    warmup, cosine = cfg.param_scheduler
    assert (warmup.type, warmup.begin, warmup.end, warmup.start_factor) == ('LinearLR', 0, 20, 1e-3)
    assert (cosine.type, cosine.begin, cosine.end, cosine.eta_min) == ('CosineAnnealingLR', 20, 300, 1e-5)
    assert cfg.train_cfg.max_epochs == 300
    [ema] = [hook for hook in cfg.custom_hooks if hook.type == 'EMAHook']
    assert ema.momentum == pytest.approx(5e-4) and ema.update_buffers

    assert cfg.img_size == 224 and cfg.crop_ratio == 0.9
    train = {t.type: t for t in cfg.train_dataloader.dataset.pipeline}
    assert list(train) == ['mmfastvit.LoadImageFromFile', 'RandomResizedCrop', 'RandomFlip', 'RandAugment',
                           'RandomErasing', 'PackInputs']
    assert (train['RandomResizedCrop'].scale, train['RandomResizedCrop'].interpolation) == (224, 'bicubic')
    assert train['RandAugment'].magnitude_level == 9 and train['RandomErasing'].erase_prob == 0.25
    for pipeline in (cfg.val_dataloader.dataset.pipeline, cfg.test_dataloader.dataset.pipeline, cfg.tta_pipeline):
        steps = {t.type: t for t in pipeline}
        assert (steps['ResizeEdge'].scale, steps['CenterCrop'].crop_size) == (248, 224)


def test_learning_rate_curve():
    lrs = simulate_lr(load(CLS_CONFIGS['t']))  # 10 iterations an epoch
    warmup = 20 * 10
    assert lrs[0] == pytest.approx(2e-6, rel=1e-6)
    assert np.all(np.diff(lrs[:warmup]) > 0) and lrs[warmup - 1] == pytest.approx(2e-3, rel=1e-6)
    assert np.all(np.diff(lrs[warmup:]) < 0) and lrs[-1] == pytest.approx(1e-5, rel=1e-2)


@pytest.mark.parametrize('variant', list(VARIANTS))
def test_classifier_builds_runs_and_the_fused_model_predicts_the_same(variant):
    model = build(load(CLS_CONFIGS[variant]))
    assert isinstance(model.backbone, FMViT) and model.backbone.out_channels == (VARIANTS[variant][0],)
    randomize_fusable_state_(model.backbone, seed=1)
    model.eval()
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(images, mode='predict')
        fused = fused_copy(model)
        actual = fused(images, mode='predict')
    for want, got in zip(expected, actual):
        assert want.pred_score.shape == (1000,) and float(want.pred_score.sum()) == pytest.approx(1.0, abs=1e-5)
        assert relative_error(got.pred_score, want.pred_score) < 1e-4
        assert torch.equal(got.pred_label, want.pred_label)


def test_classifier_state_dict_is_fmvit_classifiers_and_norms_biases_have_no_weight_decay():
    from mmengine.optim import build_optim_wrapper
    cfg = load(CLS_CONFIGS['t'])
    model = build(cfg)
    assert {k: v.shape for k, v in model.state_dict().items()} == \
        {k: v.shape for k, v in FMViTClassifier('t').state_dict().items()}
    wrapper = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
    decay = {id(p): group['weight_decay'] for group in wrapper.optimizer.param_groups for p in group['params']}
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            expected = 0.0 if isinstance(module, _BatchNorm) or name == 'bias' else 0.1
            assert decay[id(param)] == expected, f'{type(module).__name__}.{name}'


# dense tasks (FMViT-B)

def test_mask_rcnn_recipe():
    """FastViT's Mask R-CNN 1x protocol with the FMViT paper's weight decay 0.05."""
    cfg = load(DET_CONFIG)
    assert cfg.default_scope == 'mmdet' and cfg.model.type == 'MaskRCNN'
    backbone = cfg.model.backbone
    assert (backbone.type, backbone.arch, tuple(backbone.out_indices)) == ('mmfastvit.FMViT', 'b', (0, 1, 2, 3))
    assert backbone.drop_path_rate == 0.1 and backbone.init_cfg == PRETRAINED_B
    assert list(cfg.model.neck.in_channels) == B_STAGE_CHANNELS and cfg.model.neck.num_outs == 5
    assert cfg.optim_wrapper.optimizer == dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05)
    warmup, steps = cfg.param_scheduler
    assert (warmup.type, warmup.end) == ('LinearLR', 500)
    assert (steps.type, list(steps.milestones), steps.gamma) == ('MultiStepLR', [8, 11], 0.1)
    assert cfg.train_cfg.max_epochs == 12 and cfg.auto_scale_lr.base_batch_size == 16
    assert cfg.train_dataloader.batch_size == 2
    assert [t.scale for t in cfg.train_dataloader.dataset.pipeline if t.type == 'Resize'] == [(1333, 800)]


def test_semantic_fpn_recipe():
    """FastViT's Semantic FPN protocol with the FMViT paper's learning rate 1e-4."""
    cfg = load(SEG_CONFIG)
    assert cfg.default_scope == 'mmseg' and cfg.model.type == 'EncoderDecoder'
    backbone = cfg.model.backbone
    assert (backbone.type, backbone.arch, tuple(backbone.out_indices)) == ('mmfastvit.FMViT', 'b', (0, 1, 2, 3))
    assert backbone.init_cfg == PRETRAINED_B
    assert list(cfg.model.neck.in_channels) == B_STAGE_CHANNELS
    assert cfg.optim_wrapper.optimizer == dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=1e-4)
    [poly] = cfg.param_scheduler
    assert (poly.type, poly.power, poly.end) == ('PolyLR', 0.9, 40000) and cfg.train_cfg.max_iters == 40000
    assert cfg.auto_scale_lr.base_batch_size == 32 == 8 * cfg.train_dataloader.batch_size
    assert cfg.model.data_preprocessor.size == (512, 512) and cfg.model.decode_head.num_classes == 150


def test_mask_rcnn_builds_runs_in_test_mode_and_the_fused_model_predicts_the_same():
    from mmdet.structures import DetDataSample
    cfg = copy.deepcopy(load(DET_CONFIG))
    cfg.model.test_cfg.rpn.max_per_img = 100  # fewer proposals, every detection kept: the mask head runs too
    cfg.model.test_cfg.rcnn.update(score_thr=0.0, max_per_img=10)
    torch.manual_seed(0)  # the random initialisation too: the detector's outputs depend on all of it
    model = build(cfg, init_cfg=None)
    assert isinstance(model.backbone, FMViT) and list(model.backbone.out_channels) == B_STAGE_CHANNELS
    model.eval()
    # An untrained FMViT in eval mode (unit statistics) grows its activations through the summed branches to ~1e7
    # at stage 4, which saturates the RPN and the RoI head: calibrated statistics (not identities, so fusion is
    # still tested on real BatchNorms) with a variance floor keep them in range and float32 rounding small.
    calibrate_batchnorm_(model.backbone, seed=3, shape=(96, 128))
    image = torch.randint(0, 256, (3, 96, 128), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    meta = dict(img_id=0, img_shape=(96, 128), ori_shape=(96, 128), scale_factor=(1.0, 1.0))
    batch = dict(inputs=[image], data_samples=[DetDataSample(metainfo=meta)])
    with torch.no_grad():
        inputs = model.data_preprocessor(batch, False)['inputs']
        feats = model.backbone(inputs)
        assert [tuple(f.shape[1:]) for f in feats] == [(c, 96 // s, 128 // s)
                                                      for c, s in zip(B_STAGE_CHANNELS, (4, 8, 16, 32))]
        [expected] = model.test_step(batch)
        fused = fused_copy(model)
        assert relative_error(fused.backbone(inputs), feats) < 1e-4
        [actual] = fused.test_step(batch)
    want, got = expected.pred_instances, actual.pred_instances
    assert want.bboxes.shape == got.bboxes.shape == (10, 4) and want.masks.shape == got.masks.shape == (10, 96, 128)
    # A random-weight RoI head saturates its scores, so near-ties may swap places (or, at the 10th, swap in another
    # detection) under a float-rounding change of the features: compare the sorted scores, then match each
    # detection clear of the cut-off to one of the same label, score and box.
    torch.testing.assert_close(got.scores.sort().values, want.scores.sort().values, atol=2e-3, rtol=0)
    cutoff = want.scores.min() + 2e-3
    for box, label, score in zip(got.bboxes, got.labels, got.scores):
        if score > cutoff:
            same = (want.labels == label) & ((want.scores - score).abs() < 2e-3)
            assert same.any() and (want.bboxes[same] - box).abs().amax(dim=1).min() < 0.5  # pixels


def test_semantic_fpn_builds_runs_and_the_fused_model_predicts_the_same():
    from mmseg.structures import SegDataSample
    model = build(load(SEG_CONFIG), init_cfg=None)
    assert isinstance(model.backbone, FMViT)
    assert [conv.conv.in_channels for conv in model.neck.lateral_convs] == B_STAGE_CHANNELS
    randomize_fusable_state_(model.backbone, seed=1)
    torch.nn.init.normal_(model.decode_head.conv_seg.weight, std=1.0)  # classes decided by clear margins
    model.eval()
    image = torch.randint(0, 256, (3, 64, 96), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    batch = dict(inputs=[image], data_samples=[SegDataSample(metainfo=dict(img_shape=(64, 96), ori_shape=(64, 96)))])
    with torch.no_grad():
        [expected] = model.test_step(batch)
        [actual] = fused_copy(model).test_step(batch)
    assert tuple(expected.seg_logits.data.shape) == (150, 64, 96)
    assert tuple(expected.pred_sem_seg.data.shape) == (1, 64, 96)
    assert relative_error(actual.seg_logits.data, expected.seg_logits.data) < 1e-4
    assert torch.equal(actual.pred_sem_seg.data, expected.pred_sem_seg.data)
    assert len(torch.unique(expected.pred_sem_seg.data)) > 1
