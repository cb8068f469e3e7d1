# Runtime of the FreiHAND hand-mesh configs: mmfastvit's own scope (the model, dataset, transforms and metric are
# registered there by mmfastvit.hand; mmengine's parts resolve through the parent registries).
default_scope = 'mmfastvit'
custom_imports = dict(imports=['mmfastvit.hand'], allow_failed_imports=False)

env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='Visualizer', vis_backends=vis_backends, name='visualizer')
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0)
