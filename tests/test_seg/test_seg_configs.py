"""The ADE20K Semantic FPN configs: every one states the paper's protocol, builds with mmseg and runs a forward; the
ImageNet classifier checkpoint initializes the backbone; the fused segmentor predicts what the unfused one does."""
import copy
import functools
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from mmfastvit.convert.download import apple_weights_url
from mmfastvit.models import FastViT, FastViTClassifier
from mmfastvit.models.utils.reparam import reparameterize_model
from mmfastvit.models.utils.fusion_checks import randomize_fusable_state_, relative_error

pytest.importorskip('mmseg')

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_DIR = osp.join(REPO, 'configs')
# variant -> FPN in_channels (the stage widths)
VARIANTS = {
    't8': [48, 96, 192, 384],
    't12': [64, 128, 256, 512],
    's12': [64, 128, 256, 512],
    'sa12': [64, 128, 256, 512],
    'sa24': [64, 128, 256, 512],
    'sa36': [64, 128, 256, 512],
    'ma36': [76, 152, 304, 608],
}


@pytest.fixture(autouse=True)
def one_thread():
    """On a busy 2-core machine two OpenMP threads wait on each other at every op; one thread is steady."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def config_path(variant):
    return osp.join(CONFIG_DIR, f'sem_fpn_fastvit_{variant}_ade20k_40k.py')


@functools.lru_cache(maxsize=None)
def load(variant):
    return Config.fromfile(config_path(variant))


def build(cfg, **backbone_overrides):
    """The config's segmentor as the Runner builds it (mmseg scope), its SyncBNs reverted for a single process."""
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.update(backbone_overrides)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return revert_sync_batchnorm(MODELS.build(model_cfg))


def test_one_config_per_variant():
    found = sorted(osp.basename(p) for p in glob.glob(osp.join(CONFIG_DIR, 'sem_fpn_fastvit_*_ade20k_40k.py')))
    assert found == sorted(osp.basename(config_path(v)) for v in VARIANTS)


@pytest.mark.parametrize('variant', list(VARIANTS))
def test_config_states_the_protocol(variant):
    """Semantic FPN as PoolFormer / FastViT run it on ADE20K: AdamW 2e-4 / 1e-4, poly 0.9 over 40k iterations of
    8 x 4 images, 512x512 crops from a 0.5-2.0 ratio range, 150 classes, Apple's ImageNet checkpoint by URL."""
    cfg = load(variant)
    assert cfg.default_scope == 'mmseg'
    backbone = cfg.model.backbone
    assert backbone.type == 'mmfastvit.FastViT' and backbone.arch == variant
    assert tuple(backbone.out_indices) == (0, 1, 2, 3)
    assert backbone.init_cfg == dict(type='Pretrained', checkpoint=apple_weights_url(variant), prefix='backbone.')
    assert cfg.model.type == 'EncoderDecoder'
    assert cfg.model.neck.type == 'FPN' and cfg.model.neck.in_channels == VARIANTS[variant]
    assert cfg.model.neck.out_channels == 256 and cfg.model.neck.num_outs == 4
    head = cfg.model.decode_head
    assert head.type == 'FPNHead' and head.num_classes == 150 and head.channels == 128
    assert head.feature_strides == [4, 8, 16, 32] and head.in_index == [0, 1, 2, 3]
    assert cfg.model.data_preprocessor.size == (512, 512) and cfg.model.data_preprocessor.seg_pad_val == 255

    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.lr, optimizer.weight_decay) == ('AdamW', 2e-4, 1e-4)
    [poly] = cfg.param_scheduler
    assert (poly.type, poly.power, poly.eta_min, poly.end, poly.by_epoch) == ('PolyLR', 0.9, 0.0, 40000, False)
    assert cfg.train_cfg.type == 'IterBasedTrainLoop' and cfg.train_cfg.max_iters == 40000
    assert cfg.auto_scale_lr.base_batch_size == 32 == 8 * cfg.train_dataloader.batch_size

    train = cfg.train_dataloader.dataset
    assert train.type == 'ADE20KDataset' and train.reduce_zero_label is True
    assert train.data_root == cfg.val_dataloader.dataset.data_root == 'data/ade/ADEChallengeData2016/'
    steps = {t.type: t for t in train.pipeline}
    assert steps['RandomResize'].scale == (2048, 512) and steps['RandomResize'].ratio_range == (0.5, 2.0)
    assert steps['RandomCrop'].crop_size == (512, 512) and steps['RandomCrop'].cat_max_ratio == 0.75
    assert {'RandomFlip', 'PhotoMetricDistortion', 'LoadAnnotations'} <= set(steps)
    # mmcv's loader by its plain name, which MMSegInferencer looks for (tools/test.py swaps in mmfastvit's)
    assert [t.type for t in cfg.test_pipeline] == ['LoadImageFromFile', 'Resize', 'ResizeToMultiple',
                                                   'LoadAnnotations', 'PackSegInputs']
    assert cfg.test_evaluator.type == 'IoUMetric' and cfg.test_evaluator.iou_metrics == ['mIoU']
    assert cfg.default_hooks.visualization.type == 'SegVisualizationHook'
    assert cfg.tta_model.type == 'SegTTAModel' and cfg.tta_pipeline


@pytest.mark.parametrize('variant', list(VARIANTS))
def test_config_builds_and_runs_a_forward(variant):
    """Built as configured (from scratch: no checkpoint file here), the FPN gets every stage, and one image goes
    through data preprocessing, backbone, neck and head to a full-resolution prediction over 150 classes."""
    from mmseg.structures import SegDataSample
    model = build(load(variant), init_cfg=None).eval()
    assert isinstance(model.backbone, FastViT)
    assert tuple(model.backbone.arch_settings['layers']) == FastViT.arch_zoo[variant]['layers']
    assert list(model.backbone.out_channels) == VARIANTS[variant]
    assert [conv.conv.in_channels for conv in model.neck.lateral_convs] == VARIANTS[variant]
    image = torch.randint(0, 256, (3, 64, 96), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    sample = SegDataSample(metainfo=dict(img_shape=(64, 96), ori_shape=(64, 96)))
    with torch.no_grad():
        feats = model.backbone(model.data_preprocessor(dict(inputs=[image]), False)['inputs'])
        [result] = model.test_step(dict(inputs=[image], data_samples=[sample]))
    assert [tuple(f.shape[1:]) for f in feats] == [(c, 64 // s, 96 // s) for c, s in zip(VARIANTS[variant],
                                                                                         (4, 8, 16, 32))]
    assert tuple(result.seg_logits.data.shape) == (150, 64, 96)
    assert tuple(result.pred_sem_seg.data.shape) == (1, 64, 96)
    assert torch.equal(result.pred_sem_seg.data[0], result.seg_logits.data.argmax(0))


def test_imagenet_checkpoint_initializes_the_backbone(tmp_path):
    """Apple's unfused classifier file -> the converter -> the config's init_cfg: every backbone weight arrives; the
    classifier's final_conv (not in the dense backbone) and head are left out without an error."""
    from mmfastvit.convert import fastvit_to_mmfastvit, mmfastvit_to_apple
    classifier = randomize_fusable_state_(FastViTClassifier('t8'), seed=3)
    apple = tmp_path / 'fastvit_t8.pth.tar'
    torch.save(dict(state_dict=mmfastvit_to_apple(classifier.state_dict())), apple)
    converted = tmp_path / 'fastvit_t8_in1k.pth'
    fastvit_to_mmfastvit(str(apple), str(converted))
    keys = torch.load(converted, weights_only=True)['state_dict']
    assert any(k.startswith('backbone.final_conv.') for k in keys) and 'head.fc.weight' in keys

    cfg = load('t8')
    untouched = build(cfg, init_cfg=dict(cfg.model.backbone.init_cfg, checkpoint=str(converted)))
    neck_before = copy.deepcopy(untouched.neck.state_dict())
    untouched.init_weights()
    backbone_state = untouched.backbone.state_dict()
    expected = {k[len('backbone.'):]: v for k, v in classifier.state_dict().items()
                if k.startswith('backbone.') and not k.startswith('backbone.final_conv.')}
    assert set(backbone_state) == set(expected)
    for key, value in expected.items():
        assert torch.equal(backbone_state[key], value), key
    # the rest of the segmentor keeps its own initialization
    assert any(not torch.equal(v, untouched.neck.state_dict()[k]) for k, v in neck_before.items())


def _predict(model, images):
    from mmseg.structures import SegDataSample
    samples = [SegDataSample(metainfo=dict(img_shape=tuple(i.shape[1:]), ori_shape=tuple(i.shape[1:])))
               for i in images]
    with torch.no_grad():
        return model.test_step(dict(inputs=images, data_samples=samples))


def test_fused_segmentor_predicts_the_same():
    """reparameterize_model on the whole segmentor fuses its backbone; the result, and a segmentor built from the
    config with model.backbone.deploy=True that loads its state dict strictly, predict what the unfused one does."""
    cfg = load('sa12')
    torch.manual_seed(0)
    model = build(cfg, init_cfg=None)
    randomize_fusable_state_(model.backbone, seed=1)
    # a classifier layer with spread-out scores, so that the predicted classes are decided by clear margins
    torch.nn.init.normal_(model.decode_head.conv_seg.weight, std=1.0)
    model.eval()
    gen = torch.Generator().manual_seed(2)
    images = [torch.randint(0, 256, (3, 64, 96), dtype=torch.uint8, generator=gen) for _ in range(2)]
    expected = _predict(model, images)

    fused = reparameterize_model(copy.deepcopy(model))
    assert fused.backbone.fused_level == 'full' and model.backbone.fused_level == 'train'
    deploy = build(cfg, init_cfg=None, deploy=True).eval()
    deploy.load_state_dict(fused.state_dict(), strict=True)
    for candidate in (fused, deploy):
        for got, want in zip(_predict(candidate, images), expected):
            assert relative_error(got.seg_logits.data, want.seg_logits.data) < 1e-4
            assert torch.equal(got.pred_sem_seg.data, want.pred_sem_seg.data)
    assert len(torch.unique(expected[0].pred_sem_seg.data)) > 1  # not a constant map that anything would match
