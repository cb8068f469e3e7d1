# Semantic FPN with an FMViT-B backbone on ADE20K, 40k iterations x 32 images at 512x512 crops. The FMViT paper's
# protocol is FastViT's (../_base_ files: FPN + FPNHead, AdamW weight decay 1e-4, poly 0.9) except the learning rate,
# which it gives as 1e-4 (FastViT's is 2e-4).
# The backbone starts from an FMViT-B ImageNet-1k classifier trained with configs/fmvit_b_in1k.py, at
# checkpoints/fmvit_b_in1k.pth: no FMViT weights were ever released (docs/fmvit.md). To train from scratch:
#   --cfg-options model.backbone.init_cfg=None
_base_ = [
    './_base_/models/sem_fpn_fastvit.py',
    './_base_/datasets/ade20k_512.py',
    './_base_/schedules/seg_adamw_poly_40k.py',
    './_base_/seg_runtime.py',
]

model = dict(
    backbone=dict(type='mmfastvit.FMViT', arch='b', init_cfg=dict(checkpoint='checkpoints/fmvit_b_in1k.pth')),
    # FMViT-B's stage outputs at strides 4, 8, 16, 32 (the last is the FMB's 5 x 256)
    neck=dict(in_channels=[96, 320, 480, 1280]))

optim_wrapper = dict(optimizer=dict(lr=1e-4))
