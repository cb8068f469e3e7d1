# The FMViT paper's ImageNet-1k schedule: AdamW, weight decay 0.1, batch 2048 (256 x 8 GPUs), 300 epochs, cosine,
# 20 warm-up epochs (the numbers of Next-ViT's recipe, whose layout FMViT follows).
# Not in the paper, taken from FastViT's schedule (./imagenet_bs1024_adamw_300e_fastvit.py): the learning rate, as
# FastViT's 1e-3 per 1024 images scaled linearly to 2e-3 at 2048; warm-up from lr x 1e-3; cosine down to 1e-5; no
# decay on BatchNorm weights and biases or on any bias; AdamW betas / eps. Mixed precision: `tools/train.py --amp`.
_base_ = ['./imagenet_bs1024_adamw_300e_fastvit.py']

optim_wrapper = dict(
    optimizer=dict(lr=2e-3, weight_decay=0.1),
    # FMViT has no layer scales, so FastViT's `.gamma` key has nothing to match and is left out
    paramwise_cfg=dict(_delete_=True, norm_decay_mult=0.0, bias_decay_mult=0.0),
)

warmup_epochs = 20
max_epochs = 300
# FastViT's linear warm-up (2e-6 -> 2e-3, scaled with the batch size under auto_scale_lr) and cosine, both updated
# every iteration, over 20 warm-up epochs
param_scheduler = [
    dict(s, end=warmup_epochs) if s.type == 'LinearLR' else dict(s, begin=warmup_epochs, end=max_epochs)
    for s in _base_.param_scheduler
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)

# `tools/train.py --auto-scale-lr` rescales lr linearly from the paper's total batch size.
auto_scale_lr = dict(base_batch_size=2048)
