# ImageNet-1k at 256x256, the FastViT paper's data recipe (timm's ImageNet pipeline, which Apple's train.py uses):
# RandomResizedCrop 256 bicubic, horizontal flip, RandAugment rand-m9-mstd0.5-inc1, random erasing 0.25.
# Mixup / CutMix run on the batch (the model's train_cfg.augments, see ../models/fastvit_in1k.py).
# 128 images per GPU x 8 GPUs = the paper's batch of 1024.
dataset_type = 'ImageNet'
data_root = 'data/imagenet/'
img_size = 256
# timm evaluates FastViT with crop_pct 0.9 (0.95 for SA36 / MA36): shorter edge floor(256 / 0.9) = 284, center crop 256.
# The SA36 / MA36 configs override test_pipeline, the val / test dataloaders and tta_pipeline with 269.
crop_ratio = 0.9

data_preprocessor = dict(
    num_classes=1000,  # Mixup / CutMix turn labels into 1000-way scores
    # ImageNet RGB mean / std, on the 0-255 scale
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True,  # images are decoded as BGR
)
bgr_mean = data_preprocessor['mean'][::-1]
bgr_std = data_preprocessor['std'][::-1]

train_pipeline = [
    dict(type='mmfastvit.LoadImageFromFile', on_corrupt='error'),  # 'skip': warn and train on another image
    dict(type='RandomResizedCrop', scale=img_size, backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    # timm 'rand-m9-mstd0.5-inc1': 2 ops, magnitude 9 of 10 with std 0.5, increasing-severity op set
    dict(
        type='RandAugment',
        policies='timm_increasing',
        num_policies=2,
        total_level=10,
        magnitude_level=9,
        magnitude_std=0.5,
        hparams=dict(pad_val=[round(x) for x in bgr_mean], interpolation='bicubic')),
    # timm's re_mode 'pixel': per-pixel normal noise in the normalized space = N(mean, std) on raw pixels
    dict(
        type='RandomErasing',
        erase_prob=0.25,
        mode='rand',
        min_area_ratio=0.02,
        max_area_ratio=1 / 3,
        fill_color=bgr_mean,
        fill_std=bgr_std),
    dict(type='PackInputs'),
]

# Pillow decoding and resizing, as timm's validation (the published accuracies) does.
# mmcv's loader by its plain name: mmpretrain's ImageClassificationInferencer finds it by that name and loads the image
# itself; tools/test.py and tools/train.py swap in mmfastvit.LoadImageFromFile, which names a corrupt file.
test_pipeline = [
    dict(type='LoadImageFromFile', imdecode_backend='pillow'),
    dict(type='ResizeEdge', scale=int(img_size / crop_ratio), edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=img_size),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=128,
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='meta/train.txt',
        data_prefix='train',
        pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=128,
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='meta/val.txt',
        data_prefix='val',
        pipeline=test_pipeline),
)
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

# `tools/test.py --tta`: average the class scores of the image and its horizontal flip.
tta_model = dict(type='AverageClsScoreTTA')
tta_pipeline = test_pipeline[:-1] + [
    dict(
        type='TestTimeAug',
        transforms=[[dict(type='RandomFlip', prob=0.0),
                     dict(type='RandomFlip', prob=1.0, direction='horizontal')],
                    [dict(type='PackInputs')]]),
]
