# ImageNet-A (Hendrycks et al., CVPR 2021) for tools/analysis_tools/robustness.py: 7,500 natural adversarial images of
# 200 ImageNet classes, top-1 with the model's 1000 scores read over those 200 classes only. Layout:
# data/imagenet-a/<wnid>/*.jpg. Labels are ImageNet-1k indices, from the sorted list of the 1000 wnids: wnids_file, or
# timm's copy when timm is installed (docs/robustness.md).
_base_ = ['./robustness_loader.py']

test_dataloader = dict(dataset=dict(type='ImageNetA', data_root='data/imagenet-a/'))
test_evaluator = dict(type='SubsetAccuracy', prefix='imagenet_a')
