"""mmfastvit's configs through the OpenMMLab Inferencers and high-level APIs, called as a user calls them.

mmpretrain's ``ImageClassificationInferencer`` / ``get_model``, mmdet's ``DetInferencer`` / ``init_detector`` /
``inference_detector`` and mmseg's ``MMSegInferencer`` / ``init_model`` / ``inference_model``, each on a JPEG file and
on the same image as an array, with random weights saved as a checkpoint (every route then loads the same model) and
the pictures written. The image is 96x128 and the detection / segmentation test resizes are shrunk to it, so the models
run at that size. The last tests put every shipped config's test pipeline through each Inferencer's own pipeline code,
without building the model.
"""
import copy
import functools
import glob
import json
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from mmfastvit.engine.cli import use_checked_image_loader

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = osp.join(REPO, 'configs')
H, W = 96, 128  # the test image: not square, so that a swapped height and width shows
MAX_DETS = 5


def config_path(name: str) -> str:
    return osp.join(CONFIGS, f'{name}.py')


@pytest.fixture(autouse=True)
def default_scope():
    """Each test starts in mmpretrain's scope, as after ``mmpretrain.utils.register_all_modules()`` (mmpretrain's
    Inferencer builds its pipeline in the current scope; mmdet's and mmseg's APIs set theirs), and leaves the scope
    that was current before: DetInferencer, init_detector and init_model set theirs for good."""
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        yield


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)  # the same random weights in every run


@pytest.fixture(scope='module')
def image(tmp_path_factory):
    """A JPEG file of a few coloured shapes on a gradient, and the array cv2 decodes from it (BGR, as mmcv reads)."""
    yy, xx = np.mgrid[:H, :W]
    img = np.stack([xx * 255 // W, yy * 255 // H, (xx + yy) * 255 // (H + W)], axis=-1).astype(np.uint8)
    cv2.rectangle(img, (10, 12), (60, 70), (0, 0, 255), -1)
    cv2.circle(img, (95, 50), 22, (255, 255, 0), -1)
    path = str(tmp_path_factory.mktemp('image') / 'street.jpg')
    assert cv2.imwrite(path, img)
    return dict(path=path, array=cv2.imread(path), name='street')


def save_checkpoint(model: torch.nn.Module, path, dataset_meta: dict, image: dict) -> str:
    """Random weights as a training run starts from them (the model's ``init_weights``), with the backbone's BatchNorm
    statistics then taken from ``image``, as training takes them from its data, saved as mmengine's Runner saves a
    checkpoint (``state_dict`` and ``meta.dataset_meta``). With a fresh BatchNorm's mean 0 and variance 1 instead,
    FMViT-B's outputs reach ~1e7 in eval mode and the detector proposes no box."""
    model.init_weights()
    norms = [m for m in model.backbone.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.momentum = 1.0  # running statistics := this batch's
    inputs = model.data_preprocessor(dict(inputs=[torch.from_numpy(image['array']).permute(2, 0, 1)]))['inputs']
    model.backbone.train()
    with torch.no_grad():
        model.backbone(inputs)
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    model.eval()
    torch.save(dict(state_dict=model.state_dict(), meta=dict(dataset_meta=dataset_meta)), str(path))
    return str(path)


@functools.lru_cache(maxsize=1)
def saved_weights(checkpoint: str) -> dict:
    return torch.load(checkpoint, weights_only=True)['state_dict']


def assert_has_weights(model: torch.nn.Module, checkpoint: str) -> None:
    """Every tensor of the checkpoint is the model's: the API loaded it (a fresh build draws other random weights)."""
    saved = saved_weights(checkpoint)
    state = model.state_dict()
    assert sorted(state) == sorted(saved)
    assert all(torch.equal(state[key].cpu(), value) for key, value in saved.items())


def assert_picture(path: str, image: dict) -> None:
    """``path`` is an image file of the input's size."""
    assert osp.isfile(path), f'{path} was not written; the folder holds {glob.glob(osp.dirname(path) + "/*")}'
    picture = cv2.imread(path)
    assert picture is not None and picture.shape == (H, W, 3)
    assert not np.array_equal(picture, image['array'])  # something was drawn


# ---------------------------------------------------------------------------------------------------- classification
# config -> the checkpoint it loads (the 384 fine-tune and the distilled student share T8's weights)
CLS_CONFIGS = {
    'fastvit_t8_in1k': 'fastvit_t8_in1k',
    'fastvit_t8_in1k_384': 'fastvit_t8_in1k',
    'fastvit_t8_in1k_distill': 'fastvit_t8_in1k',
    'fmvit_t_in1k': 'fmvit_t_in1k',
}


@pytest.fixture(scope='module')
def cls_checkpoints(tmp_path_factory, image):
    """Random weights of T8 and FMViT-T, built with mmpretrain's ``get_model``, saved with ImageNet's class names."""
    from mmpretrain import get_model
    from mmpretrain.datasets import ImageNet

    folder = tmp_path_factory.mktemp('cls_checkpoints')
    return {name: save_checkpoint(get_model(config_path(name)), folder / f'{name}.pth', ImageNet.METAINFO, image)
            for name in sorted(set(CLS_CONFIGS.values()))}


def cls_result(inferencer, inputs, **kwargs) -> dict:
    result, = inferencer(inputs, **kwargs)
    scores = result['pred_scores']
    assert scores.shape == (1000, ) and scores.dtype == np.float32
    assert (scores >= 0).all() and abs(float(scores.sum()) - 1) < 1e-4
    assert result['pred_label'] == int(scores.argmax()) and result['pred_score'] == pytest.approx(scores.max())
    return result


@pytest.mark.parametrize('name', CLS_CONFIGS)
def test_image_classification_inferencer(name, image, cls_checkpoints, tmp_path):
    from mmpretrain import ImageClassificationInferencer
    from mmpretrain.datasets import ImageNet

    checkpoint = cls_checkpoints[CLS_CONFIGS[name]]
    inferencer = ImageClassificationInferencer(model=config_path(name), pretrained=checkpoint, device='cpu')
    assert_has_weights(inferencer.model, checkpoint)

    from_path = cls_result(inferencer, image['path'], show_dir=str(tmp_path / 'vis'))
    from_array = cls_result(inferencer, image['array'])
    assert from_path['pred_class'] == ImageNet.METAINFO['classes'][from_path['pred_label']]
    np.testing.assert_allclose(from_array['pred_scores'], from_path['pred_scores'], rtol=0, atol=1e-6)
    assert_picture(str(tmp_path / 'vis' / f'{image["name"]}.png'), image)


def test_distill_config_predicts_with_the_student(image, cls_checkpoints):
    """A distillation config infers like its plain config: its model is the student classifier (the teacher is built
    only by the first training step), and its checkpoints hold the student's weights alone."""
    from mmpretrain import ImageClassificationInferencer

    checkpoint = cls_checkpoints['fastvit_t8_in1k']
    distilled = ImageClassificationInferencer(config_path('fastvit_t8_in1k_distill'), pretrained=checkpoint)
    plain = ImageClassificationInferencer(config_path('fastvit_t8_in1k'), pretrained=checkpoint)
    assert type(distilled.model).__name__ == 'HardDistillationClassifier'
    np.testing.assert_allclose(cls_result(distilled, image['path'])['pred_scores'],
                               cls_result(plain, image['path'])['pred_scores'], rtol=0, atol=1e-6)


def test_get_model_from_a_config_path(image, cls_checkpoints):
    """``mmpretrain.get_model(config_path, pretrained=checkpoint)``, then the model given to the Inferencer (FMViT's
    configs go through get_model inside the Inferencer above)."""
    from mmpretrain import ImageClassificationInferencer, get_model

    name = 'fastvit_t8_in1k'
    checkpoint = cls_checkpoints[name]
    model = get_model(config_path(name), pretrained=checkpoint, device='cpu')
    assert_has_weights(model, checkpoint)
    assert not model.training
    with torch.no_grad():
        features = model.extract_feat(torch.rand(1, 3, 64, 64))
    assert features[-1].shape[0] == 1 and features[-1].shape[1] == model.head.fc.in_features

    by_model = cls_result(ImageClassificationInferencer(model=model), image['array'])
    by_config = cls_result(ImageClassificationInferencer(config_path(name), pretrained=checkpoint), image['array'])
    np.testing.assert_allclose(by_model['pred_scores'], by_config['pred_scores'], rtol=0, atol=1e-6)


def test_inference_model_by_name(image, cls_checkpoints, tmp_path):
    """``mmpretrain.inference_model`` picks the Inferencer from the model-index entry of a model NAME. mmpretrain
    1.2.0 refuses a config path there (``ValueError: Failed to find model``) and a model built from one
    (``NotImplementedError: No available inferencer``), whatever the model; ``ImageClassificationInferencer`` takes
    both, as above."""
    import mmpretrain

    import mmfastvit.integrations.mmpretrain  # noqa: F401  (mmfastvit's names into mmpretrain's ModelHub)

    checkpoint = cls_checkpoints['fastvit_t8_in1k']
    result = mmpretrain.inference_model('fastvit-t8_in1k', image['path'], pretrained=checkpoint, device='cpu',
                                        show_dir=str(tmp_path / 'vis'))
    scores = result['pred_scores']
    assert scores.shape == (1000, ) and abs(float(scores.sum()) - 1) < 1e-4
    assert result['pred_label'] == int(scores.argmax())
    assert_picture(str(tmp_path / 'vis' / f'{image["name"]}.png'), image)
    by_config = mmpretrain.ImageClassificationInferencer(config_path('fastvit_t8_in1k'), pretrained=checkpoint)
    np.testing.assert_allclose(scores, cls_result(by_config, image['path'])['pred_scores'], rtol=0, atol=1e-6)


# --------------------------------------------------------------------------------------------------------- detection
DET_CONFIGS = ['mask_rcnn_fastvit_t8_1x', 'mask_rcnn_fmvit_b_1x']


def small_test_config(name: str, **test_cfg) -> Config:
    """The config with its test resize fitting the image (no upscaling to 1333x800 or 2048x512), the backbone's
    pretrained file dropped and ``model.test_cfg`` updated with ``test_cfg`` (nested dicts merged)."""
    cfg = Config.fromfile(config_path(name))
    for pipeline in (cfg.test_dataloader.dataset.pipeline, cfg.get('test_pipeline') or []):
        for transform in pipeline:
            if transform.type == 'Resize':
                transform.scale = (W, H)
    cfg.model.backbone.init_cfg = None
    cfg.merge_from_dict(dict(model=dict(test_cfg=test_cfg)))
    return cfg


def det_config(name: str) -> Config:
    # an untrained detector scores every class about 1 / 81, below the default 0.05: keep the top MAX_DETS boxes
    return small_test_config(name, rpn=dict(nms_pre=200, max_per_img=50),
                             rcnn=dict(score_thr=0.0, max_per_img=MAX_DETS))


@pytest.mark.parametrize('name', DET_CONFIGS)
def test_det_inferencer_and_inference_detector(name, image, tmp_path):
    from mmdet.apis import DetInferencer, inference_detector, init_detector
    from mmdet.datasets import CocoDataset

    cfg = det_config(name)
    checkpoint = save_checkpoint(init_detector(copy.deepcopy(cfg), device='cpu'), tmp_path / 'det.pth',
                                 CocoDataset.METAINFO, image)
    inferencer = DetInferencer(model=copy.deepcopy(cfg), weights=checkpoint, device='cpu', show_progress=False)
    assert_has_weights(inferencer.model, checkpoint)

    out_dir = tmp_path / 'out'
    from_path = inferencer(image['path'], out_dir=str(out_dir), no_save_pred=False)['predictions'][0]
    from_array = inferencer(image['array'])['predictions'][0]
    num = len(from_path['bboxes'])
    assert 0 < num <= MAX_DETS
    assert len(from_path['labels']) == len(from_path['scores']) == len(from_path['masks']) == num
    assert all(len(box) == 4 for box in from_path['bboxes'])
    assert all(0 <= label < 80 for label in from_path['labels'])
    assert all(mask['size'] == [H, W] for mask in from_path['masks'])  # COCO run-length masks of the image's size
    for key in ('labels', 'scores', 'bboxes'):
        np.testing.assert_allclose(from_array[key], from_path[key], rtol=0, atol=1e-4)
    assert_picture(str(out_dir / 'vis' / f'{image["name"]}.jpg'), image)
    with open(out_dir / 'preds' / f'{image["name"]}.json') as f:
        np.testing.assert_allclose(json.load(f)['bboxes'], from_path['bboxes'], rtol=0, atol=1e-4)

    model = init_detector(copy.deepcopy(cfg), checkpoint, device='cpu')
    assert_has_weights(model, checkpoint)
    results = [inference_detector(model, image['path']), inference_detector(model, image['array'])]
    for result in results:
        instances = result.pred_instances
        assert instances.bboxes.shape == (num, 4) and instances.masks.shape == (num, H, W)
        assert instances.masks.dtype == torch.bool and tuple(result.ori_shape) == (H, W)
        np.testing.assert_allclose(instances.bboxes.numpy(), from_path['bboxes'], rtol=0, atol=1e-3)
        assert instances.labels.tolist() == from_path['labels']


# ------------------------------------------------------------------------------------------------------ segmentation
SEG_CONFIGS = ['sem_fpn_fastvit_t8_ade20k_40k', 'sem_fpn_fmvit_b_ade20k_40k']


@pytest.mark.parametrize('name', SEG_CONFIGS)
def test_mmseg_inferencer_and_inference_model(name, image, tmp_path):
    from mmseg.apis import MMSegInferencer, inference_model, init_model
    from mmseg.datasets import ADE20KDataset

    cfg = small_test_config(name)
    checkpoint = save_checkpoint(init_model(copy.deepcopy(cfg), device='cpu'), tmp_path / 'seg.pth',
                                 ADE20KDataset.METAINFO, image)
    inferencer = MMSegInferencer(model=copy.deepcopy(cfg), weights=checkpoint, device='cpu')
    inferencer.show_progress = False
    assert_has_weights(inferencer.model, checkpoint)

    out_dir = tmp_path / 'out'
    from_path = inferencer(image['path'], out_dir=str(out_dir))['predictions']
    from_array = inferencer(image['array'])['predictions']
    assert from_path.shape == (H, W) and from_path.min() >= 0 and from_path.max() < 150
    np.testing.assert_array_equal(from_array, from_path)
    assert_picture(str(out_dir / 'vis' / f'{image["name"]}.jpg'), image)
    saved = cv2.imread(str(out_dir / 'pred' / '00000000_pred.png'), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(saved, from_path)

    model = init_model(copy.deepcopy(cfg), checkpoint, device='cpu')
    assert_has_weights(model, checkpoint)
    # path first: mmseg's inference_model turns the model's test pipeline into an array loader for good once given
    # an array (mmseg 1.2.2)
    for inputs in (image['path'], image['array']):
        result = inference_model(model, inputs)
        assert result.pred_sem_seg.data.shape == (1, H, W) and result.seg_logits.data.shape == (150, H, W)
        np.testing.assert_array_equal(result.pred_sem_seg.data[0].numpy(), from_path)


# --------------------------------------------------------------------------- every config's test pipeline, no model
def task_configs():
    """(config name, default scope) of every config in configs/ that an OpenMMLab Inferencer serves."""
    found = []
    for path in sorted(glob.glob(osp.join(CONFIGS, '*.py'))):
        scope = Config.fromfile(path, import_custom_modules=False).get('default_scope')
        if scope in ('mmpretrain', 'mmdet', 'mmseg'):
            found.append(pytest.param(osp.basename(path)[:-3], scope, id=osp.basename(path)[:-3]))
    return found


TASK_CONFIGS = task_configs()


def test_every_task_family_is_covered():
    scopes = [param.values[1] for param in TASK_CONFIGS]
    assert all(scopes.count(scope) >= 2 for scope in ('mmpretrain', 'mmdet', 'mmseg')), scopes


@pytest.mark.parametrize('name, scope', TASK_CONFIGS)
def test_inferencer_pipeline_takes_every_config(name, scope, image):
    """The Inferencer's own ``_init_pipeline`` finds the image loader of the config's test pipeline, and the pipeline
    it returns turns the image file and the array into the same model input."""
    cfg = Config.fromfile(config_path(name))
    with DefaultScope.overwrite_default_scope(scope):
        if scope == 'mmpretrain':
            from mmpretrain import ImageClassificationInferencer
            inferencer = object.__new__(ImageClassificationInferencer)  # the pipeline code without the model
            inferencer.pipeline = inferencer._init_pipeline(cfg)
            outputs = [next(inferencer.preprocess([inputs]))['inputs'][0] for inputs in (image['path'], image['array'])]
        else:
            if scope == 'mmdet':
                from mmdet.apis import DetInferencer as Inferencer
            else:
                from mmseg.apis import MMSegInferencer as Inferencer
            pipeline = object.__new__(Inferencer)._init_pipeline(cfg)
            samples = [pipeline(inputs) for inputs in (image['path'], image['array'])]
            assert all(tuple(sample['data_samples'].ori_shape) == (H, W) for sample in samples)
            outputs = [sample['inputs'] for sample in samples]
    assert outputs[0].dtype == torch.uint8 and outputs[0].ndim == 3 and outputs[0].shape[0] == 3
    assert torch.equal(outputs[0], outputs[1])


@pytest.mark.parametrize('name, scope', TASK_CONFIGS)
def test_tools_load_every_test_image_with_the_checked_loader(name, scope):
    """tools/test.py and tools/train.py give the test / val pipelines mmfastvit's loader (a corrupt image named), with
    the config's loading options kept."""
    cfg = Config.fromfile(config_path(name))
    loaders = [cfg[f'{split}_dataloader'].dataset.pipeline[0] for split in ('val', 'test')]
    assert [loader.type for loader in loaders] == ['LoadImageFromFile'] * 2  # what the Inferencers look for
    options = [{key: value for key, value in loader.items() if key != 'type'} for loader in loaders]
    use_checked_image_loader(cfg, ('val', 'test'))
    loaders = [cfg[f'{split}_dataloader'].dataset.pipeline[0] for split in ('val', 'test')]
    assert [loader.type for loader in loaders] == ['mmfastvit.LoadImageFromFile'] * 2
    assert [{key: value for key, value in loader.items() if key != 'type'} for loader in loaders] == options
    assert cfg.train_dataloader.dataset.pipeline[0].type == 'mmfastvit.LoadImageFromFile'  # as it was


def test_checked_loader_reaches_wrapped_datasets_and_keeps_other_loaders():
    cfg = Config(dict(
        val_dataloader=dict(dataset=dict(type='RepeatDataset', times=2, dataset=dict(
            type='CocoDataset',
            pipeline=[dict(type='mmcv.LoadImageFromFile', backend_args=None), dict(type='Resize')]))),
        test_dataloader=dict(dataset=dict(type='ConcatDataset', datasets=[
            dict(type='ImageNet', pipeline=[dict(type='LoadImageFromNDArray')]),
            dict(type='ImageNet', pipeline=[dict(type='mmfastvit.LoadImageFromFile', on_corrupt='skip')])]))))
    use_checked_image_loader(cfg, ('train', 'val', 'test'))  # no train_dataloader: nothing to do there
    assert cfg.val_dataloader.dataset.dataset.pipeline == [
        dict(type='mmfastvit.LoadImageFromFile', backend_args=None), dict(type='Resize')]
    assert [d.pipeline for d in cfg.test_dataloader.dataset.datasets] == [
        [dict(type='LoadImageFromNDArray')], [dict(type='mmfastvit.LoadImageFromFile', on_corrupt='skip')]]
