"""Backbone-only deploy of a detector: fusing the FastViT inside Mask R-CNN leaves its test results unchanged, in
process (switch_to_deploy) and through the tools (reparameterize.py on a Runner checkpoint, then tools/test.py with
model.backbone.deploy=True)."""
import copy
import pickle

import pytest
import torch
from det_helpers import IMG, REPARAMETERIZE, TEST, check, coco_ap, config_path, run, shrink
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import DefaultScope

from mmfastvit.engine import load_runner_checkpoint
from mmfastvit.models.utils.fusion_checks import randomize_fusable_state_

CONFIG = config_path('sa12')
BOX_ATOL = 1e-3  # pixels
SCORE_ATOL = 1e-5
MASK_AGREEMENT = 0.999  # fraction of mask pixels that must agree (a logit within rounding of 0.5 may flip)


def build_detector(data_root):
    """The SA12 Mask R-CNN of the config (test settings as det_helpers.shrink) and the tiny val set as one batch."""
    from mmdet.registry import DATASETS, MODELS
    cfg = Config.fromfile(CONFIG)
    cfg.model.backbone.init_cfg = None
    cfg.model.test_cfg.rpn.max_per_img = 100
    cfg.model.test_cfg.rcnn.update(score_thr=0.0, max_per_img=20)
    dataset_cfg = cfg.test_dataloader.dataset
    dataset_cfg.data_root = data_root + '/'
    dataset_cfg.pipeline[1].scale = (IMG, IMG)
    with DefaultScope.overwrite_default_scope('mmdet'):  # also when called from a module-scoped fixture
        dataset = DATASETS.build(dataset_cfg)
        batch = pseudo_collate([dataset[i] for i in range(len(dataset))])
        torch.manual_seed(0)  # the same random detector on every run
        model = MODELS.build(cfg.model)
    model.init_weights()
    return model, batch


def assert_same_predictions(expected, actual):
    """Boxes, scores, labels and masks of two lists of predictions (DetDataSample or dumped dicts) agree."""
    assert len(expected) == len(actual)
    for exp, act in zip(expected, actual):
        exp, act = (p.pred_instances if hasattr(p, 'pred_instances') else p['pred_instances'] for p in (exp, act))
        assert len(exp['scores']) == len(act['scores']) > 0
        assert torch.equal(exp['labels'], act['labels'])
        torch.testing.assert_close(act['scores'], exp['scores'], atol=SCORE_ATOL, rtol=0)
        torch.testing.assert_close(act['bboxes'], exp['bboxes'], atol=BOX_ATOL, rtol=0)
        assert exp['masks'].shape == act['masks'].shape and exp['masks'].any()
        assert (exp['masks'] == act['masks']).float().mean().item() >= MASK_AGREEMENT


def test_switch_to_deploy_keeps_boxes_scores_masks(tiny_coco):
    model, batch = build_detector(tiny_coco['root'])
    randomize_fusable_state_(model.backbone, seed=3)  # as training leaves them: fusion is not the identity
    model.eval()
    with torch.no_grad():
        expected = model.test_step(batch)
        deployed = copy.deepcopy(model)
        deployed.backbone.switch_to_deploy()
        assert deployed.backbone.fused_level == 'full'
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in deployed.backbone.modules())
        assert sum(p.numel() for p in deployed.backbone.parameters()) < sum(
            p.numel() for p in model.backbone.parameters())
        actual = deployed.test_step(batch)
    assert_same_predictions(expected, actual)


@pytest.fixture(scope='module')
def randomized_checkpoint(trained_sa12):
    """epoch_1.pth of the training run (mmengine's Runner format, optimizer and message hub included) with random
    BatchNorm statistics and layer scales in the backbone, so that the fused checkpoint differs from it."""
    model, _ = build_detector(trained_sa12['data']['root'])
    checkpoint = load_runner_checkpoint(str(trained_sa12['work_dir'] / 'epoch_1.pth'))
    model.load_state_dict(checkpoint['state_dict'], strict=True)
    randomize_fusable_state_(model.backbone, seed=4)
    checkpoint['state_dict'] = model.state_dict()
    path = trained_sa12['tmp'] / 'trained_randomized.pth'
    torch.save(checkpoint, path)
    return path


def test_reparameterize_tool_and_test_with_deploy_true_give_the_same_ap(trained_sa12, randomized_checkpoint):
    tmp, data_root = trained_sa12['tmp'], trained_sa12['data']['root']
    deployed = tmp / 'trained_deploy.pth'
    tool = check(run(REPARAMETERIZE, CONFIG, randomized_checkpoint, deployed, '--shape', IMG, cwd=tmp))
    assert 'fused vs unfused outputs: relative error' in tool.stdout
    fused = torch.load(deployed, weights_only=True)
    assert fused['meta']['fusion_level'] == 'full'
    backbone_keys = [key for key in fused['state_dict'] if key.startswith('backbone.')]
    assert backbone_keys and not any(key.endswith('running_mean') for key in backbone_keys)  # no BatchNorm left

    ap, predictions = {}, {}
    for name, ckpt, extra in (('train', randomized_checkpoint, []),
                              ('deploy', deployed, ['model.backbone.deploy=True'])):
        out = tmp / f'{name}_preds.pkl'
        result = check(run(TEST, CONFIG, ckpt, '--work-dir', tmp / f'{name}_test', '--out', out,
                           *shrink(data_root), *extra, cwd=tmp))
        ap[name] = coco_ap(result.stdout + result.stderr)
        with open(out, 'rb') as f:
            predictions[name] = pickle.load(f)
    assert set(ap['train']['pycocotools']) == {'bbox', 'segm'}
    assert ap['deploy'] == ap['train']
    assert_same_predictions(predictions['train'], predictions['deploy'])
