# Semantic FPN with a FastViT-T12 backbone on ADE20K, 40k iterations x 32 images at 512x512 crops.
# Not in the paper (it reports SA12, SA24, SA36 and MA36).
# The backbone starts from Apple's ImageNet-1k release, downloaded and converted on first use
# (docs/segmentation.md); to train from scratch:
#   --cfg-options model.backbone.init_cfg=None
_base_ = [
    './_base_/models/sem_fpn_fastvit.py',
    './_base_/datasets/ade20k_512.py',
    './_base_/schedules/seg_adamw_poly_40k.py',
    './_base_/seg_runtime.py',
]

model = dict(
    backbone=dict(
        arch='t12',
        init_cfg=dict(checkpoint='https://docs-assets.developer.apple.com/ml-research/models/fastvit/'
                                 'image_classification_models/fastvit_t12.pth.tar')),
    neck=dict(in_channels=[64, 128, 256, 512]))
