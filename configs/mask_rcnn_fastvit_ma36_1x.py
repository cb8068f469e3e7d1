# Mask R-CNN 1x on COCO with FastViT-MA36 + FPN (the paper: box AP 45.1, mask AP 40.5).
# Backbone initialised from Apple's ImageNet-1k FastViT-MA36, downloaded and converted on first use
# (docs/detection.md); drop path 0.35 as in the ImageNet recipe.
# Train: python tools/train.py configs/mask_rcnn_fastvit_ma36_1x.py
_base_ = [
    './_base_/models/mask_rcnn_fastvit_fpn.py',
    './_base_/datasets/coco_instance.py',
    './_base_/schedules/det_adamw_1x.py',
    './_base_/det_runtime.py',
]

model = dict(
    backbone=dict(
        arch='ma36',
        drop_path_rate=0.35,
        init_cfg=dict(checkpoint='https://docs-assets.developer.apple.com/ml-research/models/fastvit/'
                                 'image_classification_models/fastvit_ma36.pth.tar')),
    neck=dict(in_channels=[76, 152, 304, 608]))
