# Runtime shared by the FastViT classification configs (mmpretrain's runner, hooks and visualizer).
default_scope = 'mmpretrain'

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=100),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # keep the last 3 epochs and the best top-1 (save_best='auto' picks the evaluator's first metric)
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=3, save_best='auto'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    # draws predictions on validation images when enabled (`tools/test.py --show-dir`)
    visualization=dict(type='VisualizationHook', enable=False),
)

# Model EMA with the paper's decay 0.9995, updated after every iteration like timm's ModelEmaV2 (parameters and
# BatchNorm statistics alike: update_buffers=True). mmengine's momentum is the weight of the *new* value,
# ema = (1 - momentum) * ema + momentum * model, so decay 0.9995 is momentum 1 - 0.9995 = 5e-4.
# Validation and saved checkpoints use the EMA weights (the raw ones go to `ema_state_dict`), as Apple's
# train.py validates and selects its best checkpoint on the EMA model.
custom_hooks = [
    dict(type='EMAHook', momentum=5e-4, update_buffers=True, priority='ABOVE_NORMAL'),
]

env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)

vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)

log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=None, deterministic=False)
