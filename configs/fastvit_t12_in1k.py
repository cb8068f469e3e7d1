# FastViT-T12 on ImageNet-1k at 256x256, the paper's 300-epoch recipe (Apple's top-1: 79.3).
_base_ = [
    './_base_/models/fastvit_in1k.py',
    './_base_/datasets/imagenet_bs128_fastvit_256.py',
    './_base_/schedules/imagenet_bs1024_adamw_300e_fastvit.py',
    './_base_/default_runtime.py',
]

model = dict(backbone=dict(arch='t12', drop_path_rate=0.0), head=dict(in_channels=1024))

# evaluation: crop ratio 0.9 (the dataset base), shorter edge floor(256 / 0.9) = 284, center crop 256
