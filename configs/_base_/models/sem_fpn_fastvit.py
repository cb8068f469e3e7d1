# Semantic FPN (Kirillov et al., 2019) on a FastViT backbone, as the FastViT paper evaluates it on ADE20K (following
# PoolFormer): the four stage outputs (strides 4, 8, 16, 32) -> FPN (256 channels, 4 levels) -> FPNHead (128
# channels) -> per-pixel classes. Each variant config sets backbone.arch, backbone.init_cfg and neck.in_channels
# (the variant's stage widths).
norm_cfg = dict(type='SyncBN', requires_grad=True)  # the head's; a single-process run reverts it to BatchNorm
data_preprocessor = dict(
    type='SegDataPreProcessor',
    # ImageNet RGB mean / std (the pretrained backbone's), on the 0-255 scale; images are decoded as BGR
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    size=(512, 512),  # training batches are padded to the crop of ../datasets/ade20k_512.py
    pad_val=0,
    seg_pad_val=255)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='mmfastvit.FastViT',  # resolves through mmfastvit's registry, no custom_imports needed
        arch='sa12',
        out_indices=(0, 1, 2, 3),  # each stage's own output, the attention stage of SA / MA included
        # Apple's dense-prediction outputs, the architecture behind the paper's ADE20K numbers: a BatchNorm on each
        # returned map (the next stage reads the un-normed one). Off by default: FPN's lateral 1x1 convs already rescale
        # each level, and an ImageNet checkpoint has no such norms (docs/segmentation.md, "Apple's output norms").
        # The key is left out (None) rather than set to None, so that a child config or --cfg-options can add the dict:
        # out_norm_cfg=dict(type='BN'),
        # drop path and norms as PoolFormer's Semantic FPN configs leave them: the backbone's defaults
        # (no stochastic depth; the backbone's BatchNorms train, per GPU)
        drop_path_rate=0.0,
        # ImageNet-1k classifier checkpoint: Apple's unfused release, downloaded into the torch hub cache and converted
        # on first use (offline: a file converted with tools/model_converters/fastvit_to_mmfastvit.py); its backbone.*
        # keys.
        # The classifier's backbone.final_conv.* has no counterpart here and is skipped (logged as unexpected keys);
        # head.fc.* is outside the prefix.
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://docs-assets.developer.apple.com/ml-research/models/fastvit/'
                       'image_classification_models/fastvit_sa12.pth.tar',
            prefix='backbone.')),
    neck=dict(
        type='FPN',
        in_channels=[64, 128, 256, 512],
        out_channels=256,
        num_outs=4),
    decode_head=dict(
        type='FPNHead',
        in_channels=[256, 256, 256, 256],
        in_index=[0, 1, 2, 3],
        feature_strides=[4, 8, 16, 32],
        channels=128,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
