# Mask R-CNN with a FastViT backbone and FPN: mmdet's Mask R-CNN R50-FPN (RPN, RoIAlign box and mask heads, 80 COCO
# classes) with FastViT in place of ResNet-50. The backbone returns each of its four stages (strides 4, 8, 16, 32);
# FPN maps them to 256 channels and adds a fifth level by max pooling (strides 4-64).
# Each configs/mask_rcnn_fastvit_<v>_1x.py sets backbone.arch, backbone.drop_path_rate, backbone.init_cfg.checkpoint
# and neck.in_channels (the variant's stage widths).
model = dict(
    type='MaskRCNN',
    # ImageNet mean / std in RGB, as FastViT was pretrained (timm's IMAGENET_DEFAULT_MEAN / STD x 255)
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_mask=True,
        pad_size_divisor=32),
    backbone=dict(
        type='mmfastvit.FastViT',  # resolves from the mmdet scope through mmfastvit's registry, no custom_imports
        arch='sa12',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        # BatchNorm trains (statistics and affine), as in the FastViT model the paper fine-tunes; with 2 images per
        # GPU, model.backbone.norm_eval=True freezes the ImageNet statistics instead.
        norm_eval=False,
        frozen_stages=-1,
        # Apple's dense-prediction outputs, the architecture behind the paper's COCO numbers: a BatchNorm on each
        # returned map (the next stage reads the un-normed one). Off by default: FPN's lateral 1x1 convs already rescale
        # each level, and an ImageNet checkpoint has no such norms (docs/detection.md, "Apple's output norms").
        # The key is left out (None) rather than set to None, so that a child config or --cfg-options can add the dict:
        # out_norm_cfg=dict(type='BN'),
        # The ImageNet classifier's weights (keys backbone.*): Apple's unfused release, which mmfastvit downloads into
        # the torch hub cache and converts on first use; offline, a file converted with
        # tools/model_converters/fastvit_to_mmfastvit.py (docs/detection.md). Its final_conv.* keys have no place in
        # the detector's backbone and are reported as unexpected, not an error. To train from scratch:
        # --cfg-options model.backbone.init_cfg=None
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://docs-assets.developer.apple.com/ml-research/models/fastvit/'
                       'image_classification_models/fastvit_sa12.pth.tar',
            prefix='backbone.')),
    neck=dict(
        type='FPN',
        in_channels=[64, 128, 256, 512],
        out_channels=256,
        num_outs=5),
    rpn_head=dict(
        type='RPNHead',
        in_channels=256,
        feat_channels=256,
        anchor_generator=dict(
            type='AnchorGenerator',
            scales=[8],
            ratios=[0.5, 1.0, 2.0],
            strides=[4, 8, 16, 32, 64]),
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder',
            target_means=[0.0, 0.0, 0.0, 0.0],
            target_stds=[1.0, 1.0, 1.0, 1.0]),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
    roi_head=dict(
        type='StandardRoIHead',
        bbox_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0),
            out_channels=256,
            featmap_strides=[4, 8, 16, 32]),
        bbox_head=dict(
            type='Shared2FCBBoxHead',
            in_channels=256,
            fc_out_channels=1024,
            roi_feat_size=7,
            num_classes=80,
            bbox_coder=dict(
                type='DeltaXYWHBBoxCoder',
                target_means=[0.0, 0.0, 0.0, 0.0],
                target_stds=[0.1, 0.1, 0.2, 0.2]),
            reg_class_agnostic=False,
            loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
            loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
        mask_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=14, sampling_ratio=0),
            out_channels=256,
            featmap_strides=[4, 8, 16, 32]),
        mask_head=dict(
            type='FCNMaskHead',
            num_convs=4,
            in_channels=256,
            conv_out_channels=256,
            num_classes=80,
            loss_mask=dict(type='CrossEntropyLoss', use_mask=True, loss_weight=1.0))),
    train_cfg=dict(
        rpn=dict(
            assigner=dict(
                type='MaxIoUAssigner',
                pos_iou_thr=0.7,
                neg_iou_thr=0.3,
                min_pos_iou=0.3,
                match_low_quality=True,
                ignore_iof_thr=-1),
            sampler=dict(type='RandomSampler', num=256, pos_fraction=0.5, neg_pos_ub=-1, add_gt_as_proposals=False),
            allowed_border=-1,
            pos_weight=-1,
            debug=False),
        rpn_proposal=dict(nms_pre=2000, max_per_img=1000, nms=dict(type='nms', iou_threshold=0.7), min_bbox_size=0),
        rcnn=dict(
            assigner=dict(
                type='MaxIoUAssigner',
                pos_iou_thr=0.5,
                neg_iou_thr=0.5,
                min_pos_iou=0.5,
                match_low_quality=True,
                ignore_iof_thr=-1),
            sampler=dict(type='RandomSampler', num=512, pos_fraction=0.25, neg_pos_ub=-1, add_gt_as_proposals=True),
            mask_size=28,
            pos_weight=-1,
            debug=False)),
    test_cfg=dict(
        rpn=dict(nms_pre=1000, max_per_img=1000, nms=dict(type='nms', iou_threshold=0.7), min_bbox_size=0),
        rcnn=dict(score_thr=0.05, nms=dict(type='nms', iou_threshold=0.5), max_per_img=100, mask_thr_binary=0.5)))
