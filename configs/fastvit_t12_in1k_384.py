# FastViT-T12 fine-tuned at 384x384 for 30 epochs from its 256x256 checkpoint (the paper's recipe).
_base_ = [
    './_base_/models/fastvit_in1k.py',
    './_base_/datasets/imagenet_bs128_fastvit_384.py',
    './_base_/schedules/imagenet_bs1024_adamw_30e_fastvit_ft384.py',
    './_base_/default_runtime.py',
]

# drop path as in the 256x256 run; evaluation at crop ratio 1.0 (see the 384 dataset base)
model = dict(backbone=dict(arch='t12', drop_path_rate=0.0), head=dict(in_channels=1024))

# The 256x256 checkpoint to start from: Apple's unfused ImageNet-1k release, downloaded and converted on first use
# (docs/classification.md). Your own run instead: --cfg-options load_from=work_dirs/fastvit_t12_in1k/best_....pth
load_from = ('https://docs-assets.developer.apple.com/ml-research/models/fastvit/'
             'image_classification_models/fastvit_t12.pth.tar')
