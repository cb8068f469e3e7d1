"""Fixtures of the detection tests: one tiny generated COCO set and one short training run, shared by the files;
every test runs in mmdet's registry scope and leaves the previous default scope current afterwards."""
import pytest
from det_helpers import TRAIN, check, config_path, run, shrink
from helpers import build_once
from mmengine.registry import DefaultScope

from mmfastvit.datasets import make_tiny_coco

TRAIN_IMAGES, VAL_IMAGES = 4, 2


@pytest.fixture(autouse=True)
def mmdet_scope():
    with DefaultScope.overwrite_default_scope('mmdet'):
        yield


@pytest.fixture(scope='session')
def tiny_coco(tmp_path_factory):
    root = tmp_path_factory.mktemp('tiny_coco')
    return make_tiny_coco(str(root), num_train=TRAIN_IMAGES, num_val=VAL_IMAGES, size=128, crowd_prob=0.5, seed=0)


@pytest.fixture(scope='session')
def trained_sa12(tmp_path_factory, tiny_coco):
    """tools/train.py on configs/mask_rcnn_fastvit_sa12_1x.py for one epoch (2 iterations of 2 images), without the
    validation pass (the resume test validates)."""
    def build(tmp):
        work_dir = tmp / 'work_dir'
        result = check(run(TRAIN, config_path('sa12'), '--work-dir', work_dir, '--no-validate',
                           *shrink(tiny_coco['root'], max_epochs=1), cwd=tmp))
        return dict(tmp=tmp, work_dir=work_dir, log=result.stdout + result.stderr, data=tiny_coco)

    return build_once(tmp_path_factory, 'det_train', build)
