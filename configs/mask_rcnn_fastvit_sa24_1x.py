# Mask R-CNN 1x on COCO with FastViT-SA24 + FPN (the paper: box AP 42.0, mask AP 38.0).
# Backbone initialised from Apple's ImageNet-1k FastViT-SA24, downloaded and converted on first use
# (docs/detection.md); drop path 0.1 as in the ImageNet recipe.
# Train: python tools/train.py configs/mask_rcnn_fastvit_sa24_1x.py
_base_ = [
    './_base_/models/mask_rcnn_fastvit_fpn.py',
    './_base_/datasets/coco_instance.py',
    './_base_/schedules/det_adamw_1x.py',
    './_base_/det_runtime.py',
]

model = dict(
    backbone=dict(
        arch='sa24',
        drop_path_rate=0.1,
        init_cfg=dict(checkpoint='https://docs-assets.developer.apple.com/ml-research/models/fastvit/'
                                 'image_classification_models/fastvit_sa24.pth.tar')),
    neck=dict(in_channels=[64, 128, 256, 512]))
