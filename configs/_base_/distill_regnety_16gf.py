# DeiT hard distillation as in FastViT: one head, no distillation token; the loss is
#   0.5 * (label-smoothed loss on the Mixup / CutMix targets) + 0.5 * CE(student logits, argmax(teacher logits)),
# the teacher seeing the same augmented batch. The teacher is built on the first training step, frozen and in eval
# mode, outside the student's state dict, checkpoints and optimizer; testing never builds it.
custom_imports = dict(imports=['mmfastvit.integrations.distill'], allow_failed_imports=False)

teacher = dict(
    # a config file whose `model` is the teacher (or `model=dict(...)` inline)
    config='{{ fileDirname }}/models/regnety_16gf_teacher.py',
    # download https://dl.fbaipublicfiles.com/deit/regnety_160-a5fe301d.pth here, or point to your copy
    checkpoint='checkpoints/regnety_160-a5fe301d.pth',
)
