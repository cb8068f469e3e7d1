# COCO 2017 instance segmentation (boxes and masks), mmdet's CocoDataset in the standard layout under data_root:
#   annotations/instances_train2017.json, annotations/instances_val2017.json, train2017/*.jpg, val2017/*.jpg
# Training: resize to fit 1333x800 keeping the aspect ratio, horizontal flip; testing: the same resize.
# 2 images per GPU (the paper's 8 GPUs x 2 = 16, auto_scale_lr.base_batch_size in the schedule).
dataset_type = 'CocoDataset'
data_root = 'data/coco/'
backend_args = None

train_pipeline = [
    dict(type='mmfastvit.LoadImageFromFile', on_corrupt='error', backend_args=backend_args),  # or 'skip'
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
# mmcv's loader by its plain name: mmdet's DetInferencer finds it by that name and swaps in its loader of paths and
# arrays; tools/test.py and tools/train.py swap in mmfastvit.LoadImageFromFile, which names a corrupt file.
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    # the ground truth is loaded for the evaluator's bookkeeping; drop this step for images without annotations
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),  # landscape and portrait images in separate batches
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/instances_train2017.json',
        data_prefix=dict(img='train2017/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=32),
        pipeline=train_pipeline,
        backend_args=backend_args))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/instances_val2017.json',
        data_prefix=dict(img='val2017/'),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
test_dataloader = val_dataloader

# pycocotools' COCOeval on boxes and masks: coco/bbox_mAP, coco/segm_mAP, ... (AP at IoU 0.50:0.95)
val_evaluator = dict(
    type='CocoMetric',
    ann_file=data_root + 'annotations/instances_val2017.json',
    metric=['bbox', 'segm'],
    format_only=False,
    backend_args=backend_args)
test_evaluator = val_evaluator
