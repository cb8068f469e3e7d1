# The FastViT paper's ImageNet-1k schedule: AdamW, lr 1e-3 at batch 1024 (128 x 8 GPUs), weight decay 0.05,
# 300 epochs, 5 linear warm-up epochs, cosine to 1e-5 (timm's --warmup-lr 1e-6 / --min-lr 1e-5 in Apple's train.py).
# Mixed precision (Apple trained with native AMP): `tools/train.py --amp`.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05, eps=1e-8, betas=(0.9, 0.999)),
    # No decay on BatchNorm weights / biases, on every bias, and on the layer scales (parameters named `gamma`:
    # layer_scale, layer_scale_1, layer_scale_2, token_mixer.layer_scale). The layer scales are (C, 1, 1)
    # tensors, so timm's "1-D parameters" rule (Apple's train.py) would decay them; the key below does not.
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={'.gamma': dict(decay_mult=0.0)}),
)

warmup_epochs = 5
max_epochs = 300
param_scheduler = [
    # 1e-6 -> 1e-3 (scaled with the batch size under auto_scale_lr), updated every iteration
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=warmup_epochs, end=max_epochs,
         convert_to_iter_based=True),
]

train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()

# `tools/train.py --auto-scale-lr` rescales lr linearly from this total batch size.
auto_scale_lr = dict(base_batch_size=1024)
