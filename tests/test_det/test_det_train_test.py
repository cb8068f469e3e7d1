"""tools/train.py and tools/test.py end to end with configs/mask_rcnn_fastvit_sa12_1x.py on the generated tiny COCO.

The runs go through the tools' main(argv) in this interpreter (det_helpers.run); the config is shrunk with
--cfg-options only (det_helpers.shrink).
"""
import pickle

import numpy as np
import pytest
from det_helpers import TEST, TRAIN, check, coco_ap, config_path, run, shrink

from mmfastvit.datasets.synthetic.coco import COCO_IDS

CONFIG = config_path('sa12')


def test_train_runs_and_saves_a_checkpoint(trained_sa12):
    work_dir, log = trained_sa12['work_dir'], trained_sa12['log']
    assert (work_dir / 'epoch_1.pth').is_file()
    assert (work_dir / 'last_checkpoint').read_text().strip().endswith('epoch_1.pth')
    # 4 training images in batches of 2: two iterations, each logging every loss of Mask R-CNN
    assert 'Epoch(train) [1][1/2]' in log and 'Epoch(train) [1][2/2]' in log and 'Epoch(train) [2]' not in log
    for loss in ('loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'loss_bbox', 'loss_mask'):
        assert f'{loss}: ' in log
    assert 'mmfastvit.FastViT' in log  # the dumped config names our backbone


def test_resume_continues_and_validates(trained_sa12):
    """`--resume` picks up epoch 1's checkpoint, trains epoch 2 only, then validates with pycocotools."""
    result = check(run(TRAIN, CONFIG, '--work-dir', trained_sa12['work_dir'], '--resume',
                       *shrink(trained_sa12['data']['root'], max_epochs=2), cwd=trained_sa12['tmp']))
    log = result.stdout + result.stderr
    assert 'mmengine_checkpoint_globals' in log  # loaded through the safe-load path
    assert 'resumed epoch: 1, iter: 2' in log
    assert 'Epoch(train) [2][1/2]' in log and 'Epoch(train) [2][2/2]' in log and 'Epoch(train) [1]' not in log
    assert (trained_sa12['work_dir'] / 'epoch_2.pth').is_file()
    ap = coco_ap(log)
    assert set(ap['pycocotools']) == set(ap['metric']) == {'bbox', 'segm'}


def _recompute_ap(predictions, ann_file):
    """AP@[.50:.95] of the dumped predictions, computed here with pycocotools alone."""
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = COCO(ann_file)
    results = dict(bbox=[], segm=[])
    for sample in predictions:
        pred = sample['pred_instances']
        for box, score, label, mask in zip(pred['bboxes'].tolist(), pred['scores'].tolist(), pred['labels'].tolist(),
                                           pred['masks'].numpy()):
            common = dict(image_id=sample['img_id'], category_id=COCO_IDS[label], score=score)
            results['bbox'].append(dict(common, bbox=[box[0], box[1], box[2] - box[0], box[3] - box[1]]))
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            results['segm'].append(dict(common, segmentation=dict(size=rle['size'], counts=rle['counts'].decode())))
    ap = {}
    for kind, dets in results.items():
        evaluator = COCOeval(gt, gt.loadRes(dets), kind)
        evaluator.params.maxDets = [100, 300, 1000]  # mmdet's CocoMetric proposal_nums
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
        ap[kind] = float(evaluator.stats[0])
    return ap


def test_test_prints_bbox_and_segm_ap(trained_sa12):
    tmp, data = trained_sa12['tmp'], trained_sa12['data']
    out = tmp / 'preds.pkl'
    result = check(run(TEST, CONFIG, trained_sa12['work_dir'] / 'epoch_1.pth', '--work-dir', tmp / 'test_dir',
                       '--out', out, *shrink(data['root']), cwd=tmp))
    ap = coco_ap(result.stdout + result.stderr)
    assert set(ap['pycocotools']) == {'bbox', 'segm'}, 'pycocotools printed no bbox / segm summary'
    for kind in ('bbox', 'segm'):
        assert 0.0 <= ap['pycocotools'][kind] <= 1.0
        assert ap['metric'][kind] == pytest.approx(ap['pycocotools'][kind], abs=5e-4)  # logged at 3 vs 4 digits

    with open(out, 'rb') as f:
        predictions = pickle.load(f)
    assert sorted(p['img_id'] for p in predictions) == list(range(5, 5 + data['val']['num_images']))
    for sample in predictions:
        pred = sample['pred_instances']
        assert pred['bboxes'].shape == (20, 4)  # test_cfg.rcnn.max_per_img, score_thr 0
        assert tuple(pred['masks'].shape) == (20, *sample['ori_shape'])  # pasted back at the original size
    recomputed = _recompute_ap(predictions, f"{data['root']}/annotations/instances_val2017.json")
    for kind in ('bbox', 'segm'):
        assert recomputed[kind] == pytest.approx(ap['pycocotools'][kind], abs=5e-4)
