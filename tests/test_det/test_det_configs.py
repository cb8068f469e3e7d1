"""The Mask R-CNN 1x configs: the paper's protocol, every variant builds and runs in test mode, the backbone resolves
from the mmdet scope under both names, and the ImageNet checkpoint initializes the backbone through init_cfg."""
import glob
import os.path as osp
import subprocess
import sys

import pytest
import torch
from det_helpers import CONFIG_DIR, REPO, VARIANTS, config_path
from helpers import LogRecords
from mmengine.config import Config

from mmfastvit.convert.download import apple_weights_url
from mmfastvit.models import FastViT

# the stage widths (FPN in_channels) and the ImageNet drop-path rates of Apple's training commands
CHANNELS = {'t8': [48, 96, 192, 384], 'ma36': [76, 152, 304, 608]}
DROP_PATH = {'t8': 0.0, 't12': 0.0, 's12': 0.0, 'sa12': 0.1, 'sa24': 0.1, 'sa36': 0.2, 'ma36': 0.35}
DET_BASES = ('models/mask_rcnn_fastvit_fpn.py', 'datasets/coco_instance.py', 'schedules/det_adamw_1x.py',
             'det_runtime.py')


def test_one_config_per_variant():
    found = sorted(osp.basename(p) for p in glob.glob(osp.join(CONFIG_DIR, 'mask_rcnn_fastvit_*_1x.py')))
    assert found == sorted(f'mask_rcnn_fastvit_{v}_1x.py' for v in VARIANTS)


@pytest.mark.parametrize('variant', VARIANTS)
def test_model_settings(variant):
    cfg = Config.fromfile(config_path(variant))
    assert cfg.default_scope == 'mmdet' and cfg.model.type == 'MaskRCNN'
    backbone = cfg.model.backbone
    assert backbone.type == 'mmfastvit.FastViT' and backbone.arch == variant
    assert tuple(backbone.out_indices) == (0, 1, 2, 3)
    assert backbone.drop_path_rate == DROP_PATH[variant]
    assert backbone.init_cfg == dict(type='Pretrained', checkpoint=apple_weights_url(variant), prefix='backbone.')
    assert cfg.model.neck.type == 'FPN' and cfg.model.neck.num_outs == 5 and cfg.model.neck.out_channels == 256
    assert list(cfg.model.neck.in_channels) == CHANNELS.get(variant, [64, 128, 256, 512])
    # FPN's in_channels are exactly what this backbone returns
    assert list(FastViT(variant, out_indices=backbone.out_indices).out_channels) == list(cfg.model.neck.in_channels)
    assert cfg.model.roi_head.bbox_head.num_classes == cfg.model.roi_head.mask_head.num_classes == 80


def test_paper_protocol():
    """PoolFormer's Mask R-CNN 1x, which the paper follows: AdamW 2e-4 / 1e-4, 12 epochs, x0.1 at 8 and 11, linear
    warm-up, 1333x800, 2 images per GPU for 8 GPUs; COCO 2017 in the standard layout under data/coco/."""
    cfg = Config.fromfile(config_path('ma36'))
    assert cfg.optim_wrapper.optimizer == dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=1e-4)
    assert cfg.optim_wrapper.get('clip_grad') is None
    warmup, steps = cfg.param_scheduler
    assert (warmup.type, warmup.by_epoch, warmup.begin, warmup.end, warmup.start_factor) == \
        ('LinearLR', False, 0, 500, 0.001)
    assert (steps.type, steps.by_epoch, list(steps.milestones), steps.gamma, steps.end) == \
        ('MultiStepLR', True, [8, 11], 0.1, 12)
    assert cfg.train_cfg.max_epochs == 12 and cfg.train_cfg.type == 'EpochBasedTrainLoop'
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=16)
    assert cfg.train_dataloader.batch_size == 2
    train_resize = [t for t in cfg.train_dataloader.dataset.pipeline if t.type == 'Resize']
    test_resize = [t for t in cfg.test_dataloader.dataset.pipeline if t.type == 'Resize']
    assert [(t.scale, t.keep_ratio) for t in train_resize + test_resize] == [((1333, 800), True)] * 2
    assert any(t.type == 'LoadAnnotations' and t.with_mask for t in cfg.train_dataloader.dataset.pipeline)
    for split, images in (('train', 'train2017/'), ('val', 'val2017/'), ('test', 'val2017/')):
        dataset = cfg[f'{split}_dataloader'].dataset
        assert (dataset.type, dataset.data_root, dataset.data_prefix.img) == ('CocoDataset', 'data/coco/', images)
        assert dataset.ann_file == f'annotations/instances_{images[:-1]}.json'
    for evaluator in (cfg.val_evaluator, cfg.test_evaluator):
        assert evaluator.type == 'CocoMetric' and list(evaluator.metric) == ['bbox', 'segm']
        assert evaluator.ann_file == 'data/coco/annotations/instances_val2017.json'


def test_configs_read_standalone():
    """Our own bases, no `mmdet::` inheritance; the classification runtime (mmpretrain scope) is not among them."""
    for variant in VARIANTS:
        text = open(config_path(variant)).read()
        assert 'mmdet::' not in text and 'default_runtime' not in text
        for base in DET_BASES:
            assert f'./_base_/{base}' in text
    for base in DET_BASES:
        assert 'mmdet::' not in open(osp.join(CONFIG_DIR, '_base_', base)).read()


def _test_batch(height=96, width=128):
    from mmdet.structures import DetDataSample
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    meta = dict(img_id=0, img_shape=(height, width), ori_shape=(height, width), scale_factor=(1.0, 1.0))
    return dict(inputs=[image], data_samples=[DetDataSample(metainfo=meta)])


@pytest.mark.parametrize('variant', VARIANTS)
def test_builds_and_runs_in_test_mode(variant):
    from mmdet.registry import MODELS
    cfg = Config.fromfile(config_path(variant))
    cfg.model.backbone.init_cfg = None
    # fewer proposals than the 1000 of the config, and every detection kept, so that the mask head runs too
    cfg.model.test_cfg.rpn.max_per_img = 100
    cfg.model.test_cfg.rcnn.update(score_thr=0.0, max_per_img=10)
    torch.manual_seed(0)  # the same random detector on every run
    model = MODELS.build(cfg.model).eval()
    arch = FastViT.arch_zoo[variant]
    assert isinstance(model.backbone, FastViT) and model.backbone.embed_dims == arch['embed_dims']
    assert [len(stage.blocks) for stage in model.backbone.stages] == list(arch['layers'])
    batch = _test_batch()
    with torch.no_grad():
        inputs = model.data_preprocessor(batch, False)['inputs']
        assert inputs.shape == (1, 3, 96, 128)  # padded to a multiple of 32
        feats = model.backbone(inputs)
        assert [f.shape[1] for f in feats] == list(cfg.model.neck.in_channels)
        assert [f.shape[-1] for f in feats] == [32, 16, 8, 4]  # strides 4..32
        pyramid = model.neck(feats)
        assert [tuple(f.shape[1:]) for f in pyramid] == [(256, 24, 32), (256, 12, 16), (256, 6, 8), (256, 3, 4),
                                                          (256, 2, 2)]
        (result,) = model.test_step(batch)
    pred = result.pred_instances
    assert pred.bboxes.shape == (10, 4) and pred.labels.shape == (10,) and pred.masks.shape == (10, 96, 128)
    assert ((pred.bboxes[:, 2:] <= torch.tensor([128, 96])) & (pred.bboxes[:, :2] >= 0)).all()  # inside the image


SCOPE_CHECK = """
import sys
from mmengine.config import Config
from mmengine.registry import init_default_scope
for path in sys.argv[1:]:
    cfg = Config.fromfile(path)  # imports custom_imports, as the Runner's config loading does
    init_default_scope(cfg.default_scope)
    from mmdet.registry import MODELS
    cfg.model.backbone.init_cfg = None
    try:
        model = MODELS.build(cfg.model)
    except KeyError as err:
        print('KeyError', err)
        continue
    backbone = type(model.backbone)
    print(type(model).__name__, backbone.__module__ + '.' + backbone.__name__, len(model.backbone.stages[2].blocks),
          'mmfastvit.integrations.mmdet' in sys.modules)
"""


def test_backbone_resolves_from_the_mmdet_scope(tmp_path):
    """In a fresh process, as `tools/train.py` builds it: mmdet's own name `FastViT` fails before any import, the
    config's `mmfastvit.FastViT` resolves with no import, and `FastViT` resolves once `custom_imports` registers it."""
    configs = []
    for name, imports in (('plain_type', ''), ('custom_imports', "custom_imports = dict(imports=["
                                                                 "'mmfastvit.integrations.mmdet'], "
                                                                 "allow_failed_imports=False)\n")):
        path = tmp_path / f'{name}.py'
        path.write_text(f"_base_ = [{config_path('sa12')!r}]\n{imports}model = dict(backbone=dict(type='FastViT'))\n")
        configs.append(str(path))
    order = [configs[0], config_path('sa12'), configs[1]]
    done = subprocess.run([sys.executable, '-c', SCOPE_CHECK, *order], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    plain, scoped, registered = done.stdout.strip().splitlines()[-3:]
    assert plain.startswith('KeyError') and 'FastViT is not in the mmdet::model registry' in plain
    assert scoped == 'MaskRCNN mmfastvit.models.backbones.fastvit.FastViT 6 False'
    assert registered == 'MaskRCNN mmfastvit.models.backbones.fastvit.FastViT 6 True'


def test_init_cfg_loads_a_converted_imagenet_checkpoint(tmp_path):
    """A classifier checkpoint as tools/model_converters/fastvit_to_mmfastvit.py writes it (backbone.* including
    final_conv, head.fc.*) initializes the detector's backbone; the final_conv keys are reported, not an error."""
    from mmdet.registry import MODELS
    from mmengine.logging import MMLogger

    from mmfastvit.models import FastViTClassifier
    from mmfastvit.models.utils.fusion_checks import randomize_fusable_state_
    classifier = randomize_fusable_state_(FastViTClassifier('sa12'), seed=1)
    checkpoint = tmp_path / 'fastvit_sa12_in1k.pth'
    torch.save(dict(state_dict=classifier.state_dict(), meta=dict(arch='sa12')), checkpoint)
    assert any(k.startswith('backbone.final_conv.') for k in classifier.state_dict())

    cfg = Config.fromfile(config_path('sa12'))
    cfg.model.backbone.init_cfg.checkpoint = str(checkpoint)
    detector = MODELS.build(cfg.model)
    logger = MMLogger.get_instance('test_det_init_cfg')  # the 'current' logger init_weights reports to
    records = LogRecords()
    logger.addHandler(records)
    try:
        detector.init_weights()
    finally:
        logger.removeHandler(records)
    expected = {k[len('backbone.'):]: v for k, v in classifier.state_dict().items() if k.startswith('backbone.')}
    loaded = detector.backbone.state_dict()
    assert set(loaded) == set(expected) - {k for k in expected if k.startswith('final_conv.')}
    for key, value in loaded.items():
        assert torch.equal(value, expected[key]), key
    log = '\n'.join(records.messages)
    assert f'load backbone. in model from: {checkpoint}' in log
    assert 'unexpected key in source state_dict: final_conv.' in log and 'missing keys' not in log


def test_missing_pretrained_checkpoint_names_the_file():
    from mmdet.registry import MODELS
    cfg = Config.fromfile(config_path('t8'))
    cfg.model.backbone.init_cfg.checkpoint = 'checkpoints/no_such_fastvit_t8_in1k.pth'
    detector = MODELS.build(cfg.model)
    with pytest.raises(FileNotFoundError, match='checkpoints/no_such_fastvit_t8_in1k.pth can not be found'):
        detector.init_weights()
