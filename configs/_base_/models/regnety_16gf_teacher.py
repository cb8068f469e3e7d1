# The distillation teacher of DeiT and FastViT: RegNetY-16GF, timm's `regnety_160`, through mmpretrain's
# TimmClassifier (its state-dict keys are timm's own, no prefix).
# Weights: DeiT's release https://dl.fbaipublicfiles.com/deit/regnety_160-a5fe301d.pth (timm's
# `regnety_160.deit_in1k`), a timm `regnety_160` state dict under 'model'; HardDistillationClassifier unwraps it.
# The teacher receives the student's preprocessed batch (ImageNet mean / std normalization, Mixup / CutMix applied).
default_scope = 'mmpretrain'
model = dict(type='TimmClassifier', model_name='regnety_160', num_classes=1000)
