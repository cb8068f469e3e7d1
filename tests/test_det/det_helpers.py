"""What the detection tests share: paths, the --cfg-options that shrink a COCO config to the tiny generated set on
CPU, running the tools, and reading the AP they print.

The tools run through their ``main(argv)`` in this interpreter (helpers.run_in_process: argv, cwd, environment and one
thread as in a new process, the output captured, the interpreter's state put back afterwards), which saves each run's
imports of mmdet; tests/test_engine/test_distributed.py runs tools/train.py on a detector in its own processes."""
import os.path as osp
import re
from typing import Dict, List

from helpers import check_ok, run_in_process

# the detection tests import these two from here
run, check = run_in_process, check_ok

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_DIR = osp.join(REPO, 'configs')
TRAIN = osp.join(REPO, 'tools', 'train.py')
TEST = osp.join(REPO, 'tools', 'test.py')
REPARAMETERIZE = osp.join(REPO, 'tools', 'model_converters', 'reparameterize.py')
VARIANTS = ('t8', 't12', 's12', 'sa12', 'sa24', 'sa36', 'ma36')
IMG = 128  # the tiny set's longer side, and the resize target in place of 1333x800

# pycocotools' summary (printed by mmdet's CocoMetric) and mmdet's metric line
EVAL_TYPE = re.compile(r'Evaluate annotation type \*(bbox|segm)\*')
SUMMARY_AP = re.compile(r'Average Precision +\(AP\) @\[ IoU=0\.50:0\.95 \| area= +all \| maxDets= *\d+ \] '
                        r'= (-?[0-9.]+)')
METRIC = re.compile(r'coco/(bbox|segm)_mAP: (-?[0-9.]+)')


def config_path(variant: str) -> str:
    return osp.join(CONFIG_DIR, f'mask_rcnn_fastvit_{variant}_1x.py')


def shrink(data_root: str, max_epochs: int = 1) -> List[str]:
    """``--cfg-options`` that run a COCO config on the tiny set on CPU: 128-pixel images, batches of 2, no workers,
    fewer proposals and RoIs, no pretrained file, and the same model, schedule and evaluator otherwise."""
    root = data_root.rstrip('/') + '/'
    options = [
        'model.backbone.init_cfg=None',  # train from scratch (no converted ImageNet checkpoint here)
        f'train_cfg.max_epochs={max_epochs}', 'default_hooks.logger.interval=1',
        'randomness.seed=0',
        f'train_dataloader.dataset.pipeline.2.scale=({IMG},{IMG})', 'train_dataloader.batch_size=2',
        'model.train_cfg.rpn_proposal.max_per_img=200', 'model.train_cfg.rcnn.sampler.num=64',
        'model.test_cfg.rpn.max_per_img=100', 'model.test_cfg.rcnn.max_per_img=20',
        # an untrained model's class scores (~1/81) are below the 0.05 threshold: keep them so that the evaluator
        # has detections to score
        'model.test_cfg.rcnn.score_thr=0.0',
    ]
    for split in ('train', 'val', 'test'):
        options += [f'{split}_dataloader.dataset.data_root={root}', f'{split}_dataloader.num_workers=0',
                    f'{split}_dataloader.persistent_workers=False']
    for split in ('val', 'test'):
        options += [f'{split}_dataloader.dataset.pipeline.1.scale=({IMG},{IMG})',
                    f'{split}_evaluator.ann_file={root}annotations/instances_val2017.json']
    return ['--cfg-options'] + options


def coco_ap(log: str) -> Dict[str, Dict[str, float]]:
    """AP@[.50:.95] of the last evaluation in ``log``: ``{'pycocotools': {'bbox': .., 'segm': ..}, 'metric': {...}}``
    from pycocotools' printed summary and from mmdet's ``coco/<type>_mAP`` line."""
    summary: Dict[str, float] = {}
    for match in EVAL_TYPE.finditer(log):
        ap = SUMMARY_AP.search(log, match.end())
        assert ap is not None, f'no pycocotools summary after {match.group(0)}'
        summary[match.group(1)] = float(ap.group(1))
    metric = {kind: float(value) for kind, value in METRIC.findall(log)}
    return dict(pycocotools=summary, metric=metric)
