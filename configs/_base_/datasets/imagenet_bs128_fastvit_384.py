# ImageNet-1k at 384x384 for the 30-epoch fine-tune: the 256x256 recipe's augmentations (RandAugment, random erasing,
# Mixup / CutMix stay on, as in DeiT's fine-tune), with crops of 384. 128 images per GPU x 8 GPUs = batch 1024.
_base_ = ['./imagenet_bs128_fastvit_256.py']

img_size = 384
# Apple's train.py evaluates a fine-tune run (--finetune) with crop_pct 1.0 for every variant:
# shorter edge 384, center crop 384.
crop_ratio = 1.0

train_pipeline = [
    dict(t, scale=img_size) if t.type == 'RandomResizedCrop' else t for t in _base_.train_pipeline
]
test_pipeline = [
    dict(t, scale=int(img_size / crop_ratio)) if t.type == 'ResizeEdge' else
    dict(t, crop_size=img_size) if t.type == 'CenterCrop' else t for t in _base_.test_pipeline
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
tta_pipeline = test_pipeline[:-1] + _base_.tta_pipeline[-1:]
