# Mask R-CNN 1x on COCO with FMViT-B + FPN. The FMViT paper's protocol is FastViT's (../_base_ files: mmdet's Mask
# R-CNN R50-FPN heads, AdamW lr 2e-4 at batch 16, 12 epochs, lr x0.1 after epochs 8 and 11, 500-iteration warm-up)
# except the weight decay, which the FMViT paper gives as 0.05 (FastViT's is 1e-4). Its "1344x800" is read as the
# standard 1333x800 resize of that protocol. Drop path 0.1 as in configs/fmvit_b_in1k.py.
# Backbone initialised from an FMViT-B ImageNet-1k classifier trained with configs/fmvit_b_in1k.py, at
# checkpoints/fmvit_b_in1k.pth: no FMViT weights were ever released (docs/fmvit.md). To train from scratch:
#   python tools/train.py configs/mask_rcnn_fmvit_b_1x.py --cfg-options model.backbone.init_cfg=None
_base_ = [
    './_base_/models/mask_rcnn_fastvit_fpn.py',
    './_base_/datasets/coco_instance.py',
    './_base_/schedules/det_adamw_1x.py',
    './_base_/det_runtime.py',
]

model = dict(
    backbone=dict(
        type='mmfastvit.FMViT',  # the base's FastViT options (out_indices, norm_eval, frozen_stages) apply as they are
        arch='b',
        drop_path_rate=0.1,
        init_cfg=dict(checkpoint='checkpoints/fmvit_b_in1k.pth')),
    # FMViT-B's stage outputs at strides 4, 8, 16, 32 (the last is the FMB's 5 x 256)
    neck=dict(in_channels=[96, 320, 480, 1280]))

optim_wrapper = dict(optimizer=dict(weight_decay=0.05))
