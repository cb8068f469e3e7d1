# ADE20K (SceneParsing, ADEChallengeData2016) at 512x512 crops, the Semantic FPN protocol of PoolFormer and FastViT:
# shorter edge 512 (longer at most 2048) times a random ratio in [0.5, 2.0], random 512x512 crop (at most 75% of it
# one class), horizontal flip, photometric distortion; 4 images per GPU x 8 GPUs = 32 per iteration.
# Evaluation: the image resized to shorter edge 512, each side rounded to a multiple of 32, whole-image inference,
# prediction resized back; mIoU over the 150 classes at the original resolution.
# Stored labels: 0 = other, 1..150 = classes; reduce_zero_label (set on the dataset, which LoadAnnotations follows)
# maps them to 255 (ignored) and 0..149.
dataset_type = 'ADE20KDataset'
data_root = 'data/ade/ADEChallengeData2016/'
crop_size = (512, 512)
img_scale = (2048, 512)

train_pipeline = [
    dict(type='mmfastvit.LoadImageFromFile', on_corrupt='error'),  # 'skip': warn and train on another image
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=img_scale, ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
# mmcv's loader by its plain name: mmseg's MMSegInferencer finds it by that name and swaps in its loader of paths and
# arrays; tools/test.py and tools/train.py swap in mmfastvit.LoadImageFromFile, which names a corrupt file.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='ResizeToMultiple', size_divisor=32),
    # annotations are loaded after resizing: the metric compares at the original resolution
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]

train_dataloader = dict(
    batch_size=4,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        reduce_zero_label=True,
        data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        reduce_zero_label=True,
        data_prefix=dict(img_path='images/validation', seg_map_path='annotations/validation'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader

# mIoU, mAcc and aAcc (IoUMetric always reports aAcc and the mean of each requested metric)
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

# `tools/test.py --tta`: scales 0.5-1.75 of the test size, each with and without a horizontal flip, averaged
img_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='Resize', scale_factor=r, keep_ratio=True) for r in img_ratios],
            [dict(type='RandomFlip', prob=0.0, direction='horizontal'),
             dict(type='RandomFlip', prob=1.0, direction='horizontal')],
            [dict(type='LoadAnnotations')],
            [dict(type='PackSegInputs')],
        ]),
]
