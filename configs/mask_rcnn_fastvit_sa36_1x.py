# Mask R-CNN 1x on COCO with FastViT-SA36 + FPN (the paper: box AP 43.8, mask AP 39.4).
# Backbone initialised from Apple's ImageNet-1k FastViT-SA36, downloaded and converted on first use
# (docs/detection.md); drop path 0.2 as in the ImageNet recipe.
# Train: python tools/train.py configs/mask_rcnn_fastvit_sa36_1x.py
_base_ = [
    './_base_/models/mask_rcnn_fastvit_fpn.py',
    './_base_/datasets/coco_instance.py',
    './_base_/schedules/det_adamw_1x.py',
    './_base_/det_runtime.py',
]

model = dict(
    backbone=dict(
        arch='sa36',
        drop_path_rate=0.2,
        init_cfg=dict(checkpoint='https://docs-assets.developer.apple.com/ml-research/models/fastvit/'
                                 'image_classification_models/fastvit_sa36.pth.tar')),
    neck=dict(in_channels=[64, 128, 256, 512]))
