# ImageNet-1k at 224x224, the FMViT paper's resolution, with 256 images per GPU x 8 GPUs = the paper's batch of 2048.
# The paper names no augmentation and no evaluation crop: FastViT's are kept (./imagenet_bs128_fastvit_256.py:
# RandomResizedCrop bicubic, flip, RandAugment rand-m9-mstd0.5-inc1, random erasing 0.25; Mixup / CutMix in the
# model's train_cfg), at 224. Evaluation: FastViT's crop ratio 0.9, shorter edge int(224 / 0.9) = 248, center crop 224.
_base_ = ['./imagenet_bs128_fastvit_256.py']

img_size = 224
crop_ratio = 0.9

train_pipeline = [
    dict(t, scale=img_size) if t.type == 'RandomResizedCrop' else t for t in _base_.train_pipeline
]
test_pipeline = [
    dict(t, scale=int(img_size / crop_ratio)) if t.type == 'ResizeEdge' else
    dict(t, crop_size=img_size) if t.type == 'CenterCrop' else t for t in _base_.test_pipeline
]
train_dataloader = dict(batch_size=256, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
tta_pipeline = test_pipeline[:-1] + _base_.tta_pipeline[-1:]
