# FastViT-SA36 on ImageNet-1k at 256x256, the paper's 300-epoch recipe (Apple's top-1: 83.6).
_base_ = [
    './_base_/models/fastvit_in1k.py',
    './_base_/datasets/imagenet_bs128_fastvit_256.py',
    './_base_/schedules/imagenet_bs1024_adamw_300e_fastvit.py',
    './_base_/default_runtime.py',
]

model = dict(backbone=dict(arch='sa36', drop_path_rate=0.2), head=dict(in_channels=1024))

# evaluation: crop ratio 0.95 (timm's for SA36), shorter edge floor(256 / 0.95) = 269, center crop 256
crop_ratio = 0.95
test_pipeline = [dict(t, scale=int(256 / crop_ratio)) if t.type == 'ResizeEdge' else t for t in _base_.test_pipeline]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
tta_pipeline = test_pipeline[:-1] + _base_.tta_pipeline[-1:]
