"""The ImageNet classification configs: every one loads, builds with mmpretrain, runs, and states the paper's recipe
(drop path per variant, evaluation crop, augmentation, AdamW without decay on norms / biases / layer scales, the lr
curve, EMA)."""
import collections
import copy
import functools
import glob
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from torch.nn.modules.batchnorm import _BatchNorm

from mmfastvit.convert.download import apple_weights_url

CONFIG_DIR = osp.abspath(osp.join(osp.dirname(__file__), '..', '..', 'configs'))

# variant: (final-conv channels 2*C4, drop path, drop path when distilled, evaluation crop ratio at 256)
VARIANTS = {
    't8': (768, 0.0, 0.0, 0.9),
    't12': (1024, 0.0, 0.0, 0.9),
    's12': (1024, 0.0, 0.0, 0.9),
    'sa12': (1024, 0.1, 0.0, 0.9),
    'sa24': (1024, 0.1, 0.05, 0.9),
    'sa36': (1024, 0.2, 0.1, 0.95),
    'ma36': (1216, 0.35, 0.2, 0.95),
}
KINDS = ('', '_384', '_distill')
CONFIGS = [f'fastvit_{variant}_in1k{kind}.py' for variant in VARIANTS for kind in KINDS]


def variant_and_kind(name):
    variant, kind = name[len('fastvit_'):-len('.py')].split('_in1k')
    return variant, kind


@functools.lru_cache(maxsize=None)
def load(name):
    return Config.fromfile(osp.join(CONFIG_DIR, name))


_BUILT = collections.OrderedDict()


def built(cfg):
    """The config's model, built with mmpretrain's registry as the Runner builds it; the last two are kept, so the
    plain and 384 configs of a variant (same model) share one build."""
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    model_cfg = copy.deepcopy(cfg.model.to_dict())
    model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor.to_dict())
    key = repr(model_cfg)
    if key not in _BUILT:
        while len(_BUILT) >= 2:
            _BUILT.popitem(last=False)
        _BUILT[key] = MODELS.build(model_cfg)
    return _BUILT[key]


def test_the_21_configs_exist():
    found = sorted(osp.basename(path) for path in glob.glob(osp.join(CONFIG_DIR, 'fastvit_*_in1k*.py')))
    assert found == sorted(CONFIGS)


@pytest.mark.parametrize('name', CONFIGS)
def test_model_settings(name):
    variant, kind = variant_and_kind(name)
    channels, drop_path, distill_drop_path, _ = VARIANTS[variant]
    cfg = load(name)
    model = cfg.model
    assert model.type == ('mmfastvit.HardDistillationClassifier' if kind == '_distill' else 'ImageClassifier')
    assert model.backbone.type == 'mmfastvit.FastViT'
    assert model.backbone.arch == variant
    assert tuple(model.backbone.out_indices) == (4,)
    assert model.backbone.drop_path_rate == (distill_drop_path if kind == '_distill' else drop_path)
    assert model.neck.type == 'GlobalAveragePooling'
    assert (model.head.type, model.head.in_channels, model.head.num_classes) == ('LinearClsHead', channels, 1000)
    assert model.head.loss == dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')
    augments = [dict(augment) for augment in model.train_cfg.augments]
    assert augments == [dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]
    assert cfg.data_preprocessor.num_classes == 1000 and cfg.data_preprocessor.to_rgb
    assert cfg.default_scope == 'mmpretrain'


@pytest.mark.parametrize('name', CONFIGS)
def test_pipelines(name):
    variant, kind = variant_and_kind(name)
    size = 384 if kind == '_384' else 256
    crop_ratio = 1.0 if kind == '_384' else VARIANTS[variant][3]
    edge = {256: {0.9: 284, 0.95: 269}, 384: {1.0: 384}}[size][crop_ratio]
    cfg = load(name)
    assert cfg.crop_ratio == crop_ratio and int(size / cfg.crop_ratio) == edge

    train = {t.type: t for t in cfg.train_dataloader.dataset.pipeline}
    assert list(train) == ['mmfastvit.LoadImageFromFile', 'RandomResizedCrop', 'RandomFlip', 'RandAugment',
                           'RandomErasing', 'PackInputs']
    assert train['mmfastvit.LoadImageFromFile'].on_corrupt == 'error'  # named, not skipped, unless configured
    assert (train['RandomResizedCrop'].scale, train['RandomResizedCrop'].interpolation) == (size, 'bicubic')
    assert (train['RandomFlip'].prob, train['RandomFlip'].direction) == (0.5, 'horizontal')
    rand_augment = train['RandAugment']
    assert (rand_augment.policies, rand_augment.num_policies, rand_augment.total_level, rand_augment.magnitude_level,
            rand_augment.magnitude_std, rand_augment.hparams.interpolation) == ('timm_increasing', 2, 10, 9, 0.5,
                                                                               'bicubic')
    assert (train['RandomErasing'].erase_prob, train['RandomErasing'].mode) == (0.25, 'rand')

    for pipeline in (cfg.val_dataloader.dataset.pipeline, cfg.test_dataloader.dataset.pipeline, cfg.tta_pipeline):
        steps = {t.type: t for t in pipeline}
        resize = steps['ResizeEdge']
        assert (resize.scale, resize.edge, resize.backend, resize.interpolation) == (edge, 'short', 'pillow', 'bicubic')
        assert steps['CenterCrop'].crop_size == size
    assert cfg.tta_pipeline[-1].type == 'TestTimeAug' and cfg.tta_model.type == 'AverageClsScoreTTA'

    for loader, split in ((cfg.train_dataloader, 'train'), (cfg.val_dataloader, 'val'), (cfg.test_dataloader, 'val')):
        dataset = loader.dataset
        assert (dataset.type, dataset.data_root, dataset.ann_file, dataset.data_prefix) == (
            'ImageNet', 'data/imagenet/', f'meta/{split}.txt', split)
    assert cfg.train_dataloader.batch_size * 8 == 1024
    assert tuple(cfg.val_evaluator.topk) == (1, 5) and cfg.test_evaluator.type == 'Accuracy'


@pytest.mark.parametrize('name', CONFIGS)
def test_schedule_runtime_and_kind_specific_settings(name):
    variant, kind = variant_and_kind(name)
    cfg = load(name)
    optimizer = cfg.optim_wrapper.optimizer
    assert (optimizer.type, optimizer.lr, optimizer.weight_decay) == (
        ('AdamW', 5e-6, 1e-8) if kind == '_384' else ('AdamW', 1e-3, 0.05))
    assert cfg.train_cfg.max_epochs == (30 if kind == '_384' else 300)
    assert cfg.auto_scale_lr.base_batch_size == 1024
    [ema] = [hook for hook in cfg.custom_hooks if hook.type == 'EMAHook']
    assert ema.momentum == pytest.approx(1 - 0.9995, abs=1e-12) and ema.update_buffers
    hooks = cfg.default_hooks
    assert hooks.checkpoint.save_best == 'auto' and hooks.checkpoint.max_keep_ckpts >= 1
    assert hooks.logger.type == 'LoggerHook' and hooks.visualization.type == 'VisualizationHook'
    if kind == '_384':
        assert cfg.load_from == apple_weights_url(variant)  # Apple's release, downloaded and converted on first use
    if kind == '_distill':
        assert cfg.custom_imports == dict(imports=['mmfastvit.integrations.distill'], allow_failed_imports=False)
        assert cfg.model.distill_weight == 0.5
        assert osp.isfile(cfg.model.teacher.config)
        assert Config.fromfile(cfg.model.teacher.config).model.model_name == 'regnety_160'
        assert osp.basename(cfg.model.teacher.checkpoint) == 'regnety_160-a5fe301d.pth'


def simulate_lr(cfg, epoch_length=10):
    """The lr after every iteration, from the config's param_scheduler built as the Runner builds it."""
    from mmengine.optim import OptimWrapper
    from mmengine.registry import PARAM_SCHEDULERS
    init_default_scope('mmpretrain')
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=cfg.optim_wrapper.optimizer.lr)
    wrapper = OptimWrapper(optimizer)
    schedulers = [PARAM_SCHEDULERS.build(copy.deepcopy(s), default_args=dict(optimizer=wrapper,
                                                                             epoch_length=epoch_length))
                  for s in cfg.param_scheduler]
    lrs = []
    for _ in range(cfg.train_cfg.max_epochs * epoch_length):
        lrs.append(optimizer.param_groups[0]['lr'])
        wrapper.step()
        for scheduler in schedulers:
            scheduler.step()
    return np.array(lrs)


@pytest.mark.parametrize('name', ['fastvit_t8_in1k.py', 'fastvit_t8_in1k_384.py'])
def test_learning_rate_curve(name):
    lrs = simulate_lr(load(name))
    warmup = 5 * 10
    assert lrs[0] == pytest.approx(1e-6, rel=1e-6)  # timm's --warmup-lr
    assert np.all(np.diff(lrs[:warmup]) > 0)  # updated every iteration, not every epoch
    if name.endswith('_384.py'):
        np.testing.assert_allclose(lrs[warmup - 1:], 5e-6, rtol=1e-6)  # DeiT's flat fine-tune lr
    else:
        assert lrs[warmup - 1] == pytest.approx(1e-3, rel=1e-6)
        assert np.all(np.diff(lrs[warmup:]) < 0)
        assert lrs[-1] == pytest.approx(1e-5, rel=1e-2)  # cosine down to timm's --min-lr


def test_ema_momentum_is_mmengines_weight_of_the_new_value():
    from mmengine.model import ExponentialMovingAverage
    [ema_cfg] = load('fastvit_t8_in1k.py').custom_hooks
    source = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(source.weight)
    ema = ExponentialMovingAverage(source, momentum=ema_cfg.momentum, update_buffers=ema_cfg.update_buffers)
    ema.update_parameters(source)  # the first update copies
    with torch.no_grad():
        source.weight.fill_(1.0)
    ema.update_parameters(source)
    assert ema.module.weight.item() == pytest.approx(1 - 0.9995)  # decay 0.9995 keeps 99.95 % of the average


@pytest.mark.parametrize('name', CONFIGS)
def test_model_builds_runs_and_exempts_norms_biases_layer_scales_from_weight_decay(name):
    from mmengine.optim import build_optim_wrapper
    cfg = load(name)
    model = built(cfg).eval()
    with torch.no_grad():
        [sample] = model(torch.rand(1, 3, 64, 64), mode='predict')
    assert sample.pred_score.shape == (1000,) and float(sample.pred_score.sum()) == pytest.approx(1.0, abs=1e-5)

    wrapper = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
    decay = {id(p): group['weight_decay'] for group in wrapper.optimizer.param_groups for p in group['params']}
    assert len(decay) == len(list(model.parameters()))
    base = cfg.optim_wrapper.optimizer.weight_decay
    counts = dict(gamma=0, norm=0, bias=0, conv_weight=0, linear_weight=0)
    for module in model.modules():
        for param_name, param in module.named_parameters(recurse=False):
            if param_name == 'gamma':
                kind, expected = 'gamma', 0.0
            elif isinstance(module, _BatchNorm):
                kind, expected = 'norm', 0.0
            elif param_name == 'bias':
                kind, expected = 'bias', 0.0
            else:
                kind, expected = ('linear_weight' if param.dim() == 2 else 'conv_weight'), base
            counts[kind] += 1
            assert decay[id(param)] == expected, f'{type(module).__name__}.{param_name} ({kind}): ' \
                                                 f'weight decay {decay[id(param)]}, expected {expected}'
    assert all(counts.values()), counts  # every kind of parameter exists, so each rule was exercised


def test_distilled_model_keeps_the_plain_checkpoint_layout():
    plain = built(load('fastvit_sa12_in1k.py'))
    distilled = built(load('fastvit_sa12_in1k_distill.py'))
    assert type(distilled).__name__ == 'HardDistillationClassifier' and distilled.teacher is None
    assert {k: v.shape for k, v in plain.state_dict().items()} == \
        {k: v.shape for k, v in distilled.state_dict().items()}


@pytest.mark.parametrize('name', ['fastvit_t8_in1k.py', 'fastvit_sa36_in1k.py', 'fastvit_t8_in1k_384.py'])
def test_eval_transforms_on_an_image(name):
    """The eval pipeline (after decoding) on a 300x400 image: shorter edge to floor(size / crop ratio), center crop;
    the TTA pipeline gives the image and its mirror."""
    from mmengine.dataset import Compose
    init_default_scope('mmpretrain')
    cfg = load(name)
    size = cfg.img_size
    image = np.random.RandomState(0).randint(0, 256, (300, 400, 3), dtype=np.uint8)
    results = Compose(copy.deepcopy(cfg.test_pipeline[1:-1]))(dict(img=image, img_shape=image.shape[:2]))
    assert results['scale'] == (int(400 * int(size / cfg.crop_ratio) / 300), int(size / cfg.crop_ratio))
    assert results['img'].shape == (size, size, 3)

    tta = Compose(copy.deepcopy(cfg.tta_pipeline[1:]))(dict(img=image, img_shape=image.shape[:2]))
    plain, mirrored = tta['inputs']
    assert plain.shape == (3, size, size)
    assert torch.equal(mirrored, plain.flip(-1)) and not torch.equal(plain, mirrored)


def test_tta_model_averages_the_two_views():
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample
    cfg = load('fastvit_t8_in1k.py')
    model = built(cfg).eval()
    tta = MODELS.build(dict(**cfg.tta_model.to_dict(), module=model))
    images = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
    views = dict(inputs=[[images], [images.flip(-1)]], data_samples=[[DataSample()], [DataSample()]])
    with torch.no_grad():
        [merged] = tta.test_step(views)
        [plain] = model.test_step(dict(inputs=[images], data_samples=[DataSample()]))
        [mirrored] = model.test_step(dict(inputs=[images.flip(-1)], data_samples=[DataSample()]))
    torch.testing.assert_close(merged.pred_score, (plain.pred_score + mirrored.pred_score) / 2)
