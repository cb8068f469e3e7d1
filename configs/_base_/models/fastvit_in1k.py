# FastViT ImageNet-1k classifier: backbone up to the paper's final conv (out_indices=(4,), 2 x C4 channels),
# global average pooling, linear head. State-dict keys: backbone.*, head.fc.* (as mmfastvit's FastViTClassifier).
# Each variant config sets backbone.arch, backbone.drop_path_rate and head.in_channels.
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='mmfastvit.FastViT',  # resolves through mmfastvit's registry, no custom_imports needed
        arch='t8',
        out_indices=(4,),
        drop_path_rate=0.0),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=768,
        # with Mixup / CutMix scores this is timm's SoftTargetCrossEntropy on label-smoothed mixed targets
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        # Apple's init of every Linear, the classifier included
        init_cfg=dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.0)),
    # The paper's Mixup 0.8 / CutMix 1.0, one of the two per batch with equal probability (timm's switch_prob 0.5).
    # (Apple's README commands pass --mixup 0.2 for T8-SA36; the paper and train.py's default say 0.8.)
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]),
)
