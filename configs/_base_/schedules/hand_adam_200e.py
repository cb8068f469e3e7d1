# METRO's FreiHAND schedule, which the FastViT paper follows: Adam (0.9, 0.999), no weight decay, lr 1e-4, x0.1 at
# epoch 100 of 200, 8 GPUs x 32 images. Evaluation and a checkpoint every 10 epochs; the best PA-MPVPE is kept.
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.0))
param_scheduler = [dict(type='MultiStepLR', by_epoch=True, milestones=[100], gamma=0.1)]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=200, val_interval=10)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=3, save_best='freihand/PA-MPVPE',
                    rule='less'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    # draws each test prediction's mesh over its crop when enabled (`tools/test.py --show-dir DIR`)
    visualization=dict(type='mmfastvit.HandMeshVisualizationHook', draw=False))

# `tools/train.py --auto-scale-lr` rescales lr linearly from this total batch size (8 GPUs x 32 images).
auto_scale_lr = dict(enable=False, base_batch_size=256)
