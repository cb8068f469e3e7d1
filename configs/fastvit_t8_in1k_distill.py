# FastViT-T8 with DeiT hard distillation from RegNetY-16GF, 256x256, 300 epochs (Apple's top-1: 77.2).
_base_ = ['./fastvit_t8_in1k.py', './_base_/distill_regnety_16gf.py']

# drop path 0.0, as without distillation
model = dict(
    type='mmfastvit.HardDistillationClassifier',
    teacher=_base_.teacher,
    distill_weight=0.5,
    backbone=dict(drop_path_rate=0.0))
