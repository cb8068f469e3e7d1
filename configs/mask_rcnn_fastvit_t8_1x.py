# Mask R-CNN 1x on COCO with FastViT-T8 + FPN (not in the paper (which reports SA12, SA24, SA36, MA36)).
# Backbone initialised from Apple's ImageNet-1k FastViT-T8, downloaded and converted on first use
# (docs/detection.md); drop path 0.0 as in the ImageNet recipe.
# Train: python tools/train.py configs/mask_rcnn_fastvit_t8_1x.py
_base_ = [
    './_base_/models/mask_rcnn_fastvit_fpn.py',
    './_base_/datasets/coco_instance.py',
    './_base_/schedules/det_adamw_1x.py',
    './_base_/det_runtime.py',
]

model = dict(
    backbone=dict(
        arch='t8',
        drop_path_rate=0.0,
        init_cfg=dict(checkpoint='https://docs-assets.developer.apple.com/ml-research/models/fastvit/'
                                 'image_classification_models/fastvit_t8.pth.tar')),
    neck=dict(in_channels=[48, 96, 192, 384]))
