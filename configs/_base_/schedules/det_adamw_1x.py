# The FastViT paper's COCO schedule, which follows PoolFormer's Mask R-CNN 1x: AdamW, lr 2e-4 at a total batch of 16
# (8 GPUs x 2 images), weight decay 1e-4 on every parameter, no gradient clipping; 12 epochs, lr x0.1 after epochs
# 8 and 11; linear warm-up from lr x0.001 over the first 500 iterations (mmdet's 1x warm-up).
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=1e-4))

max_epochs = 12
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', by_epoch=True, begin=0, end=max_epochs, milestones=[8, 11], gamma=0.1),
]

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

# `tools/train.py --auto-scale-lr` rescales lr linearly from this total batch size (e.g. x0.125 on one GPU).
auto_scale_lr = dict(enable=False, base_batch_size=16)
