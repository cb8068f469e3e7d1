# FastViT-SA24 with DeiT hard distillation from RegNetY-16GF, 256x256, 300 epochs (Apple's top-1: 83.4).
_base_ = ['./fastvit_sa24_in1k.py', './_base_/distill_regnety_16gf.py']

# drop path 0.05 (Apple's README: 0.05 with distillation, 0.1 without)
model = dict(
    type='mmfastvit.HardDistillationClassifier',
    teacher=_base_.teacher,
    distill_weight=0.5,
    backbone=dict(drop_path_rate=0.05))
