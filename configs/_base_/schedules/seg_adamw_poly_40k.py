# The Semantic FPN schedule of PoolFormer, which FastViT follows: AdamW, lr 2e-4, weight decay 1e-4 (on every
# parameter, as there), poly decay with power 0.9 to 0 over 40k iterations of 32 images (8 GPUs x 4),
# evaluation and a checkpoint every 4k iterations. Mixed precision: `tools/train.py --amp`.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=1e-4),
    clip_grad=None)
max_iters = 40000
param_scheduler = [
    dict(type='PolyLR', power=0.9, eta_min=0.0, begin=0, end=max_iters, by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=4000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # keep the last 3 checkpoints and the best mIoU
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=4000, max_keep_ckpts=3, save_best='mIoU'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    # draws every test image's ground truth and prediction when enabled (`tools/test.py --show-dir`); the hook's
    # default interval (50) would draw only every 50th image
    visualization=dict(type='SegVisualizationHook', draw=False, interval=1))

# `tools/train.py --auto-scale-lr` rescales lr linearly from this total batch size (8 GPUs x 4 images).
auto_scale_lr = dict(enable=False, base_batch_size=32)
