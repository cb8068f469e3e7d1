# FMViT-B on ImageNet-1k at 224x224, the paper's 300-epoch recipe (the paper's top-1: 82.4). No released weights:
# the paper's code never came out (docs/fmvit.md).
# Drop path is not in the paper: 0.1, FastViT's for its variant of similar size (SA24).
# Nor is EMA: FastViT's (decay 0.9995, validation on the EMA weights) comes with ./_base_/default_runtime.py.
_base_ = [
    './_base_/models/fmvit_in1k.py',
    './_base_/datasets/imagenet_bs256_fmvit_224.py',
    './_base_/schedules/imagenet_bs2048_adamw_300e_fmvit.py',
    './_base_/default_runtime.py',
]

model = dict(backbone=dict(arch='b', drop_path_rate=0.1), head=dict(in_channels=1280))

# evaluation: crop ratio 0.9 (the dataset base, FastViT's), shorter edge int(224 / 0.9) = 248, center crop 224
