# FMViT ImageNet-1k classifier: backbone up to the FMB (out_indices=(3,): stage 4's output, 5 x FM-channels), global
# average pooling, linear head; the head pools the FMB output directly, with no conv before the linear layer (see
# FMViT's docstring). State-dict keys: backbone.*, head.fc.* (as mmfastvit's FMViTClassifier).
# Each variant config sets backbone.arch, backbone.drop_path_rate and head.in_channels (320 / 640 / 960 / 1280 / 1280).
#
# The FMViT paper gives no loss, label smoothing, Mixup / CutMix or head initialization: those are FastViT's
# (./fastvit_in1k.py: label smoothing 0.1, Mixup 0.8 / CutMix 1.0, truncated-normal Linear init), inherited here.
_base_ = ['./fastvit_in1k.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmfastvit.FMViT',  # resolves through mmfastvit's registry, no custom_imports needed
        arch='t',
        out_indices=(3,),
        drop_path_rate=0.0),
    head=dict(in_channels=320),
)
